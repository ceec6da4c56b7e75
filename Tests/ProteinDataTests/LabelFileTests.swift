import Foundation
import XCTest
@testable import ProteinData

final class LabelFileTests: XCTestCase {
    func testUniProtTSVWithMultiECAndRejections() throws {
        let dir = try TempDir()
        let path = try dir.write("l.tsv", """
        Entry\tEC number
        P1\t1.1.1.1
        P2\t2.7.11.1; 2.7.10.2
        P3\t3.4.21;3.4.21.4
        P4\t
        P5\t1.2.x.y.z
        P6\t1.1.1.1; 9.9.9.9
        P7\tnon Enzyme

        P8\t4.2.2.n1; 
        \t1.1.1.1
        P9
        """)
        let (records, rejected) = try LabelFileReader.read(path: path)
        XCTAssertEqual(records.map(\.id), ["P1", "P2", "P3", "P8"])
        XCTAssertEqual(records.map(\.line), [2, 3, 4, 10])
        XCTAssertEqual(records[1].ecNumbers, [ec("2.7.11.1"), ec("2.7.10.2")])
        XCTAssertEqual(records[1].rawLabel, "2.7.11.1; 2.7.10.2")
        XCTAssertEqual(records[2].ecNumbers.map(\.description), ["3.4.21.-", "3.4.21.4"])
        XCTAssertEqual(records[3].ecNumbers, [ec("4.2.2.n1")])
        XCTAssertTrue(records.allSatisfy { $0.sequence == nil })
        XCTAssertEqual(rejected.map(\.line), [5, 6, 7, 8, 11, 12])
        XCTAssertEqual(rejected.map(\.id), ["P4", "P5", "P6", "P7", nil, "P9"])
        XCTAssertEqual(rejected.map(\.reason), [
            "empty label",
            "invalid EC number '1.2.x.y.z' in label '1.2.x.y.z'",
            "invalid EC number '9.9.9.9' in label '1.1.1.1; 9.9.9.9'",
            "not an enzyme",
            "empty ID",
            "empty label",
        ])
    }

    func testCombinedTSVAndCSVQuotingBOMCRLF() throws {
        let dir = try TempDir()
        let tsv = try dir.write("c.tsv", "Entry\tEC number\tSequence\nA\t1.1.1.1\tmkt*\nB\t2.7.1.1\t\nC\t3.1.1.1\tMKJ\n")
        let (t, tRejected) = try LabelFileReader.read(path: tsv)
        XCTAssertEqual(t.map(\.sequence), ["MKT", ""])
        XCTAssertEqual(t[0].notes, ["trailing * stripped", "lowercase residues uppercased"])
        XCTAssertEqual(tRejected.map(\.id), ["C"])
        XCTAssertTrue(tRejected[0].reason.hasPrefix("sequence column: unknown residue 'J' at position 3"))

        let csvText = "ID,EC_Number,Seq\r\nA,\"1.1.1.46,1.1.1.48\",MKT\r\n\"B\",3.2.1.B3,GGG\r\nC,1.1.1.1,2.2.2.2,MK\r\nD,\"1.1.1.1,MK\r\n"
        let csv = try dir.write("c.csv", bytes: [0xEF, 0xBB, 0xBF] + Array(csvText.utf8))
        let (c, cRejected) = try LabelFileReader.read(path: csv)
        XCTAssertEqual(c.map(\.id), ["A", "B"])
        XCTAssertEqual(c[0].ecNumbers, [ec("1.1.1.46"), ec("1.1.1.48")])
        XCTAssertEqual(c[0].rawLabel, "1.1.1.46,1.1.1.48")
        XCTAssertEqual(c[1].ecNumbers, [ec("3.2.1.B3")])
        XCTAssertEqual(c.map(\.sequence), ["MKT", "GGG"])
        XCTAssertEqual(cRejected.map(\.line), [4, 5])
        XCTAssertTrue(cRejected[0].reason.hasPrefix("row has 4 fields but the header has 3"), cRejected[0].reason)
        XCTAssertEqual(cRejected[1].reason, "unterminated quote in the row")
    }

