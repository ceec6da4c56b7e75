import Foundation

/// One protein sequence read from a FASTA file.
///
/// `id` is the first word of the header (for UniProt `sp|ACC|NAME` / `tr|ACC|NAME` headers,
/// the accession `ACC`); `description` the rest of the header; `sequence` the residues,
/// uppercase, from the alphabet 20 standard + X B Z U O; `line` the 1-based line of the header;
/// `notes` what the reader changed (e.g. "lowercase residues uppercased", "trailing * stripped").
public struct FastaRecord: Sendable, Equatable {
    /// First word of the header; the accession `ACC` for UniProt `sp|ACC|NAME` / `tr|ACC|NAME` headers.
    public var id: String
    /// The rest of the header after its first word, trimmed; empty when there is none.
    public var description: String
    /// Residues, uppercase, from the 20 standard letters + X B Z U O.
    public var sequence: String
    /// 1-based line of the header.
    public var line: Int
    /// What the reader changed, e.g. "lowercase residues uppercased".
    public var notes: [String]

    /// Creates a record from its fields.
    public init(id: String, description: String = "", sequence: String, line: Int, notes: [String] = []) {
        self.id = id
        self.description = description
        self.sequence = sequence
        self.line = line
        self.notes = notes
    }
}

/// Reads FASTA files: wrapped or single-line records, `>ID description` or UniProt headers.
///
/// Accepts LF, CRLF and CR line ends, a UTF-8 BOM, blank lines and trailing whitespace.
/// Lowercase residues are uppercased and a trailing `*` is stripped (both noted on the record).
/// Rejected, with file, line and id: `>` with no ID, a header with no sequence, a character
/// outside 20 standard + X B Z U O (the reason names it and its 1-based position), gap
/// characters `-`/`.`, text before the first header, and a record longer than `maxResidues`
/// (the reason names the record and its length). Every header line yields exactly one
/// record or one rejection. Duplicate IDs are kept here; `DatasetAssembler` decides about them.
public enum FastaReader {
    /// Longest record accepted, in residues (10,000,000; the longest known protein, titin, has
    /// about 35,000). A longer record is rejected ("record 'ID' has N residues, more than the
    /// limit of 10000000 ...") and its residues beyond the limit are counted, not kept.
    public static let maxResidues = 10_000_000

    /// Reads the FASTA file at `path` as bytes; a file starting with the gzip magic `1f 8b`
    /// (whatever its name) is decompressed first.
    ///
    /// - Throws: `ProteinDataError.fileUnreadable`, `.gzipCorrupt` (corrupt or truncated gzip).
    ///
    /// The file is streamed in 1 MiB chunks (lines that straddle chunks, such as a 100k-residue
    /// sequence on one line, are joined), so memory is bounded by the records returned plus the
    /// longest record, not by the file size.
    public static func read(path: String) throws -> (records: [FastaRecord], rejected: [RejectedRecord]) {
        try read(path: path, chunkSize: ByteStream.defaultChunkSize)
    }

    /// `read(path:)` with another chunk size in bytes (tests use tiny chunks).
    static func read(path: String, chunkSize: Int) throws -> (records: [FastaRecord], rejected: [RejectedRecord]) {
        try parse(stream: try ByteStream(path: path, chunkSize: chunkSize), file: path)
    }

    /// Parses FASTA content held in memory (gzip-compressed when it starts with `1f 8b`);
    /// `file` is used in rejections. Never traps on any byte sequence.
    ///
    /// - Throws: `ProteinDataError.gzipCorrupt` when the bytes start with `1f 8b` but are not
    ///   a complete gzip stream.
    public static func parse(data: Data, file: String) throws -> (records: [FastaRecord], rejected: [RejectedRecord]) {
        try parse(stream: ByteStream(bytes: [UInt8](data), name: file), file: file)
    }

