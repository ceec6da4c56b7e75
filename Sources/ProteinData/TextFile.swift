import Foundation

/// Byte-level line splitting shared by the readers.
///
/// Files are read as bytes so invalid UTF-8 cannot crash anything; a UTF-8 BOM is skipped;
/// lines end at LF, CRLF or a lone CR. Line numbers are 1-based. The FASTA and label readers
/// stream (`LineReader` over a chunked, gzip-aware `ByteStream`); the small reference files
/// (`enzclass.txt`, `enzyme.dat`) are read whole with `readBytes` and `lines(_:)`.
enum TextFile {
    /// One physical line: its 1-based number and its bytes without the line end.
    struct Line {
        var number: Int
        var bytes: ArraySlice<UInt8>
    }

    /// Reads the whole file at `path` as bytes, decompressed when it is gzip (see `ByteStream`).
    ///
    /// - Throws: `fileUnreadable` (missing, a directory, a read error), `gzipCorrupt`.
    static func readBytes(path: String) throws -> [UInt8] {
        let stream = try ByteStream(path: path)
        var bytes: [UInt8] = []
        while let chunk = try stream.next() { bytes += chunk }
        return bytes
    }

    /// `bytes` decompressed when they start with the gzip magic `1f 8b`, else unchanged;
    /// `path` names the data in errors.
    ///
    /// - Throws: `gzipCorrupt`; `malformedFile` when they start with the magic bytes of bzip2,
    ///   xz or zstd (naming the format and how to decompress it).
    static func decompressedIfGzip(_ bytes: [UInt8], path: String) throws -> [UInt8] {
        if let (format, command) = ByteStream.unsupportedCompression(bytes) {
            throw ByteStream.unsupportedCompressionError(path: path, format: format, command: command)
        }
        guard bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b else { return bytes }
        let stream = ByteStream(bytes: bytes, name: path)
        var out: [UInt8] = []
        while let chunk = try stream.next() { out += chunk }
        return out
    }

    /// Reads the lines of a `ByteStream` one at a time, exactly as `lines(_:)` splits the whole
    /// data (LF, CRLF, CR; a leading UTF-8 BOM skipped; 1-based numbers), but holding only the
    /// current chunk and the current line: a line that straddles chunk boundaries (a 100k-residue
    /// sequence on one line) is assembled across them, so memory is bounded by the longest line
    /// plus one chunk, not by the file size.
    struct LineReader {
        private let stream: ByteStream
        private var chunk: [UInt8] = []
        private var position = 0
        /// Bytes of the current line from earlier chunks.
        private var partial: [UInt8] = []
        /// The previous chunk ended in CR: a LF at the start of the next one belongs to it.
        private var skipLF = false
        private var number = 0
        private var atEnd = false
        /// Longest line accepted, in bytes (without the line end); nil: unlimited.
        private let maxLineBytes: Int?
        /// The error thrown for the 1-based line that exceeds `maxLineBytes`.
        private let lineTooLong: (Int) -> Error

        /// Lines of `stream`, from its current position, of any length.
        init(_ stream: ByteStream) {
            self.stream = stream
            self.maxLineBytes = nil
            self.lineTooLong = { _ in ProteinDataError.malformedFile(path: stream.name, reason: "line too long") }
        }

        /// Lines of `stream`; a line longer than `maxLineBytes` bytes throws `lineTooLong(lineNumber)`
        /// as soon as that many bytes are seen, without joining the rest of it in memory.
        init(_ stream: ByteStream, maxLineBytes: Int, lineTooLong: @escaping (Int) -> Error) {
            self.stream = stream
            self.maxLineBytes = maxLineBytes
            self.lineTooLong = lineTooLong
        }

