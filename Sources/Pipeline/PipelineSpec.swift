import Foundation
import Attribution
import Yams
import ESM
import ProteinData

/// Errors in a pipeline spec, each naming the key path (`at train.learning_rate: ...`).
public enum SpecError: Error, CustomStringConvertible, Equatable {
    /// The spec file cannot be read.
    case unreadable(path: String, reason: String)
    /// The YAML itself is malformed.
    case yaml(path: String, message: String)
    /// A key the spec format does not know (a typo would otherwise be a silent default).
    case unknownKey(path: String, key: String, allowed: [String])
    /// A value of the wrong type or out of range.
    case invalid(path: String, message: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read pipeline spec \(path): \(reason)"
        case .yaml(let path, let message): return "pipeline spec \(path) is not valid YAML: \(message)"
        case .unknownKey(let path, let key, let allowed):
            return "at \(path.isEmpty ? key : path + "." + key): unknown key; allowed here: \(allowed.sorted().joined(separator: ", "))"
        case .invalid(let path, let message): return "at \(path.isEmpty ? "(top level)" : path): \(message)"
        }
    }
}

/// Coding key for arbitrary YAML keys (used to find unknown ones).
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

/// Throws `SpecError.unknownKey` for any key of the current mapping that `K` does not list.
func rejectUnknownKeys<K: CodingKey & CaseIterable>(_ decoder: Decoder, _: K.Type) throws {
    let c = try decoder.container(keyedBy: AnyKey.self)
    let allowed = K.allCases.map(\.stringValue)
    for key in c.allKeys where !allowed.contains(key.stringValue) {
        throw SpecError.unknownKey(path: keyPath(c.codingPath), key: key.stringValue, allowed: allowed)
    }
}

/// Throws `SpecError.invalid` at `path` when `values` lists an entry twice.
func rejectDuplicates<T: Hashable & CustomStringConvertible>(_ values: [T], at path: [CodingKey]) throws {
    var seen = Set<T>()
    for v in values where !seen.insert(v).inserted {
        throw SpecError.invalid(path: keyPath(path), message: "\(v) is listed twice; list each entry once")
    }
}

/// The allowed spellings of the spec's enumerations, by Swift type name (for messages).
let enumChoices: [String: [String]] = [
    "CropPolicy": CropPolicy.allCases.map(\.rawValue),
    "Pooling": Pooling.allCases.map(\.rawValue),
    "HeadPolicy": HeadPolicy.allCases.map(\.rawValue),
    "SelectOn": SelectOn.allCases.map(\.rawValue),
    "LRScheduleKind": LRScheduleKind.allCases.map(\.rawValue),
    "AttributionMethod": AttributionMethod.allCases.map(\.rawValue),
    "LinearModule": LinearModule.allCases.map(\.rawValue),
    "Granularity": Granularity.allCases.map(\.rawValue),
    "AttributionTarget": AttributionTarget.allCases.map(\.rawValue),
    "CurveDirection": CurveDirection.allCases.map(\.rawValue),
    "Ablation": Ablation.allCases.map(\.rawValue),
    "SplitRole": SplitRole.allCases.map(\.rawValue),
]

func keyPath(_ path: [CodingKey]) -> String {
    path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
}

/// Where the data comes from. Paths are relative to the spec file's directory.
public struct InputsSpec: Codable, Sendable, Equatable {
    /// FASTA files (`>ID description`, UniProt `sp|ACC|NAME` headers give the accession).
    public var fasta: [String]
    /// EC label files (UniProt TSV `Entry<TAB>EC number`, the combined table, or CSV).
    public var labels: [String]
    /// Name of the ID column of every label file (YAML `inputs.id_column`); absent = detected
    /// from the header (`Entry`, `id`, `accession`, ...). Matched case-insensitively, `_`/`-`
    /// as spaces; a label file without it is an error listing its columns.
    public var idColumn: String?
    /// Name of the EC column of every label file (YAML `inputs.ec_column`); absent = detected
    /// (`EC number`, `ec`, `ec_number`, ...).
    public var ecColumn: String?
    /// ExPASy `enzyme.dat` (YAML `inputs.enzyme_dat`); when given, transferred EC numbers are
    /// rewritten to their current numbers and deleted ones dropped or the row rejected
    /// (`EnzymeNomenclature.apply`). Absent = labels used as written.
    public var enzymeDat: String?
    /// The motif table of a planted-knowledge benchmark (`kneuron plant`'s `planted.motifs.tsv`;
    /// YAML `inputs.planted_motifs`): every row is checked against its sequence and stored in
    /// `planted_motifs`, and the classes are named by their motifs. Absent = not a planted run.
    public var plantedMotifs: String?
    enum CodingKeys: String, CodingKey, CaseIterable {
        case fasta, labels, idColumn = "id_column", ecColumn = "ec_column", enzymeDat = "enzyme_dat", plantedMotifs = "planted_motifs"
    }
    /// Creates the inputs from lists of FASTA and label file paths and the optional column
    /// names and `enzyme.dat` path (not validated).
    public init(fasta: [String], labels: [String], idColumn: String? = nil, ecColumn: String? = nil, enzymeDat: String? = nil) {
        self.fasta = fasta
        self.labels = labels
        self.idColumn = idColumn
        self.ecColumn = ecColumn
        self.enzymeDat = enzymeDat
    }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        fasta = try c.decodeIfPresent([String].self, forKey: .fasta) ?? []
        labels = try c.decode([String].self, forKey: .labels)
        idColumn = try c.decodeIfPresent(String.self, forKey: .idColumn)
        ecColumn = try c.decodeIfPresent(String.self, forKey: .ecColumn)
        enzymeDat = try c.decodeIfPresent(String.self, forKey: .enzymeDat)
        plantedMotifs = try c.decodeIfPresent(String.self, forKey: .plantedMotifs)
        try rejectDuplicates(fasta, at: c.codingPath + [CodingKeys.fasta])
        try rejectDuplicates(labels, at: c.codingPath + [CodingKeys.labels])
        for (key, value) in [(CodingKeys.idColumn, idColumn), (.ecColumn, ecColumn), (.enzymeDat, enzymeDat), (.plantedMotifs, plantedMotifs)] {
            if let v = value, v.trimmingCharacters(in: .whitespaces).isEmpty {
                throw SpecError.invalid(path: keyPath(c.codingPath + [key]), message: "expected a non-empty name; omit the key to use the default")
            }
        }
        if let i = idColumn, let e = ecColumn, LabelFileReader.normaliseColumnName(i) == LabelFileReader.normaliseColumnName(e) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.ecColumn]), message: "'\(e)' is also the id_column; name two different columns")
        }
    }
}

