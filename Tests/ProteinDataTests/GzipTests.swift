import Foundation
import XCTest
@testable import ProteinData

/// gzip input: detected by the magic bytes `1f 8b` (not the name), inflated with the system
/// zlib, concatenated members read in order; corrupt or truncated streams are clear errors.
final class GzipTests: XCTestCase {
    /// `bytes` compressed by the system `gzip` (`-n`: no name or time stamp in the header).
    func gzip(_ bytes: [UInt8], level: Int = 6) throws -> [UInt8] {
        let dir = try TempDir()
        let input = try dir.write("in", bytes: bytes)
        let output = dir.url.appendingPathComponent("out").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "gzip -c -n -\(level) < '\(input)' > '\(output)'"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("the gzip command is not available") }
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: output)))
    }

    func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    func testRealFilesGzippedParseIdentically() throws {
        let dir = try TempDir()
        // FASTA: the 3.5 MB set spans several 1 MiB chunks of decompressed output.
        for name in ["swissprot-ec/sample-test-280.fasta", "swissprot-ec/swissprot-ec-7757.fasta"] {
            let plain = try sharedData(name)
            // Named like a plain file: detection is by content, not by the `.gz` suffix.
            let gz = try dir.write((name as NSString).lastPathComponent, bytes: try gzip(try bytes(plain)))
            XCTAssertEqual(try bytes(gz).prefix(2), [0x1f, 0x8b])
            let a = try FastaReader.read(path: plain), b = try FastaReader.read(path: gz)
            XCTAssertEqual(b.records, a.records, name)
            XCTAssertEqual(b.rejected, a.rejected, name)
            XCTAssertEqual(b.records.count, name.contains("7757") ? 7757 : 280)
        }
        for name in ["quirks/real-quirks.tsv", "quirks/bom-crlf-comma-multi-ec.csv", "swissprot-ec/swissprot-ec-7757.combined.tsv"] {
            let plain = try sharedData(name)
            let gz = try dir.write((name as NSString).lastPathComponent + ".gz", bytes: try gzip(try bytes(plain)))
            let a = try LabelFileReader.read(path: plain), b = try LabelFileReader.read(path: gz)
            XCTAssertEqual(b.records, a.records, name)
            XCTAssertEqual(b.rejected, a.rejected, name)
        }
        let csv = try LabelFileReader.read(path: try dir.write("q.csv.gz", bytes: try gzip(try bytes(try sharedData("quirks/bom-crlf-comma-multi-ec.csv")))))
        XCTAssertEqual(csv.records.count, 184)
        XCTAssertEqual(csv.records.last?.line, 185)
        let dat = try sharedData("quirks/enzyme-dat-excerpt.dat")
        let datGz = try dir.write("enzyme.dat", bytes: try gzip(try bytes(dat)))
        XCTAssertEqual(try EnzymeNomenclature(enzymeDatPath: datGz).entries, try EnzymeNomenclature(enzymeDatPath: dat).entries)
        // In memory too.
        let mem = try LabelFileReader.parse(data: Data(try gzip(try bytes(try sharedData("quirks/real-quirks.tsv")))), file: "mem")
        XCTAssertEqual(mem.records.count, 14)
    }

    func testConcatenatedMembersAndEmptyStream() throws {
        let plain = try bytes(try sharedData("swissprot-ec/sample-test-280.fasta"))
        let dir = try TempDir()
        // Split inside a sequence line: the members' boundary is not a line boundary.
        let cut = plain.count / 3 + 17, cut2 = 2 * plain.count / 3
        let joined = try gzip(Array(plain[..<cut])) + gzip(Array(plain[cut..<cut2]), level: 1) + gzip(Array(plain[cut2...]), level: 9)
        let path = try dir.write("members.fasta.gz", bytes: joined)
        let whole = try FastaReader.parse(data: Data(plain), file: path)
        let members = try FastaReader.read(path: path)
        XCTAssertEqual(members.records, whole.records)
        XCTAssertEqual(members.records.count, 280)
        XCTAssertEqual(try TextFile.readBytes(path: path), plain)
        // Small chunks and a small member of only a few bytes.
        let stream = ByteStream(bytes: try gzip([0x3E]) + joined, name: "small", chunkSize: 7)
        var out: [UInt8] = []
        var chunks = 0
        while let c = try stream.next() { XCTAssertLessThanOrEqual(c.count, 7); out += c; chunks += 1 }
        XCTAssertEqual(out, [0x3E] + plain)
        XCTAssertEqual(chunks, (plain.count + 1 + 6) / 7)
        // gzip of an empty file: no records, no error.
        let empty = try FastaReader.read(path: try dir.write("empty.gz", bytes: try gzip([])))
        XCTAssertEqual(empty.records, [])
        XCTAssertEqual(empty.rejected, [])
    }

    func testTruncatedCorruptAndTrailingGarbageAreClearErrors() throws {
        let plain = try bytes(try sharedData("swissprot-ec/sample-test-280.fasta"))
        let gz = try gzip(plain)
        let dir = try TempDir()
        // Truncated: the error names the file and the offset where the data ended.
        let truncated = try dir.write("t.fasta.gz", bytes: Array(gz.prefix(gz.count / 2)))
        XCTAssertThrowsError(try FastaReader.read(path: truncated)) { error in
            XCTAssertEqual(error as? ProteinDataError, .gzipCorrupt(path: truncated, offset: gz.count / 2,
                reason: "the file ends inside a gzip member (truncated download or copy?)"))
            XCTAssertEqual("\(error)", "'\(truncated)' starts like gzip (bytes 1f 8b) but cannot be decompressed: the file ends inside a gzip member (truncated download or copy?), at compressed byte offset \(gz.count / 2); check it with `gzip -t` and fetch the file again")
        }
        // Missing the 8-byte trailer (CRC and length) only.
        let noTrailer = try dir.write("n.gz", bytes: Array(gz.dropLast(8)))
        XCTAssertThrowsError(try FastaReader.read(path: noTrailer)) { error in
            XCTAssertEqual(error as? ProteinDataError, .gzipCorrupt(path: noTrailer, offset: gz.count - 8,
                reason: "the file ends inside a gzip member (truncated download or copy?)"))
        }
        // Only the magic bytes.
        let magic = try dir.write("m.tsv", bytes: [0x1f, 0x8b])
        XCTAssertThrowsError(try LabelFileReader.read(path: magic)) { error in
            guard case .gzipCorrupt(let p, let offset, _)? = error as? ProteinDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, magic)
            XCTAssertEqual(offset, 2)
        }
        // A flipped byte in the deflate data or the CRC: zlib's message and an offset inside the file.
        var flipped = gz
        flipped[gz.count / 2] ^= 0xFF
        flipped[gz.count - 6] ^= 0xFF
        let corrupt = try dir.write("c.gz", bytes: flipped)
        XCTAssertThrowsError(try FastaReader.read(path: corrupt)) { error in
            guard case .gzipCorrupt(let p, let offset, let reason)? = error as? ProteinDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, corrupt)
            XCTAssertTrue((gz.count / 2...gz.count).contains(offset), "\(offset) \(reason)")
            XCTAssertTrue(["invalid", "incorrect"].contains { reason.contains($0) }, reason)
        }
        // Data after a member that is not another member.
        let trailing = try dir.write("g.gz", bytes: gz + Array("junk\n".utf8))
        XCTAssertThrowsError(try FastaReader.read(path: trailing)) { error in
            XCTAssertEqual(error as? ProteinDataError, .gzipCorrupt(path: trailing, offset: gz.count + 2,
                reason: "incorrect header check (the data after gzip member 1 is not another gzip member)"))
        }
    }
}
