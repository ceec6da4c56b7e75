import Foundation
import XCTest
@testable import Pipeline
@testable import Store
@testable import Attribution
import ESM
import Training

/// The evidence stage (issue 11) on the end-to-end slice of real data: curves agree with the
/// evaluate stage where they evaluate the same submodel, and every test statistic equals a
/// brute-force recomputation from the stored points.
extension EndToEndTests {
    func testEvidenceCurvesAgreeWithEvaluateAndTheirTestsWithBruteForce() throws {
        let spec = try writeSpec()
        let path = dir.appendingPathComponent("evidence.sqlite").path
        _ = try runInProcess(spec: spec, db: path)
        let db = try RunDatabase(path: path, readOnly: true)
        let points = try db.curvePoints()
        // 2 rankings (activation, integrated gradients) + 4 random, x 2 directions x 2 fractions.
        XCTAssertEqual(points.count, (2 + 4) * 2 * 2)
        XCTAssertEqual(Set(points.filter { $0.ranking.method == "random" }.map(\.ranking.seed)), [1, 2, 3, 4])

        // retain at a selection fraction is exactly the evaluate stage's submodel (select keeps the
        // same top k, random seeds 1-3 are the same draws): the same correct count.
        let evaluations = try db.evaluations()
        var compared = 0
        for p in points where p.direction == "retain" {
            guard let e = evaluations.first(where: { $0.ranking == p.ranking && $0.retentionFraction == p.fraction }) else { continue }
            XCTAssertEqual(p.nCorrect, e.nCorrect, "\(p.ranking) \(p.fraction)")
            XCTAssertEqual(p.macroF1, e.macroF1, accuracy: 1e-12)
            compared += 1
        }
        XCTAssertEqual(compared, (2 + 3) * 2, "every retain point with an evaluation was compared")
        for p in points {
            let k = SelectStage.keptCount(p.fraction, total: p.nTotal)
            XCTAssertEqual(p.nAblated, p.direction == "retain" ? p.nTotal - k : k)
            XCTAssertEqual(p.accuracy, Double(p.nCorrect) / Double(p.nTest), accuracy: 1e-15)
            XCTAssertTrue(p.accuracyLow <= p.accuracy && p.accuracy <= p.accuracyHigh, "\(p)")
            XCTAssertTrue(p.pTrue > 0 && p.pTrue < 1)
        }

        // Significance: brute force from the points.
        let significance = try db.significance()
        XCTAssertEqual(significance.count, 2 * 2 * 2)
        for s in significance {
            let null = points.filter { $0.ranking.method == "random" && $0.ranking.granularity == s.ranking.granularity
                && $0.direction == s.direction && $0.fraction == s.fraction }.map(\.accuracy)
            XCTAssertEqual(null.count, 4)
            let asGood = null.filter { s.direction == "retain" ? $0 >= s.accuracy : $0 <= s.accuracy }.count
            XCTAssertEqual(s.pValue, Double(1 + asGood) / 5, accuracy: 1e-15)
            let mean = null.reduce(0, +) / 4
            XCTAssertEqual(s.randomMean, mean, accuracy: 1e-15)
            let sd = (null.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 3).squareRoot()
            if sd > 0 { XCTAssertEqual(s.effectSize!, (s.accuracy - mean) / sd, accuracy: 1e-12) } else { XCTAssertNil(s.effectSize) }
        }
        // Areas: trapezoid over log10(fraction) of two points = their mean; p against the random areas.
        let areas = try db.curveAreas()
        XCTAssertEqual(areas.count, (2 + 4) * 2)
        for a in areas {
            let ps = points.filter { $0.ranking == a.ranking && $0.direction == a.direction }
            XCTAssertEqual(a.accuracy, ps.map(\.accuracy).reduce(0, +) / 2, accuracy: 1e-12)
            if a.ranking.method == "random" { XCTAssertNil(a.pValue); continue }
            let null = areas.filter { $0.ranking.method == "random" && $0.direction == a.direction }.map(\.accuracy)
            let asGood = null.filter { a.direction == "retain" ? $0 >= a.accuracy : $0 <= a.accuracy }.count
            XCTAssertEqual(a.pValue!, Double(1 + asGood) / 5, accuracy: 1e-15)
        }
        // status counts the rankings' curves.
        XCTAssertTrue(try RunStatus.read(db: db).lines.first { $0.stage == .evidence }!.detail.hasPrefix("6 of 6 rankings' curves done"))
        // The report says it, and writes every point as CSV.
        let report = try String(contentsOfFile: dir.appendingPathComponent("evidence.artifacts/report.md").path, encoding: .utf8)
        XCTAssertTrue(report.contains("## Evidence against random rankings"), report)
        XCTAssertTrue(report.contains("| random (4) |"), report)
        let csv = try String(contentsOfFile: dir.appendingPathComponent("evidence.artifacts/curves.csv").path, encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 1 + points.count)
    }

