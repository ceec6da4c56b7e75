import Attribution
import ESM
import Foundation
import Store

/// The timed workloads of `kneuron bench` (issue: faster than PyTorch on the same CPU), by
/// default on the ESM-2 t6_8M shape (6 layers, hidden 320, 20 heads, FFN 1280; `BenchSetup`
/// chooses another preset's shape, the tokens per sequence and the batch) with seeded random
/// weights, float32, 7 classes, `<cls>` pooling, no padding. `bench/compare-torch.sh` runs the
/// same workloads in PyTorch.
public enum BenchWorkload: String, CaseIterable, Sendable {
    /// Classifier logits for a batch of 8 x 256 tokens.
    case forward
    /// Forward + backward of the mean cross-entropy for all parameters, batch 8 x 256.
    case train
    /// Integrated gradients of P(class 0) for one sequence of 256 tokens, 20 steps (midpoint
    /// rule; `kneuron bench --ig-steps` changes it), steps processed in chunks; by default over
    /// every q/k/v weight (`--modules`, `--granularity` choose another score layout).
    case ig
    /// Writing 2,080,800 neuron scores (6 layers x 3 modules x 340 x 340) with their ranks
    /// to a fresh SQLite database in one transaction (`RunDatabase.commitScores`).
    case sqlite

    /// Batch rows B and tokens per row T of the workload under `setup` (ig: one sequence).
    public func shape(_ setup: BenchSetup = BenchSetup()) -> (batch: Int, tokens: Int) {
        switch self {
        case .forward, .train: return (setup.batch, setup.tokens)
        case .ig: return (1, setup.tokens)
        case .sqlite: return (0, 0)
        }
    }
}

/// The model shape and input size of the forward, train and ig workloads.
public struct BenchSetup: Sendable, Equatable {
    /// A preset of `ESMConfig.preset` (`esm2_t6_8M`, `esm2_t12_35M`, `esm2_t30_150M`, `esm2_t33_650M`, ...).
    public var shape = "esm2_t6_8M"
    /// Tokens per sequence, `<cls>` and `<eos>` included (3 ... 1026).
    public var tokens = 256
    /// Sequences per forward of the forward and train workloads.
    public var batch = 8
    /// The defaults: t6_8M, 8 x 256 tokens.
    public init() {}
    /// A setup from its fields.
    public init(shape: String, tokens: Int, batch: Int) { self.shape = shape; self.tokens = tokens; self.batch = batch }
}

/// One workload's timings.
public struct BenchResult: Sendable {
    /// Which workload was timed.
    public var workload: BenchWorkload
    /// Wall time of each repeat, milliseconds, in run order.
    public var milliseconds: [Double]
    /// Floating-point operations of one repeat (analytic count, see `Benchmark.flops`).
    public var flops: Double
    /// Peak resident set size of the process after the workload, bytes (`getrusage`).
    public var peakRSSBytes: Int

    /// Median of `milliseconds`.
    public var medianMilliseconds: Double {
        let s = milliseconds.sorted()
        return s.isEmpty ? .nan : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
    }
    /// Minimum of `milliseconds`.
    public var minMilliseconds: Double { milliseconds.min() ?? .nan }
    /// `flops` / median time, in GFLOP/s.
    public var gflopsPerSecond: Double { flops / (medianMilliseconds * 1e-3) / 1e9 }
}

/// Runs the bench workloads.
public enum Benchmark {
    /// A classifier of the preset `shape` (default t6_8M) with random weights (seed 1), 7 classes,
    /// positions for `tokens` tokens.
    /// - Throws: `ESMConfigError.unknownPreset`.
    public static func model(_ shape: String = "esm2_t6_8M", tokens: Int = 256) throws -> ESMClassifier {
        var config = try ESMConfig.preset(shape, numLabels: 7)
        config.maxPositionEmbeddings = max(config.maxPositionEmbeddings, tokens)
        return ESMClassifier(config: config, seed: 1)
    }

    /// Deterministic token rows: `<cls>`, T-2 residue ids in 4..<24, `<eos>`.
    public static func tokens(batch: Int, length: Int) -> [[Int32]] {
        var rng = SplitMix64(seed: 7)
        return (0 ..< batch).map { _ in [0] + (0 ..< length - 2).map { _ in Int32(4 + rng.nextIndex(below: 20)) } + [2] }
    }

