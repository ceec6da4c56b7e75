import Foundation
import XCTest
@testable import ProteinData

/// ExPASy `enzyme.dat`: transferred entries followed, deleted ones flagged; on the project's
/// fixture `data/fixtures/enzyme-tiny.dat` and the real excerpt in the shared data.
final class EnzymeDatTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/fixtures/enzyme-tiny.dat").path

    func testParsesTheFixture() throws {
        let n = try EnzymeNomenclature(enzymeDatPath: Self.fixture)
        XCTAssertEqual(n.entries.count, 19)
        XCTAssertEqual(n.entries[ec("1.1.1.1")], .current(name: "alcohol dehydrogenase"))
        XCTAssertEqual(n.entries[ec("2.7.11.14")], .current(name: "rhodopsin kinase"))
        XCTAssertEqual(n.entries[ec("1.1.1.5")], .transferred(to: [ec("1.1.1.303"), ec("1.1.1.304")]))
        // A DE line wrapped over two lines, with ", " and " and " separators.
        XCTAssertEqual(n.entries[ec("1.1.1.299")], .transferred(to: [ec("1.1.1.198"), ec("1.1.1.227"), ec("1.1.1.228")]))
        XCTAssertEqual(n.entries[ec("1.1.1.74")], .deleted)

        XCTAssertEqual(n.resolve(ec("1.1.1.1")), .unchanged)
        XCTAssertEqual(n.resolve(ec("6.9.9")), .unchanged, "not listed")
        XCTAssertEqual(n.resolve(ec("2.7.1.125")), .transferred(to: [ec("2.7.11.14")], chain: []))
        XCTAssertEqual(n.resolve(ec("3.1.1.98")), .transferred(to: [ec("3.1.1.101")], chain: [ec("3.1.1.99")]))
        XCTAssertEqual(n.resolve(ec("1.1.1.74")), .deleted)
        XCTAssertEqual(n.resolve(ec("6.3.5.97")), .deleted, "transferred to a deleted entry")
    }

    func testRealExcerpt() throws {
        let n = try EnzymeNomenclature(enzymeDatPath: try sharedData("quirks/enzyme-dat-excerpt.dat"))
        XCTAssertEqual(n.entries.count, 5)
        XCTAssertEqual(n.entries[ec("1.1.1.5")], .transferred(to: [ec("1.1.1.303"), ec("1.1.1.304")]))
        XCTAssertEqual(n.entries[ec("1.1.1.74")], .deleted)
        XCTAssertEqual(n.entries[ec("1.14.14.1")], .current(name: "unspecific monooxygenase"))
        XCTAssertEqual(n.entries[ec("1.1.1.2")], .current(name: "alcohol dehydrogenase (NADP(+))"))
    }

    func testLabelsRewrittenOrRejected() throws {
        let dir = try TempDir()
        let path = try dir.write("l.tsv", """
        Entry\tEC number
        P1\t1.1.1.1
        P2\t1.1.1.5
        P3\t1.1.1.74
        P4\t1.1.1.74; 2.7.1.125
        P5\t1.1.1.299
        P6\t3.1.1.98
        P7\t4.2.99.97
        P8\t6.3.5.97
        P9\t3.4.-.-
        P10\t2.7.1.125; 2.7.11.14
        """)
        let (records, rejected) = try LabelFileReader.read(path: path)
        XCTAssertEqual(records.count, 10)
        XCTAssertEqual(rejected, [])
        let n = try EnzymeNomenclature(enzymeDatPath: Self.fixture)

        let l1 = n.apply(to: records, file: path, level: 1)
        XCTAssertEqual(l1.records.map(\.id), ["P1", "P2", "P4", "P5", "P6", "P9", "P10"])
        XCTAssertEqual(l1.records.map { $0.ecNumbers.map(\.description) }, [
            ["1.1.1.1"], ["1.1.1.-"], ["2.7.11.14"], ["1.1.1.-"], ["3.1.1.101"], ["3.4.-.-"], ["2.7.11.14"],
        ])
        XCTAssertEqual(l1.records[0].notes, [])
        XCTAssertEqual(l1.records[1].notes, ["EC 1.1.1.5 was transferred to 1.1.1.303 and 1.1.1.304 (enzyme.dat); label rewritten to their common part 1.1.1.-"])
        XCTAssertEqual(l1.records[2].notes, ["EC 2.7.1.125 was transferred to 2.7.11.14 (enzyme.dat); label rewritten",
                                             "deleted EC 1.1.1.74 dropped (enzyme.dat); kept 2.7.11.14"])
        XCTAssertEqual(l1.records[4].notes, ["EC 3.1.1.98 was transferred to 3.1.1.101 via 3.1.1.99 (enzyme.dat); label rewritten"])
        XCTAssertEqual(l1.records[6].ecNumbers.count, 1, "the rewritten EC and the current one merge")
        XCTAssertEqual(l1.rejected.map(\.id), ["P3", "P7", "P8"])
        XCTAssertEqual(l1.rejected.map(\.line), [4, 8, 9])
        XCTAssertEqual(l1.rejected[0].reason, "deleted EC: 1.1.1.74 is a deleted entry in enzyme.dat and no current EC number remains; relabel the protein or leave it out")
        XCTAssertEqual(l1.rejected[1].reason, "transferred EC: 4.2.99.97 was transferred to 4.2.99.98 and 5.5.1.99 (enzyme.dat), which differ at level 1, so the label at level 1 cannot be decided; relabel the protein with its current EC number")
        XCTAssertEqual(l1.rejected[2].reason, "deleted EC: 6.3.5.97 is a deleted entry in enzyme.dat and no current EC number remains; relabel the protein or leave it out")

        // At level 4 the split entries cannot give a label either.
        let l4 = n.apply(to: records, file: path, level: 4)
        XCTAssertEqual(l4.records.map(\.id), ["P1", "P4", "P6", "P9", "P10"])
        XCTAssertEqual(l4.rejected.map(\.id), ["P2", "P3", "P5", "P7", "P8"])
        XCTAssertTrue(l4.rejected[0].reason.hasPrefix("transferred EC: 1.1.1.5 was transferred to 1.1.1.303 and 1.1.1.304 (enzyme.dat), which differ at level 4"), l4.rejected[0].reason)

        // The rewritten labels feed assembly: labels at level 1 from the current numbers.
        let set = DatasetAssembler.assemble(fasta: [], labels: [(path, l1.records.map { var r = $0; r.sequence = "MKV"; return r })], level: 1)
        XCTAssertEqual(set.accepted.map(\.label.description), ["1.-.-.-", "1.-.-.-", "2.-.-.-", "1.-.-.-", "3.-.-.-", "3.-.-.-", "2.-.-.-"])
        XCTAssertTrue(set.accepted[2].notes.contains("deleted EC 1.1.1.74 dropped (enzyme.dat); kept 2.7.11.14"))
    }

    func testMalformedFilesNameFileAndLine() throws {
        let dir = try TempDir()
        let badID = try dir.write("bad.dat", "ID   1.1.1.1\nDE   x.\n//\nID   1.1.x.1\nDE   y.\n//\n")
        XCTAssertThrowsError(try EnzymeNomenclature(enzymeDatPath: badID)) { error in
            XCTAssertEqual(error as? ProteinDataError, .malformedFile(path: badID,
                reason: "line 4: ID '1.1.x.1' is not a complete EC number (expected ExPASy enzyme.dat: 'ID   1.1.1.1', 'DE   ...', '//')"))
        }
        let badTarget = try dir.write("t.dat", "ID   1.1.1.5\nDE   Transferred entry: 1.1.1.303 and foo.\n//\n")
        XCTAssertThrowsError(try EnzymeNomenclature(enzymeDatPath: badTarget)) { error in
            XCTAssertEqual(error as? ProteinDataError, .malformedFile(path: badTarget,
                reason: "entry at line 1: transferred to 'foo', which is not an EC number (DE 'Transferred entry: 1.1.1.303 and foo.')"))
        }
        let fasta = try dir.write("x.fasta", ">P1\nMKV\n")
        XCTAssertThrowsError(try EnzymeNomenclature(enzymeDatPath: fasta)) { error in
            guard case .malformedFile(let p, let reason)? = error as? ProteinDataError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, fasta)
            XCTAssertTrue(reason.hasPrefix("no 'ID   <EC number>' line"), reason)
        }
        XCTAssertThrowsError(try EnzymeNomenclature(enzymeDatPath: dir.url.appendingPathComponent("missing.dat").path)) { error in
            guard case .fileUnreadable? = error as? ProteinDataError else { return XCTFail("\(error)") }
        }
    }
}
