import Foundation
import XCTest
@testable import ProteinData

/// Seeded random byte mutations of real excerpts: the readers must not crash, and every
/// record (FASTA header line, label data row) must come out accepted or rejected.
final class FuzzTests: XCTestCase {
    static let interesting: [UInt8] = [0x00, 0xFF, 0xC3, 0xEF, 0xBB, 0xBF, 0x1F, 0x8B,
                                       UInt8(ascii: ">"), UInt8(ascii: "\r"), UInt8(ascii: "\n"),
                                       UInt8(ascii: "\t"), UInt8(ascii: ","), UInt8(ascii: "\""),
                                       UInt8(ascii: ";"), UInt8(ascii: "-"), UInt8(ascii: "."),
                                       UInt8(ascii: "*"), UInt8(ascii: " "), UInt8(ascii: "J"),
                                       UInt8(ascii: "n"), UInt8(ascii: "|")]

    func mutate(_ base: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = base
        let count = Int.random(in: 1...8, using: &rng)
        for _ in 0..<count {
            let pos = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
            let byte = Bool.random(using: &rng) ? Self.interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0 where !b.isEmpty: b[pos] = byte
            case 1: b.insert(byte, at: pos)
            default: if !b.isEmpty { b.remove(at: pos) }
            }
        }
        return b
    }

    func excerpt(_ path: String, lines: Int) throws -> [UInt8] {
        // Split on LF bytes (a Swift String would treat CRLF as one Character).
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        return Array(bytes.split(separator: 0x0A, omittingEmptySubsequences: false).prefix(lines)
            .joined(separator: [0x0A])) + [0x0A]
    }

    func testFastaMutations() throws {
        let base = try excerpt(try sharedData("swissprot-ec/swissprot-ec-7757.fasta"), lines: 60)
        var rng = SplitMix64(seed: 0x5EED_FA57A)
        var totalRecords = 0, totalRejected = 0
        for i in 0..<300 {
            let bytes = mutate(base, &rng)
            let result: (records: [FastaRecord], rejected: [RejectedRecord])
            do {
                result = try FastaReader.parse(data: Data(bytes), file: "fuzz\(i)")
            } catch let e as ProteinDataError {
                XCTAssertEqual(e, .gzipNotSupported(path: "fuzz\(i)"))
                continue
            }
            let lines = simpleLines(bytes).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t\u{0B}\u{0C}")) }
            let headers = lines.filter { $0.hasPrefix(">") }.count
            let stray = result.rejected.filter { $0.reason.contains("first '>'") || $0.reason.contains("no '>' header") }.count
            XCTAssertEqual(result.records.count + result.rejected.count - stray, headers, "mutation \(i)")
            XCTAssertLessThanOrEqual(stray, 1)
            for r in result.records {
                XCTAssertFalse(r.sequence.isEmpty)
                XCTAssertNoThrow(try Tokenizer(maxLength: 1026, cropPolicy: .head).encode(r.sequence))
            }
            totalRecords += result.records.count
            totalRejected += result.rejected.count
        }
        // Mutations both keep and break records (base excerpt holds ~10 records).
        print("FASTA fuzz: \(totalRecords) records, \(totalRejected) rejected")
        XCTAssertGreaterThan(totalRecords, 1000)
        XCTAssertGreaterThan(totalRejected, 50)
    }

    func testLabelMutations() throws {
        let tsv = try excerpt(try sharedData("quirks/real-quirks.tsv"), lines: 15)
        let csv = try excerpt(try sharedData("quirks/bom-crlf-comma-multi-ec.csv"), lines: 12)
        var rng = SplitMix64(seed: 0x1ABE15)
        var headerErrors = 0, totalRecords = 0, totalRejected = 0
        for i in 0..<300 {
            let bytes = mutate(i % 2 == 0 ? tsv : csv, &rng)
            let result: (records: [LabelRecord], rejected: [RejectedRecord])
            do {
                result = try LabelFileReader.parse(data: Data(bytes), file: "fuzz\(i)")
            } catch let e as ProteinDataError {
                switch e {
                case .unrecognisedHeader, .gzipNotSupported: headerErrors += 1; continue
                default: XCTFail("unexpected \(e)"); continue
                }
            }
            let lines = simpleLines(bytes)
            let nonBlank = lines.filter { !$0.trimmingCharacters(in: CharacterSet(charactersIn: " \t\u{0B}\u{0C}")).isEmpty }
            XCTAssertEqual(result.records.count + result.rejected.count, nonBlank.count - 1, "mutation \(i)")
            for r in result.records {
                XCTAssertFalse(r.id.isEmpty)
                XCTAssertFalse(r.ecNumbers.isEmpty)
            }
            totalRecords += result.records.count
            totalRejected += result.rejected.count
        }
        print("label fuzz: \(totalRecords) records, \(totalRejected) rejected, \(headerErrors) header errors")
        XCTAssertLessThan(headerErrors, 150)
        XCTAssertGreaterThan(totalRecords, 2000)
        XCTAssertGreaterThan(totalRejected, 100)
    }
}
