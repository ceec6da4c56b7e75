import ESM
import Foundation
import Store
import Training

/// Examples of one split, built from the database (tokens + class index), ordered by id.
struct SplitData {
    var ids: [String]
    var examples: [Example]

    static func load(_ ctx: RunContext, split: SplitRole, limit: Int? = nil) throws -> SplitData {
        let classes = try ctx.db.classes()
        let index = Dictionary(uniqueKeysWithValues: classes.map { ($0.ecLabel, $0.classIndex) })
        let labels = Dictionary(uniqueKeysWithValues: try ctx.db.sequences().map { ($0.id, $0.ecLabel) })
        let tokens = try ctx.db.tokens()
        var ids = try ctx.db.sequenceIDs(split: split.rawValue)
        if let limit { ids = Array(ids.prefix(limit)) }
        let examples = try ids.map { id -> Example in
            guard let t = tokens[id], let l = labels[id], let c = index[l] else {
                throw StoreError.corrupt("sequence \(id) of split \(split) has no tokens or label")
            }
            return Example(tokens: t.ids, label: c)
        }
        return SplitData(ids: ids, examples: examples)
    }
}

/// Loading and saving models for the stages.
enum ModelStore {
    /// The initial model of the spec with the run's classes, and how its classifier head was
    /// obtained: a seeded preset, or an HF checkpoint whose head is kept (its outputs permuted
    /// to the run's class order by `HeadMapping.decide`), initialised (no head stored) or
    /// re-initialised (`model.head: reinit`). The returned config's `id2label` is the run's
    /// classes (`EC name`).
    /// - Throws: `PipelineError.headMismatch` when the stored head's labels do not match the
    ///   run's classes; `CheckpointError` / `SafeTensorsError` for an unreadable checkpoint.
    static func initialModel(_ ctx: RunContext, classes: [ClassRecord]) throws -> (model: ESMClassifier, head: ModelHeadRecord) {
        let spec = ctx.spec.model
        var config: ESMConfig
        var parameters: ParameterBuffer?
        let decision: HeadDecision
        var ignored = ""
        if let dir = spec.checkpoint {
            let path = ctx.resolve(dir)
            let contents = try ctx.checkpointContents ?? Checkpoint.inspect(directory: path)
            decision = try HeadMapping.decide(path: dir, contents: contents, classes: classes, level: ctx.spec.labelLevel, policy: spec.head)
            ignored = contents.ignored.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value) tensor\($0.value == 1 ? "" : "s")" }.joined(separator: ", ")
            for note in contents.notes { ctx.log("  note: \(note)") }
            var loaded = try decision.keepsHead
                ? Checkpoint.load(directory: path)
                : Checkpoint.load(directory: path, numLabels: classes.count, seed: spec.seed, initialiseHead: true)
            if case .kept(let order, _) = decision, order != Array(order.indices) {
                loaded.parameters.permuteClassifierOutputs(order)
            }
            config = loaded.config
            config.classifierPooling = spec.pooling
            parameters = loaded.parameters
        } else {
            decision = .preset(spec.preset ?? "small")
            config = try ESMConfig.preset(spec.preset ?? "small", numLabels: classes.count, pooling: spec.pooling)
        }
        config.maxPositionEmbeddings = max(config.maxPositionEmbeddings, spec.maxLength)
        config.id2label = Dictionary(uniqueKeysWithValues: classes.map { c in (String(c.classIndex), c.name.map { n in "\(c.ecLabel) \(n)" } ?? c.ecLabel) })
        var mapped: [ModelHeadRecord.ClassMapping] = []
        if case .kept(let order, let labels) = decision {
            mapped = classes.indices.map { ModelHeadRecord.ClassMapping(classIndex: classes[$0].classIndex, checkpointIndex: order[$0], checkpointLabel: labels[$0]) }
        }
        let head = ModelHeadRecord(source: spec.checkpoint ?? "preset \(spec.preset ?? "small")", decision: decision.name,
                                   detail: HeadMapping.describe(decision, classes: classes, seed: spec.seed), ignored: ignored, classes: mapped)
        if let p = parameters {
            return (try ESMClassifier(config: config, parameters: ParameterBuffer(layout: ParameterLayout(config: config), values: p.values)), head)
        }
        return (ESMClassifier(config: config, seed: spec.seed), head)
    }

    /// Loads the fine-tuned model, checking its SHA-256 against the recorded one.
    /// - Throws: `PipelineError.missingStage`, `PipelineError.checkpointChanged`, checkpoint errors.
    static func finalModel(_ ctx: RunContext, stage: String) throws -> ESMClassifier {
        guard let rec = try ctx.db.checkpoint(named: "final") else { throw PipelineError.missingStage(stage: stage, needs: "train") }
        // The checkpoint lives in the run's artifacts directory next to the database; the
        // recorded directory is informational (the run may have moved, or been started from
        // another working directory).
        let directory = (ctx.artifactsDirectory as NSString).appendingPathComponent("final")
        let file = (directory as NSString).appendingPathComponent("model.safetensors")
        let found = (try? Hashing.sha256(file: file).hex) ?? "missing"
        guard found == rec.sha256 else { throw PipelineError.checkpointChanged(path: file, recorded: rec.sha256, found: found) }
        let loaded = try Checkpoint.load(directory: directory)
        return try ESMClassifier(config: loaded.config, parameters: loaded.parameters)
    }
}

