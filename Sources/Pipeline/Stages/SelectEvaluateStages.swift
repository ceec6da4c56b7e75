import Attribution
import ESM
import Foundation
import Store
import Training

/// Stage 6: for each ranking the attribute stage stored (method x granularity x target) and
/// each retention fraction, keeps the top fraction of its scored weights or neurons by score
/// (globally over every layer x module block of its layout; ties by canonical order). The
/// random baseline scores every element of each granularity's layout with a uniform draw per
/// seed and keeps its top fraction the same way, i.e. a uniformly random subset of the same size.
enum SelectStage: StageImplementation {
    /// Every `selection` key.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        flatten(canonicalJSON(ctx.spec.selection), prefix: "selection")
    }

    /// Number of elements kept for a fraction: round(fraction * total), at least 1.
    static func keptCount(_ fraction: Double, total: Int) -> Int {
        max(1, min(total, Int((fraction * Double(total)).rounded())))
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.selection
        let model = try ModelStore.finalModel(ctx, stage: "select")
        let layouts = try ctx.spec.attribution.layouts(model.config)
        var sets: [(id: RankingID, layout: ScoreLayout, scores: [Float], ranks: [Int])] = []
        for id in try ctx.db.scoreSets() where id.method != Baseline.random {
            guard let g = Granularity(rawValue: id.granularity), let layout = layouts[g] else {
                throw StoreError.corrupt("score set \(id) does not match the spec's attribution granularity; run with --force attribute")
            }
            let scores = try ctx.db.scores(id)
            sets.append((id, layout, scores, ScoreRanking.ranks(scores).map(Int.init)))
        }
        var randomSets: [ScoreSet] = []
        for (g, layout) in layouts.sorted(by: { $0.key < $1.key }) {
            for seed in spec.randomSeeds {
                let values = Baseline.randomScores(count: layout.count, seed: seed)
                let ranks = ScoreRanking.ranks(values)   // ranked once: used here and stored
                let id = RankingID(method: Baseline.random, granularity: g.rawValue, seed: seed)
                randomSets.append(ScoreSet(id: id, layout: layout.stored, values: values, ranks: ranks, storesScores: false))
                sets.append((id, layout, values, ranks.map(Int.init)))
            }
        }
        var selections: [SelectionRecord] = []
        var densities: [DensityRecord] = []
        for set in sets {
            let ranks = set.ranks, id = set.id
            for fraction in spec.retentionFractions.sorted(by: >) {
                let k = keptCount(fraction, total: set.layout.count)
                var minKept = Float.infinity
                for block in set.layout.blocks {
                    var kept = 0
                    for i in block.range where ranks[i] <= k {
                        kept += 1
                        minKept = min(minKept, set.scores[i])
                    }
                    densities.append(DensityRecord(method: id.method, granularity: id.granularity, targetClass: id.targetClass,
                                                   retentionFraction: fraction, seed: id.seed,
                                                   layer: block.site.layer, module: block.site.module.rawValue, nKept: kept, nTotal: block.count))
                }
                selections.append(SelectionRecord(method: id.method, granularity: id.granularity, targetClass: id.targetClass,
                                                  retentionFraction: fraction, seed: id.seed,
                                                  nKept: k, nTotal: set.layout.count, minKeptScore: Double(minKept)))
            }
        }
        try ctx.db.commitSelections(randomScores: randomSets, selections: selections, densities: densities,
                                    ledger: StageRecord(stage: Stage.select.rawValue, contentKey: key, rowsWritten: selections.count,
                                                        seconds: Date().timeIntervalSince(start)))
        ctx.log("  \(selections.count) selections (\(sets.count - randomSets.count) rankings + random x \(spec.randomSeeds.count) seeds x \(layouts.count) granularities, \(spec.retentionFractions.count) fractions)")
        return selections.count
    }
}

/// Accuracy, macro-F1 and per-class counts of predictions.
struct ClassificationMetrics {
    var n: Int
    var correct: Int
    var accuracy: Double
    var macroF1: Double
    var perClass: [(classIndex: Int, n: Int, nCorrect: Int, f1: Double)]

    /// Macro-F1 averages the per-class F1 = 2TP / (2TP + FP + FN) over all classes of the
    /// run (a class with no test sequence and no prediction counts as F1 = 0; sklearn's
    /// `f1_score(average="macro", labels=all classes, zero_division=0)`).
    init(labels: [Int], predictions: [Int], classes: Int) {
        n = labels.count
        correct = zip(labels, predictions).filter { $0 == $1 }.count
        accuracy = n > 0 ? Double(correct) / Double(n) : 0
        var tp = [Int](repeating: 0, count: classes), fp = tp, fn = tp, count = tp
        for (y, p) in zip(labels, predictions) {
            count[y] += 1
            if y == p { tp[y] += 1 } else { fp[p] += 1; fn[y] += 1 }
        }
        perClass = (0 ..< classes).map { c in
            let d = 2 * tp[c] + fp[c] + fn[c]
            return (c, count[c], tp[c], d > 0 ? Double(2 * tp[c]) / Double(d) : 0)
        }
        macroF1 = classes > 0 ? perClass.reduce(0) { $0 + $1.f1 } / Double(classes) : 0
    }
}

