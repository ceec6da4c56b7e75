import Attribution
import ESM
import Foundation
import Store
import Training

/// Stage 8: evidence that a ranking is special (issue 11). For every ranking the attribute
/// stage stored (method x granularity x target) and for `evidence.random_rankings` random
/// rankings per granularity (the random baseline's seeded uniform scores, seeds 1 ... N), the
/// test-split accuracy, macro-F1 and mean P(true class) of the submodel at every fraction of
/// `evidence.fractions` in each direction: `retain` keeps the ranking's top fraction and
/// ablates the rest (the paper's retention; ties by canonical order, as select keeps them),
/// `delete` ablates the top fraction and keeps the rest. Ablation is the evaluate stage's
/// (`Submodel.masked`: zero weights, or a neuron's weight row and bias).
///
/// Each ranking's curves are one resumable unit, committed with its points, so a killed run
/// redoes only unfinished rankings. Once every unit is done:
/// - each accuracy carries a percentile bootstrap 95% interval over the test sequences
///   (`evidence.bootstrap_resamples`, seeded; `EvidenceStatistics.bootstrapInterval`);
/// - curve areas: the normalised area over log10(fraction) (`EvidenceStatistics.normalizedArea`);
/// - per attributed ranking, direction and fraction, and per area, a one-sided permutation
///   test against the random rankings of its granularity (`EvidenceStatistics.permutationPValue`:
///   retain asks "keeps more accuracy than random", delete "loses more"), with the effect size in
///   random-sd units.
enum EvidenceStage: StageImplementation {
    /// Every `evidence` key and the test split's role (fixed).
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        flatten(canonicalJSON(ctx.spec.evidence), prefix: "evidence")
    }

    /// A ranking to draw curves for: its id and layout (its scores are read, or for random regenerated, when it runs).
    struct Unit {
        var id: RankingID
        var layout: ScoreLayout
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.evidence
        let model = try ModelStore.finalModel(ctx, stage: "evidence")
        let test = try SplitData.load(ctx, split: .test)
        guard !test.examples.isEmpty else { throw PipelineError.empty(stage: "evidence", what: "the test split is empty") }
        let layouts = try ctx.spec.attribution.layouts(model.config)
        var units: [Unit] = []
        for id in try ctx.db.scoreSets() where id.method != Baseline.random {
            guard let g = Granularity(rawValue: id.granularity), let layout = layouts[g] else {
                throw StoreError.corrupt("score set \(id) does not match the spec's attribution granularity; run with --force attribute")
            }
            units.append(Unit(id: id, layout: layout))
        }
        for (g, layout) in layouts.sorted(by: { $0.key < $1.key }) {
            for seed in 1 ... spec.randomRankings {
                units.append(Unit(id: RankingID(method: Baseline.random, granularity: g.rawValue, seed: seed), layout: layout))
            }
        }
        // Two fractions that keep the same number of elements would give the same submodel twice
        // (and count twice among the tests): refuse before any work.
        for (g, layout) in layouts {
            let counts = spec.fractions.sorted().map { SelectStage.keptCount($0, total: layout.count) }
            if Set(counts).count < counts.count {
                throw SpecError.invalid(path: "evidence.fractions", message: "at \(g) granularity the \(layout.count) scored elements give "
                    + "the same number kept for two fractions (\(zip(spec.fractions.sorted(), counts).map { "\($0) -> \($1)" }.joined(separator: ", "))); "
                    + "use fractions at least 1/\(layout.count) apart")
            }
        }
        let upstream = try ctx.db.stage(Stage.evaluate.rawValue).map { LedgerRequirement(stage: $0.stage, contentKey: $0.contentKey) }
        let stale = try ctx.db.discardEvidenceUnits(otherThan: key)
        if stale > 0 { ctx.log("  discarded \(stale) finished curves computed with other evidence parameters or another model") }
        let done = try ctx.db.finishedEvidenceUnits(contentKey: key)
        let todo = units.filter { !done.contains($0.id) }
        let directions = spec.directions.sorted(), fractions = spec.fractions.sorted()
        ctx.log("  \(units.count - units.filter { $0.id.method == Baseline.random }.count) rankings + \(spec.randomRankings) random rankings x \(layouts.count) granularities; "
                + "\(directions.count) directions x \(fractions.count) fractions: \(todo.count) of \(units.count) rankings to do")

        let trainer = Trainer(model: model, optimizer: AdamWConfig(learningRate: 0), batchSize: ctx.spec.train.batchSize, maxGradNorm: nil)
        let labels = test.examples.map(\.label)
        let classes = model.config.numLabels
        let full = model.parameters
        let progress = ProgressReporter("evidence", total: units.count, unit: "rankings", quiet: ctx.quiet)
        var finished = done.count
        for unit in todo {
            let t0 = Date()
            let scores = unit.id.method == Baseline.random ? Baseline.randomScores(count: unit.layout.count, seed: unit.id.seed) : try ctx.db.scores(unit.id)
            guard scores.count == unit.layout.count else {
                throw StoreError.corrupt("the scores of \(unit.id) number \(scores.count), the spec's layout \(unit.layout.count); run with --force attribute")
            }
            let ranks = ScoreRanking.ranks(scores)
            var points: [CurvePointRecord] = []
            for direction in directions {
                for fraction in fractions {
                    let k = SelectStage.keptCount(fraction, total: unit.layout.count)
                    let kept = ranks.map { direction == .retain ? $0 <= k : $0 > k }
                    model.parameters = Submodel.masked(full, layout: unit.layout, kept: kept)
                    let out = trainer.evaluate(test.examples, batchSize: ctx.spec.train.batchSize)
                    let m = ClassificationMetrics(labels: labels, predictions: out.predictions, classes: classes)
                    let correct = zip(labels, out.predictions).map { $0 == $1 ? 1.0 : 0.0 }
                    let ci = EvidenceStatistics.bootstrapInterval(correct, resamples: spec.bootstrapResamples, seed: spec.seed)
                    points.append(CurvePointRecord(ranking: unit.id, direction: direction.rawValue, fraction: fraction,
                                                   modules: unit.layout.modules.map(\.rawValue).joined(separator: ","),
                                                   nAblated: direction == .retain ? unit.layout.count - k : k, nTotal: unit.layout.count,
                                                   nTest: m.n, nCorrect: m.correct, accuracy: m.accuracy, accuracyLow: ci.low, accuracyHigh: ci.high,
                                                   macroF1: m.macroF1, pTrue: out.trueClassProbabilities.reduce(0, +) / Double(max(1, m.n))))
                }
            }
            model.parameters = full
            try ctx.db.commitEvidenceUnit(unit.id, points: points, contentKey: key, seconds: Date().timeIntervalSince(t0), requiring: upstream)
            finished += 1
            progress.update(finished)
            DebugHooks.pause(ctx.debug.shardDelayMilliseconds)
        }

        // Every ranking's curves are done: areas and tests against the random rankings.
        let points = try ctx.db.curvePoints()
        let (auc, significance) = tests(points)
        let rows = try ctx.db.commitEvidence(auc: auc, significance: significance,
                                             ledger: StageRecord(stage: Stage.evidence.rawValue, contentKey: key, rowsWritten: 0,
                                                                 seconds: Date().timeIntervalSince(start)),
                                             requiring: upstream)
        for s in significance where s.fraction == fractions.first || s.fraction == fractions.last {
            ctx.log(String(format: "  %@/%@%@ %@ %.3g: accuracy %.3f [%.3f, %.3f], random %.3f ± %.3f, p = %.3g",
                           s.ranking.method, s.ranking.granularity, s.ranking.targetClass >= 0 ? " class \(s.ranking.targetClass)" : "",
                           s.direction, s.fraction, s.accuracy, s.accuracyLow, s.accuracyHigh, s.randomMean, s.randomSD ?? 0, s.pValue))
        }
        return rows
    }

    /// Curve areas for every ranking and the permutation tests of the attributed rankings
    /// against the random rankings of their granularity, from the stored points.
    static func tests(_ points: [CurvePointRecord]) -> (auc: [CurveAUCRecord], significance: [SignificanceRecord]) {
        struct CurveKey: Hashable { var ranking: RankingID; var direction: String }
        var curves: [CurveKey: [CurvePointRecord]] = [:]
        for p in points { curves[CurveKey(ranking: p.ranking, direction: p.direction), default: []].append(p) }
        func area(_ ps: [CurvePointRecord], _ value: (CurvePointRecord) -> Double) -> Double {
            EvidenceStatistics.normalizedArea(x: ps.map { log10($0.fraction) }, y: ps.map(value)) ?? .nan
        }
        // Higher is better for retain, lower for delete: test the negated values for delete.
        func oriented(_ v: Double, _ direction: String) -> Double { direction == CurveDirection.delete.rawValue ? -v : v }
        var randomAreas: [String: [Double]] = [:]   // granularity/direction -> random accuracy areas
        var randomAccuracy: [String: [Double]] = [:] // granularity/direction/fraction -> random accuracies
        // In ranking order (seeds ascending), so every sum runs in one fixed order whatever the
        // dictionary's (per-process) iteration order: resumed and uninterrupted runs agree bit for bit.
        let ordered = curves.sorted { ($0.key.ranking, $0.key.direction) < ($1.key.ranking, $1.key.direction) }
        for (k, ps) in ordered where k.ranking.method == Baseline.random {
            randomAreas["\(k.ranking.granularity)/\(k.direction)", default: []].append(area(ps, \.accuracy))
            for p in ps { randomAccuracy["\(k.ranking.granularity)/\(k.direction)/\(p.fraction)", default: []].append(p.accuracy) }
        }
        var auc: [CurveAUCRecord] = [], significance: [SignificanceRecord] = []
        for (k, ps) in ordered {
            let a = area(ps, \.accuracy)
            var p: Double?, effect: Double?
            if k.ranking.method != Baseline.random, let null = randomAreas["\(k.ranking.granularity)/\(k.direction)"] {
                p = EvidenceStatistics.permutationPValue(observed: oriented(a, k.direction), null: null.map { oriented($0, k.direction) })
                effect = EvidenceStatistics.effectSize(observed: a, null: null)
            }
            auc.append(CurveAUCRecord(ranking: k.ranking, direction: k.direction, accuracy: a, macroF1: area(ps, \.macroF1), pTrue: area(ps, \.pTrue),
                                      pValue: p, effectSize: effect))
            guard k.ranking.method != Baseline.random else { continue }
            for point in ps.sorted(by: { $0.fraction < $1.fraction }) {
                guard let null = randomAccuracy["\(k.ranking.granularity)/\(k.direction)/\(point.fraction)"], !null.isEmpty else { continue }
                let (mean, sd) = EvidenceStatistics.meanAndSD(null)
                significance.append(SignificanceRecord(
                    ranking: k.ranking, direction: k.direction, fraction: point.fraction, accuracy: point.accuracy,
                    accuracyLow: point.accuracyLow, accuracyHigh: point.accuracyHigh, randomMean: mean, randomSD: sd, nRandom: null.count,
                    pValue: EvidenceStatistics.permutationPValue(observed: oriented(point.accuracy, k.direction), null: null.map { oriented($0, k.direction) }),
                    effectSize: EvidenceStatistics.effectSize(observed: point.accuracy, null: null)))
            }
        }
        return (auc, significance)
    }
}
