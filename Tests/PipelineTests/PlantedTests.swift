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

    /// A tiny planted run (12 sequences per class of 40 residues, one decoy; `tiny` model, two
    /// epochs) through every stage with the given `attribution` and `cards` keys (YAML flow maps),
    /// in its own temporary directory: the directory, spec path, database path, database and context.
    func plantedRun(_ name: String, attribution: String, cards: String) throws -> (URL, String, String, RunDatabase, RunContext) {
        let (dir, w) = try plantedFixture("planted-\(name)", perClass: 12, length: 40, decoys: 1)
        let spec = dir.appendingPathComponent("\(name).yaml").path
        try """
        name: \(name)
        inputs: {fasta: [\(w.files[0])], labels: [\(w.files[1])], planted_motifs: \(w.files[2])}
        split: {train: 0.6, select: 0.2, test: 0.2, seed: 1}
        model: {preset: tiny, pooling: mean, max_length: 48, crop: center, seed: 2}
        train: {epochs: 2, batch_size: 8, learning_rate: 0.002, seed: 1}
        attribution: \(attribution)
        selection: {retention_fractions: [0.5], random_seeds: [1, 2, 3]}
        evidence: {fractions: [0.5], directions: [retain], random_rankings: 4, bootstrap_resamples: 200, edit_factors: []}
        sanity: {model_randomization: false, label_randomization: false}
        cards: \(cards)
        """.write(toFile: spec, atomically: true, encoding: .utf8)
        let path = dir.appendingPathComponent("\(name).sqlite").path
        let database = try RunDatabase(path: path)
        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: database, quiet: true)
        _ = try PipelineRunner(context: ctx).run(Stage.allCases)
        return (dir, spec, path, database, ctx)
    }

    /// A whole planted run through the neurons stage: every stored selectivity equals an AUROC by
    /// pair counting of activations read back from the trained checkpoint (in the stage's batches),
    /// with the motif residues taken from `planted_motifs`; a recovery row's mean is the mean
    /// selectivity of the ranking's stored ranks 1 ... k.
    func testNeuronsStageSelectivityAndRecoveryAgreeWithARecomputation() throws {
        let (dir, spec, path, database, ctx) = try plantedRun("p",
            attribution: "{methods: [activation, integrated_gradients], modules: [query, intermediate], granularity: [neuron], targets: [true_class, per_class], steps: 4, shard_size: 4, max_sequences: 12}",
            cards: "{top: 4, examples: 6, top_sequences: 10, shard_size: 5}")
        defer { try? FileManager.default.removeItem(at: dir) }
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
        try checkCards(ctx, database: database, model: model, classes: classes, path: path)
        try checkSelectivityShards(spec: spec, path: path, layout: layout, database: database)
    }

    /// A weight ranking in the recovery table: its top k are the output units of its best-ranked
    /// weights, the first k distinct weight rows in rank order (recounted here from the stored
    /// ranks), and its mean selectivity is theirs; its cards are the same units.
    func testRecoveryOfAWeightRankingUsesTheOutputUnitsOfItsTopWeights() throws {
        let (dir, _, _, database, _) = try plantedRun("w",
            attribution: "{methods: [activation], modules: [query, intermediate], granularity: [weight], targets: [true_class], max_sequences: 12}",
            cards: "{top: 10, examples: 6, top_sequences: 10, shard_size: 8}")
        defer { try? FileManager.default.removeItem(at: dir) }
        let recovery = try database.plantedRecovery()
        XCTAssertEqual(recovery.map(\.ranking.granularity), ["weight", "weight"])
        let ranked = try database.query("SELECT layer, module, row FROM neuron_scores WHERE method = 'activation' AND granularity = 'weight' AND seed = 0 ORDER BY rank").rows
        var units: [[String]] = []
        for r in ranked.map({ $0.map { $0! } }) where !units.contains(r) { units.append(r); if units.count == 50 { break } }
        let selectivity = try database.motifSelectivity()
        func best(_ u: [String]) -> Double {
            selectivity.filter { "\($0.layer)" == u[0] && $0.module == u[1] && "\($0.unit)" == u[2] }.compactMap(\.auroc).max()!
        }
        for r in recovery {
            XCTAssertEqual(r.meanSelectivity, units.prefix(r.k).map(best).reduce(0, +) / Double(r.k), accuracy: 1e-12, "k = \(r.k)")
            XCTAssertTrue(r.pValue > 0 && r.pValue <= 1 && r.randomSD > 0, "\(r)")
        }
        XCTAssertEqual(try database.cardNeurons().map { ["\($0.neuron.layer)", $0.neuron.module, "\($0.neuron.unit)"] }, Array(units.prefix(10)))
        XCTAssertTrue(try String(contentsOf: dir.appendingPathComponent("w.artifacts/report.md"), encoding: .utf8).contains("| activation (weights) | true class | 10 | "))
    }

    /// The neurons stage in shards of neurons, killed and resumed: `kneuron run --force neurons`
    /// with `neurons.memory_mb` small enough for 10 neurons per shard, slowed per shard and killed
    /// with SIGKILL after at least two shards; then resumed with room for 7 per shard. The
    /// finished shards are kept, the rest is cut anew, the shards tile the layout, every
    /// selectivity and recovery row equals the one-shard run's, and the cards show the same examples.
    func checkSelectivityShards(spec: String, path: String, layout: ScoreLayout, database: RunDatabase) throws {
        guard let exe = EndToEndTests.executable() else { throw XCTSkip("kneuron executable not found next to the test bundle") }
        let tables = ["SELECT * FROM motif_selectivity ORDER BY 1, 2, 3, 4", "SELECT * FROM planted_recovery ORDER BY 1, 2, 3, 4",
                      // the cards are redone with shards of 5 sequences, not checkCards' last 16: activations differ in the last bits
                      "SELECT layer, module, unit, kind, rank, sequence_id, peak_position, window FROM neuron_examples ORDER BY 1, 2, 3, 4, 5"]
        let reference = try tables.map { try database.query($0).rows }
        XCTAssertEqual(try database.selectivityShards().map { [$0.first, $0.count] }, [[0, layout.count]], "one shard at the default 512 MiB")
        let tokens = try database.tokens()
        let residues = try database.sequenceIDs(split: "test").reduce(0) { $0 + tokens[$1]!.ids.count - 2 }
        func specFile(neuronsPerShard n: Int) throws -> String {
            let out = spec.replacingOccurrences(of: ".yaml", with: "-\(n).yaml")
            let mib = (Double(n) + 0.5) * 4 * Double(residues) / 1_048_576
            try (String(contentsOfFile: spec, encoding: .utf8) + "\nneurons: {memory_mb: \(mib)}\n").write(toFile: out, atomically: true, encoding: .utf8)
            return out
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["run", try specFile(neuronsPerShard: 10), "--db", path, "--force", "neurons", "--quiet"]
        p.environment = ProcessInfo.processInfo.environment.merging(["KNEURON_DEBUG_SHARD_DELAY_MS": "400"]) { $1 }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        var done = 0
        while p.isRunning && Date() < deadline {
            done = (try? RunDatabase(path: path, readOnly: true).selectivityShards().count) ?? 0
            if done >= 2 { break }
            usleep(20_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let killed = try RunDatabase(path: path, readOnly: true)
        let kept = try killed.selectivityShards()
        XCTAssertTrue(kept.count >= 2 && kept.count < (layout.count + 9) / 10, "killed after \(kept.count) shards")
        XCTAssertTrue(kept.allSatisfy { $0.count == 10 }, "\(kept.map(\.count))")
        XCTAssertNil(try killed.stage("neurons"))
        let partial = try RunReport.recovery(db: killed, classes: try killed.classes(), label: { $0 })
        XCTAssertTrue(partial.contains("Not finished: the neurons stage has the selectivity of \(kept.count * 10) neurons so far"), partial)
        let resumed = try RunDatabase(path: path)
        let ctx = try RunContext(spec: try PipelineSpec.load(path: try specFile(neuronsPerShard: 7)), specPath: spec, db: resumed, quiet: true)
        _ = try PipelineRunner(context: ctx).run(Stage.allCases)
        let shards = try resumed.selectivityShards()
        XCTAssertEqual(Array(shards.prefix(kept.count)).map { [$0.first, $0.count] }, kept.map { [$0.first, $0.count] }, "finished shards kept")
        XCTAssertTrue(shards.dropFirst(kept.count).allSatisfy { $0.count <= 7 } && shards.count > kept.count)
        XCTAssertEqual(shards.map(\.first), shards.indices.map { i in shards[..<i].map(\.count).reduce(0, +) }, "the shards tile the layout")
        XCTAssertEqual(shards.map(\.count).reduce(0, +), layout.count)
        for (sql, rows) in zip(tables, reference) {
            XCTAssertTrue(try resumed.query(sql).rows == rows, sql)
        }
    }

    /// The cards stage of the planted run against a recomputation from the checkpoint: each
    /// ranking's cards are its stored ranks 1 ... 4; every card neuron's peaks (the stage's shards
    /// of 5 train sequences, one batch each) give the stored top and quantile examples, windows
    /// and positions; the planted motif at each peak is the one `planted_motifs` lists; per-class
    /// AUROCs equal pair counting over the peaks; enrichment counts equal a count over the top 10
    /// sequences' residues; `kneuron neuron` prints the card and its JSON.
    func checkCards(_ ctx: RunContext, database: RunDatabase, model: ESMClassifier, classes: [ClassRecord], path: String) throws {
        let list = try database.cardNeurons()
        XCTAssertEqual(list.count, 2 * (1 + classes.count) * 4)
        for id in Set(list.map(\.ranking)) {
            let top = try database.query("SELECT layer, module, row FROM neuron_scores WHERE method = '\(id.method)' AND granularity = 'neuron' AND target_class = \(id.targetClass) AND seed = 0 AND rank <= 4 ORDER BY rank").rows
            XCTAssertEqual(list.filter { $0.ranking == id }.sorted { $0.cardRank < $1.cardRank }.map { ["\($0.neuron.layer)", $0.neuron.module, "\($0.neuron.unit)"] }, top.map { $0.map { $0! } })
        }
        let ids = try database.sequenceIDs(split: "train")
        let tokens = try database.tokens()
        let records = Dictionary(uniqueKeysWithValues: try database.sequences().map { ($0.id, $0) })
        let motifs = try database.plantedMotifs()
        let classOf = Dictionary(uniqueKeysWithValues: classes.map { ($0.ecLabel, $0.classIndex) })
        var checked = 0
        /// A neuron's peak on every train sequence from the checkpoint (the stage's shards of 5, one
        /// batch each), ties snapped, and the sequences in card order.
        func recompute(_ key: NeuronKey) -> (peak: [(value: Float, residue: Int)], order: [Int]) {
            let site = ModuleSite(layer: key.layer, module: LinearModule(rawValue: key.module)!)
            var peak: [(value: Float, residue: Int)] = []
            for start in stride(from: 0, to: ids.count, by: 5) {
                let chunk = ids[start ..< min(start + 5, ids.count)].map { tokens[$0]! }
                let batch = TokenBatch(sequences: chunk.map(\.ids), padTokenId: 1)
                _ = model.forward(batch, hooks: ForwardHooks(capture: [site]))
                let y = model.output(at: site), rows = site.module.outFeatures(model.config)
                for (b, t) in chunk.enumerated() {
                    let v = (0 ..< t.ids.count - 2).map { y[(b * batch.length + $0 + 1) * rows + key.unit] }
                    let m = v.max()!
                    peak.append((m, v.firstIndex { $0 >= m - 1e-5 * max(1, abs(m)) }!))   // the first within the tie tolerance
                }
            }
            let snapped = NeuronCards.snapTies(peak.map(\.value))
            for i in peak.indices { peak[i].value = snapped[i] }
            // Ties (equal snapped peaks) in the order of the IDs' FNV-1a hashes.
            let hash = ids.map(NeuronCards.fnv1a)
            let order = peak.indices.sorted { peak[$0].value != peak[$1].value ? peak[$0].value > peak[$1].value : (hash[$0], $0) < (hash[$1], $1) }
            return (peak, order)
        }
        /// The planted motif at residue `p` (0-based) of train sequence `s`.
        func motif(_ s: Int, _ p: Int) -> PlantedMotifRecord? { motifs.first { $0.sequenceID == ids[s] && $0.start <= p + 1 && p + 1 <= $0.end } }
        for key in Set(list.map(\.neuron)).sorted() {
            let card = try XCTUnwrap(try database.neuronCard(key))
            let (peak, order) = recompute(key)
            let tops = card.examples.filter { $0.kind == "top" }
            XCTAssertEqual(tops.map(\.sequenceID), order.prefix(6).map { ids[$0] }, "\(key)")
            for (e, s) in zip(tops, order) {
                let t = tokens[ids[s]]!, residues = Array(records[ids[s]]!.sequence)
                let p = t.residueStart + peak[s].residue
                XCTAssertEqual(e.activation, Double(peak[s].value))
                XCTAssertEqual(e.peakPosition, p + 1)
                XCTAssertEqual(e.window, String(residues[max(0, p - 7) ..< min(residues.count, p + 8)]))
                let m = motif(s, p)
                XCTAssertEqual(e.motifPattern, m?.pattern)
                XCTAssertEqual(e.motifIsDecoy, m.map { $0.ecLabel == nil })
            }
            let ascending = Array(order.reversed())
            for e in card.examples where e.kind == "quantile" {
                XCTAssertEqual(e.sequenceID, ids[ascending[Int((e.quantile! * Double(ids.count - 1)).rounded(.toNearestOrEven))]])
            }
            for c in card.classes {
                let label = ids.map { classOf[records[$0]!.ecLabel]! == c.classIndex }
                var wins = 0.0, pairs = 0.0
                for i in peak.indices where label[i] { for j in peak.indices where !label[j] { pairs += 1; wins += peak[i].value > peak[j].value ? 1 : peak[i].value == peak[j].value ? 0.5 : 0 } }
                XCTAssertEqual(c.auroc!, wins / pairs, accuracy: 1e-12)
                XCTAssertEqual(c.topCount, order.prefix(10).filter { label[$0] }.count)
            }
            for r in card.enrichment where r.offset == 0 || r.offset == 2 {
                let at = order.prefix(10).compactMap { s -> Character? in
                    let residues = Array(records[ids[s]]!.sequence), j = tokens[ids[s]]!.residueStart + peak[s].residue + r.offset
                    return j >= 0 && j < residues.count ? residues[j] : nil
                }
                XCTAssertEqual(r.count, at.filter { String($0) == r.residue }.count, "\(key) offset \(r.offset) \(r.residue)")
            }
            XCTAssertEqual(card.positionBins.reduce(0, +), 10)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 8)
        // The report's card section: the true-class integrated-gradients ranking's share of top windows peaking in a class motif.
        let report = try String(contentsOf: URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("artifacts").appendingPathComponent("report.md"), encoding: .utf8)
        XCTAssertTrue(report.contains("## What the top neurons respond to (neuron cards)") && report.contains("Do the cards find the planted motifs?"))
        var inMotif = 0, windows = 0
        for r in list where r.ranking.method == "integrated_gradients" && r.ranking.targetClass == -1 {
            let tops = try XCTUnwrap(try database.neuronCard(r.neuron)).examples.filter { $0.kind == "top" }
            windows += tops.count
            inMotif += tops.filter { $0.motifIsDecoy == false }.count
        }
        XCTAssertTrue(report.contains("| integrated gradients | 4 | \(String(format: "%.0f", 100 * Double(inMotif) / Double(windows)))% | "), report)
        // The random-neuron control: every linear map's sample (100 of its neurons, or all), each control neuron's top
        // windows recomputed from the checkpoint, and the test's null mean against its expectation from the pools.
        let config = model.config
        let controls = try database.query("SELECT layer, module, unit, n_windows, class_motif_windows, decoy_windows FROM card_controls ORDER BY 1, 2, 3").rows
            .map { r in (key: NeuronKey(layer: Int(r[0]!)!, module: r[1]!, unit: Int(r[2]!)!), windows: Int(r[3]!)!, inClass: Int(r[4]!)!, decoy: Int(r[5]!)!) }
        for m in LinearModule.allCases {
            XCTAssertEqual(controls.filter { $0.key.module == m.rawValue }.count, min(100, config.numHiddenLayers * m.outFeatures(config)), "\(m)")
        }
        for c in stride(from: 0, to: controls.count, by: 7).map({ controls[$0] }) {
            let (peak, order) = recompute(c.key)
            let found = order.prefix(6).map { motif($0, tokens[ids[$0]]!.residueStart + peak[$0].residue) }
            XCTAssertEqual([c.windows, c.inClass, c.decoy], [6, found.filter { $0?.ecLabel != nil }.count, found.filter { $0 != nil && $0!.ecLabel == nil }.count], "\(c.key)")
        }
        let test = try XCTUnwrap(try database.cardMotifTests().first { $0.ranking.method == "integrated_gradients" && $0.ranking.targetClass == -1 && $0.motif == "class" })
        XCTAssertEqual(test.share, Double(inMotif) / Double(windows), accuracy: 1e-12)
        var expected = 0.0
        for (m, n) in Dictionary(grouping: list.filter { $0.ranking == test.ranking }, by: \.neuron.module).mapValues(\.count) {
            let pool = controls.filter { $0.key.module == m }
            expected += Double(n) * pool.reduce(0) { $0 + Double($1.inClass) / Double($1.windows) } / Double(pool.count)
        }
        expected /= Double(test.nNeurons)
        XCTAssertEqual(test.randomMean, expected, accuracy: 4 * test.randomSD / Double(test.nRandom).squareRoot() + 1e-12, "\(test)")
        XCTAssertTrue(test.pValue >= 1.0 / 1001 && test.pValue <= 1 && test.nRandom == 1000, "\(test)")
        XCTAssertEqual(try database.cardMotifTests().filter { $0.motif == "own_class" }.count, 2 * classes.count, "own_class for per-class rankings only")
        // Other shards (16 sequences, batches of 8 instead of 5): the same cards (near-equal peaks are ties).
        let tables = ["SELECT * FROM neuron_examples ORDER BY 1, 2, 3, 4, 5", "SELECT * FROM neuron_enrichment ORDER BY 1, 2, 3, 4, 5",
                      "SELECT * FROM neuron_classes ORDER BY 1, 2, 3, 4", "SELECT * FROM neuron_positions ORDER BY 1, 2, 3, 4",
                      "SELECT layer, module, unit, n_top, peak_max, best_class, best_auroc FROM neuron_profiles ORDER BY 1, 2, 3"]
        let before = try tables.map { try database.query($0).rows }
        let respec = try String(contentsOfFile: ctx.specPath, encoding: .utf8).replacingOccurrences(of: "shard_size: 5}", with: "shard_size: 16}")
        let other = try RunContext(spec: try PipelineSpec.parse(yaml: respec), specPath: ctx.specPath, db: database, quiet: true)
        try PipelineRunner(context: other).force(.cards)
        _ = try PipelineRunner(context: other).run(Stage.allCases)
        XCTAssertEqual(try database.query("SELECT COUNT(*) FROM card_shards").rows, [["\((ids.count + 15) / 16)"]])
        // Activations themselves differ in the last bits between batch shapes: numbers compared to 1e-5 relative, the rest exactly.
        func same(_ a: String?, _ b: String?) -> Bool {
            guard let a, let b, a.contains("."), let x = Double(a), let y = Double(b) else { return a == b }
            return abs(x - y) <= 1e-5 * max(1, abs(y))
        }
        for (sql, rows) in zip(tables, before) {
            let after = try database.query(sql).rows
            XCTAssertEqual(after.count, rows.count, sql)
            for (a, b) in zip(after, rows) where a.count != b.count || !zip(a, b).allSatisfy(same) { XCTFail("\(sql): \(b) -> \(a)"); break }
        }
        // The command: a card in the terminal and as JSON, and a clear refusal for a neuron without one.
        guard let exe = EndToEndTests.executable() else { return }
        let k = list[0].neuron
        let text = try runProcess(exe, ["neuron", "--db", path, "--layer", "\(k.layer)", "--module", k.module, "--unit", "\(k.unit)"])
        XCTAssertEqual(text.status, 0, text.err)
        XCTAssertTrue(text.out.hasPrefix("layer \(k.layer) \(k.module) unit \(k.unit): card over \(ids.count) train sequences"), text.out)
        XCTAssertTrue(text.out.contains("top-activating sequences") && text.out.contains("residue enrichment"), text.out)
        let json = try runProcess(exe, ["neuron", "--db", path, "--layer", "\(k.layer)", "--module", k.module, "--unit", "\(k.unit)", "--format", "json"])
        struct Decoded: Decodable { struct Card: Decodable { let examples: [[String: AnyCodable]]; let n_sequences: Int }; let card: Card }
        let decoded = try JSONDecoder().decode(Decoded.self, from: Data(json.out.utf8))
        XCTAssertEqual(decoded.card.n_sequences, ids.count)
        XCTAssertEqual(decoded.card.examples.count, 6 + 5)
        let none = try runProcess(exe, ["neuron", "--db", path, "--layer", "0", "--module", "output", "--unit", "9999"])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.err.contains("has no card") && none.err.contains("lists them"), none.err)
    }
}

/// Any JSON value (for decoding a card's examples without naming every field).
struct AnyCodable: Decodable {
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { return }
        if (try? c.decode(Double.self)) != nil { return }
        if (try? c.decode(String.self)) != nil { return }
        _ = try c.decode(Bool.self)
    }
}
