import Attribution
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
        // Out-of-range options are errors before any work; an output file that is an input is refused.
        var bad = PlantedDataset.Recipe()
        bad.classes = -1
        XCTAssertThrowsError(try PlantedDataset.write(fasta: [fasta], recipe: bad, to: dir.appendingPathComponent("e").path))
        bad = PlantedDataset.Recipe(); bad.perClass = Int.max
        XCTAssertThrowsError(try PlantedDataset.write(fasta: [fasta], recipe: bad, to: dir.appendingPathComponent("e").path))
        XCTAssertThrowsError(try PlantedDataset.write(fasta: [a.files[0]], recipe: recipe, to: dir.appendingPathComponent("a").path)) { e in
            XCTAssertTrue("\(e)".contains("would be overwritten"), "\(e)")
        }
        // Too few sequences for the recipe is an error naming what is missing.
        recipe.perClass = 10_000
        XCTAssertThrowsError(try PlantedDataset.write(fasta: [fasta], recipe: recipe, to: dir.appendingPathComponent("d").path)) { e in
            XCTAssertTrue("\(e)".contains("needed"), "\(e)")
        }
    }

    /// A planted benchmark from the shared data's 840 training sequences in a fresh temporary
    /// directory (the caller removes it), with the recipe's defaults but for the given sizes.
    func plantedFixture(_ name: String, perClass: Int, length: Int = 100, decoys: Int = 2) throws -> (URL, PlantedDataset.Written) {
        guard let data = EndToEndTests.dataDirectory() else { throw XCTSkip("real data not found") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        var recipe = PlantedDataset.Recipe()
        recipe.perClass = perClass; recipe.length = length; recipe.decoys = decoys
        return (dir, try PlantedDataset.write(fasta: [data.appendingPathComponent("sample-train-840.fasta").path], recipe: recipe, to: dir.path))
    }

    /// Ingest with `inputs.planted_motifs`: the table is stored as written, the classes are named by
    /// their motifs, and a table that does not belong to the FASTA file is refused naming the line.
    func testIngestStoresThePlantedMotifsAndRefusesATableOfAnotherFile() throws {
        let (dir, w) = try plantedFixture("planted-ingest", perClass: 8)
        defer { try? FileManager.default.removeItem(at: dir) }
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
        // CRLF line ends and a trailing blank line are read as the same table.
        let crlf = dir.appendingPathComponent("crlf.tsv").path
        try (try String(contentsOfFile: w.files[2], encoding: .utf8)).replacingOccurrences(of: "\n", with: "\r\n").appending("\r\n")
            .write(toFile: crlf, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ingest(motifs: crlf, db: "crlf.sqlite").plantedMotifs().count, 40 * 3)
        // A repeated row and another class's motif are refused naming the line.
        let rows = try String(contentsOfFile: w.files[2], encoding: .utf8).split(separator: "\n").map(String.init)
        let repeated = dir.appendingPathComponent("repeated.tsv").path
        try (rows + [rows[1]]).joined(separator: "\n").write(toFile: repeated, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ingest(motifs: repeated, db: "repeated.sqlite")) { e in
            XCTAssertTrue("\(e)".contains("line \(rows.count + 1)") && "\(e)".contains("overlaps"), "\(e)")
        }
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

    /// A whole planted run through the neurons stage: every stored selectivity equals an AUROC by
    /// pair counting of activations read back from the trained checkpoint (in the stage's batches),
    /// with the motif residues taken from `planted_motifs`; a recovery row's mean is the mean
    /// selectivity of the ranking's stored ranks 1 ... k.
    func testNeuronsStageSelectivityAndRecoveryAgreeWithARecomputation() throws {
        let (dir, w) = try plantedFixture("planted-run", perClass: 12, length: 40, decoys: 1)
        defer { try? FileManager.default.removeItem(at: dir) }
        let spec = dir.appendingPathComponent("p.yaml").path
        try """
        name: p
        inputs: {fasta: [\(w.files[0])], labels: [\(w.files[1])], planted_motifs: \(w.files[2])}
        split: {train: 0.6, select: 0.2, test: 0.2, seed: 1}
        model: {preset: tiny, pooling: mean, max_length: 48, crop: center, seed: 2}
        train: {epochs: 2, batch_size: 8, learning_rate: 0.002, seed: 1}
        attribution: {methods: [activation, integrated_gradients], modules: [query, intermediate], granularity: [neuron], targets: [true_class, per_class], steps: 4, shard_size: 4, max_sequences: 12}
        selection: {retention_fractions: [0.5], random_seeds: [1, 2, 3]}
        evidence: {fractions: [0.5], directions: [retain], random_rankings: 4, bootstrap_resamples: 200, edit_factors: []}
        sanity: {model_randomization: false, label_randomization: false}
        """.write(toFile: spec, atomically: true, encoding: .utf8)
        let path = dir.appendingPathComponent("p.sqlite").path
        let database = try RunDatabase(path: path)
        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: database, quiet: true)
        _ = try PipelineRunner(context: ctx).run(Stage.allCases)
        let stored = try database.motifSelectivity()
        let classes = try database.classes()
        let layout = try ScoreLayout(config: try ESMConfig.preset("tiny", numLabels: 5), modules: LinearModule.allCases, granularity: .neuron)
        XCTAssertEqual(stored.count, layout.count * classes.count)
        // Recompute from the checkpoint in the stage's batches (train.batch_size 8, test split order), reading
        // each sequence's rows out of the padded outputs: the same floats, so ties fall the same way.
        let model = try ModelStore.finalModel(ctx, stage: "test")
        let tokens = try database.tokens()
        let motifs = try database.plantedMotifs().filter { $0.ecLabel != nil }
        let classOf = Dictionary(uniqueKeysWithValues: classes.map { ($0.ecLabel, $0.classIndex) })
        var acts = [[Float]](repeating: [], count: layout.count), labels: [Int] = []
        let ids = try database.sequenceIDs(split: "test")
        for chunkStart in stride(from: 0, to: ids.count, by: 8) {
            let chunk = Array(ids[chunkStart ..< min(chunkStart + 8, ids.count)]).map { tokens[$0]! }
            let batch = TokenBatch(sequences: chunk.map(\.ids), padTokenId: 1)
            _ = model.forward(batch, hooks: ForwardHooks(capture: Set(layout.sites)))
            for (b, t) in chunk.enumerated() {
                for block in layout.blocks {
                    let y = model.output(at: block.site)
                    for r in 0 ..< t.ids.count - 2 { for i in 0 ..< block.rows { acts[block.offset + i].append(y[(b * batch.length + r + 1) * block.rows + i]) } }
                }
                var group = [Int](repeating: -1, count: t.ids.count - 2)
                for m in motifs where m.sequenceID == t.sequenceID {
                    for p in (m.start - 1) ..< m.end where p - t.residueStart >= 0 && p - t.residueStart < group.count { group[p - t.residueStart] = classOf[m.ecLabel!]! }
                }
                labels += group
            }
        }
        var checked = 0
        for block in layout.blocks {
            for u in stride(from: 0, to: block.rows, by: 5) {
                for c in classes {
                    let a = acts[block.offset + u], pos = labels.map { $0 == c.classIndex }
                    var wins = 0.0, pairs = 0.0
                    for i in a.indices where pos[i] { for j in a.indices where !pos[j] { pairs += 1; wins += a[i] > a[j] ? 1 : a[i] == a[j] ? 0.5 : 0 } }
                    let row = stored.first { $0.layer == block.site.layer && $0.module == block.site.module.rawValue && $0.unit == u && $0.classIndex == c.classIndex }!
                    XCTAssertEqual(row.auroc!, wins / pairs, accuracy: 1e-12, "\(block.site) unit \(u) class \(c.ecLabel)")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 50)
        // A recovery row: the mean selectivity of ranks 1 ... k of the stored ranking.
        let recovery = try database.plantedRecovery()
        XCTAssertEqual(Set(recovery.map(\.ranking)).count, 2 * (1 + classes.count))
        let r = try XCTUnwrap(recovery.first { $0.ranking.method == "integrated_gradients" && $0.ranking.targetClass == -1 && $0.k == 10 })
        let top = try database.query("SELECT layer, module, row FROM neuron_scores WHERE method = 'integrated_gradients' AND granularity = 'neuron' AND target_class = -1 AND seed = 0 AND rank <= 10").rows
        XCTAssertEqual(top.count, 10)
        let best = top.map { t in stored.filter { "\($0.layer)" == t[0] && $0.module == t[1] && "\($0.unit)" == t[2] }.compactMap(\.auroc).max()! }
        XCTAssertEqual(r.meanSelectivity, best.reduce(0, +) / 10, accuracy: 1e-12)
        XCTAssertTrue(r.pValue > 0 && r.pValue <= 1 && r.randomSD > 0, "\(r)")
        XCTAssertTrue(try String(contentsOf: dir.appendingPathComponent("p.artifacts/report.md"), encoding: .utf8).contains("## Does a ranking find the planted knowledge?"))
    }
}
