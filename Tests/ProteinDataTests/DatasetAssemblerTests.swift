import Foundation
import XCTest
@testable import ProteinData

final class DatasetAssemblerTests: XCTestCase {
    func fa(_ id: String, _ seq: String, _ line: Int) -> FastaRecord {
        FastaRecord(id: id, description: "", sequence: seq, line: line)
    }
    func lab(_ id: String, _ ecs: [String], _ line: Int, seq: String? = nil) -> LabelRecord {
        LabelRecord(id: id, ecNumbers: ecs.map { ec($0) }, line: line, sequence: seq, rawLabel: ecs.joined(separator: "; "))
    }

    func testRules() {
        let fasta: [(file: String, records: [FastaRecord])] = [
            ("a.fa", [fa("ok", "MKT", 1), fa("nolabel", "MKT", 3), fa("cross", "MKT", 5),
                      fa("vague", "MKT", 7), fa("dupsame", "AAA", 9), fa("dupdiff", "CCC", 11),
                      fa("empty", "", 13), fa("both", "MKT", 15), fa("conflict", "MKT", 17)]),
            ("b.fa", [fa("dupsame", "AAA", 1), fa("dupdiff", "DDD", 3)]),
        ]
        let labels: [(file: String, records: [LabelRecord])] = [
            ("l.tsv", [lab("ok", ["1.1.1.1"], 2), lab("cross", ["1.1.1.1", "2.7.1.1"], 3),
                       lab("vague", ["1.-.-.-"], 4), lab("dupsame", ["3.4.21.4"], 5), lab("dupdiff", ["3.1.1.1"], 6),
                       lab("empty", ["4.1.1.1"], 7), lab("orphan", ["5.1.1.1"], 8),
                       lab("tableonly", ["6.1.1.1"], 9, seq: "GGG"), lab("both", ["7.1.1.1"], 10, seq: "MKT"),
                       lab("conflict", ["2.1.1.1"], 11, seq: "MKA")]),
        ]
        let (accepted, excluded, rejected) = DatasetAssembler.assemble(fasta: fasta, labels: labels, level: 2)
        XCTAssertEqual(accepted.map(\.id), ["ok", "dupsame", "both", "tableonly"])
        // The cross-class protein stays (excluded from training), and is rejected with the same reason.
        XCTAssertEqual(excluded, [ExcludedSequence(id: "cross", sequence: "MKT", ecNumbers: [ec("1.1.1.1"), ec("2.7.1.1")],
                                                   sourceFile: "a.fa", line: 5, notes: [],
                                                   reason: "ECs give different labels at level 2: 1.1.1.1; 2.7.1.1")])
        XCTAssertEqual(accepted.map(\.label.description), ["1.1.-.-", "3.4.-.-", "7.1.-.-", "6.1.-.-"])
        XCTAssertEqual(accepted.map(\.sourceFile), ["a.fa", "a.fa", "a.fa", "l.tsv"])
        XCTAssertEqual(accepted.map(\.line), [1, 9, 15, 9])
        XCTAssertEqual(accepted.map(\.sequence), ["MKT", "AAA", "MKT", "GGG"])
        XCTAssertEqual(accepted[1].notes, ["duplicate ID also at b.fa:1 with the identical sequence; kept once"])

        let byKey = Dictionary(grouping: rejected, by: { "\($0.file):\($0.line ?? 0) \($0.id ?? "")" })
            .mapValues { $0.map(\.reason) }
        XCTAssertEqual(byKey, [
            "a.fa:3 nolabel": ["no EC label"],
            "a.fa:5 cross": ["ECs give different labels at level 2: 1.1.1.1; 2.7.1.1"],
            "a.fa:7 vague": ["ECs unknown at level 2: 1.-.-.-"],
            "a.fa:11 dupdiff": ["duplicate ID with a different sequence (also at b.fa:3)"],
            "b.fa:3 dupdiff": ["duplicate ID with a different sequence (also at a.fa:11)"],
            "l.tsv:6 dupdiff": ["its sequences were rejected: duplicate ID with different sequences"],
            "a.fa:13 empty": ["empty sequence"],
            "l.tsv:8 orphan": ["label without sequence"],
            "a.fa:17 conflict": ["sequence differs from the one in the label table at l.tsv:11"],
            "l.tsv:11 conflict": ["table sequence differs from the FASTA record at a.fa:17"],
        ])
        XCTAssertEqual(rejected.count, 10)
    }