    /// Sanity checks: per ranking one correlation per cascade depth k = 1 ... L and one for the
    /// label-randomised model; the deepest cascade's correlation equals Spearman's rho (checked
    /// against scipy in StatisticsTests) between the stored scores and a direct re-scoring of the
    /// randomised model, and the verdicts follow the threshold.
    func testSanityChecksCorrelateWithAnIndependentRescoring() throws {
        let spec = try writeSpec()
        let path = dir.appendingPathComponent("sanity.sqlite").path
        _ = try runInProcess(spec: spec, db: path)
        let db = try RunDatabase(path: path, readOnly: true)
        let checks = try db.sanityChecks()
        XCTAssertEqual(checks.count, 2 * (2 + 1), "2 rankings x (k = 1, 2 and labels)")
        XCTAssertEqual(Set(checks.map { "\($0.check)/\($0.layersRandomized)" }), ["model_randomization/1", "model_randomization/2", "label_randomization/0"])
        XCTAssertTrue(checks.allSatisfy { $0.nSequences == 24 && $0.nScores == 6144 }, "the 24 attributed sequences (attribution.max_sequences < sanity.max_sequences)")

        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: try RunDatabase(path: path), quiet: true)
        let model = try ModelStore.finalModel(ctx, stage: "sanity")
        let sequences = try AttributeStage.sequences(ctx).examples.map { AttributionInput(tokens: $0.tokens, target: $0.label) }
        let layout = ScoreLayout.paper(model.config)
        let randomized = try ESMClassifier(config: model.config, parameters: ModelRandomization.cascading(model.parameters, layers: 2, seed: 1))
        let attributor = ActivationAttributor()
        let parts = try attributor.contributions(model: randomized, sequences: sequences, layout: layout, options: AttributionOptions(steps: 4))
        var sums = [Double](repeating: 0, count: parts[0].contribution.count)
        for p in parts { for i in sums.indices { sums[i] += p.contribution[i] } }
        let rescored = attributor.scores(sums: sums, count: parts.count, parameters: randomized.parameters, layout: layout)
        let stored = try db.scores(RankingID(method: "activation"))
        let expected = EvidenceStatistics.spearman(stored, rescored)!
        let got = checks.first { $0.check == "model_randomization" && $0.layersRandomized == 2 && $0.ranking.method == "activation" }!.spearman!
        XCTAssertEqual(got, expected, accuracy: 1e-6)
        XCTAssertLessThan(abs(got), 0.99, "re-initialised weights must change |w|-based scores")

