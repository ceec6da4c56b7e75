import ESM
import Foundation
import ProteinData
import Store
import XCTest
@testable import Pipeline

/// The planted-knowledge benchmark generator (issue 12): PROSITE patterns checked against
/// NSRegularExpression (an independent matcher: the pattern translated to a regex), and the
/// generated data checked against its own source sequences and motif table.
final class PlantedTests: XCTestCase {
    /// PROSITE pattern -> regular expression (`x` = `.`, `[AB]` stays, `x(n)` = `.{n}`).
    func regex(_ prosite: String) throws -> NSRegularExpression {
        let body = prosite.split(separator: "-").map { e -> String in
            if e == "x" { return "." }
            if e.hasPrefix("x(") { return ".{\(e.dropFirst(2).dropLast())}" }
            return String(e)
        }.joined()
        // A lookahead finds overlapping occurrences too.
        return try NSRegularExpression(pattern: "(?=\(body))")
    }

    func regexStarts(_ prosite: String, _ s: String) throws -> [Int] {
        try regex(prosite).matches(in: s, range: NSRange(s.startIndex..., in: s)).map(\.range.location)
    }

    func testPatternsMatchWhereARegularExpressionDoes() throws {
        var rng = SplitMix64(seed: 7)
        let alphabet = Array("ACDEFGHIKLMNPQRSTVWY")
        for text in PlantedDataset.classMotifs + PlantedDataset.decoyMotifs + ["A-x(2)-[ST]-C", "W"] {
            let p = try MotifPattern(text)
            // Random sequences over a small alphabet of the pattern's own residues, so matches occur.
            let own = Array(Set(text.filter { alphabet.contains($0) })) + ["A"]
            for _ in 0 ..< 200 {
                let s = String((0 ..< 40).map { _ in own[rng.nextIndex(below: own.count)] })
                XCTAssertEqual(p.occurrences(in: Array(s)), try regexStarts(text, s), "\(text) in \(s)")
            }
        }
        XCTAssertEqual(try MotifPattern("H-x-H-C-M-[YF]-W").description, "H-x-H-C-M-[FY]-W")
        XCTAssertEqual(try MotifPattern("A-x(2)-C").count, 4)
        for bad in ["", "B-C", "A-[]-C", "A-x(0)", "a-C", "A--C"] { XCTAssertThrowsError(try MotifPattern(bad), bad) }
    }

    func sourceRecords() throws -> [FastaRecord] {
        guard let data = EndToEndTests.dataDirectory() else { throw XCTSkip("real data not found: run data/fetch.sh --from ../shared/data or set KNEURON_DATA") }
        return try FastaReader.read(path: data.appendingPathComponent("sample-train-840.fasta").path).records
    }

    func testPlantedSequencesCarryExactlyTheirClassMotifAndDifferFromTheSourceOnlyThere() throws {
        let records = try sourceRecords()
        let source = Dictionary(records.map { ($0.id, $0.sequence) }) { a, _ in a }
        var recipe = PlantedDataset.Recipe()
        recipe.perClass = 20
        let d = try PlantedDataset(records: records, recipe: recipe)
        XCTAssertEqual(d.sequences.count, 100)
        XCTAssertEqual(Dictionary(grouping: d.sequences, by: \.label).mapValues(\.count), ["1.-.-.-": 20, "2.-.-.-": 20, "3.-.-.-": 20, "4.-.-.-": 20, "5.-.-.-": 20])
        XCTAssertEqual(Set(d.sequences.map(\.id)).count, 100, "each source sequence used once")
        XCTAssertEqual(d.sites.count, 100 * 3)
        for s in d.sequences {
            let full = Array(try XCTUnwrap(source[s.id]))
            XCTAssertEqual(s.residues.count, 100)
            XCTAssertTrue(s.sourceStart >= 1 && s.sourceStart - 1 + 100 <= full.count)
            let original = String(full[(s.sourceStart - 1) ..< (s.sourceStart - 1 + 100)])
            let mine = d.sites.filter { $0.sequenceID == s.id }
            XCTAssertEqual(mine.filter { $0.label != nil }.map(\.label), [s.label])
            XCTAssertEqual(mine.filter { $0.label == nil }.count, 2)
            let chars = Array(s.residues), orig = Array(original)
            var covered = Set<Int>()
            for site in mine {
                XCTAssertEqual(String(chars[(site.start - 1) ..< site.end]), site.residues)
                XCTAssertTrue(try regexStarts(site.pattern, s.residues).contains(site.start - 1), "\(site)")
                let range = Set((site.start - 1) ..< site.end)
                XCTAssertTrue(range.isDisjoint(with: covered), "sites overlap in \(s.id)")
                covered.formUnion(range)
            }
            // Outside the planted sites the residues are the source's.
            for i in chars.indices where !covered.contains(i) { XCTAssertEqual(chars[i], orig[i], "\(s.id) position \(i + 1)") }
            // Exactly its own class motif, no other class's (independent matcher).
            let k = Int(s.label.prefix(1))!
            for (j, m) in PlantedDataset.classMotifs.prefix(5).enumerated() {
                XCTAssertEqual(try regexStarts(m, s.residues).isEmpty, j + 1 != k, "\(s.id) class \(k), motif \(m)")
            }
        }
    }

