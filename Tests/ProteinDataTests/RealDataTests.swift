import Foundation
import XCTest
@testable import ProteinData

/// Counts measured on the real files in the shared data directory (README facts where given).
final class RealDataTests: XCTestCase {
    func classCounts(_ items: [LabeledSequence]) -> [Int] {
        (1...7).map { c in items.filter { $0.label.ecClass == c }.count }
    }

    func testSampleTrainAndTest() throws {
        for (name, n, perClass) in [("sample-train-840", 840, 120), ("sample-test-280", 280, 40)] {
            let fastaPath = try sharedData("swissprot-ec/\(name).fasta")
            let labelPath = try sharedData("swissprot-ec/\(name).ec.tsv")
            let fasta = try FastaReader.read(path: fastaPath)
            let labels = try LabelFileReader.read(path: labelPath)
            XCTAssertEqual(fasta.records.count, n)
            XCTAssertEqual(fasta.rejected, [])
            XCTAssertEqual(labels.records.count, n)
            XCTAssertEqual(labels.rejected, [])
            XCTAssertTrue(labels.records.allSatisfy { $0.ecNumbers.count == 1 && $0.ecNumbers[0].isComplete })
            let lengths = fasta.records.map(\.sequence.count)
            XCTAssertGreaterThanOrEqual(lengths.min()!, 50)
            XCTAssertLessThanOrEqual(lengths.max()!, 1022)
            let set = DatasetAssembler.assemble(fasta: [(fastaPath, fasta.records)], labels: [(labelPath, labels.records)], level: 1)
            XCTAssertEqual(set.rejected, [])
            XCTAssertEqual(classCounts(set.accepted), Array(repeating: perClass, count: 7), name)
            // Every sequence encodes without cropping at the ESM-2 limit of 1026 tokens.
            let tok = Tokenizer(maxLength: 1026, cropPolicy: .reject)
            for s in set.accepted { XCTAssertEqual(try tok.encode(s.sequence).ids.count, s.sequence.count + 2) }
        }
    }