/// Which split neurons are selected on.
public enum SelectOn: String, Codable, Sendable, CaseIterable { case select, test }

/// Stratified train/select/test split.
public struct SplitSpec: Codable, Sendable, Equatable {
    /// Fraction of sequences for training, in (0, 1] (YAML `split.train`, default 0.70).
    /// `train + select + test` must be 1 (within 1e-6).
    public var train: Double = 0.70
    /// Fraction for the selection split, in [0, 1] (YAML `split.select`, default 0.15);
    /// 0 is allowed only with `select_on: test`.
    public var select: Double = 0.15
    /// Fraction held out for evaluation, in (0, 1] (YAML `split.test`, default 0.15).
    public var test: Double = 0.15
    /// Seed of the stratified split (YAML `split.seed`, default 1).
    public var seed: UInt64 = 1
    /// `select` (default, no leak) or `test` (the paper's protocol: select and evaluate on test).
    public var selectOn: SelectOn = .select
    enum CodingKeys: String, CodingKey, CaseIterable { case train, select, test, seed, selectOn = "select_on" }
    /// Creates the defaults: 0.70 / 0.15 / 0.15, seed 1, `select_on: select`.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        train = try c.decodeIfPresent(Double.self, forKey: .train) ?? train
        select = try c.decodeIfPresent(Double.self, forKey: .select) ?? select
        test = try c.decodeIfPresent(Double.self, forKey: .test) ?? test
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        selectOn = try c.decodeIfPresent(SelectOn.self, forKey: .selectOn) ?? selectOn
        for (k, v) in [("train", train), ("select", select), ("test", test)] where !(v >= 0 && v <= 1) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [AnyKey(stringValue: k)]), message: "expected a fraction between 0 and 1, got \(v)")
        }
        if abs(train + select + test - 1) > 1e-6 {
            throw SpecError.invalid(path: keyPath(c.codingPath), message: "train + select + test must be 1, got \(train + select + test)")
        }
        if test == 0 || train == 0 {
            throw SpecError.invalid(path: keyPath(c.codingPath), message: "train and test fractions must be positive")
        }
        if select == 0 && selectOn == .select {
            throw SpecError.invalid(path: keyPath(c.codingPath), message: "select is 0 but select_on is select; give select a fraction or set select_on: test")
        }
    }
}

/// The model: a preset (seeded random initialisation) or an HF checkpoint directory.
public struct ModelSpec: Codable, Sendable, Equatable {
    /// One of `ESMConfig.presetNames`; ignored when `checkpoint` is set.
    public var preset: String? = "small"
    /// HF ESM-2 directory (config.json + model.safetensors), relative to the spec.
    public var checkpoint: String?
    /// Pooling of the classification head (`cls` as HuggingFace, or `mean`).
    public var pooling: Pooling = .cls
    /// Maximum tokens per sequence including `<cls>` and `<eos>` (at most 1026).
    public var maxLength: Int = 1024
    /// What to do with longer sequences (`head`, `center` or `reject`).
    public var crop: CropPolicy = .head
    /// Seed of the random initialisation.
    public var seed: UInt64 = 0
    /// What to do with a checkpoint's classifier head (YAML `model.head`): nil (absent) keeps
    /// it when its `id2label` names the data's classes (reordered to the data's order) and
    /// initialises one when there is none; `keep` requires a stored head; `reinit` always
    /// draws a new one. Only with `checkpoint`.
    public var head: HeadPolicy?
    enum CodingKeys: String, CodingKey, CaseIterable { case preset, checkpoint, pooling, maxLength = "max_length", crop, seed, head }
    /// Creates the defaults: preset `small`, no checkpoint, `cls` pooling, max length 1024, `head` crop, seed 0.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        preset = try c.decodeIfPresent(String.self, forKey: .preset) ?? preset
        checkpoint = try c.decodeIfPresent(String.self, forKey: .checkpoint)
        pooling = try c.decodeIfPresent(Pooling.self, forKey: .pooling) ?? pooling
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? maxLength
        crop = try c.decodeIfPresent(CropPolicy.self, forKey: .crop) ?? crop
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        head = try c.decodeIfPresent(HeadPolicy.self, forKey: .head)
        if checkpoint != nil, c.contains(.preset) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.preset]),
                                    message: "give either model.preset (a model drawn from random weights) or model.checkpoint (a model you have), not both; the checkpoint's config.json decides its shape")
        }
        if head != nil && checkpoint == nil {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.head]),
                                    message: "model.head applies to a model.checkpoint; a preset's head is always drawn with model.seed, so remove it")
        }
        if !(3 ... 1026).contains(maxLength) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.maxLength]), message: "expected 3...1026 tokens, got \(maxLength)")
        }
        if checkpoint == nil, let p = preset, !ESMConfig.presetNames.contains(p) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.preset]),
                                    message: "unknown preset '\(p)'; choose one of \(ESMConfig.presetNames.joined(separator: ", "))")
        }
    }
}

