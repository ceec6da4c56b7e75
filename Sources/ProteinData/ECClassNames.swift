import Foundation

/// Names of EC classes, subclasses and sub-subclasses from ExPASy ENZYME `enzclass.txt`.
///
/// File lines look like `1. 1. 1.-    With NAD(+) or NADP(+) as acceptor.` (spaces after the
/// dots); the trailing period of a name is dropped. Other lines (banner, blank, copyright)
/// are ignored.
public struct ECClassNames: Sendable {
    /// The seven EC classes, so reports work without the file.
    public static let builtinClassNames: [Int: String] = [
        1: "Oxidoreductases", 2: "Transferases", 3: "Hydrolases", 4: "Lyases",
        5: "Isomerases", 6: "Ligases", 7: "Translocases",
    ]

    /// Names keyed by ECs with unknown levels after the named one (`1.1.-.-`).
    public let names: [ECNumber: String]

    /// Only the seven built-in class names.
    public init() {
        var n: [ECNumber: String] = [:]
        for (k, v) in ECClassNames.builtinClassNames {
            if let ec = try? ECNumber("\(k)") { n[ec] = v }
        }
        names = n
    }

    /// Parses the `enzclass.txt` at `enzclassPath`.
    ///
    /// - Throws: `.fileUnreadable`, `.gzipCorrupt`, `.malformedFile` when no class line is found.
    public init(enzclassPath: String) throws {
        let bytes = try TextFile.readBytes(path: enzclassPath)
        var n: [ECNumber: String] = [:]
        for line in TextFile.lines(bytes) {
            if let (ec, name) = ECClassNames.parseLine(TextFile.string(line.bytes)) { n[ec] = name }
        }
        guard !n.isEmpty else {
            throw ProteinDataError.malformedFile(path: enzclassPath,
                reason: "no lines like '1. 1. 1.-    With NAD(+) or NADP(+) as acceptor.' (ExPASy enzclass.txt)")
        }
        for (k, v) in ECClassNames.builtinClassNames {
            if let ec = try? ECNumber("\(k)"), n[ec] == nil { n[ec] = v }
        }
        names = n
    }

    /// Parses one `enzclass.txt` line into its EC and name, nil for other lines.
    static func parseLine(_ line: String) -> (ECNumber, String)? {
        guard let first = line.first, first.isASCII, first.isNumber else { return nil }
        // The code is the text up to the fourth level: 3 dots, then '-' or digits.
        var dots = 0
        var idx = line.startIndex
        var code = ""
        while idx < line.endIndex {
            let c = line[idx]
            if dots == 3 {
                if c == "-" || c.isNumber { code.append(c); idx = line.index(after: idx); continue }
                break
            }
            if c == "." { dots += 1; code.append(c) }
            else if c == " " { }
            else if c == "-" || (c.isASCII && c.isNumber) { code.append(c) }
            else { return nil }
            idx = line.index(after: idx)
        }
        guard dots == 3, let ec = try? ECNumber(code) else { return nil }
        var name = line[idx...].trimmingCharacters(in: .whitespaces)
        if name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty else { return nil }
        return (ec, name)
    }

    /// The name of the most specific known level of `ec` (sub-subclass, subclass, then class);
    /// nil when not even the class is known.
    public func name(for ec: ECNumber) -> String? {
        for level in stride(from: ec.knownDepth, through: 1, by: -1) {
            if let n = names[ec.truncated(toLevel: level)] { return n }
        }
        return nil
    }
}
