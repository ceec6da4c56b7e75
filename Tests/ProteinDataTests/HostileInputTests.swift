import Foundation
import XCTest
@testable import ProteinData

/// Hostile inputs: huge header lines, over-long label lines and FASTA records, other
/// compression formats, gzip with zero padding. Each stops with a short, precise message.
final class HostileInputTests: XCTestCase {
    func testHugeHeaderIsEchoedCutAndEscaped() throws {
        let dir = try TempDir()
        // A 1,000,000-byte header line starting with a zero byte (under the 1 MiB line limit).
        let header: [UInt8] = [0x00] + [UInt8](repeating: UInt8(ascii: "a"), count: 999_999) + [0x0A]
        let path = try dir.write("huge.tsv", bytes: header + Array("P1\t1.1.1.1\n".utf8))
        XCTAssertThrowsError(try LabelFileReader.read(path: path)) { error in
            guard case .unrecognisedHeader(let p, let h, let hint)? = error as? ProteinDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
            XCTAssertEqual(h, "\\x00" + String(repeating: "a", count: 119) + "… (1000000 bytes in all)")
            XCTAssertTrue(hint.hasSuffix("; columns seen: '\\x00" + String(repeating: "a", count: 118) + "… (1000002 bytes in all)"), hint)
            XCTAssertLessThan(String(describing: error).utf8.count, 800)
        }
        // A named column the header lacks: the column list is cut the same way.
        XCTAssertThrowsError(try LabelFileReader.read(path: path, idColumn: "id", ecColumn: "ec")) { error in
            XCTAssertLessThan(String(describing: error).utf8.count, 800, "\(error)")
        }
        // Short headers are echoed whole (tabs kept).
        XCTAssertEqual(TextFile.excerpt("protein\tfunction"), "protein\tfunction")
        XCTAssertEqual(TextFile.excerpt(bytes: [0x41, 0x01, 0x7F]), "A\\x01\\x7F")
    }

    func testLabelLineLongerThan1MiBStopsTheRead() throws {
        let dir = try TempDir()
        // 3 MiB of zero bytes and no line end (like a 1 GB file of zeros): line 1.
        let zeros = try dir.write("zeros.tsv", bytes: [UInt8](repeating: 0, count: 3 << 20))
        XCTAssertThrowsError(try LabelFileReader.read(path: zeros)) { error in
            XCTAssertEqual(error as? ProteinDataError,
                .malformedFile(path: zeros, reason: "line 1 longer than 1 MiB: not a label table"))
            XCTAssertEqual(String(describing: error),
                "'\(zeros)' is not in the expected format: line 1 longer than 1 MiB: not a label table")
        }
        // A row of 1 MiB + 1 byte on line 3, read in small chunks too.
        let row = "Entry\tEC number\nP1\t1.1.1.1\nP2\t" + String(repeating: "1", count: (1 << 20) - 2) + "\nP3\t2.7.1.1\n"
        let long = try dir.write("long.tsv", row)
        for chunk in [ByteStream.defaultChunkSize, 4096] {
            XCTAssertThrowsError(try LabelFileReader.read(path: long, idColumn: nil, ecColumn: nil, chunkSize: chunk)) { error in
                XCTAssertEqual(error as? ProteinDataError,
                    .malformedFile(path: long, reason: "line 3 longer than 1 MiB: not a label table"))
            }
        }
        // Exactly 1 MiB is still read (the row is rejected for its label, not the length).
        let ok = "Entry\tEC number\nP2\t" + String(repeating: "1", count: (1 << 20) - 3) + "\n"
        let (records, rejected) = try LabelFileReader.read(path: try dir.write("ok.tsv", ok))
        XCTAssertEqual(records, [])
        XCTAssertEqual(rejected.count, 1)
        XCTAssertEqual(rejected.first?.reason, "invalid EC number '" + String(repeating: "1", count: 120) + "… (1048573 bytes in all)' in label '"
            + String(repeating: "1", count: 120) + "… (1048573 bytes in all)'")
        // FASTA lines are not limited: a 3 MiB sequence on one line is a record.
        let fasta = try dir.write("long.fasta", ">big\n" + String(repeating: "A", count: 3 << 20) + "\n")
        let f = try FastaReader.read(path: fasta)
        XCTAssertEqual(f.records.map(\.sequence.count), [3 << 20])
        XCTAssertEqual(f.rejected, [])
    }