        let verdicts = try db.sanityVerdicts()
        XCTAssertEqual(verdicts.count, 2 * 2)
        for v in verdicts {
            let rho = checks.first { $0.ranking == v.ranking && $0.check == v.check && ($0.check == "label_randomization" || $0.layersRandomized == 2) }!.spearman
            XCTAssertEqual(v.spearman, rho)
            XCTAssertEqual(v.passed, (rho ?? .infinity) < 0.5)
        }
        XCTAssertTrue(try RunStatus.read(db: db).lines.first { $0.stage == .sanity }!.detail.hasPrefix("3 of 3 checks done"))
        let report = try String(contentsOfFile: dir.appendingPathComponent("sanity.artifacts/report.md").path, encoding: .utf8)
        XCTAssertTrue(report.contains("| ranking | top 1 | top 2 | labels | verdict |"), report)
    }

    /// The spec, an uninterrupted run's database, and a second run's database and context with
    /// every stage before evidence done.
    func referenceAndRunBeforeEvidence() throws -> (spec: String, reference: String, path: String, ctx: RunContext) {
        let spec = try writeSpec()
        let reference = dir.appendingPathComponent("reference.sqlite").path
        _ = try runInProcess(spec: spec, db: reference)
        let path = dir.appendingPathComponent("second.sqlite").path
        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: try RunDatabase(path: path), quiet: true)
        _ = try PipelineRunner(context: ctx).run(Array(Stage.allCases.prefix { $0 < .evidence }))
        return (spec, reference, path, ctx)
    }

    /// Two array tasks share the evidence rankings (the first exits saying the others are left,
    /// the second finishes and tests): the tables equal one process's.
    func testEvidenceShardedOverArrayTasksEqualsOneProcess() throws {
        let (_, one, two, ctx) = try referenceAndRunBeforeEvidence()
        let database = ctx.db
        ctx.shardSelection = try ShardSelection(index: 0, count: 2)
        XCTAssertThrowsError(try PipelineRunner(context: ctx).run([.evidence])) { e in
            guard case PipelineError.shardsLeft(let stage, _, let left, let total, let unit) = e else { return XCTFail("\(e)") }
            XCTAssertEqual([stage, unit], ["evidence", "rankings"])
            XCTAssertEqual([left, total], [3, 6])
        }
        ctx.shardSelection = try ShardSelection(index: 1, count: 2)
        _ = try PipelineRunner(context: ctx).run([.evidence])
        ctx.shardSelection = nil
        _ = try PipelineRunner(context: ctx).run(Stage.allCases)
        let a = try RunDatabase(path: one, readOnly: true), b = try RunDatabase(path: two, readOnly: true)
        XCTAssertEqual(try a.curvePoints(), try b.curvePoints())
        XCTAssertEqual(try a.significance(), try b.significance())
        XCTAssertEqual(try a.curveAreas(), try b.curveAreas())
        // A run finished before migration 0009 has its evidence and report ledger rows dropped (and keeps
        // its curve tables): the next run redoes the stage over the old rows and ends with the same tables.
        try database.write("simulating migration 0009") { try $0.execute(sql: "DELETE FROM stages WHERE stage IN ('evidence', 'report')") }
        XCTAssertEqual(try PipelineRunner(context: ctx).run(Stage.allCases).filter(\.ran).map(\.stage), [.evidence, .report])
        XCTAssertEqual(try a.significance(), try b.significance())
        XCTAssertEqual(try a.curveAreas(), try b.curveAreas())
    }

    /// `evaluation.ablation: mean`: every unkept neuron's activation becomes its mean over the
    /// selection split. An evaluation equals the submodel built directly from the means
    /// (`NeuronEdit`, checked against torch hooks in EditTests), and differs from zero ablation.
    /// With weight granularity the spec is refused, naming the key.
    func testMeanAblationEvaluatesTheMeanReplacedSubmodel() throws {
        let base = try String(contentsOfFile: try writeSpec(), encoding: .utf8)
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: base + "\nevaluation: {ablation: mean}")) { e in
            XCTAssertTrue("\(e)".contains("at evaluation.ablation: mean ablation") && "\(e)".contains("attribution.granularity: [neuron]"), "\(e)")
        }
        func run(_ ablation: String) throws -> (RunDatabase, RunContext) {
            let spec = dir.appendingPathComponent("\(ablation).yaml").path
            try base.replacingOccurrences(of: "attribution: {steps: 4,", with: "attribution: {granularity: [neuron], modules: [value, intermediate], steps: 4,")
                .appending("\nevaluation: {ablation: \(ablation)}\nsanity: {model_randomization: false, label_randomization: false}")
                .write(toFile: spec, atomically: true, encoding: .utf8)
            let path = dir.appendingPathComponent("\(ablation).sqlite").path
            _ = try runInProcess(spec: spec, db: path)
            return (try RunDatabase(path: path, readOnly: true), try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: try RunDatabase(path: path), quiet: true))
        }
        let (mean, ctx) = try run("mean"), (zero, _) = try run("zero")
        XCTAssertEqual(try mean.stage("evaluate")!.parameters, "evaluation.ablation\tmean")
        XCTAssertEqual(try zero.stage("evaluate")!.parameters, "", "the default adds no parameter: keys of older runs are unchanged")
        XCTAssertEqual(try mean.sanityChecks(), [], "sanity checks off")

        let model = try ModelStore.finalModel(ctx, stage: "evaluate")
        let layout = try ScoreLayout(config: model.config, modules: [.value, .intermediate], granularity: .neuron)
        let select = try SplitData.load(ctx, split: .select)
        let means = NeuronEdit.means(model: model, sequences: select.examples.map(\.tokens), layout: layout)
        let test = try SplitData.load(ctx, split: .test)
        let full = model.parameters
        let evaluations = try mean.evaluations().filter { $0.method == "activation" }
        XCTAssertEqual(evaluations.count, 2)
        var differs = false
        for e in evaluations {
            let ranks = ScoreRanking.ranks(try mean.scores(e.ranking))
            let kept = ranks.map { $0 <= SelectStage.keptCount(e.retentionFraction, total: layout.count) }
            model.parameters = NeuronEdit.meanAblated(full, layout: layout, kept: kept, means: means)
            let trainer = Trainer(model: model, optimizer: AdamWConfig(learningRate: 0), batchSize: 16, maxGradNorm: nil)
            let predictions = trainer.evaluate(test.examples, batchSize: 16).predictions
            XCTAssertEqual(e.nCorrect, zip(predictions, test.examples).filter { $0 == $1.label }.count, "\(e.retentionFraction)")
            let z = try zero.evaluations().first { $0.ranking == e.ranking && $0.retentionFraction == e.retentionFraction }!
            if z.macroF1 != e.macroF1 { differs = true }
        }
        XCTAssertTrue(differs, "mean and zero ablation evaluate different submodels")
    }

    /// The sanity sequences are taken class by class in turn: every class is represented as soon
    /// as there are as many sequences as classes, and the order stays the attribution order.
    func testSanitySampleTakesEveryClassInTurn() {
        let examples = [0, 0, 0, 1, 1, 2, 0, 2].enumerated().map { Example(tokens: [0, Int32($0.offset + 4), 2], label: $0.element) }
        XCTAssertEqual(SanityStage.sample(examples, count: 3).map(\.label), [0, 1, 2])
        XCTAssertEqual(SanityStage.sample(examples, count: 5).map { $0.tokens[1] - 4 }, [0, 1, 3, 4, 5])
        XCTAssertEqual(SanityStage.sample(examples, count: 100), examples)
    }

    /// A process running another spec replaces some of this run's finished evidence units while it
    /// works (their content key changes): the combine refuses, nothing is recorded, and a rerun
    /// alone completes with the uninterrupted run's tables.
    func testEvidenceRefusesToCombineUnitsOfAnotherSpec() throws {
        let (spec, reference, path, ctx) = try referenceAndRunBeforeEvidence()
        ctx.debug.shardDelayMilliseconds = 150
        let other = try RunDatabase(path: path)
        let failed = expectation(description: "the evidence stage refuses")
        DispatchQueue.global().async {
            do { _ = try PipelineRunner(context: ctx).run([.evidence]); XCTFail("combined units of another key") } catch {
                XCTAssertTrue("\(error)".contains("written with other evidence parameters by another process"), "\(error)")
                failed.fulfill()
            }
        }
        // Once two units are finished, "another process" claims the first under its own key.
        let deadline = Date().addingTimeInterval(60)
        while (try other.evidenceUnitProgress().done) < 2 && Date() < deadline { usleep(20_000) }
        try other.write("simulating another spec") { try $0.execute(sql: "UPDATE evidence_units SET content_key = 'another spec' WHERE rowid = (SELECT MIN(rowid) FROM evidence_units)") }
        wait(for: [failed], timeout: 120)
        XCTAssertNil(try other.stage("evidence"))
        _ = try runInProcess(spec: spec, db: path)
        let a = try RunDatabase(path: reference, readOnly: true)
        XCTAssertEqual(try a.curvePoints(), try other.curvePoints())
        XCTAssertEqual(try a.significance(), try other.significance())
    }
}
