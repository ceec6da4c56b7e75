import Foundation

/// An Enzyme Commission number such as `1.1.1.1`, with unknown levels (`3.4.-.-`).
///
/// Always four levels (class, subclass, sub-subclass, serial); `nil` marks `-`. Levels 1-3
/// are integers (class 1...7); the serial may also be preliminary (`n1`, as in ExPASy
/// ENZYME's `4.2.2.n1`) or letter-prefixed (`B3`, as in EC-Bench's `3.2.1.B3`). Missing
/// trailing levels are unknown: `3.4.21` is `3.4.21.-`. A known level after an unknown one
/// (`3.-.1.1`) is invalid. Numbers are stored canonically (`01` -> `1`).
///
/// Ordering: level by level, unknown before numbers, numbers numerically, then
/// letter-prefixed serials by prefix and number. Codable as its canonical string.
public struct ECNumber: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    /// Always 4 entries; `nil` for `-`.
    public private(set) var levels: [String?]

    /// Parses `text`; leading/trailing whitespace and an `EC`/`EC:` prefix are allowed.
    ///
    /// - Throws: `ProteinDataError.invalidEC(text:where:)` with `where` = "parsing".
    public init(_ text: String) throws {
        try self.init(text, where: "parsing")
    }

    /// Parses `text`, naming `where` (e.g. "labels.tsv line 12") in the error.
    ///
    /// - Throws: `ProteinDataError.invalidEC`.
    public init(_ text: String, where place: String) throws {
        guard let levels = ECNumber.parse(text) else {
            throw ProteinDataError.invalidEC(text: text, where: place)
        }
        self.levels = levels
    }

    /// Builds from levels already split; `nil` = unknown. Throws `invalidEC` when invalid.
    public init(levels: [String?]) throws {
        let text = levels.map { $0 ?? "-" }.joined(separator: ".")
        guard (1...4).contains(levels.count) else {
            throw ProteinDataError.invalidEC(text: text, where: "levels")
        }
        try self.init(text, where: "levels")
    }

    private init(validated: [String?]) { self.levels = validated }

    private static func parse(_ raw: String) -> [String?]? {
        var text = raw.trimmingCharacters(in: .whitespaces)
        if text.uppercased().hasPrefix("EC") {
            text = String(text.dropFirst(2)).trimmingCharacters(in: .whitespaces)
            if text.hasPrefix(":") { text = String(text.dropFirst()).trimmingCharacters(in: .whitespaces) }
        }
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII }) else { return nil }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 1 && parts.count <= 4 else { return nil }
        var levels: [String?] = []
        var sawUnknown = false
        for (i, part) in parts.enumerated() {
            if part == "-" {
                sawUnknown = true
                levels.append(nil)
                continue
            }
            if sawUnknown { return nil }
            if let n = Int(part), n >= 0, part.allSatisfy({ $0.isNumber }) {
                if i == 0 && !(1...7).contains(n) { return nil }
                levels.append(String(n))
            } else if i == 3, let first = part.first, first.isLetter,
                      part.count >= 2, let n = Int(part.dropFirst()), part.dropFirst().allSatisfy({ $0.isNumber }) {
                levels.append(String(first) + String(n))
            } else {
                return nil
            }
        }
        while levels.count < 4 { levels.append(nil) }
        return levels
    }

    /// The first level as an Int (1...7), nil if unknown.
    public var ecClass: Int? { levels[0].flatMap { Int($0) } }

    /// How many leading levels are known (0...4).
    public var knownDepth: Int { levels.firstIndex(where: { $0 == nil }) ?? 4 }

    /// True when all four levels are known.
    public var isComplete: Bool { knownDepth == 4 }

    /// True for preliminary serials such as `4.2.2.n1` (ExPASy ENZYME).
    public var isPreliminary: Bool { levels[3]?.hasPrefix("n") ?? false }

    /// Keeps levels `1...level` and sets the rest to `-` (`level` is clamped to 0...4).
    public func truncated(toLevel level: Int) -> ECNumber {
        let k = max(0, min(4, level))
        var l = levels
        for i in k..<4 { l[i] = nil }
        return ECNumber(validated: l)
    }

    /// Canonical text, e.g. `3.4.-.-`.
    public var description: String { levels.map { $0 ?? "-" }.joined(separator: ".") }

    private static func key(_ level: String?) -> (Int, String, Int) {
        guard let s = level else { return (0, "", 0) }
        if let n = Int(s) { return (1, "", n) }
        return (2, String(s.prefix(1)), Int(s.dropFirst()) ?? 0)
    }

    public static func < (a: ECNumber, b: ECNumber) -> Bool {
        for i in 0..<4 {
            let ka = key(a.levels[i]), kb = key(b.levels[i])
            if ka != kb { return ka < kb }
        }
        return false
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let levels = ECNumber.parse(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                debugDescription: ProteinDataError.invalidEC(text: text, where: "decoding").description))
        }
        self.levels = levels
    }

    /// Encodes the canonical string (`description`, e.g. `3.4.-.-`).
    /// - Throws: whatever the encoder's single-value container throws.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}
