import Attribution
import ESM
import Foundation
import Store
import Training

/// Stage 5: scores the chosen weights or neurons by each method over the selection split,
/// in shards, for every (method, granularity) the spec asks (`attribution.methods`,
/// `.granularity`, over `.modules`), through the methods' `Attributor` implementations.
///
/// The selection split's sequences (ordered by id, optionally capped by
/// `attribution.max_sequences`) are cut into shards of `shard_size`. A shard's partial
/// sums and its done mark are one row of `shards` (per method and granularity), committed in
/// one transaction, so an interrupted run redoes only unfinished shards. The sums are added in
/// shard order into a running total as shards commit (a fixed order: the result does not depend
/// on interruptions or on how array tasks shared the shards; `RunDatabase.commitShard`); when
/// every shard is in it the final score sets are written (`score_sets`, `score_rows`, the best
/// ranks in `score_values`) and the partial sums deleted.
///
/// Shard sums: the sum over the shard's sequences of each method's per-sequence contribution
/// (`Attributor.contributionCount`), in sequence order; with the `per_class` target one such
/// group per class present in the shard (a sequence goes to its label's group), in class
/// order, and the shard's sequences per class (`class_counts`, every class).
/// Targets: every sequence attributes P(its label); `true_class` scores average all groups,
/// `per_class` class c's group alone (classes without a selection sequence get no ranking).
enum AttributeStage: StageImplementation {
    /// The score vectors of one (method, granularity) from its summed contributions: `total`
    /// holds one group of `contributionCount` values per class (one group when `targets` has no
    /// `per_class`), `counts` the sequences summed into each. `true_class` adds every group (in
    /// class order), `per_class` gives class c its own group (classes without a sequence get none).
    static func rankings(method: AttributionMethod, layout: ScoreLayout, total: [Double], counts: [Int], targets: [AttributionTarget],
                         parameters: ParameterBuffer) -> [(id: RankingKey, scores: [Float])] {
        let attributor = method.implementation
        let width = attributor.contributionCount(layout: layout, config: parameters.layout.config)
        let groups = counts.count
        func scores(_ groupsToAdd: [Int]) -> [Float] {
            var sum = Array(total[groupsToAdd[0] * width ..< (groupsToAdd[0] + 1) * width])
            for g in groupsToAdd.dropFirst() { for i in 0 ..< width { sum[i] += total[g * width + i] } }
            return attributor.scores(sums: sum, count: groupsToAdd.reduce(0) { $0 + counts[$1] }, parameters: parameters, layout: layout)
        }
        var out: [(RankingKey, [Float])] = []
        if targets.contains(.trueClass) { out.append((RankingKey(method: method, granularity: layout.granularity), scores(Array(0 ..< groups)))) }
        if targets.contains(.perClass) {
            for c in 0 ..< groups where counts[c] > 0 {
                out.append((RankingKey(method: method, granularity: layout.granularity, targetClass: c), scores([c])))
            }
        }
        return out
    }

    /// Every ranking of the spec's attribution for `model` over `examples`, in memory (no
    /// shards, no database): the contributions are summed in sequence order per group, as the
    /// shards sum theirs. Used by the sanity checks to re-score randomised models.
    /// - Throws: `AttributionError`.
    static func rankingsInMemory(model: ESMClassifier, examples: [Example], spec: AttributionSpec,
                                 layouts: [Granularity: ScoreLayout]) throws -> [RankingKey: [Float]] {
        let groups = spec.groupsByClass ? model.config.numLabels : 1
        var out: [RankingKey: [Float]] = [:]
        for (method, granularity) in spec.jobs {
            let attributor = method.implementation, layout = layouts[granularity]!
            let width = attributor.contributionCount(layout: layout, config: model.config)
            var total = [Double](repeating: 0, count: groups * width)
            var counts = [Int](repeating: 0, count: groups)
            var start = 0
            while start < examples.count {   // chunks of a shard's size bound the contributions held at once
                let chunk = Array(examples[start ..< min(start + spec.shardSize, examples.count)])
                let parts = try attributor.contributions(model: model, sequences: chunk.map { AttributionInput(tokens: $0.tokens, target: $0.label) },
                                                         layout: layout, options: AttributionOptions(steps: spec.steps))
                for (k, part) in parts.enumerated() {
                    let g = groups > 1 ? chunk[k].label : 0
                    counts[g] += 1
                    total.withUnsafeMutableBufferPointer { t in for i in 0 ..< width { t[g * width + i] += part.contribution[i] } }
                }
                start += chunk.count
            }
            for (id, scores) in rankings(method: method, layout: layout, total: total, counts: counts, targets: spec.targets, parameters: model.parameters) {
                out[id] = scores
            }
        }
        return out
    }