/// Stage 7: the full model (method `full`, granularity `none`, fraction 1.0) and every stored
/// selection's submodel on `test` (`Submodel.masked`: weight granularity zeroes the unkept
/// weights and the bias of a fully dropped row; neuron granularity zeroes the unkept units'
/// weight rows and biases, i.e. their activations; with `evaluation.ablation: mean` an unkept
/// neuron's activation is its mean instead, see `Ablator`).
enum EvaluateStage: StageImplementation {
    /// None of its own (it evaluates what select kept, on the test split), except
    /// `evaluation.ablation` when it is not the default `zero` (so runs recorded before the key
    /// existed keep their content keys).
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        ctx.spec.evaluation.ablation == .zero ? [] : [("evaluation.ablation", ctx.spec.evaluation.ablation.rawValue)]
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let model = try ModelStore.finalModel(ctx, stage: "evaluate")
        let test = try SplitData.load(ctx, split: .test)
        guard !test.examples.isEmpty else { throw PipelineError.empty(stage: "evaluate", what: "the test split is empty") }
        let classes = model.config.numLabels
        let layouts = try ctx.spec.attribution.layouts(model.config)
        let trainer = Trainer(model: model, optimizer: AdamWConfig(learningRate: 0), batchSize: ctx.spec.train.batchSize, maxGradNorm: nil)
        let labels = test.examples.map(\.label)
        let full = model.parameters
        let ablator = try Ablator(ctx, model: model, layouts: layouts)
        let selections = try ctx.db.selections()
        let progress = ProgressReporter("evaluate", total: selections.count + 1, unit: "models", quiet: ctx.quiet)

        var fullPredictions: [PredictionRecord] = []
        func evaluate(_ id: RankingID, fraction: Double) -> EvaluationRecord {
            let result = trainer.evaluate(test.examples, batchSize: ctx.spec.train.batchSize)
            if id.method == Baseline.full {
                fullPredictions = test.ids.indices.map { i in
                    PredictionRecord(sequenceID: test.ids[i], trueClass: labels[i], predictedClass: result.predictions[i],
                                     pTrue: result.probabilities[i][labels[i]], pPredicted: result.probabilities[i][result.predictions[i]])
                }
            }
            let m = ClassificationMetrics(labels: labels, predictions: result.predictions, classes: classes)
            return EvaluationRecord(method: id.method, granularity: id.granularity, targetClass: id.targetClass,
                                    retentionFraction: fraction, seed: id.seed, nTest: m.n, nCorrect: m.correct,
                                    accuracy: m.accuracy, macroF1: m.macroF1, perClass: m.perClass)
        }
        var records = [evaluate(RankingID(method: Baseline.full, granularity: Baseline.noGranularity), fraction: 1.0)]
        progress.update(1)
        var ranksCache: [RankingID: [Int]] = [:]
        for s in selections {
            guard let g = Granularity(rawValue: s.granularity), let layout = layouts[g] else {
                throw StoreError.corrupt("selection \(s.ranking) does not match the spec's attribution granularity; run with --force attribute")
            }
            if ranksCache[s.ranking] == nil {
                // The random baseline's scores are not stored: the same seeded draw as select's.
                let scores = s.method == Baseline.random ? Baseline.randomScores(count: layout.count, seed: s.seed) : try ctx.db.scores(s.ranking)
                guard scores.count == layout.count else {
                    throw StoreError.corrupt("the scores of \(s.ranking) number \(scores.count), the spec's layout \(layout.count); run with --force attribute")
                }
                ranksCache[s.ranking] = ScoreRanking.ranks(scores).map(Int.init)
            }
            let kept = ranksCache[s.ranking]!.map { $0 <= s.nKept }
            model.parameters = ablator.submodel(layout: layout, kept: kept)
            records.append(evaluate(s.ranking, fraction: s.retentionFraction))
            progress.update(records.count)
            DebugHooks.pause(ctx.debug.batchDelayMilliseconds)
        }
        model.parameters = full
        try ctx.db.commitEvaluations(records, predictions: fullPredictions, ledger: StageRecord(stage: Stage.evaluate.rawValue, contentKey: key, rowsWritten: records.count,
                                                                  seconds: Date().timeIntervalSince(start)))
        ctx.log(String(format: "  full model test accuracy %.4f (macro-F1 %.4f) on %d sequences", records[0].accuracy, records[0].macroF1, records[0].nTest))
        return records.count
    }
}