    /// Parses the lines of `stream`; `file` is used in rejections.
    ///
    /// - Throws: what `ByteStream.next()` throws (`fileUnreadable`, `gzipCorrupt`).
    static func parse(stream: ByteStream, file: String) throws -> (records: [FastaRecord], rejected: [RejectedRecord]) {
        var records: [FastaRecord] = []
        var rejected: [RejectedRecord] = []

        // The record being read.
        var headerLine = 0
        var header: (id: String?, description: String, problem: String?)? = nil
        var residues: [UInt8] = []
        /// Residue characters of the current record beyond `maxResidues` (counted, not kept).
        var overflow = 0
        /// How many of the last `overflow` characters are `*` (stripped, so not residues).
        var overflowStars = 0
        var strayStart: Int? = nil

        func finish() {
            guard let h = header else { return }
            defer { header = nil; residues.removeAll(keepingCapacity: true); overflow = 0; overflowStars = 0 }
            if let problem = h.problem {
                rejected.append(RejectedRecord(file: file, line: headerLine, id: h.id, reason: problem))
                return
            }
            guard let id = h.id else { return }
            if overflow > 0 && overflow == overflowStars {
                residues.append(UInt8(ascii: "*"))   // exactly at the limit, then only `*`: noted, stripped
            } else if overflow > 0 {
                let length = residues.count + overflow - overflowStars
                rejected.append(RejectedRecord(file: file, line: headerLine, id: id,
                    reason: "record '\(TextFile.excerpt(id))' has \(length) residues, more than the limit of \(maxResidues) (FastaReader.maxResidues); split or remove it"))
                return
            }
            switch ResidueCheck.normalise(residues) {
            case .ok(let sequence, let notes):
                records.append(FastaRecord(id: id, description: h.description, sequence: sequence,
                                           line: headerLine, notes: notes))
            case .rejected(let reason):
                rejected.append(RejectedRecord(file: file, line: headerLine, id: id, reason: reason))
            }
        }

        var lines = TextFile.LineReader(stream)
        while let line = try lines.next() {
            let t = TextFile.trimmed(line.bytes)
            if t.isEmpty { continue }
            if t.first == UInt8(ascii: ">") {
                finish()
                if let s = strayStart {
                    rejected.append(RejectedRecord(file: file, line: s, id: nil,
                        reason: "text before the first '>' header is not part of any record (lines \(s)-\(line.number - 1))"))
                    strayStart = nil
                }
                headerLine = line.number
                header = parseHeader(t.dropFirst())
            } else if header != nil {
                for b in t where !TextFile.isSpace(b) {
                    if residues.count < maxResidues {
                        residues.append(b)
                    } else {
                        overflow += 1
                        overflowStars = b == UInt8(ascii: "*") ? overflowStars + 1 : 0
                    }
                }
            } else if strayStart == nil && records.isEmpty && rejected.isEmpty {
                strayStart = line.number
            }
        }
        finish()
        if let s = strayStart {
            rejected.append(RejectedRecord(file: file, line: s, id: nil,
                reason: "no '>' header found: this does not look like a FASTA file"))
        }
        return (records, rejected)
    }

    /// Splits a header (without `>`) into id and description; UniProt `sp|ACC|NAME` gives `ACC`.
    static func parseHeader(_ h: ArraySlice<UInt8>) -> (id: String?, description: String, problem: String?) {
        let t = TextFile.trimmed(h)
        guard !t.isEmpty else { return (nil, "", "header '>' has no ID") }
        var end = t.startIndex
        while end < t.endIndex && !TextFile.isSpace(t[end]) { end += 1 }
        let token = TextFile.string(t[t.startIndex..<end])
        let description = TextFile.string(TextFile.trimmed(t[end..<t.endIndex]))
        let parts = token.split(separator: "|", omittingEmptySubsequences: false)
        if parts.count >= 2, parts[0] == "sp" || parts[0] == "tr" {
            let acc = String(parts[1])
            if acc.isEmpty {
                return (token, description, "UniProt header '\(token)' has an empty accession")
            }
            return (acc, description, nil)
        }
        return (token, description, nil)
    }
}
