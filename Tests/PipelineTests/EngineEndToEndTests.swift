import Foundation
import XCTest
@testable import Attribution
@testable import ESM
@testable import Pipeline
import Store

/// The attribution engine through the whole pipeline on real data (sample-test-280, `tiny`
/// model): every method x all six modules x both granularities x both targets. Checks the
/// stored layouts, the per-class regrouping against the engine called directly on the
/// selection sequences, random baselines per granularity, neuron ablation in evaluate, and
/// the report's sections.
extension Array where Element: Hashable {
    /// The distinct elements in first-seen order.
    func uniqued() -> [Element] { var seen = Set<Element>(); return filter { seen.insert($0).inserted } }
}

extension EndToEndTests {   // its temporary `dir`, set up and removed per test
    func testEveryMethodModuleGranularityAndTarget() throws {
        guard let data = EndToEndTests.dataDirectory() else { throw XCTSkip("real data not found: run data/fetch.sh --from ../shared/data or set KNEURON_DATA") }
        let specPath = dir.appendingPathComponent("engine.yaml").path
        try """
        name: engine
        inputs:
          fasta: [\(data.appendingPathComponent("sample-test-280.fasta").path)]
          labels: [\(data.appendingPathComponent("sample-test-280.ec.tsv").path)]
        split: {train: 0.6, select: 0.2, test: 0.2, seed: 3}
        model: {preset: tiny, pooling: mean, max_length: 40, crop: head, seed: 5}
        train: {epochs: 1, batch_size: 16, learning_rate: 0.002, seed: 1}
        attribution:
          methods: [activation, integrated_gradients, gradient_x_activation]
          modules: [output, query, key, value, attention_output, intermediate]
          granularity: [neuron, weight]
          targets: [per_class, true_class]
          steps: 3
          shard_size: 4
          max_sequences: 10
        selection: {retention_fractions: [0.5, 0.1], random_seeds: [1, 2, 3]}
        evidence: {fractions: [0.1, 0.5], random_rankings: 4, bootstrap_resamples: 200}
        """.write(toFile: specPath, atomically: true, encoding: .utf8)
        let dbPath = dir.appendingPathComponent("engine.sqlite").path
        let database = try RunDatabase(path: dbPath)
        let ctx = try RunContext(spec: try PipelineSpec.load(path: specPath), specPath: specPath, db: database, quiet: true)
        XCTAssertEqual(try PipelineRunner(context: ctx).run(Stage.allCases).map(\.ran), Array(repeating: true, count: Stage.allCases.count))
        let db = try RunDatabase(path: dbPath, readOnly: true)
        func rows(_ sql: String) throws -> [[String?]] { try db.query(sql).rows }

        // tiny: L = 2, H = 32, I = 64. Weights per layer: 4 x 32 x 32 + 2 x 64 x 32 = 8192;
        // neurons per layer: 5 x 32 + 64 = 224.
        let classesPresent = try rows("""
            SELECT DISTINCT s.ec_label FROM splits p JOIN sequences s ON s.id = p.sequence_id
            WHERE p.split = 'select' AND p.sequence_id IN (SELECT sequence_id FROM splits WHERE split = 'select' ORDER BY sequence_id LIMIT 10)
            """).count
        XCTAssertGreaterThan(classesPresent, 2)
        XCTAssertEqual(try rows("SELECT granularity, COUNT(*), MIN(n_scores), MAX(n_scores), MIN(modules) FROM score_sets WHERE method != 'random' GROUP BY granularity ORDER BY granularity"),
                       [["neuron", "\(3 * (1 + classesPresent))", "448", "448", "query,key,value,attention_output,intermediate,output"],
                        ["weight", "\(3 * (1 + classesPresent))", "16384", "16384", "query,key,value,attention_output,intermediate,output"]])
        XCTAssertEqual(try rows("SELECT granularity, COUNT(*) FROM score_sets WHERE method = 'random' GROUP BY granularity ORDER BY granularity"),
                       [["neuron", "3"], ["weight", "3"]])
        // Blocks: 12 per set; a neuron block is (out, 1), an FFN weight block (I, H) or (H, I).
        XCTAssertEqual(try rows("SELECT module, n_rows, n_cols, offset FROM score_blocks b JOIN score_sets s USING (set_id) WHERE s.method = 'activation' AND s.granularity = 'neuron' AND s.target_class = -1 AND b.layer = 1 ORDER BY block_index"),
                       [["query", "32", "1", "224"], ["key", "32", "1", "256"], ["value", "32", "1", "288"], ["attention_output", "32", "1", "320"],
                        ["intermediate", "64", "1", "352"], ["output", "32", "1", "416"]])
        XCTAssertEqual(try rows("SELECT module, MAX(row), MAX(col), COUNT(*) FROM neuron_scores WHERE method = 'integrated_gradients' AND granularity = 'weight' AND target_class = -1 AND layer = 0 GROUP BY module ORDER BY module"),
                       [["attention_output", "31", "31", "1024"], ["intermediate", "63", "31", "2048"], ["key", "31", "31", "1024"],
                        ["output", "31", "63", "2048"], ["query", "31", "31", "1024"], ["value", "31", "31", "1024"]])
        // Shards: 10 sequences / 4 = 3 per (method, granularity); per-class sums carry class counts.
        XCTAssertEqual(try rows("SELECT COUNT(*), SUM(class_counts IS NOT NULL) FROM shards"), [["18", "18"]])
        // Completeness: weight IG one path per sequence, neuron IG one per layer x module.
        XCTAssertEqual(try rows("SELECT granularity, COUNT(*) FROM ig_completeness GROUP BY granularity ORDER BY granularity"),
                       [["neuron", "\(10 * 12)"], ["weight", "10"]])

        // per_class = the engine's contributions regrouped: class c's IG neuron scores are the
        // mean over the selection sequences of class c of their own-label attributions, and the
        // true-class scores the mean over all ten.
        let model = try ModelStore.finalModel(ctx, stage: "attribute")
        let sel = try AttributeStage.sequences(ctx)
        let layout = try ScoreLayout(config: model.config, modules: LinearModule.allCases, granularity: .neuron)
        let parts = try IntegratedGradientsAttributor().contributions(model: model, sequences: sel.examples.map { AttributionInput(tokens: $0.tokens, target: $0.label) },
                                                                      layout: layout, options: AttributionOptions(steps: 3))
        func mean(_ idx: [Int]) -> [Float] {
            (0 ..< layout.count).map { i in Float(idx.reduce(0.0) { $0 + parts[$1].contribution[i] } / Double(idx.count)) }
        }
        let labels = sel.examples.map(\.label)
        for c in Set(labels) {
            let stored = try db.scores(RankingID(method: "integrated_gradients", granularity: "neuron", targetClass: c))
            let expected = mean(labels.indices.filter { labels[$0] == c })
            XCTAssertEqual(stored.count, expected.count)
            let scale = Double(expected.map { abs($0) }.max()!)
            XCTAssertGreaterThan(scale, 0)
            XCTAssertLessThanOrEqual(Double(zip(stored, expected).map { abs($0 - $1) }.max()!), 1e-6 * scale, "class \(c)")
        }
        let all = try db.scores(RankingID(method: "integrated_gradients", granularity: "neuron"))
        XCTAssertLessThanOrEqual(Double(zip(all, mean(Array(labels.indices))).map { abs($0 - $1) }.max()!), 1e-6 * Double(all.map { abs($0) }.max()!))
        XCTAssertEqual(try rows("SELECT COUNT(*) FROM score_sets WHERE target_class >= 0 AND target_class NOT IN (\(Set(labels).map(String.init).joined(separator: ",")))"), [["0"]])

        // Selections and evaluations for every ranking and fraction; the full model once.
        let rankings = 2 * 3 * (1 + classesPresent) + 2 * 3
        XCTAssertEqual(try rows("SELECT COUNT(*) FROM selections"), [["\(rankings * 2)"]])
        XCTAssertEqual(try rows("SELECT COUNT(*) FROM evaluations"), [["\(rankings * 2 + 1)"]])
        XCTAssertEqual(try rows("SELECT n_kept, n_total FROM selections WHERE method = 'gradient_x_activation' AND granularity = 'neuron' AND target_class = -1 AND retention_fraction = 0.1"),
                       [["45", "448"]])
        XCTAssertEqual(try rows("SELECT SUM(n_kept) FROM selection_density WHERE method = 'random' AND granularity = 'neuron' AND seed = 2 AND retention_fraction = 0.5"), [["224"]])
        // Keeping 10% of the neurons changes the model: its accuracy is measured, not copied.
        XCTAssertEqual(try rows("SELECT COUNT(*) FROM evaluation_classes WHERE granularity = 'neuron' AND target_class = -1 AND method = 'activation'"), [["14"]])
        XCTAssertEqual(try rows("SELECT COUNT(*) FROM class_top_neurons WHERE method = 'gradient_x_activation' AND granularity = 'neuron'"), [["\(20 * classesPresent)"]])
        XCTAssertEqual(try rows("SELECT COUNT(DISTINCT method || target_class) FROM neuron_across_methods WHERE granularity = 'neuron' AND layer = 1 AND module = 'intermediate' AND row = 7"),
                       [["\(3 * (1 + classesPresent))"]])

        // Knowledge edits: every per-class neuron ranking x factors 0 and 2, its class's and the other test sequences;
        // 100 random sets per factor measured for every class; the p-values from the random rows by brute force.
        let edits = try db.knowledgeEdits()
        XCTAssertEqual(edits.filter { $0.sequences == "class" }.count, 3 * classesPresent * 2)
        XCTAssertEqual(try rows("SELECT COUNT(DISTINCT seed), MIN(seed), MAX(seed) FROM knowledge_edits WHERE method = 'random'"), [["100", "1", "100"]])
        let randomEdits = try rows("SELECT target_class, factor, log_odds_change FROM knowledge_edits WHERE method = 'random' AND sequences = 'class'")
        for e in edits {
            XCTAssertEqual(e.nNeurons, 10)
            XCTAssertEqual(e.ranking.granularity, "neuron")
            XCTAssertTrue(e.pBefore > 0 && e.pBefore < 1 && e.pAfter > 0 && e.pAfter < 1, "\(e)")
            XCTAssertTrue((0 ... 1).contains(e.predictionChanged))
            guard e.sequences == "class" else { XCTAssertNil(e.pValue); continue }
            let null = randomEdits.filter { Int($0[0]!)! == e.ranking.targetClass && Double($0[1]!)! == e.factor }.map { Double($0[2]!)! }
            XCTAssertEqual(null.count, 100)
            let asExtreme = null.filter { e.factor < 1 ? $0 <= e.logOddsChange : $0 >= e.logOddsChange }.count
            XCTAssertEqual(e.pValue!, Double(1 + asExtreme) / 101, accuracy: 1e-12, "\(e)")
        }
        // p_before is the full model's mean P(class) on those sequences: the same for every method and factor.
        XCTAssertEqual(try rows("SELECT COUNT(DISTINCT round(p_before, 12)) FROM knowledge_edits WHERE sequences = 'class' GROUP BY target_class").map { $0[0] }.uniqued(), ["1"])

        let report = try String(contentsOfFile: dir.appendingPathComponent("engine.artifacts/report.md").path, encoding: .utf8)
        XCTAssertTrue(report.contains("## Suppressing and amplifying each class's knowledge neurons"), report)
        XCTAssertTrue(report.contains("## Sanity checks (Adebayo et al. 2018)"), report)
        for heading in ["## Test accuracy of submodels keeping the top weights of query, key, value, attention_output, intermediate, output",
                        "## Test accuracy of submodels keeping the top neurons (output units) of query, key, value, attention_output, intermediate, output",
                        "### Per-class rankings (target per_class)", "| gradient x activation |", "L1 intermediate"] {
            XCTAssertTrue(report.contains(heading), heading)
        }
        let accuracyCSV = try String(contentsOfFile: dir.appendingPathComponent("engine.artifacts/accuracy.csv").path, encoding: .utf8)
        XCTAssertTrue(accuracyCSV.hasPrefix("method,granularity,target_class,retention_fraction,"))
        XCTAssertTrue(accuracyCSV.contains("\nintegrated_gradients,neuron,-1,0.1,1,"))
    }
}