/// Fine-tuning hyper-parameters (AdamW, cross-entropy).
public struct TrainSpec: Codable, Sendable, Equatable {
    /// Epochs; 0 keeps the loaded/initial weights.
    public var epochs: Int = 10
    /// Sequences per optimizer step, >= 1 (YAML `train.batch_size`, default 16); also the
    /// batch size of evaluation on the select and test splits.
    public var batchSize: Int = 16
    /// AdamW learning rate (the peak of the `linear` schedule), positive and finite
    /// (YAML `train.learning_rate`, default 1e-3).
    public var learningRate: Float = 1e-3
    /// AdamW decoupled weight decay, finite and >= 0 (YAML `train.weight_decay`, default 0.01);
    /// applied to Linear weights, not biases, LayerNorm or embeddings (`ParameterLayout.decays`).
    public var weightDecay: Float = 0.01
    /// Global gradient-norm clip; absent = no clipping.
    public var maxGradNorm: Float? = 1.0
    /// Seed of the data order.
    public var seed: UInt64 = 0
    /// Learning-rate schedule over the whole run: `linear` (HF Trainer's default: warm up
    /// linearly over `warmup_fraction` of the steps, then decay linearly to 0) or `constant`.
    public var schedule: LRScheduleKind = .linear
    /// Fraction of all optimizer steps spent warming up, in [0, 1).
    public var warmupFraction: Double = 0.0
    enum CodingKeys: String, CodingKey, CaseIterable {
        case epochs, batchSize = "batch_size", learningRate = "learning_rate", weightDecay = "weight_decay", maxGradNorm = "max_grad_norm", seed
        case schedule, warmupFraction = "warmup_fraction"
    }
    /// Creates the defaults: 10 epochs, batch 16, learning rate 1e-3, weight decay 0.01,
    /// clip norm 1.0, seed 0, `linear` schedule without warm-up.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epochs = try c.decodeIfPresent(Int.self, forKey: .epochs) ?? epochs
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? batchSize
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? learningRate
        weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? weightDecay
        if c.contains(.maxGradNorm) { maxGradNorm = try c.decodeIfPresent(Float.self, forKey: .maxGradNorm) }
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        schedule = try c.decodeIfPresent(LRScheduleKind.self, forKey: .schedule) ?? schedule
        warmupFraction = try c.decodeIfPresent(Double.self, forKey: .warmupFraction) ?? warmupFraction
        if !(warmupFraction >= 0 && warmupFraction < 1) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.warmupFraction]), message: "expected a number in [0, 1), got \(warmupFraction)")
        }
        if epochs < 0 { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.epochs]), message: "expected 0 or more, got \(epochs)") }
        if batchSize < 1 { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.batchSize]), message: "expected 1 or more, got \(batchSize)") }
        if !(learningRate > 0 && learningRate.isFinite) { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.learningRate]), message: "expected a positive finite number") }
        if !(weightDecay >= 0 && weightDecay.isFinite) { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.weightDecay]), message: "expected a finite number >= 0, got \(weightDecay)") }
        if let m = maxGradNorm, !(m > 0 && m.isFinite) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.maxGradNorm]), message: "expected a positive finite number, or null for no clipping; got \(m)")
        }
    }
}

/// Shape of the learning-rate schedule (see `TrainSpec.schedule`).
public enum LRScheduleKind: String, Codable, Sendable, CaseIterable {
    /// Linear warm-up, then linear decay to 0 at the last step.
    case linear
    /// The learning rate throughout.
    case constant
}

