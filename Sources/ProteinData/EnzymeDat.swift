import Foundation

/// The history of EC numbers from ExPASy ENZYME's `enzyme.dat`: which entries are current,
/// which were transferred to other numbers and which were deleted.
///
/// Format (ExPASy ENZYME user manual, `enzuser.txt`): entries separated by `//` lines, each
/// line a two-letter code, three spaces and text. Only two codes matter here:
/// `ID   1.1.1.1` (the EC number) and `DE   ...` (the description, possibly over several `DE`
/// lines, joined with a space). Obsolete entries have the description
/// `Transferred entry: 1.1.1.198, 1.1.1.227 and 1.1.1.228.` or `Deleted entry.`. Other lines
/// (the `CC` banner before the first entry, `AN`, `CA`, `CF`, `CC`, `PR`, `DR`) are ignored.
public struct EnzymeNomenclature: Sendable, Equatable {
    /// What `enzyme.dat` says about one EC number.
    public enum Status: Sendable, Equatable {
        /// A current entry with its accepted name (the `DE` text without the final period).
        case current(name: String)
        /// Replaced by these numbers (one, or several when the entry was split).
        case transferred(to: [ECNumber])
        /// Withdrawn without a replacement.
        case deleted
    }

    /// The entries, keyed by their (complete) EC number.
    public let entries: [ECNumber: Status]

    /// Creates a nomenclature from entries already parsed (for tests and callers that build one).
    public init(entries: [ECNumber: Status]) { self.entries = entries }

    /// Reads the `enzyme.dat` at `path`.
    ///
    /// - Throws: `ProteinDataError.fileUnreadable`, `.gzipCorrupt`, `.malformedFile` (an `ID`
    ///   that is not an EC number, a transferred entry whose targets cannot be read, a `DE` line
    ///   outside an entry, or no `ID` line at all), each naming the file and line.
    public init(enzymeDatPath path: String) throws {
        self = try EnzymeNomenclature.parse(bytes: try TextFile.readBytes(path: path), file: path)
    }

    /// Parses `enzyme.dat` content held in memory; `file` is used in errors.
    ///
    /// - Throws: as `init(enzymeDatPath:)`.
    public static func parse(data: Data, file: String) throws -> EnzymeNomenclature {
        let bytes = try TextFile.decompressedIfGzip([UInt8](data), path: file)
        return try parse(bytes: bytes, file: file)
    }

    static func parse(bytes: [UInt8], file: String) throws -> EnzymeNomenclature {
        var entries: [ECNumber: Status] = [:]
        var current: (ec: ECNumber, line: Int, description: [String])? = nil

        func bad(_ line: Int, _ what: String) -> ProteinDataError {
            .malformedFile(path: file, reason: "line \(line): \(what) (expected ExPASy enzyme.dat: 'ID   1.1.1.1', 'DE   ...', '//')")
        }
        func finish() throws {
            guard let c = current else { return }
            current = nil
            let text = c.description.joined(separator: " ").trimmingCharacters(in: .whitespaces)
            let status = try Self.status(of: text, entryLine: c.line, file: file)
            entries[c.ec] = status
        }

        for line in TextFile.lines(bytes) {
            let text = TextFile.string(line.bytes)
            if text.hasPrefix("//") { try finish(); continue }
            let code = text.prefix(2)
            let value = text.dropFirst(2).trimmingCharacters(in: .whitespaces)
            switch code {
            case "ID":
                try finish()
                guard let ec = try? ECNumber(value, where: "\(file) line \(line.number)"), ec.isComplete else {
                    throw bad(line.number, "ID '\(value)' is not a complete EC number")
                }
                current = (ec, line.number, [])
            case "DE":
                guard current != nil else { throw bad(line.number, "DE line outside an entry (no ID line before it)") }
                current!.description.append(value)
            default:
                continue
            }
        }
        try finish()
        guard !entries.isEmpty else {
            throw ProteinDataError.malformedFile(path: file, reason: "no 'ID   <EC number>' line: this is not an ExPASy enzyme.dat file")
        }
        return EnzymeNomenclature(entries: entries)
    }

    /// Reads a `DE` text: `Deleted entry.`, `Transferred entry: A, B and C.`, or a name.
    static func status(of text: String, entryLine: Int, file: String) throws -> Status {
        var t = text
        while t.hasSuffix(".") { t.removeLast() }
        let lower = t.lowercased()
        if lower == "deleted entry" { return .deleted }
        let prefix = "transferred entry:"
        guard lower.hasPrefix(prefix) else { return .current(name: t) }
        let list = t.dropFirst(prefix.count).replacingOccurrences(of: " and ", with: ",")
        var targets: [ECNumber] = []
        for piece in list.split(separator: ",") {
            let s = piece.trimmingCharacters(in: .whitespaces)
            if s.isEmpty { continue }
            guard let ec = try? ECNumber(s) else {
                throw ProteinDataError.malformedFile(path: file,
                    reason: "entry at line \(entryLine): transferred to '\(s)', which is not an EC number (DE '\(text)')")
            }
            if !targets.contains(ec) { targets.append(ec) }
        }
        guard !targets.isEmpty else {
            throw ProteinDataError.malformedFile(path: file, reason: "entry at line \(entryLine): 'Transferred entry:' names no EC number")
        }
        return .transferred(to: targets)
    }

