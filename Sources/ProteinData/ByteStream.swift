import CZlib
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file (or bytes in memory) read in fixed-size chunks, decompressed on the fly when it is gzip.
///
/// gzip is detected by the magic bytes `1f 8b` at the start (RFC 1952), whatever the file's
/// name; it is inflated with the system zlib (`inflateInit2` with `16 + MAX_WBITS`, i.e. gzip
/// wrapper only), and concatenated gzip members (`cat a.gz b.gz`, bgzip files) are read one
/// after the other, as `gunzip` does; zero bytes after the last member (tar / dd padding) are
/// ignored, as GNU gzip does. A corrupt member, non-zero data after a member that is not another
/// gzip member, or a stream that ends inside a member throws `ProteinDataError.gzipCorrupt`
/// naming the file and the compressed byte offset where zlib stopped; nothing is returned
/// silently truncated. Data starting with the magic bytes of bzip2 (`BZh` + digit 1-9),
/// xz (`FD 37 7A 58 5A 00`) or zstd (`28 B5 2F FD`) throws `ProteinDataError.malformedFile`
/// naming the file and the format (see `unsupportedCompression`).
///
/// Memory: one input buffer and one output chunk (`chunkSize` bytes each), whatever the file size.
final class ByteStream {
    /// Default chunk size: 1 MiB.
    static let defaultChunkSize = 1 << 20

    private enum Raw {
        case file(Int32)
        case memory([UInt8], position: Int)
    }

    /// The path (or name) used in errors.
    let name: String
    /// Bytes per chunk returned by `next()` (the last one may be shorter).
    let chunkSize: Int
    /// True when the data starts with the gzip magic and is being inflated.
    private(set) var isGzip = false

    private var raw: Raw
    private var rawEOF = false
    private var started = false
    /// Raw bytes read so far (compressed bytes for gzip).
    private var rawBytesRead = 0
    /// Raw bytes read for gzip detection but not yet handed out (plain data) or inflated.
    private var pending: [UInt8] = []

    // gzip state
    private var strm: UnsafeMutablePointer<z_stream>?
    private var inBuffer: UnsafeMutablePointer<UInt8>?
    private var outBuffer: UnsafeMutablePointer<UInt8>?
    private var betweenMembers = false
    /// Zero bytes were skipped after the last member: only more zeros may follow.
    private var inZeroPadding = false
    private var membersCompleted = 0
    private var finished = false

