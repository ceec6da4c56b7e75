import Foundation
import XCTest
@testable import ProteinData

final class FastaReaderTests: XCTestCase {
    func testWrappedSingleLineAndUniProtHeaders() throws {
        let dir = try TempDir()
        let path = try dir.write("a.fasta", """
        >P1 first protein
        MKTA
        YIAK
        >sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens
        MVLSPADKTN
        >tr|A0A024R161|A0A024R161_HUMAN Guanine
        ACDEFGHIKLMNPQRSTVWYXBZUO

        """)
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(rejected, [])
        XCTAssertEqual(records.map(\.id), ["P1", "P69905", "A0A024R161"])
        XCTAssertEqual(records.map(\.sequence), ["MKTAYIAK", "MVLSPADKTN", "ACDEFGHIKLMNPQRSTVWYXBZUO"])
        XCTAssertEqual(records.map(\.line), [1, 4, 6])
        XCTAssertEqual(records[0].description, "first protein")
        XCTAssertEqual(records[1].description, "Hemoglobin subunit alpha OS=Homo sapiens")
        XCTAssertEqual(records[0].notes, [])
    }

    func testLineEndsBOMBlankLinesAndTrailingWhitespace() throws {
        let dir = try TempDir()
        let body = ">A desc  \r\nMKT\r\nAYI \t\r\n\r\n>B\rGGG\rHHH\r\r>C\nLL\n"
        let path = try dir.write("crlf.fasta", bytes: [0xEF, 0xBB, 0xBF] + Array(body.utf8))
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(rejected, [])
        XCTAssertEqual(records.map(\.id), ["A", "B", "C"])
        XCTAssertEqual(records.map(\.sequence), ["MKTAYI", "GGGHHH", "LL"])
        XCTAssertEqual(records.map(\.line), [1, 5, 9])
        XCTAssertEqual(records[0].description, "desc")
    }

    func testLowercaseAndStopAreNormalisedAndNoted() throws {
        let dir = try TempDir()
        let path = try dir.write("n.fasta", ">low\nmktAyi\n>stop\nMKT*\n>both\nmk\nt*\n")
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(rejected, [])
        XCTAssertEqual(records.map(\.sequence), ["MKTAYI", "MKT", "MKT"])
        XCTAssertEqual(records[0].notes, ["lowercase residues uppercased"])
        XCTAssertEqual(records[1].notes, ["trailing * stripped"])
        XCTAssertEqual(records[2].notes, ["trailing * stripped", "lowercase residues uppercased"])
    }

    func testRejections() throws {
        let dir = try TempDir()
        let path = try dir.write("bad.fasta", """
        >ok1
        MKT
        >
        MKT
        >empty desc here
        >gap1
        MK-T
        >gap2
        MK.T
        >unknownJ
        MKTAJ
        >star
        MK*T
        >ok2
        AAA
        >onlystar
        *
        """)
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(records.map(\.id), ["ok1", "ok2"])
        XCTAssertEqual(rejected.map(\.line), [3, 5, 6, 8, 10, 12, 16])
        XCTAssertEqual(rejected.map(\.id), [nil, "empty", "gap1", "gap2", "unknownJ", "star", "onlystar"])
        XCTAssertEqual(rejected[0].reason, "header '>' has no ID")
        XCTAssertEqual(rejected[1].reason, "empty record: header with no sequence")
        XCTAssertTrue(rejected[2].reason.hasPrefix("gap character '-' at position 3"), rejected[2].reason)
        XCTAssertTrue(rejected[3].reason.hasPrefix("gap character '.' at position 3"), rejected[3].reason)
        XCTAssertTrue(rejected[4].reason.hasPrefix("unknown residue 'J' at position 5"), rejected[4].reason)
        XCTAssertTrue(rejected[5].reason.hasPrefix("unknown residue '*' at position 3"), rejected[5].reason)
        XCTAssertEqual(rejected[6].reason, "empty record: header with no sequence")
        XCTAssertTrue(rejected.allSatisfy { $0.file == path })
    }

    func testUnknownLetterPositionCountsAcrossWrappedLines() throws {
        let dir = try TempDir()
        let path = try dir.write("j.fasta", ">x\nACDEF\nGHJKL\nJJ\n")
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(records, [])
        XCTAssertEqual(rejected.count, 1)
        XCTAssertEqual(rejected[0].reason,
            "unknown residue 'J' at position 8 (and 2 more invalid characters); allowed are the 20 standard amino acids and X B Z U O")
    }

    func testInvalidUTF8AndStrayTextDoNotCrash() throws {
        let dir = try TempDir()
        let bytes: [UInt8] = Array("junk line\n>id\u{20}".utf8) + [0xFF, 0xFE] + Array("\nMK".utf8) + [0xC3] + Array("T\n".utf8)
        let path = try dir.write("utf8.fasta", bytes: bytes)
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(records, [])
        XCTAssertEqual(rejected.count, 2)
        XCTAssertEqual(rejected[0].line, 1)
        XCTAssertTrue(rejected[0].reason.contains("before the first '>'"), rejected[0].reason)
        XCTAssertEqual(rejected[1].id, "id")
        XCTAssertTrue(rejected[1].reason.hasPrefix("unknown residue byte 0xC3 at position 3"), rejected[1].reason)
    }

    func testGzipAndMissingFileThrowClearErrors() throws {
        let dir = try TempDir()
        let gz = try dir.write("x.fasta.gz", bytes: [0x1f, 0x8b, 0x08, 0x00, 0x00])
        XCTAssertThrowsError(try FastaReader.read(path: gz)) { error in
            XCTAssertEqual(error as? ProteinDataError, .gzipCorrupt(path: gz, offset: 5,
                reason: "the file ends inside a gzip member (truncated download or copy?)"))
            XCTAssertTrue("\(error)".contains("gzip -t"))
        }
        let missing = dir.url.appendingPathComponent("nope.fasta").path
        XCTAssertThrowsError(try FastaReader.read(path: missing)) { error in
            XCTAssertEqual(error as? ProteinDataError, .fileUnreadable(path: missing, reason: "no such file"))
        }
    }

    func testDuplicateIDsAreKeptByTheReader() throws {
        let dir = try TempDir()
        let path = try dir.write("dup.fasta", ">A\nMKT\n>A\nMKT\n>A\nGGG\n")
        let (records, rejected) = try FastaReader.read(path: path)
        XCTAssertEqual(rejected, [])
        XCTAssertEqual(records.map(\.id), ["A", "A", "A"])
    }
}
