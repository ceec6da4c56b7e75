import ESM
import Foundation
import Store

/// What happened to one stage in a `run`.
public struct StageOutcome: Sendable {
    /// The stage.
    public var stage: Stage
    /// `ran` or `skipped` (already recorded with the same content key).
    public var ran: Bool
    /// Rows the stage wrote (the ledger's `rows_written` when skipped).
    public var rows: Int
    /// Wall time of the stage, seconds (the recorded time when skipped).
    public var seconds: Double
}

/// Flattens canonical JSON into `prefix.key` -> value lines (nested objects joined by '.',
/// arrays and scalars as compact JSON), keys sorted.
func flatten(_ json: String, prefix: String) -> [(name: String, value: String)] {
    guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return [(prefix, json)] }
    var out: [(name: String, value: String)] = []
    func walk(_ o: [String: Any], _ path: String) {
        for k in o.keys.sorted() {
            let name = path + "." + k
            if let nested = o[k] as? [String: Any] {
                walk(nested, name)
            } else if let data = try? JSONSerialization.data(withJSONObject: o[k]!, options: [.fragmentsAllowed, .sortedKeys]) {
                out.append((name, String(decoding: data, as: UTF8.self)))
            }
        }
    }
    walk(object, prefix)
    return out
}

/// Runs stages in order, skipping those the ledger records with the same content key.
public struct PipelineRunner {
    /// The run whose stages are executed.
    public let context: RunContext

    /// Creates a runner for `context`.
    public init(context: RunContext) { self.context = context }

    /// The named inputs and parameters of every stage (`inputs.fasta[0]` -> its SHA-256 and
    /// size, `train.epochs` -> `60`, ...), in a fixed order. A stage's content key is made from
    /// these lines and the previous stage's key.
    /// - Throws: `PipelineError.unreadableInput` when an input file cannot be hashed.
    public func stageParameters() throws -> [Stage: [(name: String, value: String)]] {
        var out: [Stage: [(name: String, value: String)]] = [:]
        for stage in Stage.allCases { out[stage] = try stage.implementation.parameters(context) }
        return out
    }

    /// `name<TAB>value` lines, as stored in the ledger.
    static func text(_ fields: [(name: String, value: String)]) -> String {
        fields.map { "\($0.name)\t\($0.value)" }.joined(separator: "\n")
    }

    /// The content key of every stage for this spec (each includes the previous one), made
    /// from `stageParameters()` (pass them when already computed: it hashes every input file).
    /// - Throws: `PipelineError.unreadableInput` when an input file cannot be hashed.
    public func contentKeys(from computed: [Stage: [(name: String, value: String)]]? = nil) throws -> [Stage: String] {
        let parameters = try computed ?? stageParameters()
        var keys: [Stage: String] = [:]
        var previous: String?
        for stage in Stage.allCases {
            let key = Hashing.contentKey(stage, previous: previous, parameters: Self.text(parameters[stage]!))
            keys[stage] = key
            previous = key
        }
        return keys
    }

