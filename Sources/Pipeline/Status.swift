import Attribution
import Foundation
import Store

/// Per-stage state of a run for `kneuron status`.
public struct RunStatus: Sendable {
    /// One line per stage: name, done, rows, seconds, and for attribute the shards done.
    public struct Line: Sendable {
        /// The stage.
        public var stage: Stage
        /// True when the ledger records the stage as finished.
        public var done: Bool
        /// Rows the stage wrote, from the ledger; 0 when not done.
        public var rows: Int
        /// Recorded wall time, seconds; 0 when not done.
        public var seconds: Double
        /// Progress note: for `train` the epochs recorded and the last accuracy on the split
        /// neurons are selected on (select, or test with `select_on: test`), for
        /// `attribute` the shards done per method (each only when there are any); otherwise empty.
        public var detail: String
    }
    /// One attribution shard of one method and granularity: done (with its sequences and seconds) or left.
    public struct ShardLine: Sendable, Equatable {
        /// Attribution method name.
        public var method: String
        /// `weight` or `neuron`.
        public var granularity: String
        /// `method/granularity`, as status prints it.
        public var job: String { "\(method)/\(granularity)" }
        /// Shard index, from 0.
        public var shardIndex: Int
        /// True when the shard's sums are committed.
        public var done: Bool
        /// Sequences in the shard (recorded when done, planned when left; nil when unknown).
        public var sequences: Int?
        /// Wall time of the shard in seconds (0 when left).
        public var seconds: Double
    }
    /// One line per stage, in pipeline order.
    public var lines: [Line]
    /// Every shard of every attribution method, by method then index: the finished ones,
    /// plus the planned ones still left when the plan is known (from the recorded spec and
    /// the split); empty before the split.
    public var shards: [ShardLine] = []
    /// True when every stage is recorded.
    public var complete: Bool { lines.allSatisfy(\.done) }

    /// The attribution plan of the recorded spec: methods, shard size and the number of
    /// sequences attributed; nil when no spec is recorded or the split is not done yet.
    static func shardPlan(db: RunDatabase) throws -> (jobs: [(method: String, granularity: String)], shardSize: Int, sequences: Int)? {
        guard let run = try db.run(), try db.stage(Stage.split.rawValue) != nil,
              let spec = try? PipelineSpec.parse(yaml: run.specYAML, path: run.specPath) else { return nil }
        var n = try db.sequenceIDs(split: spec.split.selectOn.split.rawValue).count
        if let cap = spec.attribution.maxSequences { n = min(n, cap) }
        return (spec.attribution.jobs.map { ($0.method.rawValue, $0.granularity.rawValue) }, spec.attribution.shardSize, n)
    }