        /// The next line, nil at the end.
        ///
        /// - Throws: what `ByteStream.next()` throws (`fileUnreadable`, `gzipCorrupt`), and
        ///   `lineTooLong(n)` for a line longer than `maxLineBytes` when one was given.
        mutating func next() throws -> Line? {
            while true {
                if position >= chunk.count {
                    guard !atEnd, let c = try stream.next() else {
                        atEnd = true
                        chunk = []
                        position = 0
                        guard !partial.isEmpty else { return nil }
                        var bytes = partial[...]
                        partial = []
                        if number == 0 { bytes = TextFile.droppingBOM(bytes) }
                        // Like `lines(_:)`: a last line without a line end is returned when not empty.
                        if bytes.isEmpty { return nil }
                        number += 1
                        return Line(number: number, bytes: bytes)
                    }
                    chunk = c
                    position = 0
                    if skipLF {
                        skipLF = false
                        if chunk[0] == 0x0A { position = 1; continue }
                    }
                }
                let n = chunk.count
                let start = position
                let end: Int = chunk.withUnsafeBufferPointer { p in
                    var i = start
                    while i < n {
                        let b = p[i]
                        if b == 0x0A || b == 0x0D { break }
                        i += 1
                    }
                    return i
                }
                if let limit = maxLineBytes, partial.count + (end - start) > limit {
                    throw lineTooLong(number + 1)
                }
                if end == n {
                    partial += chunk[start..<n]
                    position = n
                    continue
                }
                var bytes: ArraySlice<UInt8>
                if partial.isEmpty {
                    bytes = chunk[start..<end]
                } else {
                    partial += chunk[start..<end]
                    bytes = partial[...]
                    partial = []
                }
                position = end + 1
                if chunk[end] == 0x0D {
                    if position < n {
                        if chunk[position] == 0x0A { position += 1 }
                    } else {
                        skipLF = true
                    }
                }
                if number == 0 { bytes = TextFile.droppingBOM(bytes) }
                number += 1
                return Line(number: number, bytes: bytes)
            }
        }
    }

    /// `bytes` without a leading UTF-8 BOM (`EF BB BF`).
    static func droppingBOM(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let s = bytes.startIndex
        if bytes.count >= 3 && bytes[s] == 0xEF && bytes[s + 1] == 0xBB && bytes[s + 2] == 0xBF {
            return bytes.dropFirst(3)
        }
        return bytes
    }

    /// Splits bytes into lines (LF, CRLF, CR), skipping a leading UTF-8 BOM.
    static func lines(_ bytes: [UInt8]) -> [Line] {
        var result: [Line] = []
        var start = 0
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { start = 3 }
        var i = start
        var number = 1
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b == 0x0A || b == 0x0D {
                result.append(Line(number: number, bytes: bytes[start..<i]))
                number += 1
                if b == 0x0D && i + 1 < n && bytes[i + 1] == 0x0A { i += 1 }
                i += 1
                start = i
            } else {
                i += 1
            }
        }
        if start < n { result.append(Line(number: number, bytes: bytes[start..<n])) }
        return result
    }

    /// Longest text echoed from a file in an error message, in characters (see `excerpt`).
    static let excerptLimit = 120

    /// `text` as it is echoed in error messages: control characters other than tab (and DEL)
    /// escaped as `\xNN`, cut after `limit` characters with `…` and a note of the full length in
    /// bytes, so a 1 GB header line of zero bytes cannot flood the terminal.
    static func excerpt(_ text: String, limit: Int = excerptLimit) -> String {
        excerpt(text, limit: limit, totalBytes: text.utf8.count)
    }

    /// `excerpt` of bytes decoded as lossy UTF-8, decoding only the start of a long line;
    /// the note gives the length of all of `bytes`.
    static func excerpt<S: Collection>(bytes: S, limit: Int = excerptLimit) -> String where S.Element == UInt8 {
        // A character is at most 4 bytes: the first 4 * limit + 4 bytes hold more than `limit` of them.
        excerpt(string(bytes.prefix(4 * limit + 4)), limit: limit, totalBytes: bytes.count)
    }

    /// `text` (the start of `totalBytes` bytes) escaped and cut as `excerpt(_:limit:)` says.
    private static func excerpt(_ text: String, limit: Int, totalBytes: Int) -> String {
        var out = ""
        var count = 0
        var cut = false
        for scalar in text.unicodeScalars {
            if count >= limit { cut = true; break }
            if (scalar.value < 0x20 && scalar.value != 0x09) || scalar.value == 0x7F {
                out += String(format: "\\x%02X", Int(scalar.value))
            } else {
                out.unicodeScalars.append(scalar)
            }
            count += 1
        }
        if cut || totalBytes > text.utf8.count { out += "… (\(totalBytes) bytes in all)" }
        return out
    }

    /// ASCII space, tab, vertical tab, form feed.
    @inline(__always) static func isSpace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x09 || b == 0x0B || b == 0x0C
    }

    /// The slice without leading and trailing ASCII whitespace.
    static func trimmed(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var lo = s.startIndex, hi = s.endIndex
        while lo < hi && isSpace(s[lo]) { lo += 1 }
        while hi > lo && isSpace(s[hi - 1]) { hi -= 1 }
        return s[lo..<hi]
    }

    /// Lossy UTF-8 decoding (invalid bytes become U+FFFD).
    static func string<S: Collection>(_ s: S) -> String where S.Element == UInt8 {
        String(decoding: s, as: UTF8.self)
    }
}