/// The attribute stage's parameters.
public struct AttributionSpec: Codable, Sendable, Equatable {
    /// Scoring methods to run, at least one, no duplicates (YAML `attribution.methods`,
    /// default `[activation, integrated_gradients]`).
    public var methods: [AttributionMethod] = [.activation, .integratedGradients]
    /// Linear maps of every layer to score (YAML `attribution.modules`, default
    /// `[query, key, value]`, the paper's), named as HuggingFace's `EsmLayer` modules.
    public var modules: [LinearModule] = LinearModule.attention
    /// What is scored (YAML `attribution.granularity`, default `[weight]`): `weight` every element
    /// of the chosen matrices, `neuron` every output unit of the chosen maps; one ranking each.
    public var granularity: [Granularity] = [.weight]
    /// Which probability is attributed (YAML `attribution.targets`, default `[true_class]`):
    /// `true_class` one ranking from P(true class); `per_class` one ranking per class c from
    /// P(c) over the selection sequences of class c.
    public var targets: [AttributionTarget] = [.trueClass]
    /// Riemann steps of integrated gradients.
    public var steps: Int = 20
    /// Sequences per shard (the unit of resumable work).
    public var shardSize: Int = 16
    /// Use at most this many sequences of the selection split (first by id); absent = all.
    public var maxSequences: Int?
    enum CodingKeys: String, CodingKey, CaseIterable {
        case methods, modules, granularity, targets, steps, shardSize = "shard_size", maxSequences = "max_sequences"
    }
    /// Creates the defaults: activation and integrated gradients over the q/k/v weights for the
    /// true class, 20 steps, shards of 16 sequences, no sequence cap.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        for key in [CodingKeys.methods, .modules, .granularity, .targets] where c.contains(key) {
            guard try c.decodeNil(forKey: key) else { continue }
            throw SpecError.invalid(path: keyPath(c.codingPath + [key]), message: "the key has no value; give a list, or omit the key for the default")
        }
        methods = try c.decodeIfPresent([AttributionMethod].self, forKey: .methods) ?? methods
        modules = try c.decodeIfPresent([LinearModule].self, forKey: .modules) ?? modules
        granularity = try c.decodeIfPresent([Granularity].self, forKey: .granularity) ?? granularity
        targets = try c.decodeIfPresent([AttributionTarget].self, forKey: .targets) ?? targets
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? steps
        shardSize = try c.decodeIfPresent(Int.self, forKey: .shardSize) ?? shardSize
        maxSequences = try c.decodeIfPresent(Int.self, forKey: .maxSequences)
        for (key, names) in [(CodingKeys.methods, methods.map(\.rawValue)), (.modules, modules.map(\.rawValue)),
                             (.granularity, granularity.map(\.rawValue)), (.targets, targets.map(\.rawValue))] {
            try rejectDuplicates(names, at: c.codingPath + [key])
        }
        func nonEmpty(_ key: CodingKeys, _ isEmpty: Bool, _ choices: [String]) throws {
            if isEmpty { throw SpecError.invalid(path: keyPath(c.codingPath + [key]), message: "give at least one of: \(choices.joined(separator: ", "))") }
        }
        try nonEmpty(.methods, methods.isEmpty, AttributionMethod.allCases.map(\.rawValue))
        try nonEmpty(.modules, modules.isEmpty, LinearModule.allCases.map(\.rawValue))
        try nonEmpty(.granularity, granularity.isEmpty, Granularity.allCases.map(\.rawValue))
        try nonEmpty(.targets, targets.isEmpty, AttributionTarget.allCases.map(\.rawValue))
        if steps < 1 { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.steps]), message: "expected 1 or more, got \(steps)") }
        if shardSize < 1 { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.shardSize]), message: "expected 1 or more, got \(shardSize)") }
        if let m = maxSequences, m < 1 { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.maxSequences]), message: "expected 1 or more, got \(m)") }
    }

    /// Encodes every key, except that `modules`, `granularity` and `targets` are written only
    /// when they differ from their defaults: the attribute stage's content key is made from
    /// this encoding, so runs recorded before these keys existed keep their keys. Lists are
    /// written in canonical order (their order does not change the work).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(methods.sorted(), forKey: .methods)
        if modules.sorted() != LinearModule.attention { try c.encode(modules.sorted(), forKey: .modules) }
        if granularity.sorted() != [.weight] { try c.encode(granularity.sorted(), forKey: .granularity) }
        if targets.sorted() != [.trueClass] { try c.encode(targets.sorted(), forKey: .targets) }
        try c.encode(steps, forKey: .steps)
        try c.encode(shardSize, forKey: .shardSize)
        try c.encodeIfPresent(maxSequences, forKey: .maxSequences)
    }
}

/// The select stage's parameters.
public struct SelectionSpec: Codable, Sendable, Equatable {
    /// Fractions of all q/k/v weights to keep.
    public var retentionFractions: [Double] = [0.50, 0.25, 0.10, 0.01]
    /// Seeds of the random baseline (at least 3).
    public var randomSeeds: [Int] = [1, 2, 3]
    enum CodingKeys: String, CodingKey, CaseIterable { case retentionFractions = "retention_fractions", randomSeeds = "random_seeds" }
    /// Creates the defaults: fractions 0.50, 0.25, 0.10, 0.01; random seeds 1, 2, 3.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        retentionFractions = try c.decodeIfPresent([Double].self, forKey: .retentionFractions) ?? retentionFractions
        randomSeeds = try c.decodeIfPresent([Int].self, forKey: .randomSeeds) ?? randomSeeds
        try rejectDuplicates(retentionFractions, at: c.codingPath + [CodingKeys.retentionFractions])
        try rejectDuplicates(randomSeeds, at: c.codingPath + [CodingKeys.randomSeeds])
        if retentionFractions.isEmpty {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.retentionFractions]), message: "give at least one fraction in (0, 1), e.g. [0.5, 0.25, 0.1, 0.01]")
        }
        for f in retentionFractions where !(f > 0 && f < 1) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.retentionFractions]),
                                    message: "expected fractions in (0, 1), got \(f)" + (f == 1 ? " (the full model, fraction 1, is always evaluated)" : ""))
        }
        if Set(randomSeeds).count < 3 {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.randomSeeds]), message: "give at least 3 distinct seeds for the random baseline")
        }
    }
}

