import Attribution
import ESM
import Foundation
import Store

/// Stage 10: what the neurons respond to (issue 12). For a planted-knowledge run (the ingest
/// stored `planted_motifs`):
///
/// - the motif selectivity of every neuron of the six linear maps of every layer for every class
///   motif (`MotifSelectivity`: the AUROC of its activation at that motif's residues against all
///   other residues), from the full model's activations on the test split;
/// - for every neuron ranking (granularity `neuron`, seed 0) and k in `ks`, the mean selectivity
///   of its top k neurons (true-class rankings: each neuron's best class motif; per-class
///   rankings: their class's motif) against `randomSets` random sets of k neurons drawn module by
///   module in the same numbers as the top k (so a ranking is not credited for preferring a module),
///   with the one-sided permutation p-value (1 + #random >= observed) / (1 + randomSets), and the
///   precision at k (share with selectivity >= 0.9) beside random's.
///
/// A run without planted motifs records the stage with nothing written (the cards stage
/// characterises neurons on real data). Exact AUROCs need every test residue's activation of a
/// neuron, so the neurons are taken in shards of as many as fit `neurons.memory_mb` (4 bytes per
/// residue each; the planted quickstart's 1,152 neurons on its 450 test sequences of 100 residues
/// need 207 MB, one shard at the default 512), one forward pass over the test split per shard,
/// each shard committed with its rows (`selectivity_shards`): a killed run redoes only unfinished
/// neurons, and the values do not depend on the shards (`MotifSelectivity.compute`).
enum NeuronsStage: StageImplementation {
    /// Top-k sizes of the recovery table.
    static let ks = [10, 50]
    /// Random neuron sets per ranking and k.
    static let randomSets = 1000
    /// Selectivity at or above which a neuron counts as selective (precision at k).
    static let selective = 0.9

