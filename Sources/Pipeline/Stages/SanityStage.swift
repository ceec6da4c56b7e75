import Attribution
import ESM
import Foundation
import Store
import Training

/// The two sanity checks of Adebayo et al. 2018 ("Sanity Checks for Saliency Maps",
/// arXiv 1810.03292), as stored in `sanity_checks.check_name`.
enum SanityCheck: String, CaseIterable, Comparable {
    /// Section 3.1, cascading randomisation: the head and the top k blocks re-initialised.
    case modelRandomization = "model_randomization"
    /// Section 3.2: a model trained on randomly permuted labels.
    case labelRandomization = "label_randomization"

    static func < (a: Self, b: Self) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
}

/// Stage 9: do the rankings depend on the model? Every attributed ranking (method x
/// granularity x target) is re-computed, in memory, on `sanity.max_sequences` of the sequences
/// the attribute stage scored, taken class by class in turn (`sample`), for
///
/// - `model_randomization`, k = 1 ... L: the fine-tuned model with its classification head and
///   its top k blocks re-initialised (`ModelRandomization.cascading`, seed `sanity.seed`);
/// - `label_randomization`: a model trained exactly as the train stage trains (same spec,
///   initial weights and schedule) on the train split with its labels permuted (seed
///   `sanity.seed`), which can only memorise;
///
/// and compared with the same ranking on the fine-tuned model over the same sequences by
/// Spearman's rank correlation (`EvidenceStatistics.spearman`). A ranking passes a check when the
/// correlation with the fully randomised model (k = L) or the label-randomised one is below
/// `sanity.max_spearman`: its scores depend on what the model learned. A method whose ranking
/// survives randomisation (e.g. one that reads only the input) fails.
///
/// Each (check, k) is one resumable unit. Units are keyed by the sanity parameters and the
/// attribute stage's key (which includes training), not by this stage's key: changing the
/// evidence settings redoes nothing here. A killed label-randomisation unit retrains from the start.
enum SanityStage: StageImplementation {
    /// Every `sanity` key.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        flatten(canonicalJSON(ctx.spec.sanity), prefix: "sanity")
    }

    struct Unit: Hashable {
        var check: SanityCheck
        var layers: Int
        var name: String { "\(check.rawValue)/\(layers)" }
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.sanity
        guard let attribute = try ctx.db.stage(Stage.attribute.rawValue) else { throw PipelineError.missingStage(stage: "sanity", needs: "attribute") }
        let upstream = LedgerRequirement(stage: attribute.stage, contentKey: attribute.contentKey)
        // The threshold only judges the correlations: changing it redoes no unit.
        let unitKey = Hashing.contentKey(.sanity, previous: attribute.contentKey,
                                         parameters: PipelineRunner.text(try parameters(ctx).filter { $0.name != "sanity.max_spearman" }))
        let stale = try ctx.db.discardSanityUnits(otherThan: unitKey)
        if stale > 0 { ctx.log("  discarded \(stale) sanity units computed with other sanity parameters or another attribution") }
        let ledger = StageRecord(stage: Stage.sanity.rawValue, contentKey: key, rowsWritten: 0, seconds: 0)
        guard spec.enabled else {
            ctx.log("  sanity checks are off (sanity.model_randomization and sanity.label_randomization are false)")
            return try ctx.db.commitSanity(verdicts: [], ledger: ledger, requiring: upstream)
        }
        let model = try ModelStore.finalModel(ctx, stage: "sanity")
        let layers = model.config.numHiddenLayers
        var units: [Unit] = []
        if spec.modelRandomization { units += (1 ... layers).map { Unit(check: .modelRandomization, layers: $0) } }
        if spec.labelRandomization { units.append(Unit(check: .labelRandomization, layers: 0)) }
        let done = try ctx.db.finishedSanityUnits(unitKey: unitKey)
        let todo = units.filter { !done.contains($0.name) }
        let attribution = ctx.spec.attribution
        let attributed = try AttributeStage.sequences(ctx)
        let examples = sample(attributed.examples, count: spec.maxSequences)
        guard examples.count >= 2 else {
            throw PipelineError.empty(stage: "sanity", what: "the checks need at least 2 attributed sequences and there are \(examples.count): "
                + "raise attribution.max_sequences, or set sanity.model_randomization and sanity.label_randomization to false")
        }
        let layouts = try attribution.layouts(model.config)
        ctx.log("  \(units.count) checks (\(spec.modelRandomization ? "cascading model randomisation k = 1 ... \(layers)" : "")"
                + "\(spec.modelRandomization && spec.labelRandomization ? ", " : "")\(spec.labelRandomization ? "label randomisation" : "")) "
                + "on \(examples.count) sequences of the \(ctx.spec.split.selectOn.split.rawValue) split: \(todo.count) to do")

        var unitSeconds = 0.0   // this process's units (the ledger counts every process's: sanity_units)
        if !todo.isEmpty {
            let t0 = Date()
            let reference = try AttributeStage.rankingsInMemory(model: model, examples: examples, spec: attribution, layouts: layouts)
            ctx.log(String(format: "  re-scored the fine-tuned model in %.1f s", Date().timeIntervalSince(t0)))
            let stored = try ctx.db.scoreSets().filter { $0.method != Baseline.random }
            let unchecked = stored.filter { id in !reference.keys.contains { $0.stored == id } }
            if !unchecked.isEmpty {
                ctx.log("  not checked (no sequence of their class among the \(examples.count)): \(unchecked.map(\.description).joined(separator: ", ")); "
                        + "raise sanity.max_sequences to include them")
            }
            let progress = ProgressReporter("sanity", total: units.count, unit: "checks", quiet: ctx.quiet)
            var finished = done.count
            for unit in todo {
                let t1 = Date()
                defer { unitSeconds += Date().timeIntervalSince(t1) }
                let randomized: ESMClassifier
                switch unit.check {
                case .modelRandomization:
                    randomized = try ESMClassifier(config: model.config,
                                                   parameters: ModelRandomization.cascading(model.parameters, layers: unit.layers, seed: spec.seed))
                case .labelRandomization:
                    randomized = try labelRandomizedModel(ctx, seed: spec.seed)
                }
                let scores = try AttributeStage.rankingsInMemory(model: randomized, examples: examples, spec: attribution, layouts: layouts)
                let rows = reference.keys.sorted().map { id in
                    SanityCheckRecord(check: unit.check.rawValue, layersRandomized: unit.layers, ranking: id.stored,
                                      spearman: EvidenceStatistics.spearman(reference[id]!, scores[id] ?? []),
                                      nScores: reference[id]!.count, nSequences: examples.count)
                }
                try ctx.db.commitSanityUnit(check: unit.check.rawValue, layersRandomized: unit.layers, rows: rows, unitKey: unitKey,
                                            seconds: Date().timeIntervalSince(t1), requiring: upstream)
                finished += 1
                progress.update(finished)
                DebugHooks.pause(ctx.debug.shardDelayMilliseconds)
            }
        }

        // Verdicts: the fully randomised model (k = L) and the label-randomised one.
        var verdicts: [SanityVerdictRecord] = []
        for r in try ctx.db.sanityChecks() {
            guard let check = SanityCheck(rawValue: r.check), check == .labelRandomization || r.layersRandomized == layers else { continue }
            verdicts.append(SanityVerdictRecord(ranking: r.ranking, check: r.check, spearman: r.spearman, maxSpearman: spec.maxSpearman,
                                                passed: (r.spearman ?? .infinity) < spec.maxSpearman))
        }
        for v in verdicts {
            ctx.log(String(format: "  %@ %@: Spearman %@ -> %@", v.ranking.description, v.check,
                           v.spearman.map { String(format: "%.3f", $0) } ?? "undefined", v.passed ? "passes" : "FAILS"))
        }
        var l = ledger
        l.seconds = try ctx.db.sanityUnitProgress().seconds + Date().timeIntervalSince(start) - unitSeconds
        return try ctx.db.commitSanity(verdicts: verdicts, ledger: l, requiring: upstream)
    }

    /// Up to `count` of `examples` (in id order), taken class by class in turn (the first of each
    /// class, then the second of each, ...), so that every class with a sequence is represented
    /// as soon as `count` reaches the number of classes (its per-class rankings can be checked).
    static func sample(_ examples: [Example], count: Int) -> [Example] {
        var byClass: [Int: [Int]] = [:]
        for (i, e) in examples.enumerated() { byClass[e.label, default: []].append(i) }
        var chosen: [Int] = [], round = 0
        let classes = byClass.keys.sorted()
        while chosen.count < min(count, examples.count) {
            for c in classes where round < byClass[c]!.count && chosen.count < count { chosen.append(byClass[c]![round]) }
            round += 1
        }
        return chosen.sorted().map { examples[$0] }
    }

    /// A model trained as the train stage trains (same initial model, spec and schedule), on the
    /// train split with its labels permuted by `Trainer.order(count:seed:epoch: 0)` (so every
    /// class keeps its count). Not saved: a killed run trains it again.
    /// - Throws: store and checkpoint errors; `PipelineError.diverged` for a non-finite loss.
    static func labelRandomizedModel(_ ctx: RunContext, seed: UInt64) throws -> ESMClassifier {
        let spec = ctx.spec.train
        let train = try SplitData.load(ctx, split: .train)
        let permutation = Trainer.order(count: train.examples.count, seed: seed, epoch: 0)
        let shuffled = train.examples.indices.map { Example(tokens: train.examples[$0].tokens, label: train.examples[permutation[$0]].label) }
        let model = try ModelStore.initialModel(ctx, classes: try ctx.db.classes()).model
        let trainer = TrainStage.makeTrainer(spec, model: model, examples: shuffled.count)
        let progress = ProgressReporter("sanity: training on shuffled labels", total: spec.epochs, unit: "epochs", quiet: ctx.quiet)
        for epoch in 0 ..< spec.epochs {
            let stats = trainer.trainEpoch(shuffled, seed: spec.seed, epoch: epoch + 1)
            guard stats.loss.isFinite else {
                throw PipelineError.diverged(epoch: epoch + 1, detail: "training on shuffled labels (sanity check): the loss became \(stats.loss)")
            }
            if (epoch + 1) % 10 == 0 || epoch + 1 == spec.epochs {
                ctx.log(String(format: "  shuffled labels epoch %d: train loss %.4f acc %.3f", epoch + 1, stats.loss, stats.accuracy))
            }
            progress.update(epoch + 1)
        }
        return model
    }
}