/// Which side of a ranking a curve's submodel ablates (issue 11).
public enum CurveDirection: String, Codable, CaseIterable, Sendable, Comparable {
    /// Keep the top fraction of the ranking, ablate the rest (the paper's retention).
    case retain
    /// Ablate the top fraction, keep the rest.
    case delete

    public static func < (a: CurveDirection, b: CurveDirection) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
}

/// The evidence stage's parameters: curves of every ranking against random rankings.
public struct EvidenceSpec: Codable, Sendable, Equatable {
    /// Fractions of each ranking's elements kept (retain) or ablated (delete), each in (0, 1).
    public var fractions: [Double] = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5]
    /// Curve directions evaluated.
    public var directions: [CurveDirection] = [.retain, .delete]
    /// Random rankings per granularity (seeds 1 ... N of the random baseline), the permutation
    /// tests' null distribution; at least 2 (the smallest p-value is 1 / (N + 1)).
    public var randomRankings: Int = 100
    /// Bootstrap resamples of the test sequences for each accuracy's 95% interval (at least 100).
    public var bootstrapResamples: Int = 1000
    /// Seed of the bootstrap resampling.
    public var seed: UInt64 = 1
    /// Knowledge edits (suppress and amplify, Dai et al. 2021): the top `editTop` neurons of
    /// each per-class neuron ranking have their activations multiplied by each of `editFactors`.
    public var editTop: Int = 10
    /// Activation factors of the knowledge edits (0 suppresses, 2 amplifies), each >= 0, not 1
    /// (as float32); `[]` turns the edits off.
    public var editFactors: [Double] = [0, 2]
    /// Random sets of `editTop` neurons edited the same way, per factor: the edits' control.
    public var editRandomSets: Int = 100
    enum CodingKeys: String, CodingKey, CaseIterable {
        case fractions, directions, randomRankings = "random_rankings", bootstrapResamples = "bootstrap_resamples", seed
        case editTop = "edit_top", editFactors = "edit_factors", editRandomSets = "edit_random_sets"
    }
    /// Creates the defaults: 8 fractions 0.001 ... 0.5, both directions, 100 random rankings,
    /// 1,000 resamples, seed 1; edits of the top 10 neurons by 0 and 2, 100 random sets.
    public init() {}
    /// Encodes the lists sorted (the stage sorts them), so their order does not change the content key.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(fractions.sorted(), forKey: .fractions)
        try c.encode(directions.sorted(), forKey: .directions)
        try c.encode(randomRankings, forKey: .randomRankings)
        try c.encode(bootstrapResamples, forKey: .bootstrapResamples)
        try c.encode(seed, forKey: .seed)
        try c.encode(editTop, forKey: .editTop)
        try c.encode(editFactors.sorted(), forKey: .editFactors)
        try c.encode(editRandomSets, forKey: .editRandomSets)
    }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        editTop = try c.decodeIfPresent(Int.self, forKey: .editTop) ?? editTop
        editFactors = try c.decodeIfPresent([Double].self, forKey: .editFactors) ?? editFactors
        editRandomSets = try c.decodeIfPresent(Int.self, forKey: .editRandomSets) ?? editRandomSets
        try rejectDuplicates(editFactors, at: c.codingPath + [CodingKeys.editFactors])
        if editTop < 1 { throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.editTop]), message: "expected 1 or more neurons, got \(editTop)") }
        for f in editFactors where !(f >= 0 && f.isFinite && Float(f) != 1 && f <= 1000) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.editFactors]),
                                    message: "expected factors in [0, 1000] other than 1 (0 suppresses, 2 amplifies; 1 changes nothing), got \(f)")
        }
        if !(0 ... 1000).contains(editRandomSets) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.editRandomSets]), message: "expected 0 ... 1,000 random sets, got \(editRandomSets)")
        }
        fractions = try c.decodeIfPresent([Double].self, forKey: .fractions) ?? fractions
        directions = try c.decodeIfPresent([CurveDirection].self, forKey: .directions) ?? directions
        randomRankings = try c.decodeIfPresent(Int.self, forKey: .randomRankings) ?? randomRankings
        bootstrapResamples = try c.decodeIfPresent(Int.self, forKey: .bootstrapResamples) ?? bootstrapResamples
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        try rejectDuplicates(fractions, at: c.codingPath + [CodingKeys.fractions])
        try rejectDuplicates(directions.map(\.rawValue), at: c.codingPath + [CodingKeys.directions])
        if fractions.isEmpty {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.fractions]), message: "give at least one fraction in (0, 1), e.g. [0.01, 0.1, 0.5]")
        }
        for f in fractions where !(f > 0 && f < 1) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.fractions]), message: "expected fractions in (0, 1), got \(f)")
        }
        if directions.isEmpty {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.directions]), message: "give retain, delete or both")
        }
        if fractions.count > 100 {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.fractions]), message: "expected at most 100 fractions, got \(fractions.count)")
        }
        if !(2 ... 100_000).contains(randomRankings) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.randomRankings]),
                                    message: "expected 2 ... 100,000 random rankings (100 or more for p-values a reviewer accepts: the smallest is 1/(N + 1)), got \(randomRankings)")
        }
        if !(100 ... 1_000_000).contains(bootstrapResamples) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.bootstrapResamples]),
                                    message: "expected 100 ... 1,000,000 resamples (1,000 or more for a 95% interval), got \(bootstrapResamples)")
        }
    }
}