    /// What differs between a stage's recorded `name<TAB>value` lines and the current ones:
    /// "train.epochs: 60 -> 61", "inputs.fasta[0] (a.fasta): sha256 ... -> sha256 ...".
    /// When nothing was recorded (all defaults, or an older database) every current line; empty
    /// when only earlier stages changed.
    func differences(recorded: String, now: [(name: String, value: String)]) -> [String] {
        // Nothing recorded: a stage whose parameters were all at their defaults (the evaluate stage
        // with zero ablation records none) or an older database.
        guard !recorded.isEmpty else { return now.map { "\($0.name)\(fileLabel($0.name)): (default, or not recorded) -> \($0.value)" } }
        var old: [String: String] = [:]
        for line in recorded.split(separator: "\n", omittingEmptySubsequences: true) {
            let parts = line.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false)
            old[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        var out: [String] = []
        var seen = Set<String>()
        for f in now {
            seen.insert(f.name)
            let label = f.name + fileLabel(f.name)
            if let o = old[f.name] {
                if o != f.value { out.append("\(label): \(o) -> \(f.value)") }
            } else {
                out.append("\(label): (default) -> \(f.value)")
            }
        }
        for name in old.keys.sorted() where !seen.contains(name) { out.append("\(name): \(old[name]!) -> (default)") }
        return out
    }

    /// " (path)" for an `inputs.fasta[i]` / `inputs.labels[i]` name.
    private func fileLabel(_ name: String) -> String {
        let spec = context.spec
        for (role, list) in [("fasta", spec.inputs.fasta), ("labels", spec.inputs.labels)] {
            for (i, p) in list.enumerated() where name == "inputs.\(role)[\(i)]" { return " (\(p))" }
        }
        if name == "inputs.enzyme_dat", let p = spec.inputs.enzymeDat { return " (\(p))" }
        return ""
    }

    /// Deletes the recorded work of `stage` and every later stage, and says what it discarded.
    public func force(_ stage: Stage) throws {
        let names = Stage.allCases.filter { $0 >= stage }.map(\.rawValue)
        // The sanity units depend on training, attribution and the sanity keys only: forcing select,
        // evaluate or evidence keeps them (the stage discards them itself when they are stale).
        let deleted = try context.db.discard(stages: names, keepingSanityUnits: stage > .attribute && stage < .sanity)
        let summary = deleted.filter { $0.rows > 0 }.map { "\($0.rows) rows of \($0.table)" }
        context.log("--force \(stage.rawValue): discarded stages \(names.joined(separator: ", "))"
            + (summary.isEmpty ? " (nothing was recorded)" : ": " + summary.joined(separator: ", ")))
        if stage <= .train {
            try? FileManager.default.removeItem(atPath: (context.artifactsDirectory as NSString).appendingPathComponent("train-state"))
        }
    }

    /// Runs `stages` (in pipeline order). A stage already recorded with the same key is
    /// skipped; with a different key it is an error (`PipelineError.changedInputs`).
    /// A stage whose predecessor is not recorded fails with `PipelineError.missingStage`.
    public func run(_ stages: [Stage]) throws -> [StageOutcome] {
        let parameters = try stageParameters()
        let keys = try contentKeys(from: parameters)
        func changed(_ stage: Stage, _ recorded: StageRecord) -> PipelineError {
            var diffs = differences(recorded: recorded.parameters, now: parameters[stage]!)
            if diffs.isEmpty {
                // The stage's own parameters are the same: an earlier stage's changed.
                for earlier in Stage.allCases where earlier < stage {
                    if let r = try? context.db.stage(earlier.rawValue) {
                        let d = differences(recorded: r.parameters, now: parameters[earlier]!)
                        if !d.isEmpty { diffs = d.map { "\($0) (stage \(earlier.rawValue))" }; break }
                    }
                }
            }
            return .changedInputs(stage: stage.rawValue, recorded: recorded.contentKey, now: keys[stage]!, differences: diffs)
        }
        var outcomes: [StageOutcome] = []
        var recorded = false
        for stage in stages.sorted() {
            let key = keys[stage]!
            if let done = try context.db.stage(stage.rawValue) {
                guard done.contentKey == key else { throw changed(stage, done) }
                outcomes.append(StageOutcome(stage: stage, ran: false, rows: done.rowsWritten, seconds: done.seconds))
                continue
            }
            if let prev = stage.previous {
                guard let p = try context.db.stage(prev.rawValue) else {
                    throw PipelineError.missingStage(stage: stage.rawValue, needs: prev.rawValue)
                }
                guard p.contentKey == keys[prev]! else { throw changed(prev, p) }
            }
            if !recorded {
                try preflight(stages.sorted().filter { $0 >= stage })
                try context.recordRun()
                recorded = true
            }
            context.log("== \(stage.rawValue)")
            let start = Date()
            let rows = try execute(stage, key: key)
            try context.db.setStageParameters(stage.rawValue, parameters: Self.text(parameters[stage]!))
            let seconds = Date().timeIntervalSince(start)
            context.log(String(format: "== %@ done: %d rows in %.1f s", stage.rawValue, rows, seconds))
            outcomes.append(StageOutcome(stage: stage, ran: true, rows: rows, seconds: seconds))
        }
        return outcomes
    }

    /// The checks made before the first of `stages` runs, so that a run that cannot finish
    /// fails before it writes anything: the inputs are read and assembled (when ingest is to
    /// run; its stage then commits that result), and a checkpoint's config, tensor names and
    /// shapes and its classifier's labels are checked against the data's classes (when train is
    /// to run), and the memory the model stages will need (`MemoryPlan`) against what this
    /// process may use. The input files' readability was checked when the content keys were made.
    /// - Throws: what the ingest readers, `Checkpoint.inspect` and `HeadMapping.decide` throw;
    ///   `PipelineError.insufficientMemory`.
    func preflight(_ stages: [Stage]) throws {
        var classes: [ClassRecord]?
        if stages.contains(.ingest) {
            let result = try IngestStage.read(context)
            context.preread = result
            classes = result.classes
            // The split's checks, on the sequences ingest accepts (tokenize refuses some only
            // with crop: reject, so the check waits for the split stage then).
            if stages.contains(.split), context.spec.model.crop != .reject, !context.allowEmptyIngest {
                try SplitStage.check(result.sequences.map { (id: $0.id, sequence: $0.sequence, label: $0.ecLabel) }, context.spec.split)
            }
        }
        // The model's shape: the spec's checkpoint when train is to run (it is checked then); after
        // train, the run's own fine-tuned model (the spec's checkpoint may be gone by now).
        var config: ESMConfig?
        if let dir = context.spec.model.checkpoint, stages.contains(.train) {
            let contents = try Checkpoint.inspect(directory: context.resolve(dir))
            context.checkpointContents = contents
            config = contents.config
        } else if context.spec.model.checkpoint == nil {
            config = try? ESMConfig.preset(context.spec.model.preset ?? "small", numLabels: 2)
        } else {
            config = (try? Checkpoint.inspect(directory: (context.artifactsDirectory as NSString).appendingPathComponent("final")))?.config
        }
        if var c = config, stages.contains(where: { $0 >= .train && $0 < .report }) {
            c.maxPositionEmbeddings = max(c.maxPositionEmbeddings, context.spec.model.maxLength)
            let plan = MemoryPlan(config: c, spec: context.spec)
            let (limit, free) = MemoryPlan.available()
            context.log("memory: \(plan.summary); this process may use \(limit.map(MemoryPlan.mb) ?? "?")\(free.map { ", \(MemoryPlan.mb($0)) free now" } ?? "")")
            if let limit, plan.total > limit, ProcessInfo.processInfo.environment["KNEURON_SKIP_MEMORY_CHECK"] != "1" {
                throw PipelineError.insufficientMemory(needed: MemoryPlan.mb(plan.total), limit: MemoryPlan.mb(limit), detail: plan.summary)
            }
        }
        if stages.contains(.train), let dir = context.spec.model.checkpoint, let contents = context.checkpointContents {
            let runClasses = try classes ?? context.db.classes()
            if !runClasses.isEmpty {
                let decision = try HeadMapping.decide(path: dir, contents: contents, classes: runClasses,
                                                      level: context.spec.labelLevel, policy: context.spec.model.head)
                context.log("checked checkpoint \(dir): \(contents.architectures.first ?? "ESM-2"), \(contents.config.numHiddenLayers) layers, hidden \(contents.config.hiddenSize); classifier head \(decision.name)")
            }
        }
    }

    private func execute(_ stage: Stage, key: String) throws -> Int {
        DebugHooks.pause(context.debug.stageDelayMilliseconds)   // lets the crash harness kill inside short stages
        return try stage.implementation.run(context, key: key)
    }
}