    /// Every `attribution` key (the engine's new keys only when not at their defaults, see
    /// `AttributionSpec.encode`) and the split it attributes.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        flatten(canonicalJSON(ctx.spec.attribution), prefix: "attribution") + [("split.select_on", ctx.spec.split.selectOn.rawValue)]
    }

    /// Sequences of the attribution split, in shard order.
    static func sequences(_ ctx: RunContext) throws -> SplitData {
        try SplitData.load(ctx, split: ctx.spec.split.selectOn.split, limit: ctx.spec.attribution.maxSequences)
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.attribution
        let model = try ModelStore.finalModel(ctx, stage: "attribute")
        let data = try sequences(ctx)
        guard !data.examples.isEmpty else { throw PipelineError.empty(stage: "attribute", what: "the selection split is empty") }
        let shardCount = (data.examples.count + spec.shardSize - 1) / spec.shardSize
        let layouts = try spec.layouts(model.config)
        let options = AttributionOptions(steps: spec.steps)
        let classes = model.config.numLabels
        let groups = spec.groupsByClass ? classes : 1
        if spec.groupsByClass {
            let present = Set(data.examples.map(\.label))
            let missing = (0 ..< classes).filter { !present.contains($0) }
            if !missing.isEmpty {
                let labels = Dictionary(uniqueKeysWithValues: try ctx.db.classes().map { ($0.classIndex, $0.ecLabel) })
                ctx.log("  per_class: no ranking for \(missing.map { labels[$0] ?? String($0) }.joined(separator: ", ")): none of the "
                        + "\(data.examples.count) attributed sequences (\(ctx.spec.split.selectOn.split.rawValue) split) is of that class")
            }
        }
        // What the partial sums take: the running total of each job plus the shards finished
        // ahead of it (array tasks), float64 per value, freed when the scores are written.
        var totalBytes = 0
        for (method, granularity) in spec.jobs {
            totalBytes += method.implementation.contributionCount(layout: layouts[granularity]!, config: model.config) * 8 * min(groups, data.examples.count)
        }
        if totalBytes > 1_000_000_000 {
            ctx.log("  note: the running totals of the shards' partial sums take up to \(totalBytes / 1_000_000_000) GB of the database "
                    + "(plus as much per shard that finishes ahead of an unfinished one) until the scores are written")
        }
        // The model this process attributes; if another process redoes or discards training
        // meanwhile (`--force train`), this process's commits are refused, not mixed in.
        let upstream = try ctx.db.stage(Stage.train.rawValue).map { LedgerRequirement(stage: $0.stage, contentKey: $0.contentKey) }
        let stale = try ctx.db.discardShards(otherThan: key)
        if stale > 0 {
            ctx.log("  discarded \(stale) finished shards computed with other attribution parameters or another model")
        }

        for (method, granularity) in spec.jobs {
            let attributor = method.implementation, layout = layouts[granularity]!
            let name = "\(method)/\(granularity)"
            let done = try ctx.db.finishedShards(method: method.rawValue, granularity: granularity.rawValue, contentKey: key)
            let mine = (0 ..< shardCount).filter { ctx.shardSelection?.owns($0) ?? true }
            let todo = mine.filter { !done.contains($0) }
            if todo.isEmpty { continue }
            ctx.log("  \(name): \(todo.count) of \(shardCount) shards to do (\(done.count) already done)"
                    + (ctx.shardSelection.map { ", \($0): \(mine.count) shards" } ?? ""))
            let progress = ProgressReporter("attribute \(name)", total: shardCount, unit: "shards", quiet: ctx.quiet)
            var finished = done.count
            let width = attributor.contributionCount(layout: layout, config: model.config)
            for shard in todo {
                let t0 = Date()
                let lo = shard * spec.shardSize, hi = min(lo + spec.shardSize, data.examples.count)
                let examples = Array(data.examples[lo ..< hi])
                let parts = try attributor.contributions(model: model, sequences: examples.map { AttributionInput(tokens: $0.tokens, target: $0.label) },
                                                         layout: layout, options: options)
                var groupSums: [Int: [Double]] = [:]
                var counts = [Int](repeating: 0, count: groups)
                var completeness: [CompletenessRecord] = []
                for (k, part) in parts.enumerated() {   // in sequence order: the fixed summation order
                    let g = groups > 1 ? examples[k].label : 0
                    counts[g] += 1
                    groupSums[g, default: [Double](repeating: 0, count: width)].withUnsafeMutableBufferPointer { s in
                        for i in 0 ..< width { s[i] += part.contribution[i] }
                    }
                    for c in part.completeness {
                        completeness.append(CompletenessRecord(sequenceID: data.ids[lo + k], granularity: granularity.rawValue,
                                                               layer: c.site?.layer ?? -1, module: c.site?.module.rawValue ?? "",
                                                               shardIndex: shard, targetClass: examples[k].label,
                                                               pFull: c.pFull, pBaseline: c.pBaseline, attributionSum: c.attributionSum))
                    }
                }
                try ctx.db.commitShard(ShardRecord(method: method.rawValue, granularity: granularity.rawValue, shardIndex: shard,
                                                   nSequences: examples.count, classCounts: groups > 1 ? counts : nil,
                                                   sums: groupSums.keys.sorted().flatMap { groupSums[$0]! }, seconds: Date().timeIntervalSince(t0), contentKey: key),
                                     completeness: completeness, requiring: upstream) { stale in
                    ctx.log("  discarded \(stale) shards that another process committed with other attribution parameters or another model "
                            + "(do all tasks of the array job run the same spec?)")
                }
                finished += 1
                progress.update(finished)
                if let ms = ctx.debug.shardDelayMilliseconds { usleep(UInt32(ms) * 1000) }
            }
        }

        // Other tasks of an array job may still be working on their shards.
        if let selection = ctx.shardSelection {
            var left = 0
            for (method, granularity) in spec.jobs {
                left += shardCount - (try ctx.db.finishedShards(method: method.rawValue, granularity: granularity.rawValue, contentKey: key).count)
            }
            if left > 0 { throw PipelineError.shardsLeft(stage: Stage.attribute.rawValue, task: selection.description, left: left,
                                                         total: shardCount * spec.jobs.count, unit: "shards") }
        }
        // Every shard of every job is done: combine in shard order.
        var sets: [ScoreSet] = []
        for (method, granularity) in spec.jobs {
            let attributor = method.implementation, layout = layouts[granularity]!
            let width = attributor.contributionCount(layout: layout, config: model.config)
            guard let sum = try ctx.db.shardTotal(method: method.rawValue, granularity: granularity.rawValue, contentKey: key),
                  sum.nFolded == shardCount else {
                // Another task of the array job may have written the scores (and freed the sums) meanwhile.
                if let done = try ctx.db.stage(Stage.attribute.rawValue), done.contentKey == key { return done.rowsWritten }
                throw PipelineError.empty(stage: "attribute", what: "the partial sums of \(method)/\(granularity) do not cover its \(shardCount) shards; "
                    + "run with --force attribute")
            }
            let counts = sum.counts, present = counts.indices.filter { counts[$0] > 0 }
            guard counts.count == groups, sum.sums.count == present.count * width else {
                throw StoreError.corrupt("the partial sums of \(method)/\(granularity) hold \(sum.sums.count) values for \(counts.count) groups, "
                    + "expected \(groups) groups of \(width); run with --force attribute")
            }
            // The groups without sequences stay zero, as when the shards were added here.
            var total = [Double](repeating: 0, count: groups * width)
            for (k, g) in present.enumerated() {
                total.withUnsafeMutableBufferPointer { t in
                    sum.sums.withUnsafeBufferPointer { s in for i in 0 ..< width { t[g * width + i] = s[k * width + i] } }
                }
            }
            for (id, values) in rankings(method: method, layout: layout, total: total, counts: counts, targets: spec.targets, parameters: model.parameters) {
                sets.append(ScoreSet(id: id.stored, layout: layout.stored, values: values))
            }
        }
        for c in try ctx.db.completenessSummary() {
            ctx.log(String(format: "  integrated gradients (%@) completeness |gap|: mean %.4g, max %.4g over %d paths (%d steps)",
                           c.granularity, c.meanAbsGap, c.maxAbsGap, c.paths, spec.steps))
        }
        // Two tasks can finish at the same moment and both combine; the second finds the
        // stage recorded (same key) and leaves it as it is.
        return try ctx.db.commitScores(sets, ledger: StageRecord(stage: Stage.attribute.rawValue, contentKey: key, rowsWritten: 0,
                                                                 seconds: Date().timeIntervalSince(start)),
                                       requiring: upstream)
    }
}