    func testHeaderDetectionAndOverrides() throws {
        let dir = try TempDir()
        let odd = try dir.write("odd.tsv", "protein\tfunction\nP1\t1.1.1.1\n")
        XCTAssertThrowsError(try LabelFileReader.read(path: odd)) { error in
            guard case .unrecognisedHeader(let p, let header, let hint)? = error as? ProteinDataError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(p, odd)
            XCTAssertEqual(header, "protein\tfunction")
            XCTAssertTrue(hint.contains("pass --id-column NAME") && hint.contains("pass --ec-column NAME"), hint)
            XCTAssertTrue(hint.contains("'protein', 'function'"), hint)
        }
        let (records, rejected) = try LabelFileReader.read(path: odd, idColumn: "PROTEIN", ecColumn: "Function")
        XCTAssertEqual(rejected, [])
        XCTAssertEqual(records.map(\.id), ["P1"])
        XCTAssertThrowsError(try LabelFileReader.read(path: odd, idColumn: "protein", ecColumn: "ec")) { error in
            guard case .unrecognisedHeader(_, _, let hint)? = error as? ProteinDataError else { return XCTFail() }
            XCTAssertEqual(hint, "no column named 'ec' (given by --ec-column / inputs.ec_column); columns seen: 'protein', 'function'; pass one of those names")
        }
        let empty = try dir.write("empty.tsv", "\n\n")
        XCTAssertThrowsError(try LabelFileReader.read(path: empty))
        let gz = try dir.write("l.tsv.gz", bytes: [0x1f, 0x8b, 0, 0])
        XCTAssertThrowsError(try LabelFileReader.read(path: gz)) { error in
            guard case .gzipCorrupt(let p, _, _)? = error as? ProteinDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, gz)
        }
    }

    /// `--id-column` / `--ec-column`: other names and orders, in CSV and TSV, with the sequence
    /// column still detected; the same column twice is an error.
    func testColumnOptionsOnOtherNamesAndOrders() throws {
        let dir = try TempDir()
        let csv = try dir.write("o.csv", "sequence,Enzyme Class,organism,UniProtKB_AC\nMKV,\"2.7.1.1, 2.7.1.2\",human,Q1\nMKL,3.1.1.1,yeast,Q2\n,4.1.1.1,mouse,\n")
        XCTAssertThrowsError(try LabelFileReader.read(path: csv)) { error in
            guard case .unrecognisedHeader(let p, _, let hint)? = error as? ProteinDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, csv)
            XCTAssertTrue(hint.contains("columns seen: 'sequence', 'Enzyme Class', 'organism', 'UniProtKB_AC'"), hint)
        }
        let (records, rejected) = try LabelFileReader.read(path: csv, idColumn: "uniprotkb-ac", ecColumn: "enzyme_class")
        XCTAssertEqual(records.map(\.id), ["Q1", "Q2"])
        XCTAssertEqual(records.map(\.ecNumbers), [[ec("2.7.1.1"), ec("2.7.1.2")], [ec("3.1.1.1")]])
        XCTAssertEqual(records.map(\.sequence), ["MKV", "MKL"])
        XCTAssertEqual(rejected, [RejectedRecord(file: csv, line: 4, id: nil, reason: "empty ID")])

        let tsv = try dir.write("o.tsv", "ec\tname\tacc\n1.1.1.1\tadh\tP1\n")
        let t = try LabelFileReader.read(path: tsv, idColumn: "acc")
        XCTAssertEqual(t.records.map(\.id), ["P1"])
        XCTAssertEqual(t.records.first?.ecNumbers, [ec("1.1.1.1")])
        XCTAssertThrowsError(try LabelFileReader.read(path: tsv, idColumn: "ec")) { error in
            guard case .unrecognisedHeader(_, _, let hint)? = error as? ProteinDataError else { return XCTFail("\(error)") }
            XCTAssertTrue(hint.hasPrefix("the ID and the EC column are the same column 'ec'"), hint)
        }
    }
}