    /// The split the activations are taken on.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        [("neurons.split", SplitRole.test.rawValue)]
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let motifs = try ctx.db.plantedMotifs()
        func ledger(_ rows: Int) -> StageRecord {
            StageRecord(stage: Stage.neurons.rawValue, contentKey: key, rowsWritten: rows, seconds: Date().timeIntervalSince(start))
        }
        guard !motifs.isEmpty else {
            ctx.log("  no planted motifs (inputs.planted_motifs): nothing to compute")
            try ctx.db.commitNeurons(recovery: [], ledger: ledger(0))
            return 0
        }
        let model = try ModelStore.finalModel(ctx, stage: Stage.neurons.rawValue)
        let classes = try ctx.db.classes()
        let classOf = Dictionary(uniqueKeysWithValues: classes.map { ($0.ecLabel, $0.classIndex) })
        let test = try SplitData.load(ctx, split: .test)
        let tokens = try ctx.db.tokens()
        var byID: [String: [PlantedMotifRecord]] = [:]
        for m in motifs where m.ecLabel != nil { byID[m.sequenceID, default: []].append(m) }
        // Residue r of a token sequence is original residue residueStart + r (0-based); a motif residue
        // cropped away is simply absent.
        let sequences = try test.ids.map { id -> MotifSelectivity.Sequence in
            guard let t = tokens[id] else { throw StoreError.corrupt("sequence \(id) of the test split has no tokens") }
            var group = [Int](repeating: -1, count: t.ids.count - 2)
            for m in byID[id] ?? [] {
                guard let label = m.ecLabel, let c = classOf[label] else { continue }
                for p in (m.start - 1) ..< m.end {
                    let r = p - t.residueStart
                    if r >= 0 && r < group.count { group[r] = c }
                }
            }
            return MotifSelectivity.Sequence(tokens: t.ids, group: group)
        }
        // Class motifs the tokens no longer hold (cropped away by model.max_length) cannot be measured: say so.
        let present = Set(sequences.flatMap(\.group).filter { $0 >= 0 })
        let missing = classes.filter { !present.contains($0.classIndex) }
        if !missing.isEmpty {
            ctx.log("  warning: no residue of the motif of " + missing.map(\.ecLabel).joined(separator: ", ")
                + " is in the test split's tokens (cropped away? model.max_length \(ctx.spec.model.maxLength)); their selectivity is NULL and their rankings are left out")
        }
        let layout = try ScoreLayout(config: model.config, modules: LinearModule.allCases, granularity: .neuron)
        let residues = sequences.reduce(0) { $0 + $1.group.count }
        // Neurons whose activations fit neurons.memory_mb, in Double (a huge memory_mb must not overflow Int).
        let fit = ctx.spec.neurons.memoryMB * 1_048_576 / Double(4 * max(1, residues))
        let perShard = fit >= Double(layout.count) ? layout.count : max(1, Int(fit))
        let stale = try ctx.db.discardSelectivityShards(otherThan: key)
        if stale > 0 { ctx.log("  discarded \(stale) selectivity shards computed with another model or other data") }
        // The neurons no finished shard covers, in runs of consecutive neurons cut into shards
        // (a resumed run may use another memory_mb than the killed one: only the rest is cut anew).
        var covered = [Bool](repeating: false, count: layout.count)
        for done in try ctx.db.selectivityShards() {
            guard done.first >= 0, done.first + done.count <= layout.count else {
                throw StoreError.corrupt("selectivity shard at neuron \(done.first) (\(done.count) neurons) is outside the layout's \(layout.count); run with --force neurons")
            }
            for k in done.first ..< done.first + done.count { covered[k] = true }
        }
        var todo: [Range<Int>] = []
        var k = 0
        while k < layout.count {
            if covered[k] { k += 1; continue }
            var end = k
            while end < layout.count && !covered[end] && end - k < perShard { end += 1 }
            todo.append(k ..< end)
            k = end
        }
        ctx.log("  selectivity of \(layout.count) neurons for \(classes.count) class motifs on \(sequences.count) test sequences (\(residues) residues): "
            + String(format: "%d neurons per shard (neurons.memory_mb %g), %d shards to do, %d neurons done", perShard, ctx.spec.neurons.memoryMB,
                     todo.count, covered.filter { $0 }.count))
        let progress = ProgressReporter("neurons", total: todo.count, unit: "shards", quiet: ctx.quiet)
        for (n, shard) in todo.enumerated() {
            let t0 = Date()
            let values = MotifSelectivity.compute(model: model, sequences: sequences, layout: layout, groups: classes.count, neurons: shard,
                                                  batchSize: ctx.spec.train.batchSize)
            var rows: [SelectivityRecord] = []
            for block in layout.blocks {
                for u in 0 ..< block.rows where shard.contains(block.offset + u) {
                    for (c, a) in values[block.offset + u - shard.lowerBound].enumerated() {
                        rows.append(SelectivityRecord(layer: block.site.layer, module: block.site.module.rawValue, unit: u, classIndex: classes[c].classIndex,
                                                      auroc: a, split: SplitRole.test.rawValue))
                    }
                }
            }
            try ctx.db.commitSelectivityShard(first: shard.lowerBound, count: shard.count, contentKey: key, seconds: Date().timeIntervalSince(t0), rows: rows)
            progress.update(n + 1)
            DebugHooks.pause(ctx.debug.shardDelayMilliseconds)
        }
        // Every neuron's selectivity, read back (the shards of this and of earlier processes).
        let records = try ctx.db.motifSelectivity()
        guard records.count == layout.count * classes.count else {
            throw StoreError.corrupt("motif_selectivity holds \(records.count) rows, not \(layout.count) neurons x \(classes.count) classes; run with --force neurons")
        }
        var lookup: [String: [Double?]] = [:]   // "layer/module/unit" -> per class, in class order
        let classPosition = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1.classIndex, $0) })
        for r in records {
            let key = "\(r.layer)/\(r.module)/\(r.unit)"
            var v = lookup[key] ?? [Double?](repeating: nil, count: classes.count)
            guard let c = classPosition[r.classIndex] else { throw StoreError.corrupt("motif_selectivity names class \(r.classIndex), which the run does not have") }
            v[c] = r.auroc
            lookup[key] = v
        }
        let recovery = try recoveryTable(ctx, lookup: lookup, classes: classes)
        try ctx.db.commitNeurons(recovery: recovery, ledger: ledger(records.count + recovery.count))
        if let best = recovery.filter({ $0.ranking.targetClass == -1 && $0.k == ks[0] }).max(by: { $0.meanSelectivity < $1.meanSelectivity }) {
            ctx.log(String(format: "  best true-class ranking at k = %d: %@ (mean selectivity %.3f against %.3f for random)", best.k,
                           best.ranking.method, best.meanSelectivity, best.randomMean))
        }
        return records.count + recovery.count
    }

    /// The recovery rows of every stored neuron or weight ranking (see the type's
    /// documentation). A weight ranking's top k are the output units (weight rows) of its
    /// best-ranked weights, the first k distinct ones in rank order (as its cards are), and its
    /// random sets are drawn from every unit of its modules.
    static func recoveryTable(_ ctx: RunContext, lookup: [String: [Double?]], classes: [ClassRecord]) throws -> [RecoveryRecord] {
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1.classIndex, $0) })
        var out: [RecoveryRecord] = []
        // Neuron rankings first (their random draws are seeded by their place in this list, as before weight rankings had rows).
        let sets = try ctx.db.scoreSets().filter { $0.method != Baseline.random && $0.seed == 0 }
        let ordered = sets.filter { $0.granularity == Granularity.neuron.rawValue } + sets.filter { $0.granularity == Granularity.weight.rawValue }
        for (n, id) in ordered.enumerated() {
            guard let stored = try ctx.db.scoreLayout(id) else { continue }
            let scores = try ctx.db.scores(id)
            guard let last = stored.blocks.last, last.offset + last.rows * last.cols == scores.count else {
                throw StoreError.corrupt("the scores of \(id) number \(scores.count), not what its layout holds; run with --force attribute")
            }
            // Each output unit's selectivity for this ranking and its module, units in layout order.
            var selectivity: [Double] = [], module: [String] = [], unitIndex: [NeuronKey: Int] = [:]
            var unmeasured = false
            for b in stored.blocks {
                for u in 0 ..< b.rows {
                    let v = lookup["\(b.layer)/\(b.module)/\(u)"] ?? []
                    let s = id.targetClass < 0 ? v.compactMap { $0 }.max() : index[id.targetClass].flatMap { v.indices.contains($0) ? v[$0] : nil }
                    if s == nil { unmeasured = true }
                    unitIndex[NeuronKey(layer: b.layer, module: b.module, unit: u)] = selectivity.count
                    selectivity.append(s ?? 0.5)
                    module.append(b.module)
                }
            }
            // A ranking whose motif has no residue in the split has nothing to be compared on.
            if unmeasured { continue }
            var pools: [String: [Int]] = [:]
            for (i, m) in module.enumerated() { pools[m, default: []].append(i) }
            var rng = SplitMix64(seed: 1 + UInt64(n))
            for k in ks where k <= selectivity.count / 2 {
                let top = CardsStage.topUnits(scores: scores, layout: stored, count: k).map { unitIndex[$0.neuron]! }
                func stats(_ set: [Int]) -> (mean: Double, precision: Double) {
                    (set.reduce(0) { $0 + selectivity[$1] } / Double(set.count), Double(set.filter { selectivity[$0] >= selective }.count) / Double(set.count))
                }
                let observed = stats(top)
                var counts: [String: Int] = [:]
                for i in top { counts[module[i], default: 0] += 1 }
                var means: [Double] = [], precisions: [Double] = []
                for _ in 0 ..< randomSets {
                    var set: [Int] = []
                    for (m, c) in counts.sorted(by: { $0.key < $1.key }) {
                        var pool = pools[m]!
                        for j in 0 ..< c { pool.swapAt(j, j + rng.nextIndex(below: pool.count - j)); set.append(pool[j]) }   // partial Fisher-Yates
                    }
                    let r = stats(set)
                    means.append(r.mean); precisions.append(r.precision)
                }
                let (m, sd) = EvidenceStatistics.meanAndSD(means)
                out.append(RecoveryRecord(ranking: id, k: k, meanSelectivity: observed.mean, randomMean: m, randomSD: sd ?? 0, nRandom: randomSets,
                                          pValue: Double(1 + means.filter { $0 >= observed.mean }.count) / Double(1 + randomSets),
                                          precisionAtK: observed.precision, randomPrecision: precisions.reduce(0, +) / Double(randomSets)))
            }
        }
        return out
    }
}