/// The evaluate and evidence stages' ablation (YAML `evaluation`).
public struct EvaluationSpec: Codable, Sendable, Equatable {
    /// What an ablated element becomes (default `zero`, the paper's); `mean` needs neuron
    /// granularity only (`PipelineSpec` refuses it with `weight` in `attribution.granularity`).
    public var ablation: Ablation = .zero
    enum CodingKeys: String, CodingKey, CaseIterable { case ablation }
    /// Creates the default: zero ablation.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ablation = try c.decodeIfPresent(Ablation.self, forKey: .ablation) ?? ablation
    }
}

/// The sanity stage's parameters (Adebayo et al. 2018, arXiv 1810.03292): does a method's
/// ranking change when the model does?
public struct SanitySpec: Codable, Sendable, Equatable {
    /// Cascading model randomisation: re-score with the head and the top k blocks
    /// re-initialised, k = 1 ... L.
    public var modelRandomization: Bool = true
    /// Label randomisation: re-score a model trained (same spec) on shuffled train labels.
    public var labelRandomization: Bool = true
    /// Sequences of the attribution split re-scored (the first by id), for every model compared.
    public var maxSequences: Int = 64
    /// A method passes a check when the Spearman correlation of its scores on the real and on
    /// the (fully) randomised model is below this.
    public var maxSpearman: Double = 0.5
    /// Seed of the re-initialisation and of the label shuffle.
    public var seed: UInt64 = 1
    enum CodingKeys: String, CodingKey, CaseIterable {
        case modelRandomization = "model_randomization", labelRandomization = "label_randomization"
        case maxSequences = "max_sequences", maxSpearman = "max_spearman", seed
    }
    /// Creates the defaults: both checks, 64 sequences, threshold 0.5, seed 1.
    public init() {}
    /// Whether the stage has anything to do.
    public var enabled: Bool { modelRandomization || labelRandomization }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelRandomization = try c.decodeIfPresent(Bool.self, forKey: .modelRandomization) ?? modelRandomization
        labelRandomization = try c.decodeIfPresent(Bool.self, forKey: .labelRandomization) ?? labelRandomization
        maxSequences = try c.decodeIfPresent(Int.self, forKey: .maxSequences) ?? maxSequences
        maxSpearman = try c.decodeIfPresent(Double.self, forKey: .maxSpearman) ?? maxSpearman
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        if maxSequences < 2 {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.maxSequences]), message: "expected 2 or more sequences, got \(maxSequences)")
        }
        if !(maxSpearman > -1 && maxSpearman <= 1) {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.maxSpearman]), message: "expected a correlation in (-1, 1], got \(maxSpearman)")
        }
    }
}

/// The neurons stage's parameters (issue 12): how the motif selectivity of a planted run is
/// computed. Exact AUROCs need every residue's activation of a neuron at once, so the neurons
/// are taken in shards of as many as fit `memory_mb` (4 bytes per test residue per neuron),
/// one forward pass over the test split per shard, each shard committed on its own (resumable).
/// The results do not depend on it.
public struct NeuronsSpec: Codable, Sendable, Equatable {
    /// Memory for one shard's activations, MiB (default 512; fractions allowed).
    public var memoryMB: Double = 512
    enum CodingKeys: String, CodingKey, CaseIterable { case memoryMB = "memory_mb" }
    /// Creates the defaults: 512 MiB per shard.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        memoryMB = try c.decodeIfPresent(Double.self, forKey: .memoryMB) ?? memoryMB
        guard memoryMB > 0, memoryMB.isFinite else {
            throw SpecError.invalid(path: keyPath(c.codingPath + [CodingKeys.memoryMB]), message: "expected a positive number of MiB, got \(memoryMB)")
        }
    }
}