    func testFastaRecordLongerThanTheLimitIsRejected() throws {
        XCTAssertEqual(FastaReader.maxResidues, 10_000_000)
        let dir = try TempDir()
        var text = ">big some protein\n"
        let line = String(repeating: "A", count: 1_000) + "\n"
        text += String(repeating: line, count: 10_000) + "MK\n"
        text += ">limit\n" + String(repeating: line, count: 10_000) + "**\n>ok\nMKV\n"
        let path = try dir.write("big.fasta", text)
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(records.map(\.id), ["limit", "ok"])
        XCTAssertEqual(records.first?.sequence.count, 10_000_000)
        XCTAssertEqual(records.first?.notes, ["trailing * stripped"])
        XCTAssertEqual(rejected, [RejectedRecord(file: path, line: 1, id: "big",
            reason: "record 'big' has 10000002 residues, more than the limit of 10000000 (FastaReader.maxResidues); split or remove it")])
    }

    func testOtherCompressionFormatsAreRefused() throws {
        let dir = try TempDir()
        let cases: [(String, [UInt8], String, String)] = [
            ("bzip2", Array("BZh91AY&SY".utf8) + [0x00, 0x01], "bzip2", "bunzip2"),
            ("xz", [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0x00, 0x04], "xz", "unxz"),
            ("zstd", [0x28, 0xB5, 0x2F, 0xFD, 0x04, 0x00], "zstd", "unzstd"),
        ]
        for (name, bytes, format, command) in cases {
            let path = try dir.write("in.\(name)", bytes: bytes)
            let expected = ProteinDataError.malformedFile(path: path,
                reason: "compressed with \(format); decompress it first (\(command) '\(path)') or recompress with gzip")
            XCTAssertThrowsError(try FastaReader.read(path: path)) { XCTAssertEqual($0 as? ProteinDataError, expected) }
            XCTAssertThrowsError(try FastaReader.read(path: path, chunkSize: 1)) { XCTAssertEqual($0 as? ProteinDataError, expected) }
            XCTAssertThrowsError(try LabelFileReader.read(path: path)) { XCTAssertEqual($0 as? ProteinDataError, expected) }
            XCTAssertThrowsError(try TextFile.readBytes(path: path)) { XCTAssertEqual($0 as? ProteinDataError, expected) }
            XCTAssertThrowsError(try EnzymeNomenclature.parse(data: Data(bytes), file: path)) { XCTAssertEqual($0 as? ProteinDataError, expected) }
        }
        // Text that merely starts like one is read as text: "BZh" not followed by a digit 1-9.
        let plain = try dir.write("bz.fasta", ">BZh0\nMK\n")
        XCTAssertEqual(try FastaReader.read(path: plain).records.map(\.id), ["BZh0"])
        let bzText = try FastaReader.parse(data: Data("BZhx\n>a\nMK\n".utf8), file: "t")
        XCTAssertEqual(bzText.records.map(\.id), ["a"])
    }
}

extension GzipTests {
    func testTrailingZeroPaddingIsIgnoredButNotOtherJunk() throws {
        let dir = try TempDir()
        let plain = Array(">a\nMKV\n>b\nMAC\n".utf8)
        let gz = try gzip(plain)
        let padded = try dir.write("padded.gz", bytes: gz + [UInt8](repeating: 0, count: 512))
        XCTAssertEqual(try TextFile.readBytes(path: padded), plain)
        XCTAssertEqual(try FastaReader.read(path: padded).records.map(\.id), ["a", "b"])
        // Padding split over many small chunks, and after two members.
        let stream = ByteStream(bytes: gz + gz + [UInt8](repeating: 0, count: 100), name: "s", chunkSize: 3)
        var out: [UInt8] = []
        while let c = try stream.next() { out += c }
        XCTAssertEqual(out, plain + plain)
        // Non-zero data after the padding is still refused, at its offset.
        let junk = try dir.write("junk.gz", bytes: gz + [UInt8](repeating: 0, count: 512) + Array("junk".utf8))
        XCTAssertThrowsError(try FastaReader.read(path: junk)) { error in
            XCTAssertEqual(error as? ProteinDataError, .gzipCorrupt(path: junk, offset: gz.count + 512,
                reason: "non-zero data after the zero padding that follows gzip member 1 (trailing garbage)"))
        }
        // Another member after zero padding is refused as well (GNU gzip calls it trailing garbage).
        let member = try dir.write("member.gz", bytes: gz + [0, 0] + gz)
        XCTAssertThrowsError(try FastaReader.read(path: member)) { error in
            XCTAssertEqual(error as? ProteinDataError, .gzipCorrupt(path: member, offset: gz.count + 2,
                reason: "non-zero data after the zero padding that follows gzip member 1 (trailing garbage)"))
        }
    }
}