extension ParameterBuffer {
    /// A buffer of `layout` holding `values` (must have `layout.count` elements).
    init(layout: ParameterLayout, values: [Float]) {
        self.init(layout: layout)
        self.values = values
    }

    /// Permutes the classifier's outputs: output `i` becomes the stored output `order[i]`
    /// (rows of `classifier.out_proj.weight`, numLabels x H, and entries of its bias).
    mutating func permuteClassifierOutputs(_ order: [Int]) {
        let w = layout.spec(.classifierOutWeight), b = layout.spec(.classifierOutBias)
        let h = w.shape[1]
        let oldW = tensor(w), oldB = tensor(b)
        for (i, o) in order.enumerated() {
            for j in 0 ..< h { values[w.range.lowerBound + i * h + j] = oldW[o * h + j] }
            values[b.range.lowerBound + i] = oldB[o]
        }
    }
}

/// Stage 4: full fine-tuning with AdamW and cross-entropy. After every epoch the model and
/// optimizer state are saved (`train-state/state.safetensors`, atomically) and the epoch's
/// curve point recorded, so an interrupted run resumes from the last finished epoch.
enum TrainStage: StageImplementation {
    /// Every `model` and `train` key, and the SHA-256 of a checkpoint's model.safetensors (of
    /// each shard of a sharded one).
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        let spec = ctx.spec
        var fields = flatten(canonicalJSON(spec.model), prefix: "model") + flatten(canonicalJSON(spec.train), prefix: "train")
        if let ckpt = spec.model.checkpoint {
            let file = (ctx.resolve(ckpt) as NSString).appendingPathComponent("model.safetensors")
            if FileManager.default.fileExists(atPath: file) {
                fields.append(("model.checkpoint file", "sha256 \(try Hashing.sha256(file: file).hex)"))
            } else {
                // A sharded, pickled or fair-esm checkpoint: every weight file (found by name; an
                // unreadable one is reported by the preflight).
                for (i, shard) in Checkpoint.weightFilePaths(ctx.resolve(ckpt)).enumerated() where FileManager.default.isReadableFile(atPath: shard) {
                    fields.append(("model.checkpoint file[\(i)] \((shard as NSString).lastPathComponent)", "sha256 \(try Hashing.sha256(file: shard).hex)"))
                }
            }
        }
        return fields
    }

    /// The spec's trainer for `model`: AdamW with the spec's learning rate, weight decay, batch
    /// size, clipping and schedule over `examples` training sequences per epoch.
    static func makeTrainer(_ spec: TrainSpec, model: ESMClassifier, examples: Int) -> Trainer {
        let trainer = Trainer(model: model,
                              optimizer: AdamWConfig(learningRate: spec.learningRate, weightDecay: spec.weightDecay),
                              batchSize: spec.batchSize, maxGradNorm: spec.maxGradNorm)
        let stepsPerEpoch = (examples + spec.batchSize - 1) / spec.batchSize
        let totalSteps = stepsPerEpoch * spec.epochs
        switch spec.schedule {
        case .constant: trainer.schedule = .constant
        case .linear: trainer.schedule = .linear(warmupSteps: Int((spec.warmupFraction * Double(totalSteps)).rounded()), totalSteps: totalSteps)
        }
        return trainer
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.train
        let classes = try ctx.db.classes()
        let train = try SplitData.load(ctx, split: .train)
        let select = try SplitData.load(ctx, split: ctx.spec.split.selectOn.split)
        guard !train.examples.isEmpty else { throw PipelineError.empty(stage: "train", what: "the train split is empty") }
        let (model, head) = try ModelStore.initialModel(ctx, classes: classes)
        ctx.log("  head: \(head.detail)" + (head.ignored.isEmpty ? "" : "; not loaded: \(head.ignored)"))
        let trainer = makeTrainer(spec, model: model, examples: train.examples.count)
        ctx.log("  model \(ctx.spec.model.checkpoint ?? ctx.spec.model.preset ?? "?"): \(model.config.numHiddenLayers) layers, hidden \(model.config.hiddenSize), \(model.parameters.layout.count) parameters, \(classes.count) classes, pooling \(model.config.classifierPooling.rawValue)")
        let selectName = ctx.spec.split.selectOn.split.rawValue
        ctx.log("  train \(train.examples.count) sequences; each epoch evaluated on the \(selectName) split (\(select.examples.count) sequences), the split neurons are selected on")

        let stateDir = (ctx.artifactsDirectory as NSString).appendingPathComponent("train-state")
        let statePath = (stateDir as NSString).appendingPathComponent("state.safetensors")
        var firstEpoch = 1
        let recorded = try ctx.db.epochs()
        if let last = recorded.last, let state = try? SafeTensorsFile(path: statePath),
           state.metadata["content_key"] == key, state.metadata["epoch"] == String(last.epoch) {
            model.parameters.values = try state.floats("parameters")
            trainer.optimizer.m.values = try state.floats("adam_m")
            trainer.optimizer.v.values = try state.floats("adam_v")
            trainer.optimizer.step = Int(state.metadata["step"] ?? "0") ?? 0
            firstEpoch = last.epoch + 1
            ctx.log("  resuming after epoch \(last.epoch) (optimizer step \(trainer.optimizer.step))")
        } else if !recorded.isEmpty {
            ctx.log("  no matching saved state for the \(recorded.count) recorded epochs; training from the start")
            try ctx.db.deleteEpochs(after: 0)
        }
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        if firstEpoch <= spec.epochs {
            for epoch in firstEpoch ... spec.epochs {
                let t0 = Date()
                let progress = ProgressReporter("train epoch \(epoch)/\(spec.epochs)", total: train.examples.count, unit: "seq", quiet: ctx.quiet)
                let stats = trainer.trainEpoch(train.examples, seed: spec.seed, epoch: epoch) { done, _ in
                    progress.update(done)
                    DebugHooks.pause(ctx.debug.batchDelayMilliseconds)
                }
                guard stats.loss.isFinite else {
                    throw PipelineError.diverged(epoch: epoch, detail: "the training loss became \(stats.loss); lower train.learning_rate or set train.max_grad_norm")
                }
                let sel = select.examples.isEmpty ? nil : trainer.evaluate(select.examples, batchSize: spec.batchSize).stats
                let layout = model.parameters.layout
                try SafeTensorsWriter.write([
                    ("parameters", [layout.count], model.parameters.values),
                    ("adam_m", [layout.count], trainer.optimizer.m.values),
                    ("adam_v", [layout.count], trainer.optimizer.v.values),
                ], metadata: ["content_key": key, "epoch": String(epoch), "step": String(trainer.optimizer.step)], to: statePath)
                let record = EpochRecord(epoch: epoch, trainLoss: stats.loss, trainAccuracy: stats.accuracy,
                                         selectLoss: sel?.loss ?? .nan, selectAccuracy: sel?.accuracy ?? .nan,
                                         seconds: Date().timeIntervalSince(t0))
                try ctx.db.recordEpoch(record)
                ctx.log(String(format: "  epoch %d: train loss %.4f acc %.3f | %@ loss %.4f acc %.3f | %.1f s",
                               epoch, record.trainLoss, record.trainAccuracy, selectName, record.selectLoss, record.selectAccuracy, record.seconds))
            }
        }
        let finalDir = (ctx.artifactsDirectory as NSString).appendingPathComponent("final")
        try Checkpoint.save(config: model.config, parameters: model.parameters, to: finalDir)
        let finalDirAbsolute = URL(fileURLWithPath: finalDir).standardizedFileURL.path
        let h = try Hashing.sha256(file: (finalDir as NSString).appendingPathComponent("model.safetensors"))
        let epochs = try ctx.db.epochs()
        try ctx.db.commitTraining(checkpoints: [CheckpointRecord(name: "final", directory: finalDirAbsolute, sha256: h.hex, sizeBytes: h.size)],
                                  head: head, ledger: StageRecord(stage: "train", contentKey: key, rowsWritten: epochs.count + 1,
                                                      seconds: epochs.reduce(0) { $0 + $1.seconds } + Date().timeIntervalSince(start) - epochs.filter { $0.epoch >= firstEpoch }.reduce(0) { $0 + $1.seconds }))
        ctx.log("  saved \(finalDir) (sha256 \(h.hex.prefix(12)))")
        return epochs.count + 1
    }
}