/// The cards stage's parameters (issue 12): which neurons get a card and what it shows.
public struct CardsSpec: Codable, Sendable, Equatable {
    /// The split whose sequences the cards are computed on (default `train`: every sequence
    /// the model was trained on).
    public var split: SplitRole = .train
    /// Neurons per ranking (its top neurons, or the output units of its top weights).
    public var top: Int = 20
    /// Top-activating examples shown per neuron.
    public var examples: Int = 20
    /// Top sequences (by peak) behind residue enrichment, position profile and top classes.
    public var topSequences: Int = 100
    /// Sequences per resumable shard of the activation pass.
    public var shardSize: Int = 64
    /// On a planted run, random control neurons per linear map (at least 5 x `top` are taken,
    /// or all of the map's) for the test of the cards' motif overlap (`card_motif_tests`); 0
    /// turns the control off. Ignored, and not part of the stage's key, without planted motifs.
    public var control: Int = 100
    enum CodingKeys: String, CodingKey, CaseIterable {
        case split, top, examples, topSequences = "top_sequences", shardSize = "shard_size", control
    }
    /// Creates the defaults: the train split, 20 neurons, 20 examples, 100 top sequences, shards of 64, 100 control neurons per map.
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        split = try c.decodeIfPresent(SplitRole.self, forKey: .split) ?? split
        top = try c.decodeIfPresent(Int.self, forKey: .top) ?? top
        examples = try c.decodeIfPresent(Int.self, forKey: .examples) ?? examples
        topSequences = try c.decodeIfPresent(Int.self, forKey: .topSequences) ?? topSequences
        shardSize = try c.decodeIfPresent(Int.self, forKey: .shardSize) ?? shardSize
        control = try c.decodeIfPresent(Int.self, forKey: .control) ?? control
        for (key, value, least) in [(CodingKeys.top, top, 0), (.examples, examples, 1), (.topSequences, topSequences, 1), (.shardSize, shardSize, 1),
                                    (.control, control, 0)] where value < least {
            throw SpecError.invalid(path: keyPath(c.codingPath + [key]), message: "expected \(least) or more, got \(value)"
                + (key == .top ? " (0 turns the cards off)" : key == .control ? " (0 turns the control off)" : ""))
        }
    }
}