    /// Reads the ledger (and shard/epoch progress) from `db`.
    /// - Throws: `StoreError` when the database cannot be read.
    public static func read(db: RunDatabase) throws -> RunStatus {
        let ledger = Dictionary(uniqueKeysWithValues: try db.stages().map { ($0.stage, $0) })
        let plan = try shardPlan(db: db)
        var shardLines: [ShardLine] = []
        let defaultJobs = AttributionSpec().jobs.map { (method: $0.method.rawValue, granularity: $0.granularity.rawValue) }
        for (method, granularity) in plan?.jobs ?? defaultJobs {
            let done = Dictionary(uniqueKeysWithValues: try db.shards(method: method, granularity: granularity).map { ($0.shardIndex, $0) })
            let planned = plan.map { ($0.sequences + $0.shardSize - 1) / $0.shardSize } ?? 0
            for i in Set(done.keys).union(0 ..< planned).sorted() {
                if let d = done[i] {
                    shardLines.append(ShardLine(method: method, granularity: granularity, shardIndex: i, done: true, sequences: d.nSequences, seconds: d.seconds))
                } else {
                    let size = plan.map { min($0.shardSize, $0.sequences - i * $0.shardSize) }
                    shardLines.append(ShardLine(method: method, granularity: granularity, shardIndex: i, done: false, sequences: size, seconds: 0))
                }
            }
        }
        var lines: [Line] = []
        for stage in Stage.allCases {
            let rec = ledger[stage.rawValue]
            var detail = ""
            switch stage {
            case .train:
                let epochs = try db.epochs()
                if let last = epochs.last {
                    // The split each epoch was evaluated on: select, or test with `select_on: test`.
                    let split = (try? db.run()).flatMap { $0 }.flatMap { try? PipelineSpec.parse(yaml: $0.specYAML) }?.split.selectOn.split.rawValue ?? "select"
                    detail = String(format: "%d epochs recorded (%.1f s); last %@ accuracy %.3f", epochs.count,
                                    epochs.map(\.seconds).reduce(0, +), split, last.selectAccuracy)
                }
            case .attribute:
                var jobs: [String] = []
                for s in shardLines where !jobs.contains(s.job) { jobs.append(s.job) }
                detail = jobs.map { m in
                    let mine = shardLines.filter { $0.job == m }
                    let done = mine.filter(\.done)
                    return String(format: "%@: %d of %@ shards done (%.1f s)", m as NSString, done.count,
                                  plan == nil ? "?" : String(mine.count), done.map(\.seconds).reduce(0, +))
                }.joined(separator: "; ")
            case .evidence:
                // Units finished (any content key: a stale key's units are discarded when the stage runs)
                // of the planned: every attributed ranking plus the random rankings of each granularity.
                let units = try db.evidenceUnitProgress()
                if units.done > 0 || ledger[Stage.attribute.rawValue] != nil {
                    let spec = try db.run().flatMap { try? PipelineSpec.parse(yaml: $0.specYAML, path: $0.specPath) }
                    let rankings = try db.scoreSets().filter { $0.method != Baseline.random }.count
                    let planned = spec.map { rankings + $0.evidence.randomRankings * $0.attribution.granularity.count }
                    detail = String(format: "%d of %@ rankings' curves done (%.1f s)", units.done, planned.map(String.init) ?? "?", units.seconds)
                }
            case .sanity:
                let units = try db.sanityUnitProgress()
                if units.done > 0 || ledger[Stage.attribute.rawValue] != nil {
                    let spec = try db.run().flatMap { try? PipelineSpec.parse(yaml: $0.specYAML, path: $0.specPath) }
                    let layers = try db.scoredLayers()
                    let planned = spec.flatMap { s in layers.map { (s.sanity.modelRandomization ? $0 : 0) + (s.sanity.labelRandomization ? 1 : 0) } }
                    detail = String(format: "%d of %@ checks done (%.1f s)", units.done, planned.map(String.init) ?? "?", units.seconds)
                }
            case .neurons:
                // Neurons whose selectivity is done, in finished shards (any content key).
                let shards = try db.selectivityShards()
                if !shards.isEmpty {
                    detail = String(format: "selectivity of %d neurons done in %d shards (%.1f s)", shards.map(\.count).reduce(0, +), shards.count,
                                    shards.map(\.seconds).reduce(0, +))
                }
            case .cards:
                // Shards finished (any content key) of the planned: the card split in shards of cards.shard_size.
                let shards = try db.cardShardProgress()
                if shards.done > 0 || ledger[Stage.neurons.rawValue] != nil {
                    let spec = try db.run().flatMap { try? PipelineSpec.parse(yaml: $0.specYAML, path: $0.specPath) }
                    let planned = try spec.map { s in s.cards.top == 0 ? 0 : (try db.sequenceIDs(split: s.cards.split.rawValue).count + s.cards.shardSize - 1) / s.cards.shardSize }
                    detail = String(format: "%d of %@ shards done (%.1f s)", shards.done, planned.map(String.init) ?? "?", shards.seconds)
                }
            default: break
            }
            lines.append(Line(stage: stage, done: rec != nil, rows: rec?.rowsWritten ?? 0, seconds: rec?.seconds ?? 0, detail: detail))
        }
        return RunStatus(lines: lines, shards: shardLines)
    }

    /// One line per shard: method, index, state, sequences, seconds.
    public var shardText: String {
        var out = "method/granularity             shard  state  sequences  seconds\n"
        for s in shards {
            out += s.job.padding(toLength: 31, withPad: " ", startingAt: 0)
                + String(s.shardIndex).padding(toLength: 7, withPad: " ", startingAt: 0)
                + (s.done ? "done " : "left ").padding(toLength: 7, withPad: " ", startingAt: 0)
                + (s.sequences.map(String.init) ?? "?").padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: "%7.1f", s.seconds) + "\n"
        }
        return out
    }

    /// A plain-text table.
    public var text: String {
        var out = "stage      state  rows       seconds  detail\n"
        for l in lines {
            out += l.stage.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                + (l.done ? "done " : "left ").padding(toLength: 7, withPad: " ", startingAt: 0)
                + String(l.rows).padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: "%7.1f  ", l.seconds) + l.detail + "\n"
        }
        return out
    }
}