    func testLabelAtEachLevel() {
        let ecs = [ec("1.1.1.1"), ec("1.1.3.-")]
        XCTAssertEqual(DatasetAssembler.label(for: ecs, level: 1).label, ec("1"))
        XCTAssertEqual(DatasetAssembler.label(for: ecs, level: 2).label, ec("1.1"))
        XCTAssertEqual(DatasetAssembler.label(for: ecs, level: 3).reason,
                       "ECs give different labels at level 3: 1.1.1.1; 1.1.3.-")
        let mixed = DatasetAssembler.label(for: [ec("1.1.1.1"), ec("1.-.-.-")], level: 3)
        XCTAssertEqual(mixed.label, ec("1.1.1"))
        XCTAssertEqual(mixed.notes, ["less specific ECs ignored at level 3: 1.-.-.-"])
        XCTAssertEqual(DatasetAssembler.label(for: [ec("4.2.2.n1")], level: 4).label, ec("4.2.2.n1"))
        XCTAssertEqual(DatasetAssembler.label(for: [ec("1.1.1.-")], level: 4).reason, "ECs unknown at level 4: 1.1.1.-")
        XCTAssertEqual(DatasetAssembler.label(for: [], level: 1).reason, "no EC label")
    }

    func testDuplicateLabelRowsAndInvalidLevel() {
        let fasta: [(file: String, records: [FastaRecord])] = [("a.fa", [fa("A", "MKT", 1), fa("B", "MKT", 3)])]
        let labels: [(file: String, records: [LabelRecord])] = [
            ("x.tsv", [lab("A", ["1.1.1.1", "1.1.1.2"], 2), lab("B", ["2.1.1.1"], 3)]),
            ("y.tsv", [lab("A", ["1.1.1.2", "1.1.1.1"], 2), lab("B", ["3.1.1.1"], 3)]),
        ]
        let (accepted, excluded, rejected) = DatasetAssembler.assemble(fasta: fasta, labels: labels, level: 1)
        XCTAssertEqual(accepted.map(\.id), ["A"])
        XCTAssertEqual(excluded, [])
        XCTAssertEqual(accepted[0].notes, ["duplicate label row also at y.tsv:2 with the same ECs; kept once"])
        XCTAssertEqual(rejected.map(\.description), [
            "x.tsv:3 [B]: duplicate ID with different EC labels (also at y.tsv:3: '3.1.1.1')",
            "y.tsv:3 [B]: duplicate ID with different EC labels (also at x.tsv:3: '2.1.1.1')",
            "a.fa:3 [B]: its label rows were rejected: duplicate ID with conflicting labels",
        ])
        let bad = DatasetAssembler.assemble(fasta: fasta, labels: labels, level: 5)
        XCTAssertEqual(bad.accepted, [])
        XCTAssertEqual(bad.rejected.count, 6)
        XCTAssertEqual(bad.rejected[0].reason, "invalid EC level 5: pass 1...4 (1 = EC class)")
    }

    /// A label row whose FASTA record the reader rejected names that rejection, not
    /// "label without sequence"; only the first rejection of an ID is named.
    func testLabelForARejectedFastaRecordNamesTheCause() throws {
        let dir = try TempDir()
        let path = try dir.write("j.fasta", ">P1\nMKV\n>P2 has J\nMKJV\n>P2\nMK-V\n")
        let read = try FastaReader.read(path: path)
        XCTAssertEqual(read.records.map(\.id), ["P1"])
        let labels: [(file: String, records: [LabelRecord])] = [("l.tsv", [lab("P1", ["1.1.1.1"], 2), lab("P2", ["2.7.1.1"], 3), lab("P3", ["3.1.1.1"], 4)])]
        let set = DatasetAssembler.assemble(fasta: [(path, read.records)], labels: labels, fastaRejected: read.rejected, level: 1)
        XCTAssertEqual(set.accepted.map(\.id), ["P1"])
        XCTAssertEqual(read.rejected.map(\.description), [
            "\(path):3 [P2]: unknown residue 'J' at position 3; allowed are the 20 standard amino acids and X B Z U O",
            "\(path):5 [P2]: gap character '-' at position 3: aligned sequences are not supported; remove the gaps",
        ])
        XCTAssertEqual(set.rejected.map(\.description), [
            "l.tsv:3 [P2]: label for a sequence rejected in \(path) line 3: unknown residue 'J' at position 3; allowed are the 20 standard amino acids and X B Z U O",
            "l.tsv:4 [P3]: label without sequence",
        ])
        // Without the readers' rejections the old reason remains.
        let plain = DatasetAssembler.assemble(fasta: [(path, read.records)], labels: labels, level: 1)
        XCTAssertEqual(plain.rejected.map(\.reason), ["label without sequence", "label without sequence"])
    }
}
