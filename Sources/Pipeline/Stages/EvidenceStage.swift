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
/// The two groups of test sequences a knowledge edit is measured on (`knowledge_edits.sequences`).
enum EditedSequences: String, CaseIterable {
    /// Sequences labelled with the edited ranking's class.
    case ownClass = "class"
    /// Every other test sequence.
    case otherClasses = "other"
}

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
        if let neurons = layouts[.neuron], spec.editTop >= neurons.count, !spec.editFactors.isEmpty,
           try ctx.db.scoreSets().contains(where: { $0.granularity == Granularity.neuron.rawValue && $0.targetClass >= 0 }) {
            throw SpecError.invalid(path: "evidence.edit_top", message: "\(spec.editTop) neurons is every one of the \(neurons.count) scored neurons: each "
                + "per-class edit and each random set would be the same set. Use fewer (the default is 10), or edit_factors: [] to turn the edits off")
        }
        let upstream = try ctx.db.stage(Stage.evaluate.rawValue).map { LedgerRequirement(stage: $0.stage, contentKey: $0.contentKey) }
        let stale = try ctx.db.discardEvidenceUnits(otherThan: key)
        if stale > 0 { ctx.log("  discarded \(stale) finished curves computed with other evidence parameters or another model") }
        let done = try ctx.db.finishedEvidenceUnits(contentKey: key)
        // As one task of an array job: the rankings i with i % N == index (the list's order is fixed by the spec and the stored sets).
        let mine = units.indices.filter { ctx.shardSelection?.owns($0) ?? true }.map { units[$0] }
        let todo = mine.filter { !done.contains($0.id) }
        let directions = spec.directions.sorted(), fractions = spec.fractions.sorted()
        ctx.log("  \(units.count - units.filter { $0.id.method == Baseline.random }.count) rankings + \(spec.randomRankings) random rankings x \(layouts.count) granularities; "
                + "\(directions.count) directions x \(fractions.count) fractions: \(todo.count) of \(units.count) rankings to do"
                + (ctx.shardSelection.map { " (\($0): \(mine.count) rankings)" } ?? ""))

        let trainer = Trainer(model: model, optimizer: AdamWConfig(learningRate: 0), batchSize: ctx.spec.train.batchSize, maxGradNorm: nil)
        let labels = test.examples.map(\.label)
        let classes = model.config.numLabels
        let full = model.parameters
        let ablator = try Ablator(ctx, model: model, layouts: layouts)
        let progress = ProgressReporter("evidence", total: units.count, unit: "rankings", quiet: ctx.quiet)
        var finished = done.count
        var unitSeconds = 0.0   // this process's units (the ledger counts every process's: evidence_units)
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
                    model.parameters = ablator.submodel(layout: unit.layout, kept: kept)
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
            let seconds = Date().timeIntervalSince(t0)
            unitSeconds += seconds
            try ctx.db.commitEvidenceUnit(unit.id, points: points, contentKey: key, seconds: seconds, requiring: upstream)
            finished += 1
            progress.update(finished)
            DebugHooks.pause(ctx.debug.shardDelayMilliseconds)
        }

        // Other tasks of an array job may still be working on their rankings; a process running
        // another spec on the same database may have replaced some (then nothing is combined).
        let finishedNow = try ctx.db.finishedEvidenceUnits(contentKey: key)
        let left = units.filter { !finishedNow.contains($0.id) }.count
        if let selection = ctx.shardSelection {
            if left > 0 { throw PipelineError.shardsLeft(stage: Stage.evidence.rawValue, task: selection.description, left: left, total: units.count, unit: "rankings") }
            if let recorded = try ctx.db.stage(Stage.evidence.rawValue), recorded.contentKey == key { return recorded.rowsWritten }
        } else if left > 0 {
            throw PipelineError.empty(stage: "evidence", what: "\(left) of \(units.count) rankings' curves were discarded or written with other evidence parameters "
                + "by another process while this one ran (do all processes on \(ctx.db.path) run the same spec?); nothing was combined. "
                + "Run the command again when the other process has stopped")
        }
        // Every ranking's curves are done: knowledge edits, then areas and tests against the random rankings.
        let edits = try knowledgeEdits(ctx, model: model, trainer: trainer, test: test.examples, layout: layouts[.neuron])
        model.parameters = full
        try ctx.db.replaceKnowledgeEdits(edits, requiring: upstream)
        for e in edits where e.sequences == EditedSequences.ownClass.rawValue && e.pValue != nil {
            ctx.log(String(format: "  edit %@ class %d x%g: P(class) %.3f -> %.3f, log-odds %+.2f (random %+.2f ± %.2f, p = %.3g), predictions changed %.0f%%",
                           e.ranking.method, e.ranking.targetClass, e.factor, e.pBefore, e.pAfter, e.logOddsChange, e.randomMean ?? .nan,
                           e.randomSD ?? .nan, e.pValue ?? .nan, 100 * e.predictionChanged))
        }
        let points = try ctx.db.curvePoints(contentKey: key)
        let (auc, significance) = tests(points)
        let rows = try ctx.db.commitEvidence(auc: auc, significance: significance,
                                             ledger: StageRecord(stage: Stage.evidence.rawValue, contentKey: key, rowsWritten: 0,
                                                                 seconds: try ctx.db.evidenceUnitProgress().seconds + Date().timeIntervalSince(start) - unitSeconds),
                                             requiring: upstream)
        for s in significance where s.fraction == fractions.first || s.fraction == fractions.last {
            ctx.log(String(format: "  %@/%@%@ %@ %.3g: accuracy %.3f [%.3f, %.3f], random %.3f ± %.3f, p = %.3g",
                           s.ranking.method, s.ranking.granularity, s.ranking.targetClass >= 0 ? " class \(s.ranking.targetClass)" : "",
                           s.direction, s.fraction, s.accuracy, s.accuracyLow, s.accuracyHigh, s.randomMean, s.randomSD ?? 0, s.pValue))
        }
        return rows
    }

    /// Knowledge edits (issue 11; Dai et al. 2021, arXiv 2104.08696 section 4.2; EleutherAI
    /// `knowledge-neurons` `suppress_knowledge` / `enhance_knowledge`): for every per-class neuron
    /// ranking (method, class c), the activations of its top `evidence.edit_top` neurons are
    /// multiplied by each factor of `evidence.edit_factors` (`NeuronEdit.scaled`); on the test
    /// split, for the sequences labelled c and for the others, the mean P(c) before and after,
    /// the mean change of the log-odds of c (`EvidenceStatistics.logOdds`, nats), the mean
    /// relative change (p_after - p_before) / p_before (Dai et al.'s measure, kept for comparison:
    /// it explodes when P(c) was tiny before the edit) and the share of changed predictions
    /// (Niu et al., ICLR 2024, report both: probabilities often move while the arg-max does not).
    /// The control: `evidence.edit_random_sets` random sets of as many neurons (seeds 1 ... N of
    /// the random baseline's scores, one edited model per set and factor, measured for every
    /// class), whose log-odds changes give the attributed rows' null (one-sided permutation
    /// p-value: a larger decrease for factors below 1, a larger increase above).
    /// - Returns: [] without neuron granularity or per-class rankings.
    static func knowledgeEdits(_ ctx: RunContext, model: ESMClassifier, trainer: Trainer, test: [Example],
                               layout: ScoreLayout?) throws -> [KnowledgeEditRecord] {
        let spec = ctx.spec.evidence
        guard let layout else { return [] }
        let rankings = try ctx.db.scoreSets().filter { $0.granularity == Granularity.neuron.rawValue && $0.targetClass >= 0 && $0.method != Baseline.random }
        guard !rankings.isEmpty else { return [] }
        let full = model.parameters
        let batch = ctx.spec.train.batchSize
        let before = trainer.evaluate(test, batchSize: batch)
        let top = min(spec.editTop, layout.count)
        let modules = layout.modules.map(\.rawValue).joined(separator: ",")
        let classes = Array(Set(rankings.map(\.targetClass))).sorted()
        /// The edits of the `top` best of `scores`, one model per factor, measured for `classes`.
        func measure(_ scores: [Float], id: (Int) -> RankingID, classes: [Int]) -> [KnowledgeEditRecord] {
            let best = ScoreRanking.top(scores, count: top)   // exactly ranks 1 ... top
            var out: [KnowledgeEditRecord] = []
            for factor in spec.editFactors.sorted() {
                var factors = [Float](repeating: 1, count: layout.count)
                for i in best { factors[Int(i)] = Float(factor) }
                model.parameters = NeuronEdit.scaled(full, layout: layout, factors: factors)
                let after = trainer.evaluate(test, batchSize: batch)
                for c in classes {
                    for group in EditedSequences.allCases {
                        let members = test.indices.filter { (test[$0].label == c) == (group == .ownClass) }
                        guard !members.isEmpty else { continue }
                        let n = Double(members.count)
                        let p0 = members.map { before.probabilities[$0][c] }, p1 = members.map { after.probabilities[$0][c] }
                        let relative = zip(p0, p1).reduce(0.0) { $0 + ($1.1 - $1.0) / max($1.0, 1e-300) } / n
                        let logOdds = members.reduce(0.0) {
                            $0 + EvidenceStatistics.logOdds(logProbabilities: after.logProbabilities[$1], class: c)
                                - EvidenceStatistics.logOdds(logProbabilities: before.logProbabilities[$1], class: c)
                        } / n
                        let changed = members.filter { before.predictions[$0] != after.predictions[$0] }.count
                        out.append(KnowledgeEditRecord(ranking: id(c), factor: factor, sequences: group.rawValue, modules: modules, nNeurons: top,
                                                       nSequences: members.count, pBefore: p0.reduce(0, +) / n, pAfter: p1.reduce(0, +) / n,
                                                       logOddsChange: logOdds, relativeChange: relative, predictionChanged: Double(changed) / n))
                    }
                }
            }
            return out
        }
        // Each ranking's scores are read (or a random set drawn) once for all factors.
        var attributed: [KnowledgeEditRecord] = [], random: [KnowledgeEditRecord] = []
        for r in rankings {
            let scores = try ctx.db.scores(r)
            guard scores.count == layout.count else {
                throw StoreError.corrupt("the scores of \(r) number \(scores.count), the spec's layout \(layout.count); run with --force attribute")
            }
            attributed += measure(scores, id: { _ in r }, classes: [r.targetClass])
        }
        if spec.editRandomSets > 0 {
            for seed in 1 ... spec.editRandomSets {
                random += measure(Baseline.randomScores(count: layout.count, seed: seed),
                                  id: { RankingID(method: Baseline.random, granularity: Granularity.neuron.rawValue, targetClass: $0, seed: seed) },
                                  classes: classes)
            }
        }
        model.parameters = full
        for i in attributed.indices where attributed[i].sequences == EditedSequences.ownClass.rawValue {
            let a = attributed[i]
            let null = random.filter { $0.sequences == a.sequences && $0.factor == a.factor && $0.ranking.targetClass == a.ranking.targetClass }.map(\.logOddsChange)
            guard !null.isEmpty else { continue }
            let (mean, sd) = EvidenceStatistics.meanAndSD(null)
            let sign = a.factor < 1 ? -1.0 : 1.0
            attributed[i].randomMean = mean
            attributed[i].randomSD = sd
            attributed[i].nRandom = null.count
            attributed[i].pValue = EvidenceStatistics.permutationPValue(observed: sign * a.logOddsChange, null: null.map { sign * $0 })
        }
        return attributed + random
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