    /// Multiply-adds x 2 of one forward over B rows of T tokens: per layer the q/k/v/output
    /// projections 8NH^2, the FFN 4NHI, attention scores and mixing 4BT^2H; plus the head.
    /// Backward counts twice the forward; IG counts (steps + 2/3) forward+backward-equivalents
    /// of one row (the 2 endpoint rows are forward only).
    public static func flops(_ w: BenchWorkload, config c: ESMConfig, steps: Int = 20, setup: BenchSetup = BenchSetup()) -> Double {
        func forward(_ B: Int, _ T: Int) -> Double {
            let N = Double(B * T), H = Double(c.hiddenSize), I = Double(c.intermediateSize)
            let layer = 8 * N * H * H + 4 * N * H * I + 4 * Double(B) * Double(T * T) * H
            return Double(c.numHiddenLayers) * layer + 2 * Double(B) * H * (H + Double(c.numLabels))
        }
        let (B, T) = w.shape(setup)
        switch w {
        case .forward: return forward(B, T)
        case .train: return 3 * forward(B, T)
        case .ig: return Double(steps) * 3 * forward(1, T) + 2 * forward(1, T)
        case .sqlite: return 0
        }
    }

    /// Times `repeats` runs of `workload` after one warm-up run (`igSteps`: Riemann steps of
    /// the `ig` workload; `modules` and `granularity`: its score layout, default the paper's
    /// query/key/value weights; `setup`: the model shape and input size).
    /// - Throws: `StoreError` for the `sqlite` workload when the temporary database fails;
    ///   `AttributionError.noModules` for an empty module list.
    public static func run(_ workload: BenchWorkload, repeats: Int, igSteps: Int = 20,
                           modules: [LinearModule] = LinearModule.attention, granularity: Granularity = .weight,
                           setup: BenchSetup = BenchSetup()) throws -> BenchResult {
        let model = try model(setup.shape, tokens: setup.tokens)
        let (B, T) = workload.shape(setup)
        let rows = tokens(batch: B, length: T)
        let batch = TokenBatch(sequences: rows, padTokenId: Int32(model.config.padTokenId))
        var grads = ParameterBuffer(layout: model.parameters.layout)
        let C = model.config.numLabels
        let once: () -> Void
        switch workload {
        case .forward:
            once = { _ = model.forward(batch) }
        case .train:
            once = {
                let logits = model.forward(batch)
                let d = Loss.crossEntropy(logits: logits, labels: (0 ..< B).map { $0 % C }, classes: C).dLogits
                grads.zero()
                model.backward(dLogits: d, into: &grads)
            }
        case .ig:
            let layout = try ScoreLayout(config: model.config, modules: modules, granularity: granularity)
            let input = [AttributionInput(tokens: rows[0], target: 0)]
            once = { _ = try? IntegratedGradientsAttributor().contributions(model: model, sequences: input, layout: layout,
                                                                              options: AttributionOptions(steps: igSteps)) }
        case .sqlite:
            return try sqlite(repeats: repeats)
        }
        once()
        var times: [Double] = []
        for _ in 0 ..< max(1, repeats) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            once()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        // The analytic count is one weight path; neuron granularity runs one shorter path per
        // (layer, module), which it does not count.
        let count = workload == .ig && granularity == .neuron ? Double.nan : flops(workload, config: model.config, steps: igSteps, setup: setup)
        return BenchResult(workload: workload, milliseconds: times, flops: count,
                           peakRSSBytes: peakRSS())
    }