    /// Where an EC number stands today.
    public enum Resolution: Sendable, Equatable {
        /// Current, or not listed in the file (partial numbers such as `3.4.-.-` never are).
        case unchanged
        /// Transferred, directly or through a chain of transfers, to these current numbers
        /// (several when an entry was split); `chain` lists every number passed through.
        case transferred(to: [ECNumber], chain: [ECNumber])
        /// Deleted, or every transfer path ends in a deleted entry (or a cycle).
        case deleted
    }

    /// Follows transfers from `ec` to the numbers that are current (or not listed); transfers
    /// to deleted entries are dropped. Cycles end the path (treated as deleted).
    public func resolve(_ ec: ECNumber) -> Resolution {
        guard let status = entries[ec] else { return .unchanged }
        switch status {
        case .current: return .unchanged
        case .deleted: return .deleted
        case .transferred:
            var finals: [ECNumber] = []
            var chain: [ECNumber] = []
            var visited: Set<ECNumber> = []
            func walk(_ e: ECNumber) {
                guard visited.insert(e).inserted else { return }
                switch entries[e] {
                case .transferred(let targets)?:
                    if e != ec { chain.append(e) }
                    for t in targets { walk(t) }
                case .deleted?:
                    return
                case .current?, nil:
                    if !finals.contains(e) { finals.append(e) }
                }
            }
            walk(ec)
            return finals.isEmpty ? .deleted : .transferred(to: finals, chain: chain)
        }
    }

    /// Rewrites the EC numbers of label rows to their current numbers.
    ///
    /// Per EC of a row: a transfer to one number replaces it; a transfer to several (a split
    /// entry) replaces it with their common levels (`1.1.1.303` and `1.1.1.304` -> `1.1.1.-`),
    /// and the row is rejected when those do not reach `level` (1...4), since the label at
    /// that level cannot be decided; a deleted EC is dropped, and the row is rejected when no
    /// EC remains. Each change is a note on the row, naming the old and new numbers; rejection
    /// reasons start with `transferred EC:` or `deleted EC:`.
    /// - Returns: the rows kept (in order) and the rows rejected (file, line, ID, reason).
    public func apply(to records: [LabelRecord], file: String, level: Int) -> (records: [LabelRecord], rejected: [RejectedRecord]) {
        var kept: [LabelRecord] = []
        var rejected: [RejectedRecord] = []
        rows: for var r in records {
            var ecs: [ECNumber] = []
            var notes: [String] = []
            var deleted: [ECNumber] = []
            func add(_ e: ECNumber) { if !ecs.contains(e) { ecs.append(e) } }
            for ec in r.ecNumbers {
                switch resolve(ec) {
                case .unchanged:
                    add(ec)
                case .deleted:
                    deleted.append(ec)
                case .transferred(let targets, let chain):
                    let via = chain.isEmpty ? "" : " via " + chain.map(\.description).joined(separator: ", ")
                    let list = Self.listing(targets)
                    if targets.count == 1 {
                        add(targets[0])
                        notes.append("EC \(ec) was transferred to \(targets[0])\(via) (enzyme.dat); label rewritten")
                        continue
                    }
                    let common = Self.commonLevels(targets)
                    guard common.knownDepth >= level else {
                        rejected.append(RejectedRecord(file: file, line: r.line, id: r.id,
                            reason: "transferred EC: \(ec) was transferred to \(list)\(via) (enzyme.dat), which differ at level \(level), so the label at level \(level) cannot be decided; relabel the protein with its current EC number"))
                        continue rows
                    }
                    add(common)
                    notes.append("EC \(ec) was transferred to \(list)\(via) (enzyme.dat); label rewritten to their common part \(common)")
                }
            }
            if !deleted.isEmpty {
                let names = deleted.map(\.description).joined(separator: ", ")
                guard !ecs.isEmpty else {
                    rejected.append(RejectedRecord(file: file, line: r.line, id: r.id,
                        reason: "deleted EC: \(names) \(deleted.count == 1 ? "is a deleted entry" : "are deleted entries") in enzyme.dat and no current EC number remains; relabel the protein or leave it out"))
                    continue rows
                }
                notes.append("deleted EC \(names) dropped (enzyme.dat); kept \(ecs.map(\.description).joined(separator: "; "))")
            }
            r.ecNumbers = ecs
            r.notes += notes
            kept.append(r)
        }
        return (kept, rejected)
    }

    /// `A`, `A and B`, `A, B and C`.
    static func listing(_ ecs: [ECNumber]) -> String {
        let s = ecs.map(\.description)
        guard s.count > 1 else { return s.first ?? "" }
        return s.dropLast().joined(separator: ", ") + " and " + s.last!
    }

    /// The levels all `ecs` share, the rest unknown (`1.1.1.303`, `1.1.1.304` -> `1.1.1.-`).
    static func commonLevels(_ ecs: [ECNumber]) -> ECNumber {
        let first = ecs[0]
        var depth = 0
        while depth < 4, let v = first.levels[depth], ecs.allSatisfy({ $0.levels[depth] == v }) { depth += 1 }
        return first.truncated(toLevel: depth)
    }
}
