import Foundation

/// Errors thrown by the ProteinData readers, `ECNumber` parsing and the `Tokenizer`.
///
/// Every message says what was wrong, where (path, line, position) and what to do next.
/// Per-record problems in a file do not throw: they become `RejectedRecord`s so a run can
/// report them and go on. Only problems that make a whole file or call unusable throw.
public enum ProteinDataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be opened or read at all.
    case fileUnreadable(path: String, reason: String)
    /// The file starts with the gzip magic bytes `1f 8b` but is not a complete gzip stream:
    /// corrupt data, a truncated file, or trailing data that is not another gzip member.
    /// `offset` is the 0-based byte offset in the compressed file where decompression stopped.
    case gzipCorrupt(path: String, offset: Int, reason: String)
    /// `text` is not an EC number; `where` says where it came from (e.g. "file.tsv line 12").
    case invalidEC(text: String, where: String)
    /// A residue letter outside the ESM alphabet (20 standard + X B Z U O) at a 1-based position.
    case unknownResidue(letter: String, position: Int)
    /// A sequence of `length` residues does not fit in `maxResidues` and the crop policy is `reject`.
    case tooLong(length: Int, maxResidues: Int)
    /// `Tokenizer(maxLength:)` was given fewer than 3 tokens (room for `<cls>`, one residue, `<eos>`).
    case invalidMaxLength(Int)
    /// The header of a label file has no recognisable ID or EC column.
    /// `header` is the header line as seen, cut to about 120 characters (`…` and its full length
    /// in bytes) with control bytes escaped as `\x00`; `hint` says what to pass
    /// (`idColumn:` / `ecColumn:`) and lists the columns seen, cut the same way.
    case unrecognisedHeader(path: String, header: String, hint: String)
    /// The file was read but its content is not in the expected format (including a label-file
    /// line longer than 1 MiB, and data compressed with bzip2, xz or zstd).
    case malformedFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .fileUnreadable(let path, let reason):
            return "cannot read '\(path)': \(reason); check the path and its permissions"
        case .gzipCorrupt(let path, let offset, let reason):
            return "'\(path)' starts like gzip (bytes 1f 8b) but cannot be decompressed: \(reason), at compressed byte offset \(offset); check it with `gzip -t` and fetch the file again"
        case .invalidEC(let text, let place):
            return "invalid EC number '\(text)' (\(place)): expected up to 4 dot-separated levels like 1.1.1.1, 3.4.-.-, 3.4.21, 4.2.2.n1 or 3.2.1.B3, class 1-7"
        case .unknownResidue(let letter, let position):
            return "unknown residue '\(letter)' at position \(position); allowed are the 20 standard amino acids and X B Z U O (uppercase) -- clean the sequence or replace it with X"
        case .tooLong(let length, let maxResidues):
            return "sequence of \(length) residues is longer than the \(maxResidues) residues that fit in \(maxResidues + 2) tokens with <cls> and <eos>; choose the crop policy head or center, or raise the maximum length (model.max_length in a spec, --max-length for predict and embed; at most 1026)"
        case .invalidMaxLength(let n):
            return "maximum length \(n) is too small: it counts <cls> and <eos>, so it must be at least 3 (ESM-2 allows up to 1026)"
        case .unrecognisedHeader(let path, let header, let hint):
            return "unrecognised label-file header in '\(path)': '\(header)'; \(hint)"
        case .malformedFile(let path, let reason):
            return "'\(path)' is not in the expected format: \(reason)"
        }
    }
}

/// A record rejected by a reader or by dataset assembly; nothing is dropped silently.
///
/// `line` is the 1-based line of the record's header / row when known; `id` the record's ID
/// when one could be read; `reason` a sentence saying what was wrong.
public struct RejectedRecord: Sendable, Equatable, CustomStringConvertible {
    /// Path of the file the record came from.
    public var file: String
    /// 1-based line of the record's header or row; nil when not known.
    public var line: Int?
    /// The record's ID; nil when none could be read.
    public var id: String?
    /// A sentence saying what was wrong.
    public var reason: String

    /// Creates a rejection from its fields.
    public init(file: String, line: Int?, id: String?, reason: String) {
        self.file = file
        self.line = line
        self.id = id
        self.reason = reason
    }

    /// `file:line [id]: reason`.
    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        if let id { s += " [\(id)]" }
        return s + ": " + reason
    }
}