    func testWrittenFilesAreReproducibleByteForByteAndTheSeedMatters() throws {
        guard let data = EndToEndTests.dataDirectory() else { throw XCTSkip("real data not found") }
        let fasta = data.appendingPathComponent("sample-train-840.fasta").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("planted-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var recipe = PlantedDataset.Recipe()
        recipe.perClass = 10
        let a = try PlantedDataset.write(fasta: [fasta], recipe: recipe, to: dir.appendingPathComponent("a").path)
        let b = try PlantedDataset.write(fasta: [fasta], recipe: recipe, to: dir.appendingPathComponent("b").path)
        recipe.seed = 2
        let c = try PlantedDataset.write(fasta: [fasta], recipe: recipe, to: dir.appendingPathComponent("c").path)
        XCTAssertEqual(a.files.map { ($0 as NSString).lastPathComponent }, ["planted.fasta", "planted.ec.tsv", "planted.motifs.tsv", "planted.json"])
        for i in a.files.indices {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a.files[i])), try Data(contentsOf: URL(fileURLWithPath: b.files[i])), a.files[i])
        }
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: a.files[0])), try Data(contentsOf: URL(fileURLWithPath: c.files[0])))
        // The FASTA and label files read back through kneuron's own readers, one label per record.
        let back = try FastaReader.read(path: a.files[0])
        XCTAssertEqual(back.records.map(\.sequence), a.dataset.sequences.map(\.residues))
        XCTAssertEqual(try LabelFileReader.read(path: a.files[1]).records.count, 50)
        XCTAssertEqual(try String(contentsOfFile: a.files[2], encoding: .utf8).split(separator: "\n").count, 1 + 50 * 3)
        // Too few sequences for the recipe is an error naming what is missing.
        recipe.perClass = 10_000
        XCTAssertThrowsError(try PlantedDataset.write(fasta: [fasta], recipe: recipe, to: dir.appendingPathComponent("d").path)) { e in
            XCTAssertTrue("\(e)".contains("needed"), "\(e)")
        }
    }

    /// Ingest with `inputs.planted_motifs`: the table is stored as written, the classes are named by
    /// their motifs, and a table that does not belong to the FASTA file is refused naming the line.
    func testIngestStoresThePlantedMotifsAndRefusesATableOfAnotherFile() throws {
        guard let data = EndToEndTests.dataDirectory() else { throw XCTSkip("real data not found") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("planted-ingest-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var recipe = PlantedDataset.Recipe()
        recipe.perClass = 8
        let w = try PlantedDataset.write(fasta: [data.appendingPathComponent("sample-train-840.fasta").path], recipe: recipe, to: dir.path)
        func ingest(motifs: String, db: String) throws -> RunDatabase {
            let spec = dir.appendingPathComponent("p.yaml").path
            try """
            name: p
            inputs: {fasta: [\(w.files[0])], labels: [\(w.files[1])], planted_motifs: \(motifs)}
            """.write(toFile: spec, atomically: true, encoding: .utf8)
            let database = try RunDatabase(path: dir.appendingPathComponent(db).path)
            let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: database, quiet: true)
            _ = try PipelineRunner(context: ctx).run([.ingest])
            return database
        }
        let db = try ingest(motifs: w.files[2], db: "ok.sqlite")
        let stored = try db.plantedMotifs()
        XCTAssertEqual(stored.count, 40 * 3)
        let expected = w.dataset.sites.map { PlantedMotifRecord(sequenceID: $0.sequenceID, start: $0.start, end: $0.end, residues: $0.residues,
                                                                pattern: $0.pattern, ecLabel: $0.label) }
        XCTAssertEqual(stored, expected.sorted { ($0.sequenceID, $0.start) < ($1.sequenceID, $1.start) })
        XCTAssertEqual(try db.classes().map(\.name), PlantedDataset.classMotifs.prefix(5).map { "planted motif \($0)" })
        XCTAssertEqual(try db.inputFiles().filter { $0.role == "planted_motifs" }.count, 1)
        // One residue of one class motif changed: the table no longer describes the FASTA file.
        var lines = try String(contentsOfFile: w.files[2], encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var f = lines[1].split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        f[3] = String(f[3].dropLast()) + (f[3].last == "A" ? "C" : "A")
        lines[1] = f.joined(separator: "\t")
        let bad = dir.appendingPathComponent("bad.tsv").path
        try lines.joined(separator: "\n").write(toFile: bad, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ingest(motifs: bad, db: "bad.sqlite")) { e in
            XCTAssertTrue("\(e)".contains("line 2") && "\(e)".contains("another FASTA file"), "\(e)")
        }
    }
}