/// Checks and normalises residue letters, shared by the FASTA reader and label tables.
enum ResidueCheck {
    /// Uppercase letters accepted as residues: 20 standard + X B Z U O.
    static let allowed: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for c in "ACDEFGHIKLMNPQRSTVWYXBZUO".utf8 { t[Int(c)] = true }
        return t
    }()

    /// Outcome: the uppercase sequence and notes, or a rejection reason.
    enum Outcome {
        case ok(sequence: String, notes: [String])
        case rejected(reason: String)
    }

    /// Validates residue bytes (whitespace already removed). Strips trailing `*`, uppercases
    /// lowercase letters (both noted), rejects gaps `-`/`.` and any other character, naming the
    /// first offending character and its 1-based position in the sequence as written.
    static func normalise(_ input: [UInt8]) -> Outcome {
        var bytes = input
        var notes: [String] = []
        if bytes.last == UInt8(ascii: "*") {
            while bytes.last == UInt8(ascii: "*") { bytes.removeLast() }
            notes.append("trailing * stripped")
        }
        if bytes.isEmpty {
            return .rejected(reason: "empty record: header with no sequence")
        }
        var lowered = false
        var firstBad: (index: Int, byte: UInt8)? = nil
        var badCount = 0
        var firstGap: Int? = nil
        for i in 0..<bytes.count {
            var b = bytes[i]
            if b >= 0x61 && b <= 0x7A {
                b -= 0x20
                bytes[i] = b
                lowered = true
            }
            if !allowed[Int(b)] {
                if b == UInt8(ascii: "-") || b == UInt8(ascii: ".") {
                    if firstGap == nil { firstGap = i }
                } else {
                    if firstBad == nil { firstBad = (i, input[i]) }
                    badCount += 1
                }
            }
        }
        if let bad = firstBad {
            var reason = "unknown residue \(describe(byte: bad.byte)) at position \(bad.index + 1)"
            if badCount > 1 { reason += " (and \(badCount - 1) more invalid characters)" }
            reason += "; allowed are the 20 standard amino acids and X B Z U O"
            return .rejected(reason: reason)
        }
        if let gap = firstGap {
            return .rejected(reason: "gap character '\(Character(UnicodeScalar(bytes[gap])))' at position \(gap + 1): aligned sequences are not supported; remove the gaps")
        }
        if lowered { notes.append("lowercase residues uppercased") }
        return .ok(sequence: String(decoding: bytes, as: UTF8.self), notes: notes)
    }

    /// `'J'` for a printable ASCII byte, otherwise `byte 0xC3`.
    static func describe(byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(UnicodeScalar(byte)))'" }
        return String(format: "byte 0x%02X", Int(byte))
    }
}

/// Whole-file line reading for the small tables other modules read (the planted-motif table):
/// gzip-aware, a UTF-8 BOM skipped, lines ending at LF, CRLF or CR.
public enum TextLines {
    /// The file's lines with their 1-based numbers.
    /// - Throws: `ProteinDataError.fileUnreadable` (missing, a directory, a read error), `.gzipCorrupt`.
    public static func read(path: String) throws -> [(number: Int, text: String)] {
        TextFile.lines(try TextFile.readBytes(path: path)).map { ($0.number, TextFile.string($0.bytes)) }
    }
}
