import Foundation
import GRDB
import XCTest
@testable import Store

/// The paper's q/k/v layout as the pipeline builds it (`ScoreLayout.paper(...).stored`):
/// layers x (query, key, value) blocks of rows x cols. The store itself knows no module order.
let qkv = ["query", "key", "value"]
func qkvLayout(layers: Int, rows: Int, cols: Int) -> ScoreSetLayout {
    var blocks: [ScoreSetLayout.Block] = []
    for l in 0 ..< layers { for m in qkv { blocks.append(.init(layer: l, module: m, rows: rows, cols: cols, offset: blocks.count * rows * cols)) } }
    return ScoreSetLayout(modules: qkv, layers: layers, blocks: blocks)
}

final class RunDatabaseTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kneuron-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func open() throws -> RunDatabase { try RunDatabase(path: dir.appendingPathComponent("run.sqlite").path) }

    func ledger(_ stage: String) -> StageRecord { StageRecord(stage: stage, contentKey: "\(stage)@1:abc", rowsWritten: 1, seconds: 0.5) }

    func ingestSample(_ db: RunDatabase) throws {
        try db.commitIngest(
            files: [InputFileRecord(path: "a.fasta", role: "fasta", sizeBytes: 10, sha256: "00")],
            classes: [ClassRecord(classIndex: 0, ecLabel: "1.-.-.-", name: "Oxidoreductases"),
                      ClassRecord(classIndex: 1, ecLabel: "3.-.-.-", name: "Hydrolases")],
            sequences: [SequenceRecord(id: "P1", sequence: "MKV", ecLabel: "1.-.-.-", ecNumbers: ["1.1.1.1", "1.2.-.-"], sourceFile: "a.fasta", sourceLine: 1, notes: ""),
                        SequenceRecord(id: "P2", sequence: "MAAL", ecLabel: "3.-.-.-", ecNumbers: ["3.4.21.n1"], sourceFile: "a.fasta", sourceLine: 3, notes: "trailing * stripped")],
            rejected: [RejectedRow(file: "a.fasta", line: 5, recordID: "P3", reason: "no EC label")],
            ledger: ledger("ingest"))
    }

    /// Migration 0014 rebuilds `knowledge_edits` with `log_odds_change` (the old rows, whose
    /// control and p-value were on the relative change, are gone) and asks the evidence stage to
    /// run again, keeping its finished curve units: the stage's key has not changed, so only the
    /// edits and the tests are recomputed.
    func testMigration0014RebuildsTheEditsAndKeepsTheCurveUnits() throws {
        let path = try oldDatabase("v13.sqlite", migrationsBefore: "0014") { db in
            try db.execute(sql: """
                INSERT INTO knowledge_edits VALUES ('activation', 'neuron', 0, 0, 0.0, 'class', 'query', 10, 5, 0.2, 0.1, -0.5, 0.2, -0.1, 0.1, 100, 0.02)
                """)
            try db.execute(sql: "INSERT INTO evidence_units (method, granularity, target_class, seed, content_key, seconds) VALUES ('activation', 'neuron', -1, 0, 'k', 1.5)")
            for stage in ["split", "evidence", "sanity", "report"] {
                try db.execute(sql: "INSERT INTO stages (stage, content_key, rows_written, seconds, finished_at) VALUES (?, 'k', 1, 0.1, '2026-01-01')", arguments: [stage])
            }
        }
        let db = try RunDatabase(path: path)
        XCTAssertEqual(try db.stages().map(\.stage).sorted(), ["sanity", "split"])
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM knowledge_edits").rows, [["0"]])
        XCTAssertEqual(try db.query("SELECT method, content_key FROM evidence_units").rows, [["activation", "k"]])
        let edit = KnowledgeEditRecord(ranking: RankingID(method: "activation", granularity: "neuron", targetClass: 0), factor: 0, sequences: "class",
                                       modules: "query", nNeurons: 10, nSequences: 5, pBefore: 0.2, pAfter: 0.1, logOddsChange: -0.81,
                                       relativeChange: -0.5, predictionChanged: 0.2, randomMean: -0.1, randomSD: 0.05, nRandom: 100, pValue: 0.0099)
        try db.replaceKnowledgeEdits([edit])
        XCTAssertEqual(try db.knowledgeEdits(), [edit])
        XCTAssertEqual(try db.query("SELECT log_odds_change, relative_change, random_mean FROM knowledge_edits").rows, [["-0.81", "-0.5", "-0.1"]])
    }

    /// Migration 0016 asks a planted run (planted_motifs not empty) to redo its cards (the
    /// control is new there) and keeps every other run's cards and card shards; every run writes
    /// its report again.
    func testMigration0016RedoesCardsOnlyOnPlantedRuns() throws {
        for planted in [false, true] {
            let path = try oldDatabase("v15-\(planted).sqlite", migrationsBefore: "0016") { db in
                if planted {
                    try db.execute(sql: "INSERT INTO classes VALUES (0, '1.-.-.-', 'Oxidoreductases')")
                    try db.execute(sql: "INSERT INTO sequences (id, sequence, length, ec_label, source_file, source_line) VALUES ('P1', 'WCWCWK', 6, '1.-.-.-', 'a.fasta', 1)")
                    try db.execute(sql: """
                        INSERT INTO planted_motifs (sequence_id, start, "end", residues, pattern, ec_label, decoy) VALUES ('P1', 1, 5, 'WCWCW', 'W-C-W-C-W', '1.-.-.-', 0)
                        """)
                }
                try db.execute(sql: "INSERT INTO card_shards (shard_index, content_key, n_sequences, peaks, seconds) VALUES (0, 'k', 1, x'0000000000000000', 0.1)")
                for stage in ["neurons", "cards", "report"] {
                    try db.execute(sql: "INSERT INTO stages (stage, content_key, rows_written, seconds, finished_at) VALUES (?, 'k', 1, 0.1, '2026-01-01')", arguments: [stage])
                }
            }
            let db = try RunDatabase(path: path)
            XCTAssertEqual(try db.stages().map(\.stage).sorted(), planted ? ["neurons"] : ["cards", "neurons"], "planted \(planted)")
            XCTAssertEqual(try db.query("SELECT COUNT(*) FROM card_shards").rows, [[planted ? "0" : "1"]])
        }
    }

    /// Migration 0010 asks a recorded run to redo evaluate (to fill `predictions`) without losing its
    /// evaluations meanwhile; the redone stage's commit replaces them, and `confusion` counts the predictions.
    func testMigration0010RedoesEvaluateKeepingItsRowsUntilReplaced() throws {
        let path = try oldDatabase("v09.sqlite", migrationsBefore: "0010") { db in
            try db.execute(sql: "INSERT INTO classes VALUES (0, '1.-.-.-', 'Oxidoreductases'), (1, '3.-.-.-', 'Hydrolases')")
            for id in ["P1", "P2", "P3"] {
                try db.execute(sql: "INSERT INTO sequences (id, sequence, length, ec_label, source_file, source_line) VALUES (?, 'MK', 2, '1.-.-.-', 'a.fasta', 1)", arguments: [id])
            }
            try db.execute(sql: "INSERT INTO evaluations (method, granularity, target_class, retention_fraction, seed, n_test, n_correct, accuracy, macro_f1) VALUES ('full', 'none', -1, 1.0, 0, 3, 1, 0.3333, 0.2)")
            for stage in ["split", "evaluate", "evidence", "report"] {
                try db.execute(sql: "INSERT INTO stages (stage, content_key, rows_written, seconds, finished_at) VALUES (?, 'k', 1, 0.1, '2026-01-01')", arguments: [stage])
            }
        }
        let db = try RunDatabase(path: path)
        XCTAssertEqual(try db.stages().map(\.stage).sorted(), ["split"], "0010 drops evaluate and report, 0014 evidence")
        XCTAssertEqual(try db.evaluations().map(\.nCorrect), [1], "kept until evaluate is redone")
        XCTAssertEqual(try db.predictions(), [])
        let full = EvaluationRecord(method: "full", granularity: "none", retentionFraction: 1.0, seed: 0, nTest: 3, nCorrect: 2, accuracy: 2.0 / 3, macroF1: 0.4,
                                    perClass: [(0, 3, 2, 0.8), (1, 0, 0, 0)])
        let predictions = [PredictionRecord(sequenceID: "P1", trueClass: 0, predictedClass: 0, pTrue: 0.6, pPredicted: 0.6),
                           PredictionRecord(sequenceID: "P2", trueClass: 0, predictedClass: 1, pTrue: 0.3, pPredicted: 0.7),
                           PredictionRecord(sequenceID: "P3", trueClass: 0, predictedClass: 0, pTrue: 0.9, pPredicted: 0.9)]
        try db.commitEvaluations([full], predictions: predictions, ledger: ledger("evaluate"))
        XCTAssertEqual(try db.evaluations().map(\.nCorrect), [2])
        XCTAssertEqual(try db.predictions(), predictions)
        XCTAssertEqual(try db.query("SELECT true_class, predicted_class, n FROM confusion ORDER BY 1, 2").rows, [["0", "0", "2"], ["0", "1", "1"]])
    }

    func testMigrationsAppliedOnceAndRecorded() throws {
        let db = try open()
        XCTAssertEqual(try db.appliedMigrations(), ["0001_initial", "0002_embeddings", "0003_score_sets", "0004_excluded_sequences", "0005_accuracy_sd", "0006_attribution_engine", "0007_score_storage", "0008_evidence", "0009_edits_sanity", "0010_predictions", "0011_planted_motifs", "0012_neurons", "0013_cards", "0014_edit_log_odds", "0015_selectivity_shards", "0016_card_controls", "0017_model_head"])
        // Reopening applies nothing new and keeps the data.
        try ingestSample(db)
        let again = try open()
        XCTAssertEqual(try again.appliedMigrations(), ["0001_initial", "0002_embeddings", "0003_score_sets", "0004_excluded_sequences", "0005_accuracy_sd", "0006_attribution_engine", "0007_score_storage", "0008_evidence", "0009_edits_sanity", "0010_predictions", "0011_planted_motifs", "0012_neurons", "0013_cards", "0014_edit_log_odds", "0015_selectivity_shards", "0016_card_controls", "0017_model_head"])
        XCTAssertEqual(try again.sequences().map(\.id), ["P1", "P2"])
        XCTAssertEqual(try again.query("SELECT journal_mode FROM pragma_journal_mode").rows, [["wal"]])
        XCTAssertEqual(try again.query("SELECT foreign_keys FROM pragma_foreign_keys").rows, [["1"]])
    }

    func testIngestRoundTripAndNoDuplicates() throws {
        let db = try open()
        try ingestSample(db)
        let seqs = try db.sequences()
        XCTAssertEqual(seqs[0].ecNumbers, ["1.1.1.1", "1.2.-.-"])
        XCTAssertEqual(seqs[1].notes, "trailing * stripped")
        XCTAssertEqual(try db.rejectedRecords(), [RejectedRow(file: "a.fasta", line: 5, recordID: "P3", reason: "no EC label")])
        XCTAssertEqual(try db.stage("ingest")?.contentKey, "ingest@1:abc")
        // A second commit of the same stage violates the unique keys and changes nothing.
        XCTAssertThrowsError(try ingestSample(db))
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM sequences").rows, [["2"]])
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM labels").rows, [["3"]])
    }

    /// A sequence excluded from training (0004): in `sequences` with its reason and NULL label,
    /// its ECs in `labels`, not among `sequences()`; the schema refuses a row with neither a
    /// label nor a reason.
    func testExcludedSequencesKeptApart() throws {
        let db = try open()
        let excluded = ExcludedSequenceRecord(id: "X1", sequence: "MKVL", ecNumbers: ["1.1.1.1", "2.7.1.1"], sourceFile: "a.fasta",
                                              sourceLine: 7, notes: "", reason: "ECs span several classes at level 1: 1.1.1.1; 2.7.1.1")
        try db.commitIngest(files: [], classes: [ClassRecord(classIndex: 0, ecLabel: "1.-.-.-", name: nil)],
                            sequences: [SequenceRecord(id: "P1", sequence: "MKV", ecLabel: "1.-.-.-", ecNumbers: ["1.1.1.1"], sourceFile: "a.fasta", sourceLine: 1, notes: "")],
                            excluded: [excluded],
                            rejected: [RejectedRow(file: "a.fasta", line: 7, recordID: "X1", reason: excluded.reason)], ledger: ledger("ingest"))
        XCTAssertEqual(try db.sequences().map(\.id), ["P1"])
        XCTAssertEqual(try db.excludedSequences(), [excluded])
        XCTAssertEqual(try db.query("SELECT id, ec_label, excluded_reason IS NULL FROM sequences ORDER BY id").rows,
                       [["P1", "1.-.-.-", "1"], ["X1", nil, "0"]])
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM labels WHERE sequence_id = 'X1'").rows, [["2"]])
        let raw = try DatabaseQueue(path: dir.appendingPathComponent("run.sqlite").path)
        XCTAssertThrowsError(try raw.write { try $0.execute(sql: "INSERT INTO sequences (id, sequence, length, source_file, source_line) VALUES ('Y', 'MK', 2, 'f', 1)") }) { error in
            XCTAssertTrue("\(error)".contains("CHECK constraint failed"), "\(error)")
        }
        try raw.close()
        // Foreign keys to the rebuilt table still hold.
        XCTAssertThrowsError(try db.commitSplits(["NOPE": "train"], ledger: ledger("split")))
        try db.commitSplits(["P1": "train"], ledger: ledger("split"))
    }

    func testForeignKeysEnforced() throws {
        let db = try open()
        try ingestSample(db)
        XCTAssertThrowsError(try db.commitSplits(["NOPE": "train"], ledger: ledger("split")))
        XCTAssertNil(try db.stage("split"), "a failed stage transaction leaves no ledger row")
    }

    func testQueryRefusesWrites() throws {
        let db = try open()
        try ingestSample(db)
        for sql in ["DELETE FROM sequences", "INSERT INTO classes VALUES (9, 'x', 'y')", "DROP TABLE sequences", "UPDATE sequences SET length = 0"] {
            XCTAssertThrowsError(try db.query(sql), sql) { error in
                guard case StoreError.notReadOnly = error else { return XCTFail("\(sql): \(error)") }
            }
        }
        XCTAssertEqual(try db.query("SELECT id, length FROM sequences ORDER BY id").rows, [["P1", "3"], ["P2", "4"]])
    }

    func testTokensRoundTrip() throws {
        let db = try open()
        try ingestSample(db)
        try db.commitTokens([TokenRecord(sequenceID: "P1", ids: [0, 20, 15, 7, 2], residueStart: 0, residueEnd: 3, originalLength: 3),
                             TokenRecord(sequenceID: "P2", ids: [0, 20, 5, 2], residueStart: 1, residueEnd: 3, originalLength: 4)],
                            ledger: ledger("tokenize"))
        let t = try db.tokens()
        XCTAssertEqual(t["P1"]?.ids, [0, 20, 15, 7, 2])
        XCTAssertEqual(t["P2"]?.cropped, true)
        XCTAssertEqual(t["P1"]?.cropped, false)
        XCTAssertEqual(try db.query("SELECT cropped FROM tokens ORDER BY sequence_id").rows, [["0"], ["1"]])
    }

    func testShardCommitIsIdempotent() throws {
        let db = try open()
        try ingestSample(db)
        let shard = ShardRecord(method: "integrated_gradients", shardIndex: 0, nSequences: 1, sums: [0.25, -1.5, 3e-9], seconds: 1)
        let c = CompletenessRecord(sequenceID: "P1", shardIndex: 0, targetClass: 0, pFull: 0.6, pBaseline: 0.1, attributionSum: 0.45)
        XCTAssertTrue(try db.commitShard(shard, completeness: [c]))
        XCTAssertFalse(try db.commitShard(shard, completeness: [c]), "a shard already recorded is not counted twice")
        let total = try XCTUnwrap(try db.shardTotal(method: "integrated_gradients", granularity: "weight", contentKey: ""))
        XCTAssertEqual(total, ShardTotal(nFolded: 1, counts: [1], sums: [0.25, -1.5, 3e-9]))
        XCTAssertEqual(try db.completeness().count, 1)
        XCTAssertEqual(try db.completeness()[0].gap, 0.45 - 0.5, accuracy: 1e-12)
    }

    func testShardsOfAnotherContentKeyAreDiscarded() throws {
        let db = try open()
        try ingestSample(db)
        let c = CompletenessRecord(sequenceID: "P1", shardIndex: 0, targetClass: 0, pFull: 0.6, pBaseline: 0.1, attributionSum: 0.45)
        XCTAssertTrue(try db.commitShard(ShardRecord(method: "integrated_gradients", shardIndex: 0, nSequences: 1, sums: [1], seconds: 1, contentKey: "old"), completeness: [c]))
        XCTAssertTrue(try db.commitShard(ShardRecord(method: "activation", shardIndex: 0, nSequences: 1, sums: [2], seconds: 1, contentKey: "old"), completeness: []))
        XCTAssertEqual(try db.discardShards(otherThan: "new"), 2)
        XCTAssertEqual(try db.completeness().count, 0, "completeness rows of discarded shards go too")
        // A commit under another key also deletes the shards of the old one.
        XCTAssertTrue(try db.commitShard(ShardRecord(method: "integrated_gradients", shardIndex: 0, nSequences: 1, sums: [1], seconds: 1, contentKey: "old"), completeness: [c]))
        XCTAssertTrue(try db.commitShard(ShardRecord(method: "activation", shardIndex: 0, nSequences: 1, sums: [2], seconds: 1, contentKey: "old"), completeness: []))
        XCTAssertTrue(try db.commitShard(ShardRecord(method: "activation", shardIndex: 1, nSequences: 1, sums: [3], seconds: 1, contentKey: "new"), completeness: []))
        XCTAssertEqual(try db.shards(method: "activation").map(\.shardIndex), [1])
        XCTAssertEqual(try db.finishedShards(method: "activation", contentKey: "old"), [])
        XCTAssertEqual(try db.finishedShards(method: "activation", contentKey: "new"), [1])
        XCTAssertEqual(try db.shards(method: "integrated_gradients").count, 0)
        XCTAssertEqual(try db.completeness().count, 0, "completeness rows of discarded shards go too")
        XCTAssertEqual(try db.discardShards(otherThan: "new"), 0)
    }

    /// Work computed from a train stage that another process redid or discarded meanwhile is
    /// refused inside the commit's transaction, and a combine that finds the attribute stage
    /// recorded under another key says so instead of failing on a UNIQUE constraint.
    func testCommitsOfSupersededWorkAreRefused() throws {
        let db = try open()
        try ingestSample(db)
        try db.commitLedger(StageRecord(stage: "train", contentKey: "train@1:a", rowsWritten: 1, seconds: 1))
        let shard = ShardRecord(method: "activation", shardIndex: 0, nSequences: 1, sums: [2], seconds: 1, contentKey: "attr@1:a")
        XCTAssertTrue(try db.commitShard(shard, completeness: [], requiring: LedgerRequirement(stage: "train", contentKey: "train@1:a")))
        var s1 = shard
        s1.shardIndex = 1
        XCTAssertThrowsError(try db.commitShard(s1, completeness: [], requiring: LedgerRequirement(stage: "train", contentKey: "train@1:b"))) { e in
            XCTAssertTrue("\(e)".hasPrefix("stage train was redone by another process while this one was attributing; this process's work is dropped. Run the command again"), "\(e)")
        }
        _ = try db.discard(stages: ["train", "attribute", "select", "evaluate", "report"])
        XCTAssertThrowsError(try db.commitShard(s1, completeness: [], requiring: LedgerRequirement(stage: "train", contentKey: "train@1:a"))) { e in
            XCTAssertTrue("\(e)".hasPrefix("stage train was discarded by another process"), "\(e)")
        }
        XCTAssertEqual(try db.shards(method: "activation").count, 0, "the refused commits wrote nothing")
        let set = [ScoreSet(id: RankingID(method: "activation"), layout: qkvLayout(layers: 1, rows: 1, cols: 1), values: [1, 2, 3])]
        try db.commitScores(set, ledger: StageRecord(stage: "attribute", contentKey: "attr@1:x", rowsWritten: 0, seconds: 0))
        XCTAssertEqual(try db.commitScores(set, ledger: StageRecord(stage: "attribute", contentKey: "attr@1:x", rowsWritten: 0, seconds: 0)), 3,
                       "the same key: already combined by another task, nothing written")
        XCTAssertThrowsError(try db.commitScores(set, ledger: StageRecord(stage: "attribute", contentKey: "attr@1:y", rowsWritten: 0, seconds: 0))) { e in
            XCTAssertTrue("\(e)".hasPrefix("stage attribute was recorded by another process with other parameters"), "\(e)")
        }
    }

    func testScoresRanksSelectionViewsAndDensity() throws {
        let db = try open()
        let layout = qkvLayout(layers: 1, rows: 2, cols: 2)  // 12 weights
        let scores: [Float] = [0.5, 0.1, 0.9, 0.9, 0, 0, 0.3, 0.2, 0.8, 0.05, 0.01, 0.7]
        XCTAssertEqual(try db.commitScores([ScoreSet(id: RankingID(method: "activation"), layout: layout, values: scores)], ledger: ledger("attribute")), 12)
        XCTAssertEqual(try db.scores(method: "activation"), scores)
        // Ties (0.9, 0.9) broken by canonical order.
        XCTAssertEqual(try db.ranks(method: "activation"), [5, 8, 1, 2, 11, 12, 6, 7, 3, 9, 10, 4])
        try db.commitSelections(randomScores: [],
                                selections: [SelectionRecord(method: "activation", retentionFraction: 0.25, seed: 0, nKept: 3, nTotal: 12, minKeptScore: 0.8)],
                                densities: [DensityRecord(method: "activation", retentionFraction: 0.25, seed: 0, layer: 0, module: "query", nKept: 2, nTotal: 4),
                                            DensityRecord(method: "activation", retentionFraction: 0.25, seed: 0, layer: 0, module: "value", nKept: 1, nTotal: 4)],
                                ledger: ledger("select"))
        let members = try db.query("SELECT module, row, col FROM selection_members ORDER BY rank").rows
        XCTAssertEqual(members, [["query", "1", "0"], ["query", "1", "1"], ["value", "0", "0"]])
        XCTAssertEqual(try db.query("SELECT module, density FROM kept_density ORDER BY module").rows, [["query", "0.5"], ["value", "0.25"]])
        let top = try db.query("SELECT module, row, col FROM top_neurons WHERE module = 'key' AND module_rank = 1").rows
        XCTAssertEqual(top, [["key", "1", "0"]])
    }

    /// Every weight of a non-square, two-layer shape is decoded by the `neuron_scores` view
    /// to its (layer, module, row, col), sets are kept apart, `neuron_across_methods` lists
    /// them, and discarding attribute removes only the non-random sets.
    func testScoreViewDecodesEveryWeightAndDiscardKeepsRandom() throws {
        let db = try open()
        let layout = qkvLayout(layers: 2, rows: 3, cols: 4)  // 72 weights
        let act = (0 ..< layout.count).map { Float($0) / 100 }                  // score = index / 100
        let ig = (0 ..< layout.count).map { Float(layout.count - $0) / 1000 }   // reversed order
        XCTAssertEqual(try db.commitScores([ScoreSet(id: RankingID(method: "activation"), layout: layout, values: act),
                                            ScoreSet(id: RankingID(method: "integrated_gradients"), layout: layout, values: ig)], ledger: ledger("attribute")), 144)
        try db.commitSelections(randomScores: [ScoreSet(id: RankingID(method: "random", seed: 7), layout: layout, values: act.reversed())],
                                selections: [], densities: [], ledger: ledger("select"))
        let rows = try db.query("SELECT layer, module, row, col, score, rank FROM neuron_scores WHERE method = 'activation' ORDER BY layer, CASE module WHEN 'query' THEN 0 WHEN 'key' THEN 1 ELSE 2 END, row, col").rows
        XCTAssertEqual(rows.count, 72)
        for (i, r) in rows.enumerated() {
            let l = i / 36, m = (i / 12) % 3, row = (i / 4) % 3, col = i % 4
            XCTAssertEqual(r, ["\(l)", qkv[m], "\(row)", "\(col)", "\(Double(Float(i) / 100))", "\(72 - i)"], "weight \(i)")
        }
        XCTAssertEqual(try db.query("SELECT method, seed, COUNT(*), MIN(rank), MAX(rank) FROM neuron_scores GROUP BY method, seed ORDER BY method").rows,
                       [["activation", "0", "72", "1", "72"], ["integrated_gradients", "0", "72", "1", "72"], ["random", "7", "72", "1", "72"]])
        let p = try db.query("SELECT method, score, rank, random_rank_mean FROM neuron_across_methods WHERE layer = 1 AND module = 'key' AND row = 2 AND col = 1 ORDER BY method").rows
        // layer 1, key (module 1), row 2, col 1 -> index 36 + 12 + 8 + 1 = 57.
        XCTAssertEqual(p, [["activation", "\(Double(Float(57) / 100))", "15", "58.0"], ["integrated_gradients", "\(Double(Float(72 - 57) / 1000))", "58", "58.0"]])
        let deleted = try db.discard(stages: ["attribute", "select", "evaluate", "report"])
        XCTAssertEqual(deleted.first { $0.table == "neuron_scores" }?.rows, 144)
        XCTAssertEqual(deleted.first { $0.table == "neuron_scores (random)" }?.rows, 72)
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM score_sets").rows, [["0"]])
        XCTAssertEqual(try db.scores(method: "activation"), [])
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM score_blocks").rows, [["0"]], "blocks go with their sets")
        // Written again after the discard: new set ids, same values.
        try db.commitScores([ScoreSet(id: RankingID(method: "activation"), layout: layout, values: act)], ledger: ledger("attribute"))
        XCTAssertEqual(try db.scores(method: "activation"), act)
    }

    /// Score sets of other granularities, module sets and targets (migration 0006) are kept
    /// apart and decoded through `score_blocks`: a neuron layout of blocks of different sizes
    /// (intermediate 4 units, output 2) gives (layer, module, row = unit, col = 0).
    func testNeuronAndPerClassSetsDecodeThroughScoreBlocks() throws {
        let db = try open()
        let blocks = [ScoreSetLayout.Block(layer: 0, module: "intermediate", rows: 4, cols: 1, offset: 0),
                      .init(layer: 0, module: "output", rows: 2, cols: 1, offset: 4),
                      .init(layer: 1, module: "intermediate", rows: 4, cols: 1, offset: 6),
                      .init(layer: 1, module: "output", rows: 2, cols: 1, offset: 10)]
        let layout = ScoreSetLayout(modules: ["intermediate", "output"], layers: 2, blocks: blocks)
        let values = (0 ..< 12).map { Float($0) }
        let trueClass = RankingID(method: "gradient_x_activation", granularity: "neuron")
        let class3 = RankingID(method: "gradient_x_activation", granularity: "neuron", targetClass: 3)
        XCTAssertEqual(try db.commitScores([ScoreSet(id: trueClass, layout: layout, values: values),
                                            ScoreSet(id: class3, layout: layout, values: values.map { -$0 })], ledger: ledger("attribute")), 24)
        XCTAssertEqual(try db.scores(class3), values.map { -$0 })
        XCTAssertEqual(try db.scoreSets(), [trueClass, class3])
        XCTAssertEqual(try db.query("SELECT layer, module, row, col, score, rank FROM neuron_scores WHERE target_class = -1 AND rank IN (1, 7) ORDER BY rank").rows,
                       [["1", "output", "1", "0", "11.0", "1"], ["0", "output", "1", "0", "5.0", "7"]])
        XCTAssertEqual(try db.query("SELECT target_class, COUNT(*) FROM neuron_scores GROUP BY target_class").rows, [["-1", "12"], ["3", "12"]])
        XCTAssertEqual(try db.query("SELECT modules, n_scores FROM score_sets ORDER BY set_id").rows, [["intermediate,output", "12"], ["intermediate,output", "12"]])
    }

    /// A database at the schema of the migrations named before `migrationsBefore` (as an older
    /// kneuron wrote it), filled by `fill`; returns its path.
    func oldDatabase(_ name: String, migrationsBefore: String, fill: (Database) throws -> Void) throws -> String {
        let path = dir.appendingPathComponent(name).path
        let queue = try DatabaseQueue(path: path)
        var migrator = DatabaseMigrator()
        for m in try RunDatabase.migrationFiles() where m.name < migrationsBefore {
            migrator.registerMigration(m.name) { db in try db.execute(sql: m.sql) }
        }
        try migrator.migrate(queue)
        try queue.write(fill)
        return path
    }

    /// A database written under 0001's `neuron_scores` table is carried over by 0003: the
    /// view returns the same rows.
    func testMigration0003CarriesOverScores() throws {
        let path = try oldDatabase("old.sqlite", migrationsBefore: "0003") { db in
                for (method, seed) in [("activation", 0), ("random", 2)] {
                    for l in 0 ..< 2 { for (mi, m) in qkv.enumerated() { for r in 0 ..< 2 { for c in 0 ..< 3 {
                        let idx = ((l * 3 + mi) * 2 + r) * 3 + c
                        try db.execute(sql: "INSERT INTO neuron_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                       arguments: [method, seed, l, m, r, c, Double(idx) * (seed == 0 ? 1 : -1), seed == 0 ? 36 - idx : idx + 1])
                    } } } }
                }
        }
        let db = try RunDatabase(path: path)
        XCTAssertEqual(try db.appliedMigrations().last, "0017_model_head")
        XCTAssertEqual(try db.scores(method: "activation"), (0 ..< 36).map { Float($0) })
        XCTAssertEqual(try db.ranks(method: "random", seed: 2), Array(1 ... 36))
        XCTAssertEqual(try db.query("SELECT layer, module, row, col, score, rank FROM neuron_scores WHERE method = 'random' AND rank = 20").rows,
                       [["1", "query", "0", "1", "-19.0", "20"]])
        XCTAssertEqual(try db.query("SELECT method, granularity, target_class, modules, n_layers, n_scores FROM score_sets ORDER BY set_id").rows,
                       [["activation", "weight", "-1", "query,key,value", "2", "36"], ["random", "weight", "-1", "query,key,value", "2", "36"]])
        XCTAssertEqual(try db.query("SELECT block_index, layer, module, n_rows, n_cols, offset FROM score_blocks WHERE set_id = 1 AND block_index IN (0, 4)").rows,
                       [["0", "0", "query", "2", "3", "0"], ["4", "1", "key", "2", "3", "24"]])
    }

    /// A database of kneuron 0.1 (schema 0005) keeps its selections, densities, evaluations,
    /// shards and completeness rows through 0006, as weight granularity for the true class
    /// (the full model's evaluation as granularity 'none'), and its views answer.
    func testMigration0006CarriesOverSelectionsEvaluationsAndShards() throws {
        let path = try oldDatabase("v01.sqlite", migrationsBefore: "0006") { db in
                try db.execute(sql: "INSERT INTO classes VALUES (0, '1.-.-.-', 'Oxidoreductases')")
                try db.execute(sql: "INSERT INTO sequences (id, sequence, length, ec_label, source_file, source_line) VALUES ('P1', 'MK', 2, '1.-.-.-', 'a.fasta', 1)")
                try db.execute(sql: "INSERT INTO score_sets (method, seed, n_layers, n_rows, n_cols) VALUES ('activation', 0, 1, 1, 2)")
                for i in 0 ..< 6 { try db.execute(sql: "INSERT INTO score_values VALUES (?, ?, ?)", arguments: [4294967296 + i, Double(i), 6 - i]) }
                try db.execute(sql: "INSERT INTO selections VALUES ('activation', 0.5, 0, 3, 6, 3.0)")
                try db.execute(sql: "INSERT INTO selection_density VALUES ('activation', 0.5, 0, 0, 'value', 2, 2)")
                try db.execute(sql: "INSERT INTO evaluations VALUES ('full', 1.0, 0, 10, 4, 0.4, 0.3), ('activation', 0.5, 0, 10, 2, 0.2, 0.1)")
                try db.execute(sql: "INSERT INTO evaluation_classes VALUES ('activation', 0.5, 0, 0, 10, 2, 0.2, 0.1)")
                try db.execute(sql: "INSERT INTO shards (method, shard_index, content_key, n_sequences, sums, seconds) VALUES ('integrated_gradients', 0, 'k', 1, x'000000000000F03F', 1.5)")
                try db.execute(sql: "INSERT INTO ig_completeness VALUES ('P1', 0, 0, 0.6, 0.1, 0.45, -0.05)")
        }
        let db = try RunDatabase(path: path)
        XCTAssertEqual(try db.pendingMigrations(), [])
        XCTAssertEqual(try db.scores(method: "activation"), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try db.query("SELECT module, row, col FROM neuron_scores WHERE rank = 1").rows, [["value", "0", "1"]])
        XCTAssertEqual(try db.selections().map(\.ranking), [RankingID(method: "activation")])
        XCTAssertEqual(try db.densities().map(\.module), ["value"])
        XCTAssertEqual(try db.query("SELECT module, row, col FROM selection_members ORDER BY rank").rows, [["value", "0", "1"], ["value", "0", "0"], ["key", "0", "1"]])
        XCTAssertEqual(try db.evaluations().map(\.ranking), [RankingID(method: "full", granularity: "none"), RankingID(method: "activation")].sorted())
        XCTAssertEqual(try db.evaluations().first { $0.method == "activation" }?.perClass.map(\.nCorrect), [2])
        XCTAssertEqual(try db.query("SELECT method, granularity, target_class, accuracy_mean FROM accuracy_table ORDER BY method").rows,
                       [["activation", "weight", "-1", "0.2"], ["full", "none", "-1", "0.4"]])
        // 0007: the shard's sums moved into shard_sums and are added into the running total on first use.
        XCTAssertEqual(try db.shards(method: "integrated_gradients").map(\.shardIndex), [0])
        XCTAssertEqual(try db.shardTotal(method: "integrated_gradients", granularity: "weight", contentKey: "k"), ShardTotal(nFolded: 1, counts: [1], sums: [1.0]))
        XCTAssertEqual(try db.query("SELECT shard_index FROM shard_sums").rows, [["-1"]])
        // 0007: the scores were packed into float32 score_rows and all_scores decodes them.
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM score_rows").rows, [["3"]])
        XCTAssertEqual(try db.query("SELECT module, row, col, score, rank FROM all_scores WHERE module = 'value' AND col = 1").rows, [["value", "0", "1", "5.0", "1"]])
        XCTAssertEqual(try db.completeness().map { [$0.granularity, $0.module] }, [["weight", ""]])
    }

    /// A process killed inside a transaction of a rollback-journal database (as when a new run
    /// database is switching to WAL) leaves a hot `-journal`: a read-only open cannot read the
    /// file and says what to do; a writing open rolls the transaction back and carries on.
    func testHotRollbackJournalIsRolledBackByAWriterAndExplainedToReaders() throws {
        let path = dir.appendingPathComponent("hot.sqlite").path, copy = dir.appendingPathComponent("hot-copy.sqlite").path
        do {   // a database with the kneuron marker table, mid-transaction, with its pages spilled to disk
            let queue = try DatabaseQueue(path: path)
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA cache_size = 1")
                try db.execute(sql: "CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
                try db.execute(sql: "CREATE TABLE filler (x BLOB)")
                try db.execute(sql: "BEGIN")
                for _ in 0 ..< 200 { try db.execute(sql: "INSERT INTO filler VALUES (zeroblob(4000))") }
                for suffix in ["", "-journal"] { try FileManager.default.copyItem(atPath: path + suffix, toPath: copy + suffix) }
                try db.execute(sql: "ROLLBACK")
            }
        }
        XCTAssertThrowsError(try RunDatabase(path: copy, readOnly: true)) { e in
            XCTAssertTrue("\(e)".contains("killed inside a transaction"), "\(e)")
        }
        let db = try RunDatabase(path: copy)
        XCTAssertEqual(try db.pendingMigrations(), [])
        XCTAssertEqual(try db.query("SELECT COUNT(*) FROM filler").rows, [["0"]], "the interrupted transaction is rolled back")
    }

    func testAccuracyTableViewMeanAndSD() throws {
        let db = try open()
        try ingestSample(db)
        let per = [(classIndex: 0, n: 2, nCorrect: 1, f1: 0.5), (classIndex: 1, n: 2, nCorrect: 1, f1: 0.5)]
        let evals = [0.2, 0.3, 0.4].enumerated().map { i, acc in
            EvaluationRecord(method: "random", retentionFraction: 0.5, seed: i + 1, nTest: 10, nCorrect: Int(acc * 10), accuracy: acc, macroF1: acc / 2, perClass: per)
        }
        // Identical accuracies over seeds at fraction 0.1: SD 0 up to rounding of the mean
        // (0005; the one-pass formula of 0001 gave ~2e-9 for such seeds).
        let same = [1, 2, 3].map { EvaluationRecord(method: "random", retentionFraction: 0.1, seed: $0, nTest: 7, nCorrect: 1, accuracy: 1.0 / 7, macroF1: 0.1, perClass: per) }
        try db.commitEvaluations(evals + same, ledger: ledger("evaluate"))
        let sd = try db.query("SELECT accuracy_sd FROM accuracy_table WHERE retention_fraction = 0.1").rows[0][0]!
        XCTAssertLessThan(Double(sd)!, 1e-15, sd)
        let row = try db.query("SELECT n_seeds, accuracy_mean, accuracy_sd FROM accuracy_table WHERE retention_fraction = 0.5").rows[0]
        XCTAssertEqual(row[0], "3")
        XCTAssertEqual(Double(row[1]!)!, 0.3, accuracy: 1e-12)
        XCTAssertEqual(Double(row[2]!)!, 0.1, accuracy: 1e-12)
        XCTAssertEqual(try db.evaluations().filter { $0.retentionFraction == 0.5 }.map(\.seed), [1, 2, 3])
        XCTAssertEqual(try db.evaluations()[0].perClass.map(\.nCorrect), [1, 1])
    }

    func testDiscardRemovesStageAndLaterRows() throws {
        let db = try open()
        try ingestSample(db)
        try db.commitSplits(["P1": "train", "P2": "test"], ledger: ledger("split"))
        let deleted = try db.discard(stages: ["split", "train", "attribute", "select", "evaluate", "report"])
        XCTAssertEqual(deleted.first { $0.table == "splits" }?.rows, 2)
        XCTAssertNil(try db.stage("split"))
        XCTAssertNotNil(try db.stage("ingest"))
        XCTAssertEqual(try db.sequences().count, 2)
    }

    /// What is not a run database is refused with the reason, before anything is written.
    func testNotARunDatabaseIsRefused() throws {
        // Someone else's databases: a table, a view only, a table named like ours. Each is
        // refused by writing and reading opens, and left byte for byte as it was (no WAL switch,
        // no -wal/-shm files).
        for (name, sql, objects) in [("table", "CREATE TABLE foo (x); INSERT INTO foo VALUES (1)", 1),
                                     ("view", "CREATE VIEW v AS SELECT 1", 1),
                                     ("stages", "CREATE TABLE stages (x)", 1)] {
            let foreign = dir.appendingPathComponent("\(name).sqlite").path
            try DatabaseQueue(path: foreign).write { try $0.execute(sql: sql) }
            let before = try Data(contentsOf: URL(fileURLWithPath: foreign))
            XCTAssertThrowsError(try RunDatabase(path: foreign)) { e in
                XCTAssertEqual("\(e)", "cannot open database \(foreign): it is a SQLite database without the kneuron schema (\(objects) tables/views/indexes of its own), not a kneuron run database; give a new path")
            }
            XCTAssertThrowsError(try RunDatabase(path: foreign, readOnly: true)) { e in
                XCTAssertEqual("\(e)", "cannot open database \(foreign): it is a SQLite database without the kneuron schema (\(objects) tables/views/indexes of its own), not a kneuron run database; give the path of a run database")
            }
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: foreign)), before, name)
            XCTAssertFalse(FileManager.default.fileExists(atPath: foreign + "-wal"), name)
        }
        let text = dir.appendingPathComponent("labels.tsv").path
        try "Entry\tEC number\nP1\t1.1.1.1\n".write(toFile: text, atomically: true, encoding: .utf8)
        let empty = dir.appendingPathComponent("empty.sqlite").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        XCTAssertThrowsError(try RunDatabase(path: empty, readOnly: true)) { e in
            XCTAssertEqual("\(e)", "cannot open database \(empty): the file is empty, not a kneuron run database")
        }
        for readOnly in [false, true] {
            XCTAssertThrowsError(try RunDatabase(path: text, readOnly: readOnly)) { e in
                XCTAssertEqual("\(e)", "cannot open database \(text): the file is not a SQLite database; give the path of a kneuron run database (or a new path)")
            }
            XCTAssertThrowsError(try RunDatabase(path: dir.path, readOnly: readOnly)) { e in
                XCTAssertEqual("\(e)", "cannot open database \(dir.path): it is a directory; give the path of a .sqlite file")
            }
        }
        XCTAssertEqual(try String(contentsOfFile: text, encoding: .utf8), "Entry\tEC number\nP1\t1.1.1.1\n")
        // An empty file becomes a run database when opened for writing.
        XCTAssertEqual(try RunDatabase(path: empty).appliedMigrations().count, try RunDatabase.migrationFiles().count)
    }

    func testReadOnlyOpenOfMissingFileFails() {
        XCTAssertThrowsError(try RunDatabase(path: dir.appendingPathComponent("nope.sqlite").path, readOnly: true)) { e in
            XCTAssertTrue("\(e)".hasPrefix("no run database at "), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("nope.sqlite").path), "nothing is created")
    }
}