/// A pipeline spec (YAML). Decoding is strict: an unknown key or a wrong type is an
/// error that names the key path.
public struct PipelineSpec: Codable, Sendable, Equatable {
    /// Run name; the default database is `runs/<name>.sqlite`.
    public var name: String
    /// Input files (YAML `inputs`, required; `inputs.labels` must list at least one file).
    public var inputs: InputsSpec
    /// EC level of the class label: 1 = EC class (default) ... 4 = full number.
    public var labelLevel: Int = 1
    /// Train/select/test fractions and seed (YAML `split`; `SplitSpec` defaults when absent).
    public var split = SplitSpec()
    /// Model source and tokenization (YAML `model`; `ModelSpec` defaults when absent).
    public var model = ModelSpec()
    /// Fine-tuning hyper-parameters (YAML `train`; `TrainSpec` defaults when absent).
    public var train = TrainSpec()
    /// Attribute-stage parameters (YAML `attribution`; `AttributionSpec` defaults when absent).
    public var attribution = AttributionSpec()
    /// Select-stage parameters (YAML `selection`; `SelectionSpec` defaults when absent).
    public var selection = SelectionSpec()
    /// Evidence-stage parameters (YAML `evidence`; `EvidenceSpec` defaults when absent).
    public var evidence = EvidenceSpec()
    /// Ablation of the evaluate and evidence stages (YAML `evaluation`; `EvaluationSpec` defaults when absent).
    public var evaluation = EvaluationSpec()
    /// Sanity-stage parameters (YAML `sanity`; `SanitySpec` defaults when absent).
    public var sanity = SanitySpec()
    /// Neurons-stage parameters (YAML `neurons`; `NeuronsSpec` defaults when absent).
    public var neurons = NeuronsSpec()
    /// Cards-stage parameters (YAML `cards`; `CardsSpec` defaults when absent).
    public var cards = CardsSpec()
    /// The classes to keep (YAML `classes`, e.g. `[1, 2, 3, 4, 5, 6]` as the paper, or
    /// `[3.4.-.-, 3.1]` at label_level 2); nil keeps every class. An entry coarser than
    /// `label_level` keeps every label under it (`3` at level 2 keeps `3.1.-.-`, `3.4.-.-`, ...);
    /// ingest rejects the sequences of other classes, each with its reason, in `rejected_records`.
    public var classes: [ECNumber]?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, inputs, labelLevel = "label_level", classes, split, model, train, attribution, selection, evidence, evaluation, sanity, neurons, cards
    }

    /// Creates a spec with `name` and `inputs` and every other field at its default
    /// (without the checks decoding applies).
    public init(name: String, inputs: InputsSpec) { self.name = name; self.inputs = inputs }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        inputs = try c.decode(InputsSpec.self, forKey: .inputs)
        labelLevel = try c.decodeIfPresent(Int.self, forKey: .labelLevel) ?? 1
        split = try c.decodeIfPresent(SplitSpec.self, forKey: .split) ?? split
        model = try c.decodeIfPresent(ModelSpec.self, forKey: .model) ?? model
        train = try c.decodeIfPresent(TrainSpec.self, forKey: .train) ?? train
        attribution = try c.decodeIfPresent(AttributionSpec.self, forKey: .attribution) ?? attribution
        selection = try c.decodeIfPresent(SelectionSpec.self, forKey: .selection) ?? selection
        evidence = try c.decodeIfPresent(EvidenceSpec.self, forKey: .evidence) ?? evidence
        evaluation = try c.decodeIfPresent(EvaluationSpec.self, forKey: .evaluation) ?? evaluation
        sanity = try c.decodeIfPresent(SanitySpec.self, forKey: .sanity) ?? sanity
        neurons = try c.decodeIfPresent(NeuronsSpec.self, forKey: .neurons) ?? neurons
        cards = try c.decodeIfPresent(CardsSpec.self, forKey: .cards) ?? cards
        if cards.split == .select, split.select == 0, cards.top > 0 {
            throw SpecError.invalid(path: "cards.split", message: "the select split is empty (split.select: 0): give cards.split: train or test")
        }
        if sanity.enabled, let m = attribution.maxSequences, m < 2 {
            throw SpecError.invalid(path: "attribution.max_sequences", message: "the sanity checks re-score at least 2 of the attributed sequences and "
                + "\(m) is attributed: raise attribution.max_sequences, or set sanity.model_randomization and sanity.label_randomization to false")
        }
        if evaluation.ablation == .mean, attribution.granularity.contains(.weight) {
            throw SpecError.invalid(path: "evaluation.ablation", message: "mean ablation replaces a neuron's activation by its mean; a single weight has "
                + "no activation of its own, so weight granularity takes only 'zero'. attribution.granularity includes weight "
                + "(the default): set attribution.granularity: [neuron], or evaluation.ablation: zero")
        }
        if !(1 ... 4).contains(labelLevel) {
            throw SpecError.invalid(path: "label_level", message: "expected 1...4 (1 = EC class), got \(labelLevel)")
        }
        if let entries = try c.decodeIfPresent([String].self, forKey: .classes) {
            guard !entries.isEmpty else { throw SpecError.invalid(path: "classes", message: "list at least one class, or remove the key to keep every class") }
            var parsed: [ECNumber] = []
            for (i, text) in entries.enumerated() {
                guard let ec = try? ECNumber(text), ec.knownDepth >= 1 else {
                    throw SpecError.invalid(path: "classes[\(i)]", message: "'\(text)' is not an EC class or label (write 3, 3.4 or 3.4.-.-)")
                }
                guard ec.knownDepth <= labelLevel else {
                    throw SpecError.invalid(path: "classes[\(i)]", message: "\(ec) is finer than label_level \(labelLevel); give labels at that level (\(ec.truncated(toLevel: labelLevel))) or raise label_level")
                }
                parsed.append(ec)
            }
            try rejectDuplicates(parsed, at: [CodingKeys.classes])
            classes = parsed
        }
        if name.isEmpty || name.contains("/") {
            throw SpecError.invalid(path: "name", message: "expected a non-empty name without '/'")
        }
        if inputs.labels.isEmpty {
            throw SpecError.invalid(path: "inputs.labels", message: "give at least one label file")
        }
    }

    /// Parses YAML text. `path` is only used in messages.
    /// - Throws: `SpecError` naming the key path of the first problem.
    public static func parse(yaml: String, path: String = "<spec>") throws -> PipelineSpec {
        do {
            return try YAMLDecoder().decode(PipelineSpec.self, from: yaml)
        } catch let e as SpecError {
            throw e
        } catch let e as DecodingError {
            // Yams wraps errors thrown inside `init(from:)` (our SpecError) and parser errors
            // in `dataCorrupted` at the top level; unwrap them.
            if case .dataCorrupted(let ctx) = e, let inner = ctx.underlyingError {
                if let spec = inner as? SpecError { throw spec }
                if let d = inner as? DecodingError { throw translate(d) }
                throw SpecError.yaml(path: path, message: "\(inner)")
            }
            throw translate(e)
        } catch {
            throw SpecError.yaml(path: path, message: "\(error)")
        }
    }

    /// Reads and parses a spec file.
    /// - Throws: `SpecError.unreadable` or any parse error.
    public static func load(path: String) throws -> PipelineSpec {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw SpecError.unreadable(path: path, reason: FileManager.default.fileExists(atPath: path) ? "not UTF-8 text" : "no such file")
        }
        return try parse(yaml: text, path: path)
    }

    static func translate(_ e: DecodingError) -> SpecError {
        switch e {
        case .typeMismatch(let type, let ctx):
            return .invalid(path: keyPath(ctx.codingPath), message: "expected \(describe(type))")
        case .valueNotFound(let type, let ctx):
            return .invalid(path: keyPath(ctx.codingPath), message: "expected \(describe(type)), found nothing")
        case .keyNotFound(let key, let ctx):
            return .invalid(path: keyPath(ctx.codingPath + [key]), message: "required key is missing")
        case .dataCorrupted(let ctx):
            // Foundation: "Cannot initialize CropPolicy from invalid String value middle".
            let d = ctx.debugDescription
            if d.hasPrefix("Cannot initialize "), let type = d.dropFirst(18).split(separator: " ").first,
               let choices = enumChoices[String(type)] {
                let value = d.components(separatedBy: "invalid String value ").last ?? "?"
                return .invalid(path: keyPath(ctx.codingPath), message: "unknown value '\(value)'; choose one of \(choices.joined(separator: ", "))")
            }
            return .invalid(path: keyPath(ctx.codingPath), message: d)
        @unknown default:
            return .invalid(path: "", message: "\(e)")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: return "an integer"
        case is UInt64.Type: return "a non-negative integer"
        case is Float.Type, is Double.Type: return "a number"
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Node.Scalar.Type: return "a single value, not a list or mapping"
        case is Node.Mapping.Type: return "a mapping of keys to values"
        case is Node.Sequence.Type: return "a list"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") { return "a list" }
            return "a \(name)"
        }
    }
}
