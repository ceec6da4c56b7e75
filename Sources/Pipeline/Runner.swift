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

/// Runs stages in order, skipping those the ledger records with the same content key.
public struct PipelineRunner {
    /// The run whose stages are executed.
    public let context: RunContext

    /// Creates a runner for `context`.
    public init(context: RunContext) { self.context = context }

    /// The content key of every stage for this spec (each includes the previous one).
    /// - Throws: `PipelineError.unreadableInput` when an input file cannot be hashed.
    public func contentKeys() throws -> [Stage: String] {
        let spec = context.spec
        var keys: [Stage: String] = [:]
        var previous: String?
        for stage in Stage.allCases {
            let parameters: String
            switch stage {
            case .ingest:
                var files: [String] = []
                for (role, list) in [("fasta", spec.inputs.fasta), ("labels", spec.inputs.labels)] {
                    for p in list {
                        let h = try Hashing.sha256(file: context.resolve(p))
                        files.append("\(role) \(h.hex) \(h.size)")
                    }
                }
                parameters = files.joined(separator: "\n") + "\nlevel \(spec.labelLevel)"
            case .tokenize:
                parameters = "max_length \(spec.model.maxLength) crop \(spec.model.crop.rawValue)"
            case .split:
                parameters = canonicalJSON(spec.split)
            case .train:
                var p = canonicalJSON(spec.model) + canonicalJSON(spec.train)
                if let ckpt = spec.model.checkpoint {
                    let file = (context.resolve(ckpt) as NSString).appendingPathComponent("model.safetensors")
                    if FileManager.default.fileExists(atPath: file) { p += try Hashing.sha256(file: file).hex }
                }
                parameters = p
            case .attribute:
                parameters = canonicalJSON(spec.attribution) + spec.split.selectOn.rawValue
            case .select:
                parameters = canonicalJSON(spec.selection)
            case .evaluate, .report:
                parameters = ""
            }
            let key = Hashing.contentKey(stage, previous: previous, parameters: parameters)
            keys[stage] = key
            previous = key
        }
        return keys
    }

    /// Deletes the recorded work of `stage` and every later stage, and says what it discarded.
    public func force(_ stage: Stage) throws {
        let names = Stage.allCases.filter { $0 >= stage }.map(\.rawValue)
        let deleted = try context.db.discard(stages: names)
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
        let keys = try contentKeys()
        var outcomes: [StageOutcome] = []
        var recorded = false
        for stage in stages.sorted() {
            let key = keys[stage]!
            if let done = try context.db.stage(stage.rawValue) {
                guard done.contentKey == key else {
                    throw PipelineError.changedInputs(stage: stage.rawValue, recorded: done.contentKey, now: key)
                }
                outcomes.append(StageOutcome(stage: stage, ran: false, rows: done.rowsWritten, seconds: done.seconds))
                continue
            }
            if let prev = stage.previous {
                guard let p = try context.db.stage(prev.rawValue) else {
                    throw PipelineError.missingStage(stage: stage.rawValue, needs: prev.rawValue)
                }
                guard p.contentKey == keys[prev]! else {
                    throw PipelineError.changedInputs(stage: prev.rawValue, recorded: p.contentKey, now: keys[prev]!)
                }
            }
            if !recorded {
                try context.recordRun()
                recorded = true
            }
            context.log("== \(stage.rawValue)")
            let start = Date()
            let rows = try execute(stage, key: key)
            let seconds = Date().timeIntervalSince(start)
            context.log(String(format: "== %@ done: %d rows in %.1f s", stage.rawValue, rows, seconds))
            outcomes.append(StageOutcome(stage: stage, ran: true, rows: rows, seconds: seconds))
        }
        return outcomes
    }

    private func execute(_ stage: Stage, key: String) throws -> Int {
        switch stage {
        case .ingest: return try IngestStage.run(context, key: key)
        case .tokenize: return try TokenizeStage.run(context, key: key)
        case .split: return try SplitStage.run(context, key: key)
        case .train: return try TrainStage.run(context, key: key)
        case .attribute: return try AttributeStage.run(context, key: key)
        case .select: return try SelectStage.run(context, key: key)
        case .evaluate: return try EvaluateStage.run(context, key: key)
        case .report: return try ReportStage.run(context, key: key)
        }
    }
}