    func testSwissProt7757() throws {
        let fastaPath = try sharedData("swissprot-ec/swissprot-ec-7757.fasta")
        let ecPath = try sharedData("swissprot-ec/swissprot-ec-7757.ec.tsv")
        let combinedPath = try sharedData("swissprot-ec/swissprot-ec-7757.combined.tsv")
        let fasta = try FastaReader.read(path: fastaPath)
        let labels = try LabelFileReader.read(path: ecPath)
        let combined = try LabelFileReader.read(path: combinedPath)
        XCTAssertEqual(fasta.records.count, 7757)
        XCTAssertEqual(fasta.rejected, [])
        XCTAssertEqual(labels.records.count, 7757)
        XCTAssertEqual(labels.rejected, [])
        XCTAssertEqual(combined.records.count, 7757)
        XCTAssertEqual(combined.rejected, [])

        // README facts: lengths, non-standard residues, short sequences.
        let seqs = fasta.records.map(\.sequence)
        let lengths = seqs.map(\.utf8.count).sorted()
        XCTAssertEqual(lengths.first, 4)
        XCTAssertEqual(lengths[lengths.count / 2], 407)
        XCTAssertEqual(lengths.last, 1022)
        XCTAssertEqual(["X", "U", "O", "B"].map { l in seqs.filter { $0.contains(l) }.count }, [138, 12, 3, 2])
        XCTAssertEqual(lengths.filter { $0 < 30 }.count, 371)
        // The combined table carries the same sequences.
        let bySeq = Dictionary(uniqueKeysWithValues: fasta.records.map { ($0.id, $0.sequence) })
        XCTAssertTrue(combined.records.allSatisfy { bySeq[$0.id] == $0.sequence })

        // README facts: first-EC class counts, multi-EC rows, preliminary ECs.
        let firstClass = (1...7).map { c in labels.records.filter { $0.ecNumbers[0].ecClass == c }.count }
        XCTAssertEqual(firstClass, [1067, 3059, 2335, 545, 326, 241, 184])
        XCTAssertEqual(labels.records.filter { $0.ecNumbers.count > 1 }.count, 510)
        XCTAssertEqual(labels.records.filter { $0.ecNumbers.contains(where: \.isPreliminary) }.count, 63)
        XCTAssertEqual(labels.records.flatMap(\.ecNumbers).filter(\.isPreliminary).count, 68)
        XCTAssertEqual(labels.records.filter { Set($0.ecNumbers.map(\.ecClass)).count > 1 }.count, 172)

        // Assembly at each level: rows whose ECs disagree are rejected, the rest accepted.
        let expected = [1: 172, 2: 226, 3: 255, 4: 510]
        for level in 1...4 {
            let set = DatasetAssembler.assemble(fasta: [(fastaPath, fasta.records)], labels: [(ecPath, labels.records)], level: level)
            XCTAssertEqual(set.rejected.count, expected[level], "level \(level)")
            XCTAssertEqual(set.accepted.count + set.rejected.count, 7757)
            let kind = level == 1 ? "span several classes" : "give different labels"
            XCTAssertTrue(set.rejected.allSatisfy { $0.reason.hasPrefix("ECs \(kind) at level \(level): ") })
            // Every one of them is a usable sequence kept (excluded from training) with the same reason.
            XCTAssertEqual(set.excluded.count, expected[level], "level \(level)")
            XCTAssertEqual(set.excluded.map(\.reason), set.rejected.map(\.reason))
            XCTAssertEqual(set.excluded.map(\.id), set.rejected.map(\.id))
        }
        let level1 = DatasetAssembler.assemble(fasta: [(fastaPath, fasta.records)], labels: [(ecPath, labels.records)], level: 1)
        XCTAssertEqual(classCounts(level1.accepted), [1046, 3003, 2304, 502, 315, 231, 184])
        XCTAssertEqual(level1.rejected.first?.file, fastaPath)

        // The combined table alone gives the same dataset (sequences from the table).
        let fromTable = DatasetAssembler.assemble(fasta: [], labels: [(combinedPath, combined.records)], level: 1)
        XCTAssertEqual(fromTable.accepted.count, 7585)
        XCTAssertEqual(Set(fromTable.accepted.map(\.id)), Set(level1.accepted.map(\.id)))
        XCTAssertTrue(fromTable.accepted.allSatisfy { $0.sourceFile == combinedPath && $0.sequence == bySeq[$0.id] })
        // FASTA and combined table together agree, so nothing extra is rejected.
        let both = DatasetAssembler.assemble(fasta: [(fastaPath, fasta.records)], labels: [(combinedPath, combined.records)], level: 1)
        XCTAssertEqual(both.accepted.count, 7585)
        XCTAssertEqual(both.rejected.count, 172)
    }

    func testQuirkCSV() throws {
        let path = try sharedData("quirks/bom-crlf-comma-multi-ec.csv")
        let (records, rejected) = try LabelFileReader.read(path: path)
        XCTAssertEqual(records.count, 184)
        XCTAssertEqual(rejected, [])
        XCTAssertEqual(records.first?.id, "A0A165KQE5")
        XCTAssertEqual(records.first?.line, 2)
        XCTAssertEqual(records.last?.line, 185)
        XCTAssertTrue(records.allSatisfy { ($0.sequence?.count ?? 0) > 0 })
        XCTAssertEqual(records.filter { $0.ecNumbers.count > 1 }.count, 11)
        XCTAssertEqual(records.filter { $0.ecNumbers.contains { !$0.isComplete } }.count, 10)
        XCTAssertEqual(records.first { $0.id == "A0A0N7H357" }?.ecNumbers, [ec("3.2.1.B3")])
        XCTAssertEqual(records.first { $0.id == "A0A165IRU8" }?.ecNumbers, [ec("1.1.1.46"), ec("1.1.1.48")])
        let l1 = DatasetAssembler.assemble(fasta: [], labels: [(path, records)], level: 1)
        XCTAssertEqual(l1.accepted.count, 183)
        XCTAssertEqual(l1.rejected.map(\.id), ["Q92S13"])
        XCTAssertEqual(l1.rejected.first?.reason, "ECs span several classes at level 1: 4.1.2.19; 1.2.1.22")
        XCTAssertEqual(l1.excluded.map(\.id), ["Q92S13"])
        XCTAssertEqual(l1.excluded.first?.ecNumbers, [ec("4.1.2.19"), ec("1.2.1.22")])
        let l4 = DatasetAssembler.assemble(fasta: [], labels: [(path, records)], level: 4)
        XCTAssertEqual(l4.accepted.count, 163)
        XCTAssertEqual(l4.rejected.filter { $0.reason.hasPrefix("ECs give different labels at level 4: ") }.count, 11)
        XCTAssertEqual(l4.rejected.filter { $0.reason.hasPrefix("ECs unknown at level 4") }.count, 10)
    }

