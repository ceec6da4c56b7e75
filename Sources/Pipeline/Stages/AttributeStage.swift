import Attribution
import ESM
import Foundation
import Store

/// Stage 5: scores every q/k/v weight by each method over the selection split, in shards.
///
/// The selection split's sequences (ordered by id, optionally capped by
/// `attribution.max_sequences`) are cut into shards of `shard_size`. A shard's partial
/// sums and its done mark are one row of `shards`, committed in one transaction, so an
/// interrupted run redoes only unfinished shards. When every shard is done the sums are
/// added in shard order (a fixed order: the result does not depend on interruptions) and
/// the final scores are written to `neuron_scores`.
///
/// Shard sums: `activation` holds, per layer l and input feature j, the sum over the
/// shard's sequences of mean_t |x_tj| ((layers, H) float64); `integrated_gradients`
/// holds the sum over the shard's sequences of the attributions in canonical order.
enum AttributeStage {
    /// Test hook: `KNEURON_DEBUG_SHARD_DELAY_MS` pauses after each committed shard so the
    /// crash test can kill the process mid-attribution. Unset in normal use.
    static let debugShardDelayMilliseconds: Int? = ProcessInfo.processInfo.environment["KNEURON_DEBUG_SHARD_DELAY_MS"].flatMap { Int($0) }

    /// Sequences of the attribution split, in shard order.
    static func sequences(_ ctx: RunContext) throws -> SplitData {
        let split = ctx.spec.split.selectOn == .select ? "select" : "test"
        return try SplitData.load(ctx, split: split, limit: ctx.spec.attribution.maxSequences)
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.attribution
        let model = try ModelStore.finalModel(ctx, stage: "attribute")
        let data = try sequences(ctx)
        guard !data.examples.isEmpty else { throw PipelineError.empty(stage: "attribute", what: "the selection split is empty") }
        let shardCount = (data.examples.count + spec.shardSize - 1) / spec.shardSize
        let layout = ScoreLayout.paper(model.config)
        let options = AttributionOptions(steps: spec.steps)
        // The model this process attributes; if another process redoes or discards training
        // meanwhile (`--force train`), this process's commits are refused, not mixed in.
        let upstream = try ctx.db.stage(Stage.train.rawValue).map { LedgerRequirement(stage: $0.stage, contentKey: $0.contentKey) }
        let stale = try ctx.db.discardShards(otherThan: key)
        if stale > 0 {
            ctx.log("  discarded \(stale) finished shards computed with other attribution parameters or another model")
        }

        for method in spec.methods {
            let attributor = method.implementation
            let done = try ctx.db.finishedShards(method: method.rawValue, contentKey: key)
            let mine = (0 ..< shardCount).filter { ctx.shardSelection?.owns($0) ?? true }
            let todo = mine.filter { !done.contains($0) }
            if todo.isEmpty { continue }
            ctx.log("  \(method.rawValue): \(todo.count) of \(shardCount) shards to do (\(done.count) already done)"
                    + (ctx.shardSelection.map { ", \($0): \(mine.count) shards" } ?? ""))
            let progress = ProgressReporter("attribute \(method.rawValue)", total: shardCount, unit: "shards", quiet: ctx.quiet)
            var finished = done.count
            for shard in todo {
                let t0 = Date()
                let lo = shard * spec.shardSize, hi = min(lo + spec.shardSize, data.examples.count)
                let examples = Array(data.examples[lo ..< hi])
                let parts = try attributor.contributions(model: model, sequences: examples.map { AttributionInput(tokens: $0.tokens, target: $0.label) },
                                                         layout: layout, options: options)
                var sums = [Double](repeating: 0, count: attributor.contributionCount(layout: layout, config: model.config))
                var completeness: [CompletenessRecord] = []
                for (k, part) in parts.enumerated() {   // in sequence order: the fixed summation order
                    for i in sums.indices { sums[i] += part.contribution[i] }
                    for c in part.completeness {
                        completeness.append(CompletenessRecord(sequenceID: data.ids[lo + k], shardIndex: shard, targetClass: examples[k].label,
                                                               pFull: c.pFull, pBaseline: c.pBaseline, attributionSum: c.attributionSum))
                    }
                }
                try ctx.db.commitShard(ShardRecord(method: method.rawValue, shardIndex: shard, nSequences: examples.count,
                                                   sums: sums, seconds: Date().timeIntervalSince(t0), contentKey: key),
                                     completeness: completeness, requiring: upstream)
                finished += 1
                progress.update(finished)
                if let ms = debugShardDelayMilliseconds { usleep(UInt32(ms) * 1000) }
            }
        }

        // Other tasks of an array job may still be working on their shards.
        if let selection = ctx.shardSelection {
            var left = 0
            for method in spec.methods { left += shardCount - (try ctx.db.finishedShards(method: method.rawValue, contentKey: key).count) }
            if left > 0 { throw PipelineError.shardsLeft(task: selection.description, left: left, total: shardCount * spec.methods.count) }
        }
        // Every shard of every method is done: combine in shard order.
        var scores: [(method: String, values: [Float])] = []
        for method in spec.methods {
            let shards = try ctx.db.shards(method: method.rawValue, contentKey: key)
            guard shards.count == shardCount else {
                throw PipelineError.empty(stage: "attribute", what: "\(method.rawValue) has \(shards.count) of \(shardCount) shards; run attribute again")
            }
            var total = [Double](repeating: 0, count: shards[0].sums.count)
            var n = 0
            for s in shards {
                for i in 0 ..< total.count { total[i] += s.sums[i] }
                n += s.nSequences
            }
            scores.append((method.rawValue, method.implementation.scores(sums: total, count: n, parameters: model.parameters, layout: layout)))
            if method == .integratedGradients {
                let gaps = try ctx.db.completeness().map { abs($0.gap) }
                if !gaps.isEmpty {
                    ctx.log(String(format: "  integrated gradients completeness |gap|: mean %.4g, max %.4g over %d sequences (%d steps)",
                                   gaps.reduce(0, +) / Double(gaps.count), gaps.max()!, gaps.count, spec.steps))
                }
            }
        }
        // Two tasks can finish at the same moment and both combine; the second finds the
        // stage recorded (same key) and leaves it as it is.
        let n = try ctx.db.commitScores(scores, shape: ScoreShape(layers: model.config.numHiddenLayers, rows: model.config.hiddenSize, cols: model.config.hiddenSize),
                                        ledger: StageRecord(stage: "attribute", contentKey: key, rowsWritten: 0,
                                                            seconds: Date().timeIntervalSince(start)),
                                        requiring: upstream)
        return n
    }
}
