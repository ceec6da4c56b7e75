import Foundation
import XCTest
@testable import ProteinData

/// Streaming: files are read in fixed-size chunks and lines are joined across chunk
/// boundaries, with line ends, BOM and line numbers exactly as when splitting the whole file.
final class StreamingTests: XCTestCase {
    func streamedLines(_ bytes: [UInt8], chunkSize: Int) throws -> [TextFile.Line] {
        var reader = TextFile.LineReader(ByteStream(bytes: bytes, name: "mem", chunkSize: chunkSize))
        var out: [TextFile.Line] = []
        while let l = try reader.next() { out.append(l) }
        return out
    }

    func same(_ a: [TextFile.Line], _ b: [TextFile.Line]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.number == $1.number && Array($0.bytes) == Array($1.bytes) }
    }

    /// Random bytes rich in CR, LF and BOM bytes, every chunk size 1...12: identical to `lines(_:)`.
    func testLineReaderEqualsWholeFileSplitting() throws {
        var rng = SplitMix64(seed: 42)
        let alphabet: [UInt8] = [0x41, 0x0D, 0x0A, 0xEF, 0xBB, 0xBF, 0x20, 0x3E]
        for i in 0..<1500 {
            var bytes = (0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            if i % 3 == 0 { bytes = [0xEF, 0xBB, 0xBF] + bytes }
            let whole = TextFile.lines(bytes)
            for chunk in 1...12 {
                let streamed = try streamedLines(bytes, chunkSize: chunk)
                XCTAssertTrue(same(streamed, whole), "case \(i) chunk \(chunk): \(bytes)")
            }
        }
        // A CR at the very end of a chunk followed by LF at the start of the next is one line end.
        let crlf = try streamedLines(Array("AB\r\nCD\r\n\r\nE".utf8), chunkSize: 3)
        XCTAssertEqual(crlf.map { String(decoding: $0.bytes, as: UTF8.self) }, ["AB", "CD", "", "E"])
        XCTAssertEqual(crlf.map(\.number), [1, 2, 3, 4])
    }

    /// One 150,000-residue sequence on a single CRLF line straddles 21,429 chunks of 7 bytes (and
    /// 147 of 1 KiB); the records, line numbers and notes equal the default 1 MiB read.
    func testLongLineAcrossManyChunks() throws {
        var rng = SplitMix64(seed: 7)
        let standard = Array("ACDEFGHIKLMNPQRSTVWY".utf8)
        let long = (0..<150_000).map { _ in standard.randomElement(using: &rng)! }
        var lower = long
        for i in stride(from: 0, to: lower.count, by: 1000) { lower[i] |= 0x20 }
        let text: [UInt8] = [0xEF, 0xBB, 0xBF] + Array(">long one line\r\n".utf8) + lower + Array("*\r\n>short\r\nMKV\r\n\r\n>bad\r\n".utf8)
            + long.prefix(99_999) + Array("J\r\n".utf8) + long.prefix(5)
        let dir = try TempDir()
        let path = try dir.write("long.fasta", bytes: text)
        let reference = try FastaReader.read(path: path)
        XCTAssertEqual(reference.records.map(\.id), ["long", "short"])
        XCTAssertEqual(reference.records[0].sequence.utf8.count, 150_000)
        XCTAssertEqual(Array(reference.records[0].sequence.utf8), long)
        XCTAssertEqual(reference.records[0].notes, ["trailing * stripped", "lowercase residues uppercased"])
        XCTAssertEqual(reference.records.map(\.line), [1, 3])
        XCTAssertEqual(reference.rejected, [RejectedRecord(file: path, line: 6, id: "bad",
            reason: "unknown residue 'J' at position 100000; allowed are the 20 standard amino acids and X B Z U O")])
        for chunk in [7, 1024, 65_537] {
            let r = try FastaReader.read(path: path, chunkSize: chunk)
            XCTAssertEqual(r.records, reference.records, "chunk \(chunk)")
            XCTAssertEqual(r.rejected, reference.rejected, "chunk \(chunk)")
        }
        // A combined label table whose sequence cell is 120,000 residues long.
        let table = try dir.write("long.tsv", "Entry\tEC number\tSequence\r\nP1\t1.1.1.1\t" + String(decoding: long.prefix(120_000), as: UTF8.self) + "\r\nP2\t2.7.1.1\tMKV\r\n")
        let whole = try LabelFileReader.read(path: table)
        XCTAssertEqual(whole.records.map(\.line), [2, 3])
        XCTAssertEqual(whole.records[0].sequence?.utf8.count, 120_000)
        for chunk in [5, 4096] {
            XCTAssertEqual(try LabelFileReader.read(path: table, idColumn: nil, ecColumn: nil, chunkSize: chunk).records, whole.records)
        }
    }

    /// The real files read in small odd chunks (BOM and CRLF split across chunks) equal the default read.
    func testRealFilesInSmallChunks() throws {
        let fasta = try sharedData("swissprot-ec/swissprot-ec-7757.fasta")
        let a = try FastaReader.read(path: fasta), b = try FastaReader.read(path: fasta, chunkSize: 4093)
        XCTAssertEqual(a.records.count, 7757)
        XCTAssertEqual(b.records, a.records)
        for name in ["quirks/bom-crlf-comma-multi-ec.csv", "quirks/real-quirks.tsv"] {
            let path = try sharedData(name)
            let whole = try LabelFileReader.read(path: path)
            for chunk in [1, 2, 3, 61] {
                let r = try LabelFileReader.read(path: path, idColumn: nil, ecColumn: nil, chunkSize: chunk)
                XCTAssertEqual(r.records, whole.records, "\(name) chunk \(chunk)")
                XCTAssertEqual(r.rejected, whole.rejected)
            }
        }
        XCTAssertEqual(try LabelFileReader.read(path: try sharedData("quirks/bom-crlf-comma-multi-ec.csv"), idColumn: nil, ecColumn: nil, chunkSize: 2).records.count, 184)
    }
}
