import Foundation

/// One row of a label file: an ID and its EC numbers (several for multi-function enzymes).
///
/// `line` is the 1-based line of the row; `sequence` is set for combined tables that carry a
/// sequence column (uppercased and checked like FASTA residues; `""` when the cell is empty);
/// `rawLabel` is the EC cell as written; `notes` what the reader changed.
public struct LabelRecord: Sendable, Equatable {
    /// The record ID (the ID column, e.g. UniProt `Entry`).
    public var id: String
    /// The distinct EC numbers of the EC cell, in cell order (at least one).
    public var ecNumbers: [ECNumber]
    /// 1-based line of the row.
    public var line: Int
    /// The sequence column, uppercased and checked; nil when the table has no sequence column,
    /// `""` when the cell is empty.
    public var sequence: String?
    /// The EC cell as written.
    public var rawLabel: String
    /// What the reader changed, one sentence each.
    public var notes: [String]

    /// Creates a record from its fields.
    public init(id: String, ecNumbers: [ECNumber], line: Int, sequence: String? = nil,
                rawLabel: String, notes: [String] = []) {
        self.id = id
        self.ecNumbers = ecNumbers
        self.line = line
        self.sequence = sequence
        self.rawLabel = rawLabel
        self.notes = notes
    }
}

/// Reads EC label tables, detected by their header line.
///
/// Supported: UniProt TSV (`Entry<TAB>EC number`, several ECs separated by `; `), the combined
/// TSV (`Entry<TAB>EC number<TAB>Sequence`), and CSV (`id,ec_number,seq`; RFC 4180 quoting, so a
/// multi-EC cell is `"1.1.1.46,1.1.1.48"`). Delimiter: tab if the header has one, else comma.
/// Columns are matched case-insensitively (`_`/`-` count as spaces) among
/// `idColumnNames`, `ecColumnNames`, `sequenceColumnNames`; `idColumn`/`ecColumn` override
/// (CLI `--id-column` / `--ec-column`, spec `inputs.id_column` / `inputs.ec_column`), matched the
/// same way; a named column the header lacks is an error listing the columns seen.
/// In an EC cell, ECs are separated by `;` or `,`.
///
/// Rejected rows (with line and reason): wrong number of fields, empty ID, empty label,
/// `non Enzyme`-style labels ("not an enzyme"), any unparseable EC (the row is rejected,
/// naming the bad one), an invalid residue in the sequence column. Blank lines are skipped.
public enum LabelFileReader {
    /// Accepted ID column names (normalised: lowercase, `_`/`-` as spaces).
    public static let idColumnNames = ["entry", "id", "accession", "entry id", "uniprot id",
                                       "uniprot accession", "uniprot", "protein id"]
    /// Accepted EC column names.
    public static let ecColumnNames = ["ec number", "ec", "ec numbers", "ec label", "ec labels"]
    /// Accepted sequence column names.
    public static let sequenceColumnNames = ["sequence", "seq", "protein sequence"]
    /// Longest line of a label file, in bytes (1 MiB): a longer line stops the read with
    /// `ProteinDataError.malformedFile` ("line N longer than 1 MiB: not a label table") instead
    /// of being joined in memory. (FASTA lines are not limited.)
    public static let maxLineBytes = 1 << 20

    /// Reads the label file at `path` (decompressed first when it starts with the gzip magic
    /// `1f 8b`, whatever its name); `idColumn` / `ecColumn` name the ID and EC columns
    /// instead of detecting them.
    ///
    /// - Throws: `ProteinDataError.fileUnreadable`, `.gzipCorrupt`, `.unrecognisedHeader`
    ///   (no header line, no ID / EC column, or a named column the header lacks; the message
    ///   names the file, lists the columns seen and says what to pass; the header and the column
    ///   list are echoed cut to about 120 characters, control bytes escaped as `\x00`),
    ///   `.malformedFile` (a line longer than `maxLineBytes`, or another compression format:
    ///   bzip2, xz, zstd).
    ///
    /// The file is streamed in 1 MiB chunks (a row longer than a chunk is joined across them), so
    /// memory is bounded by the records returned plus the longest row, not by the file size.
    public static func read(path: String, idColumn: String? = nil, ecColumn: String? = nil) throws
        -> (records: [LabelRecord], rejected: [RejectedRecord]) {
        try read(path: path, idColumn: idColumn, ecColumn: ecColumn, chunkSize: ByteStream.defaultChunkSize)
    }