    /// The `sqlite` workload: each repeat writes the scores into a new database in the
    /// temporary directory (removed afterwards).
    static func sqlite(repeats: Int) throws -> BenchResult {
        var config = try ESMConfig.preset("esm2_t6_8M", numLabels: 7)
        config.hiddenSize = 340   // 6 x 3 x 340 x 340 = 2,080,800 scores
        let layout = ScoreLayout.paper(config).stored
        var rng = SplitMix64(seed: 3)
        let scores = (0 ..< layout.count).map { _ in Float(rng.nextUnitDouble()) }
        var times: [Double] = []
        for _ in 0 ..< max(1, repeats) {
            let path = NSTemporaryDirectory() + "/kneuron-bench-\(UUID().uuidString).sqlite"
            defer { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + s) } }
            let db = try RunDatabase(path: path)
            let t0 = DispatchTime.now().uptimeNanoseconds
            try db.commitScores([ScoreSet(id: RankingID(method: AttributionMethod.activation.rawValue), layout: layout, values: scores)],
                                ledger: StageRecord(stage: "attribute", contentKey: "bench", rowsWritten: 0, seconds: 0))
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        return BenchResult(workload: .sqlite, milliseconds: times, flops: 0, peakRSSBytes: peakRSS())
    }

    /// What `storage` measured for one method's score set and its shard sums.
    public struct StorageResult: Sendable {
        /// The model preset whose layout was stored.
        public var preset: String
        /// Scores in the set (weights or neurons of the chosen modules).
        public var scores: Int
        /// Seconds to write the set (`commitScores`: float32 rows, ranking, best ranks as rows).
        public var writeSeconds: Double
        /// Bytes the database grew by for the set (pages in use after the write).
        public var bytes: Int
        /// Seconds to read every score back (`RunDatabase.scores`).
        public var readSeconds: Double
        /// Milliseconds of one single-score lookup through the `all_scores` view (median of 20).
        public var lookupMilliseconds: Double
        /// Milliseconds of the top-10 query on `neuron_scores` (ranked rows).
        public var topMilliseconds: Double
        /// Seconds of each shard commit, committed 1 then 0 (the second adds both into the running total).
        public var shardSeconds: [Double]
        /// Bytes of the shard sums while shard 1 waited for shard 0, and of the running total after.
        public var shardBytes: (waiting: Int, total: Int)
        /// Peak RSS of the process, bytes.
        public var peakRSSBytes: Int
    }

    /// Stores one method's score set of `preset`'s layout (`modules` at `granularity`; seeded
    /// uniform scores) in a fresh database in the temporary directory, reads it back, looks up
    /// one score and the top 10 in SQL, and commits two shards' float64 partial sums of that
    /// width out of order: the measurement behind the big-model storage targets.
    /// - Throws: `ESMConfigError` for an unknown preset, `AttributionError.noModules`, `StoreError`.
    public static func storage(preset: String, modules: [LinearModule], granularity: Granularity) throws -> StorageResult {
        let config = try ESMConfig.preset(preset, numLabels: 7)
        let layout = try ScoreLayout(config: config, modules: modules, granularity: granularity)
        let scores = Baseline.randomScores(count: layout.count, seed: 3)
        let path = NSTemporaryDirectory() + "/kneuron-bench-\(UUID().uuidString).sqlite"
        defer { for s in ["", "-wal", "-shm", ".lock"] { try? FileManager.default.removeItem(atPath: path + s) } }
        let db = try RunDatabase(path: path)
        func bytesInUse() throws -> Int {
            let r = try db.query("SELECT (SELECT page_count FROM pragma_page_count) - (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_size FROM pragma_page_size)").rows[0]
            return Int(r[0]!)! * Int(r[1]!)!
        }
        func seconds(_ body: () throws -> Void) rethrows -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        let empty = try bytesInUse()
        let id = RankingID(method: AttributionMethod.integratedGradients.rawValue, granularity: granularity.rawValue)
        let write = try seconds {
            try db.commitScores([ScoreSet(id: id, layout: layout.stored, values: scores)],
                                ledger: StageRecord(stage: "attribute", contentKey: "bench", rowsWritten: 0, seconds: 0))
        }
        let bytes = try bytesInUse() - empty
        var read = 0.0
        do {   // scoped: the copy read back is freed before the shard sums are made
            var back: [Float] = []
            read = try seconds { back = try db.scores(id) }
            precondition(back == scores, "storage bench: the scores read back differ")
        }
        let block = layout.blocks[layout.blocks.count / 2]
        var lookups: [Double] = []
        for k in 0 ..< 20 {
            let row = (k * 7919) % block.rows, col = (k * 104_729) % block.cols
            lookups.append(try seconds {
                let r = try db.query("SELECT score FROM all_scores WHERE method = 'integrated_gradients' AND granularity = '\(granularity.rawValue)' AND target_class = -1 AND layer = \(block.site.layer) AND module = '\(block.site.module.rawValue)' AND row = \(row) AND col = \(col)").rows
                precondition(r.count == 1 && Float(Double(r[0][0]!)!) == scores[block.offset + row * block.cols + col], "storage bench: all_scores lookup differs")
            } * 1000)
        }
        let top = try seconds { _ = try db.query("SELECT layer, module, row, col, score FROM neuron_scores WHERE method = 'integrated_gradients' AND rank <= 10 ORDER BY rank") } * 1000
        // Two shards of float64 sums (per-sequence contributions of that width), 1 before 0.
        let sums = scores.map(Double.init)
        var shardSeconds: [Double] = []
        var waiting = 0
        for k in [1, 0] {
            shardSeconds.append(try seconds {
                try db.commitShard(ShardRecord(method: id.method, granularity: id.granularity, shardIndex: k, nSequences: 1, sums: sums, seconds: 0, contentKey: "bench"),
                                   completeness: [])
            })
            if k == 1 { waiting = try bytesInUse() - empty - bytes }
        }
        let total = try bytesInUse() - empty - bytes
        return StorageResult(preset: preset, scores: layout.count, writeSeconds: write, bytes: bytes, readSeconds: read,
                             lookupMilliseconds: lookups.sorted()[lookups.count / 2], topMilliseconds: top,
                             shardSeconds: shardSeconds, shardBytes: (waiting, total), peakRSSBytes: peakRSS())
    }

    /// Peak resident set size of this process in bytes (Linux `ru_maxrss` is in KiB).
    public static func peakRSS() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int(usage.ru_maxrss) * 1024
    }
}
