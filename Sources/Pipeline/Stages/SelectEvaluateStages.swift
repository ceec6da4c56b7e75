import Attribution
import ESM
import Foundation
import Store
import Training

/// Stage 6: for each scoring method and retention fraction, keeps the top fraction of all
/// q/k/v weights by score (globally over the layers x 3 matrices; ties by canonical
/// order). The random baseline scores every weight with a uniform draw per seed and keeps
/// its top fraction the same way, i.e. a uniformly random subset of the same size.
enum SelectStage {
    /// Number of weights kept for a fraction: round(fraction * total), at least 1.
    static func keptCount(_ fraction: Double, total: Int) -> Int {
        max(1, min(total, Int((fraction * Double(total)).rounded())))
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.selection
        let model = try ModelStore.finalModel(ctx, stage: "select")
        let layout = ScoreLayout.paper(model.config)
        let scoreShape = ScoreShape(layers: layout.layers, rows: model.config.hiddenSize, cols: model.config.hiddenSize)
        var sets: [(method: String, seed: Int, scores: [Float], ranks: [Int])] = []
        for method in ctx.spec.attribution.methods {
            sets.append((method.rawValue, 0, try ctx.db.scores(method: method.rawValue), try ctx.db.ranks(method: method.rawValue)))
        }
        var randomScores: [(seed: Int, values: [Float], ranks: [Int32])] = []
        for seed in spec.randomSeeds {
            var rng = SplitMix64(seed: UInt64(bitPattern: Int64(seed)))
            let values = (0 ..< layout.count).map { _ in Float(rng.nextUnitDouble()) }
            let ranks = ScoreRanking.ranks(values)   // ranked once: used here and stored
            randomScores.append((seed, values, ranks))
            sets.append(("random", seed, values, ranks.map(Int.init)))
        }
        var selections: [SelectionRecord] = []
        var densities: [DensityRecord] = []
        for set in sets {
            let ranks = set.ranks
            for fraction in spec.retentionFractions.sorted(by: >) {
                let k = keptCount(fraction, total: layout.count)
                var minKept = Float.infinity
                for block in layout.blocks {
                    var kept = 0
                    for i in block.range where ranks[i] <= k {
                        kept += 1
                        minKept = min(minKept, set.scores[i])
                    }
                    densities.append(DensityRecord(method: set.method, retentionFraction: fraction, seed: set.seed,
                                                   layer: block.site.layer, module: block.site.module.rawValue, nKept: kept, nTotal: block.count))
                }
                selections.append(SelectionRecord(method: set.method, retentionFraction: fraction, seed: set.seed,
                                                  nKept: k, nTotal: layout.count, minKeptScore: Double(minKept)))
            }
        }
        try ctx.db.commitSelections(randomScores: randomScores, shape: scoreShape, selections: selections, densities: densities,
                                    ledger: StageRecord(stage: "select", contentKey: key, rowsWritten: selections.count,
                                                        seconds: Date().timeIntervalSince(start)))
        ctx.log("  \(selections.count) selections (\(ctx.spec.attribution.methods.count) methods + random x \(spec.randomSeeds.count) seeds, \(spec.retentionFractions.count) fractions)")
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

/// Stage 7: the full model (method `full`, fraction 1.0) and every stored selection's
/// submodel (unkept q/k/v weights zeroed, and the bias of a fully dropped row) on `test`.
enum EvaluateStage {
    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let model = try ModelStore.finalModel(ctx, stage: "evaluate")
        let test = try SplitData.load(ctx, split: "test")
        guard !test.examples.isEmpty else { throw PipelineError.empty(stage: "evaluate", what: "the test split is empty") }
        let classes = model.config.numLabels
        let trainer = Trainer(model: model, optimizer: AdamWConfig(learningRate: 0), batchSize: ctx.spec.train.batchSize, maxGradNorm: nil)
        let labels = test.examples.map(\.label)
        let full = model.parameters
        let selections = try ctx.db.selections()
        let progress = ProgressReporter("evaluate", total: selections.count + 1, unit: "models", quiet: ctx.quiet)

        func evaluate(method: String, fraction: Double, seed: Int) -> EvaluationRecord {
            let predictions = trainer.evaluate(test.examples, batchSize: ctx.spec.train.batchSize).predictions
            let m = ClassificationMetrics(labels: labels, predictions: predictions, classes: classes)
            return EvaluationRecord(method: method, retentionFraction: fraction, seed: seed, nTest: m.n, nCorrect: m.correct,
                                    accuracy: m.accuracy, macroF1: m.macroF1, perClass: m.perClass)
        }
        var records = [evaluate(method: "full", fraction: 1.0, seed: 0)]
        progress.update(1)
        var ranksCache: [String: [Int]] = [:]
        for s in selections {
            let cacheKey = "\(s.method)/\(s.seed)"
            if ranksCache[cacheKey] == nil { ranksCache[cacheKey] = try ctx.db.ranks(method: s.method, seed: s.seed) }
            let kept = ranksCache[cacheKey]!.map { $0 <= s.nKept }
            model.parameters = Submodel.masked(full, layout: .paper(model.config), kept: kept)
            records.append(evaluate(method: s.method, fraction: s.retentionFraction, seed: s.seed))
            progress.update(records.count)
            if let ms = debugBatchDelayMilliseconds { usleep(UInt32(ms) * 1000) }
        }
        model.parameters = full
        try ctx.db.commitEvaluations(records, ledger: StageRecord(stage: "evaluate", contentKey: key, rowsWritten: records.count,
                                                                  seconds: Date().timeIntervalSince(start)))
        ctx.log(String(format: "  full model test accuracy %.4f (macro-F1 %.4f) on %d sequences", records[0].accuracy, records[0].macroF1, records[0].nTest))
        return records.count
    }
}