    /// `read(path:idColumn:ecColumn:)` with another chunk size in bytes (tests use tiny chunks).
    static func read(path: String, idColumn: String?, ecColumn: String?, chunkSize: Int) throws
        -> (records: [LabelRecord], rejected: [RejectedRecord]) {
        try parse(stream: try ByteStream(path: path, chunkSize: chunkSize), file: path, idColumn: idColumn, ecColumn: ecColumn)
    }

    /// Parses a label table held in memory (gzip-compressed when it starts with `1f 8b`);
    /// `file` is used in errors and rejections.
    ///
    /// - Throws: `.gzipCorrupt`, `.unrecognisedHeader`.
    public static func parse(data: Data, file: String, idColumn: String? = nil, ecColumn: String? = nil) throws
        -> (records: [LabelRecord], rejected: [RejectedRecord]) {
        try parse(stream: ByteStream(bytes: [UInt8](data), name: file), file: file, idColumn: idColumn, ecColumn: ecColumn)
    }

    /// A column name as it is matched: lowercase, `_` and `-` as spaces, runs of spaces as one
    /// (`EC_Number` and `ec number` match).
    public static func normaliseColumnName(_ s: String) -> String { normaliseName(s) }

    static func normaliseName(_ s: String) -> String {
        let lowered = s.lowercased().map { ($0 == "_" || $0 == "-") ? " " : $0 }
        return String(lowered).split(separator: " ").joined(separator: " ")
    }

    /// Parses the lines of `stream`: the first non-blank line is the header; `file` is used in
    /// errors and rejections.
    ///
    /// - Throws: what `ByteStream.next()` throws, `.unrecognisedHeader`, `.malformedFile` (a line
    ///   longer than `maxLineBytes`).
    static func parse(stream: ByteStream, file: String, idColumn: String?, ecColumn: String?) throws
        -> (records: [LabelRecord], rejected: [RejectedRecord]) {
        var lines = TextFile.LineReader(stream, maxLineBytes: maxLineBytes) { number in
            ProteinDataError.malformedFile(path: file, reason: "line \(number) longer than 1 MiB: not a label table")
        }
        var header: TextFile.Line? = nil
        while let line = try lines.next() {
            if !TextFile.trimmed(line.bytes).isEmpty { header = line; break }
        }
        guard let header else {
            throw ProteinDataError.unrecognisedHeader(path: file, header: "",
                hint: "the file is empty; expected a header such as 'Entry<TAB>EC number' or 'id,ec_number,seq'")
        }
        let headerBytes = header.bytes
        let delimiter: UInt8 = headerBytes.contains(0x09) ? 0x09 : UInt8(ascii: ",")
        guard let headerFields = splitFields(headerBytes, delimiter: delimiter) else {
            throw ProteinDataError.unrecognisedHeader(path: file, header: TextFile.excerpt(bytes: headerBytes),
                hint: "the header has an unterminated quote")
        }
        let names = headerFields.map { normaliseName($0) }
        // Echoed in errors cut to about 120 characters (a 1 MB header must not be copied twice).
        let headerText = TextFile.excerpt(bytes: headerBytes)
        let seen = "columns seen: " + TextFile.excerpt(headerFields.map { "'\($0)'" }.joined(separator: ", "))

        func find(_ override: String?, _ candidates: [String], _ what: String, _ arg: String) throws -> Int? {
            if let o = override {
                guard let i = names.firstIndex(of: normaliseName(o)) else {
                    throw ProteinDataError.unrecognisedHeader(path: file, header: headerText,
                        hint: "no column named '\(o)' (given by \(arg)); \(seen); pass one of those names")
                }
                return i
            }
            for c in candidates { if let i = names.firstIndex(of: c) { return i } }
            return nil
        }
        let idIndex = try find(idColumn, idColumnNames, "ID", "--id-column / inputs.id_column")
        let ecIndex = try find(ecColumn, ecColumnNames, "EC", "--ec-column / inputs.ec_column")
        let seqIndex = try find(nil, sequenceColumnNames, "sequence", "")
        guard let idIndex, let ecIndex else {
            var missing: [String] = []
            if idIndex == nil { missing.append("no ID column (looked for \(idColumnNames.joined(separator: "/")); pass --id-column NAME, or inputs.id_column in a spec)") }
            if ecIndex == nil { missing.append("no EC column (looked for \(ecColumnNames.joined(separator: "/")); pass --ec-column NAME, or inputs.ec_column in a spec)") }
            throw ProteinDataError.unrecognisedHeader(path: file, header: headerText,
                hint: missing.joined(separator: "; ") + "; " + seen)
        }
        guard idIndex != ecIndex else {
            throw ProteinDataError.unrecognisedHeader(path: file, header: headerText,
                hint: "the ID and the EC column are the same column '\(TextFile.excerpt(headerFields[idIndex]))'; name two different columns with --id-column and --ec-column; \(seen)")
        }

        var records: [LabelRecord] = []
        var rejected: [RejectedRecord] = []
        while let line = try lines.next() {
            if TextFile.trimmed(line.bytes).isEmpty { continue }
            func reject(_ id: String?, _ reason: String) {
                rejected.append(RejectedRecord(file: file, line: line.number, id: id, reason: reason))
            }
            guard var fields = splitFields(line.bytes, delimiter: delimiter) else {
                reject(nil, "unterminated quote in the row")
                continue
            }
            guard fields.count <= headerFields.count else {
                var reason = "row has \(fields.count) fields but the header has \(headerFields.count)"
                if delimiter != 0x09 { reason += " (a cell holding several ECs must be quoted: \"1.1.1.1,2.7.1.1\")" }
                reject(fields.indices.contains(idIndex) ? fields[idIndex].trimmingCharacters(in: .whitespaces) : nil, reason)
                continue
            }
            // Missing trailing cells count as empty (e.g. `P12345` with no EC cell at all).
            while fields.count < headerFields.count { fields.append("") }
            let id = fields[idIndex].trimmingCharacters(in: .whitespaces)
            guard !id.isEmpty else { reject(nil, "empty ID"); continue }
            let raw = fields[ecIndex]
            let label = raw.trimmingCharacters(in: .whitespaces)
            guard !label.isEmpty else { reject(id, "empty label"); continue }
            if isNonEnzyme(label) { reject(id, "not an enzyme"); continue }

            var ecs: [ECNumber] = []
            var bad: String? = nil
            for piece in label.split(whereSeparator: { $0 == ";" || $0 == "," }) {
                let text = piece.trimmingCharacters(in: .whitespaces)
                if text.isEmpty { continue }
                guard let ec = try? ECNumber(text, where: "\(file) line \(line.number)") else { bad = text; break }
                if !ecs.contains(ec) { ecs.append(ec) }
            }
            if let bad {
                reject(id, "invalid EC number '\(TextFile.excerpt(bad))' in label '\(TextFile.excerpt(label))'")
                continue
            }
            guard !ecs.isEmpty else { reject(id, "empty label"); continue }

            var sequence: String? = nil
            var notes: [String] = []
            if let seqIndex {
                let cell = Array(fields[seqIndex].utf8).filter { !TextFile.isSpace($0) }
                if cell.isEmpty {
                    sequence = ""
                } else {
                    switch ResidueCheck.normalise(cell) {
                    case .ok(let s, let n): sequence = s; notes = n
                    case .rejected(let reason): reject(id, "sequence column: " + reason); continue
                    }
                }
            }
            records.append(LabelRecord(id: id, ecNumbers: ecs, line: line.number, sequence: sequence,
                                       rawLabel: raw, notes: notes))
        }
        return (records, rejected)
    }