    /// Opens `path` for reading.
    ///
    /// - Throws: `ProteinDataError.fileUnreadable` (missing, a directory, permission denied).
    init(path: String, chunkSize: Int = ByteStream.defaultChunkSize) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ProteinDataError.fileUnreadable(path: path, reason: "no such file")
        }
        if isDirectory.boolValue {
            throw ProteinDataError.fileUnreadable(path: path, reason: "it is a directory, not a file")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ProteinDataError.fileUnreadable(path: path, reason: String(cString: strerror(errno)))
        }
        self.name = path
        self.chunkSize = max(1, chunkSize)
        self.raw = .file(fd)
    }

    /// Reads `bytes` held in memory; `name` is used in errors.
    init(bytes: [UInt8], name: String, chunkSize: Int = ByteStream.defaultChunkSize) {
        self.name = name
        self.chunkSize = max(1, chunkSize)
        self.raw = .memory(bytes, position: 0)
    }

    deinit {
        if case .file(let fd) = raw { close(fd) }
        if let strm {
            inflateEnd(strm)
            strm.deallocate()
        }
        inBuffer?.deallocate()
        outBuffer?.deallocate()
    }

    /// Reads up to `max` raw bytes into `buffer`; 0 at the end of the data.
    private func readRaw(into buffer: UnsafeMutablePointer<UInt8>, max: Int) throws -> Int {
        if rawEOF { return 0 }
        switch raw {
        case .file(let fd):
            while true {
                let n = read(fd, buffer, max)
                if n > 0 { rawBytesRead += n; return n }
                if n == 0 { rawEOF = true; return 0 }
                if errno == EINTR { continue }
                throw ProteinDataError.fileUnreadable(path: name,
                    reason: "read error after \(rawBytesRead) bytes: \(String(cString: strerror(errno)))")
            }
        case .memory(let bytes, let position):
            let n = min(max, bytes.count - position)
            if n <= 0 { rawEOF = true; return 0 }
            bytes.withUnsafeBufferPointer { src in
                buffer.update(from: src.baseAddress! + position, count: n)
            }
            raw = .memory(bytes, position: position + n)
            rawBytesRead += n
            return n
        }
    }

    /// Up to `count` raw bytes as an array; empty at the end of the data.
    private func readRawChunk(_ count: Int) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            initialized = try readRaw(into: buffer.baseAddress!, max: count)
        }
    }

    /// The compression format other than gzip that `prefix` (the first bytes of a file) starts
    /// with, and the command that decompresses it: bzip2, xz or zstd; nil for anything else.
    static func unsupportedCompression<C: Collection>(_ prefix: C) -> (format: String, command: String)?
        where C.Element == UInt8 {
        let b = Array(prefix.prefix(6))
        if b.count >= 4 && b[0] == 0x42 && b[1] == 0x5A && b[2] == 0x68 && (0x31...0x39).contains(b[3]) {
            return ("bzip2", "bunzip2")
        }
        if b == [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00] { return ("xz", "unxz") }
        if b.count >= 4 && b[0..<4] == [0x28, 0xB5, 0x2F, 0xFD] { return ("zstd", "unzstd") }
        return nil
    }

    /// The error for data compressed with `format` (see `unsupportedCompression`), naming `path`.
    static func unsupportedCompressionError(path: String, format: String, command: String) -> ProteinDataError {
        .malformedFile(path: path, reason: "compressed with \(format); decompress it first (\(command) '\(path)') or recompress with gzip")
    }

    /// Looks at the first bytes to decide between plain and gzip (and refuse bzip2, xz, zstd).
    private func start() throws {
        started = true
        while pending.count < 6 {
            let more = try readRawChunk(max(chunkSize, 6) - pending.count)
            if more.isEmpty { break }
            pending += more
        }
        if let (format, command) = ByteStream.unsupportedCompression(pending) {
            throw ByteStream.unsupportedCompressionError(path: name, format: format, command: command)
        }
        guard pending.count >= 2 && pending[0] == 0x1f && pending[1] == 0x8b else { return }
        isGzip = true
        let inputCapacity = max(chunkSize, 1 << 16)
        inBuffer = .allocate(capacity: max(inputCapacity, pending.count))
        outBuffer = .allocate(capacity: chunkSize)
        let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        s.initialize(to: z_stream())
        strm = s
        let rc = kneuron_inflateInit2(s, 16 + MAX_WBITS)
        guard rc == Z_OK else {
            throw ProteinDataError.gzipCorrupt(path: name, offset: 0, reason: "zlib could not start (inflateInit2 returned \(rc))")
        }
        pending.withUnsafeBufferPointer { src in inBuffer!.update(from: src.baseAddress!, count: src.count) }
        s.pointee.next_in = inBuffer
        s.pointee.avail_in = UInt32(pending.count)
        pending = []
    }

    /// The next chunk of (decompressed) bytes, at most `chunkSize`; nil at the end.
    ///
    /// - Throws: `ProteinDataError.fileUnreadable` (read error), `.gzipCorrupt`, `.malformedFile`
    ///   (bzip2, xz or zstd data).
    func next() throws -> [UInt8]? {
        if !started { try start() }
        if !isGzip {
            if !pending.isEmpty {
                let chunk = Array(pending.prefix(chunkSize))
                pending.removeFirst(chunk.count)
                return chunk
            }
            let chunk = try readRawChunk(chunkSize)
            return chunk.isEmpty ? nil : chunk
        }
        return try nextInflated()
    }

    /// Inflates up to `chunkSize` bytes.
    private func nextInflated() throws -> [UInt8]? {
        guard let s = strm, let inBuffer, let outBuffer, !finished else { return nil }
        let inputCapacity = max(chunkSize, 1 << 16)
        var produced = 0
        func offset() -> Int { rawBytesRead - Int(s.pointee.avail_in) }
        while produced < chunkSize {
            if s.pointee.avail_in == 0 && !rawEOF {
                let n = try readRaw(into: inBuffer, max: inputCapacity)
                s.pointee.next_in = inBuffer
                s.pointee.avail_in = UInt32(n)
            }
            if s.pointee.avail_in == 0 {
                if betweenMembers { finished = true; break }
                throw ProteinDataError.gzipCorrupt(path: name, offset: rawBytesRead,
                    reason: "the file ends inside a gzip member (truncated download or copy?)")
            }
            if betweenMembers {
                // Zero bytes after a member (tar / dd padding) are skipped, as GNU gzip does.
                var k = Int(s.pointee.avail_in)
                if var p = s.pointee.next_in, p.pointee == 0 || inZeroPadding {
                    while k > 0 && p.pointee == 0 { p += 1; k -= 1 }
                    s.pointee.next_in = p
                    s.pointee.avail_in = UInt32(k)
                    if k == 0 { inZeroPadding = true; continue }
                    throw ProteinDataError.gzipCorrupt(path: name, offset: offset(),
                        reason: "non-zero data after the zero padding that follows gzip member \(membersCompleted) (trailing garbage)")
                }
                // More data after a complete member: it must be another member.
                guard inflateReset(s) == Z_OK else {
                    throw ProteinDataError.gzipCorrupt(path: name, offset: offset(), reason: "zlib could not restart for the next member")
                }
                betweenMembers = false
            }
            s.pointee.next_out = outBuffer + produced
            s.pointee.avail_out = UInt32(chunkSize - produced)
            let rc = inflate(s, Z_NO_FLUSH)
            produced = chunkSize - Int(s.pointee.avail_out)
            switch rc {
            case Z_OK:
                continue
            case Z_STREAM_END:
                betweenMembers = true
                membersCompleted += 1
            case Z_BUF_ERROR where s.pointee.avail_in == 0:
                continue   // needs more input
            default:
                let message = s.pointee.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                let member = membersCompleted > 0 && message == "incorrect header check"
                    ? " (the data after gzip member \(membersCompleted) is not another gzip member)" : ""
                throw ProteinDataError.gzipCorrupt(path: name, offset: offset(), reason: message + member)
            }
        }
        if produced == 0 { return nil }
        return Array(UnsafeBufferPointer(start: outBuffer, count: produced))
    }
}