    func testRealQuirksTSV() throws {
        let path = try sharedData("quirks/real-quirks.tsv")
        let (records, rejected) = try LabelFileReader.read(path: path)
        XCTAssertEqual(records.count, 14)
        XCTAssertEqual(rejected, [])
        let byID = Dictionary(uniqueKeysWithValues: records.map { ($0.id, $0) })
        XCTAssertEqual(byID["Q9NQV7"]?.ecNumbers.count, 5)
        XCTAssertEqual(byID["A0A2L0VXR0"]?.ecNumbers, [ec("4.2.3.-"), ec("5.5.1.-")])
        XCTAssertEqual(byID["P44888"]?.ecNumbers, [ec("4.2.2.n1")])
        XCTAssertEqual(byID["P85346"]?.sequence?.count, 9)
        XCTAssertEqual(byID["3J9B-B"]?.sequence?.count, 440)
        XCTAssertEqual(byID["P97364"]?.sequence?.filter { $0 == "U" }.count, 1)
        XCTAssertEqual(byID["Q25998"]?.sequence, byID["Q7KQM1"]?.sequence)

        let l1 = DatasetAssembler.assemble(fasta: [], labels: [(path, records)], level: 1)
        XCTAssertEqual(l1.accepted.count, 12)
        XCTAssertEqual(Set(l1.rejected.map { $0.id! }), ["P18478", "A0A2L0VXR0"])
        XCTAssertEqual(Set(l1.excluded.map(\.id)), ["P18478", "A0A2L0VXR0"])
        XCTAssertEqual(l1.excluded.first { $0.id == "A0A2L0VXR0" }?.reason, "ECs span several classes at level 1: 4.2.3.-; 5.5.1.-")
        let l2 = DatasetAssembler.assemble(fasta: [], labels: [(path, records)], level: 2)
        XCTAssertEqual(l2.accepted.count, 11)
        XCTAssertEqual(l2.rejected.first { $0.id == "A0A2Z5TIQ0" }?.reason, "ECs unknown at level 2: 1.-.-.-")
        // The 5-EC row agrees down to level 3, not at level 4.
        let l3 = DatasetAssembler.assemble(fasta: [], labels: [(path, records)], level: 3)
        XCTAssertEqual(l3.accepted.first { $0.id == "Q9NQV7" }?.label, ec("2.1.1"))
        let l4 = DatasetAssembler.assemble(fasta: [], labels: [(path, records)], level: 4)
        XCTAssertNil(l4.accepted.first { $0.id == "Q9NQV7" })
        XCTAssertEqual(l4.accepted.first { $0.id == "A0A0N7H357" }?.label, ec("3.2.1.B3"))
    }

    func testEnzclass() throws {
        let names = try ECClassNames(enzclassPath: try sharedData("ec-names/enzclass.txt"))
        XCTAssertEqual(names.names.count, 399)
        XCTAssertEqual(names.name(for: ec("1.1.1.1")), "With NAD(+) or NADP(+) as acceptor")
        XCTAssertEqual(names.name(for: ec("1.1.98.1")), "With other, known, acceptors")
        XCTAssertEqual(names.name(for: ec("7")), "Translocases")
        XCTAssertEqual(names.name(for: ec("7.2.4.1")), "Linked to decarboxylation")
        XCTAssertEqual(names.name(for: ec("1.-.-.-")), "Oxidoreductases")
        for (c, n) in ECClassNames.builtinClassNames { XCTAssertEqual(names.name(for: ec("\(c)")), n) }
    }
}