    /// True for labels such as `non Enzyme`, `non-enzyme`, `not an enzyme`, `no EC`.
    static func isNonEnzyme(_ label: String) -> Bool {
        let letters = label.lowercased().filter { $0.isLetter }
        return ["nonenzyme", "notanenzyme", "noenzyme", "notenzyme", "noec", "nonenzymatic"].contains(letters)
    }

    /// Splits one line into fields on `delimiter` with RFC 4180 quoting (`"a,b"`, `""` for a
    /// quote inside quotes). Returns nil for an unterminated quote.
    static func splitFields(_ line: ArraySlice<UInt8>, delimiter: UInt8) -> [String]? {
        var fields: [String] = []
        var current: [UInt8] = []
        var i = line.startIndex
        let quote = UInt8(ascii: "\"")
        var inQuotes = false
        var fieldStart = true
        while i < line.endIndex {
            let b = line[i]
            if inQuotes {
                if b == quote {
                    if i + 1 < line.endIndex && line[i + 1] == quote {
                        current.append(quote); i += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    current.append(b)
                }
            } else if b == delimiter {
                fields.append(TextFile.string(current))
                current.removeAll(keepingCapacity: true)
                fieldStart = true
                i += 1
                continue
            } else if b == quote && (fieldStart || TextFile.trimmed(current[...]).isEmpty) {
                current.removeAll(keepingCapacity: true)
                inQuotes = true
            } else {
                current.append(b)
            }
            fieldStart = false
            i += 1
        }
        if inQuotes { return nil }
        fields.append(TextFile.string(current))
        return fields
    }
}
