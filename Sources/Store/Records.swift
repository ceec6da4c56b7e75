import Foundation

/// The `run` row: which spec this database was created from.
public struct RunRecord: Sendable, Equatable {
    /// Run name (the spec's `name`).
    public var name: String
    /// Path of the spec file, as given to the run.
    public var specPath: String
    /// The spec file's text; empty when it could not be read when the run was recorded.
    public var specYAML: String
    /// SHA-256 (hex) of the spec file's bytes.
    public var specSHA256: String
    /// Version of kneuron that recorded the run.
    public var kneuronVersion: String
    /// Creates a record from its fields.
    public init(name: String, specPath: String, specYAML: String, specSHA256: String, kneuronVersion: String) {
        self.name = name; self.specPath = specPath; self.specYAML = specYAML
        self.specSHA256 = specSHA256; self.kneuronVersion = kneuronVersion
    }
}

/// A row of the `stages` ledger: a finished stage.
public struct StageRecord: Sendable, Equatable {
    /// Stage name (`ingest` ... `report`).
    public var stage: String
    /// Stage version + SHA-256 of its inputs and parameters.
    public var contentKey: String
    /// Rows the stage wrote (its main table).
    public var rowsWritten: Int
    /// Wall time, seconds.
    public var seconds: Double
    /// ISO-8601 UTC time the stage finished (set by the database).
    public var finishedAt: String?
    /// `name<TAB>value` lines of the inputs and parameters the key was made from ("" if unknown).
    public var parameters: String = ""
    /// Creates a record from its fields; `finishedAt` stays nil for a row to be written (the database sets it).
    public init(stage: String, contentKey: String, rowsWritten: Int, seconds: Double, finishedAt: String? = nil) {
        self.stage = stage; self.contentKey = contentKey; self.rowsWritten = rowsWritten
        self.seconds = seconds; self.finishedAt = finishedAt
    }
}

/// An input file as read by ingest.
public struct InputFileRecord: Sendable, Equatable {
    /// Path of the file, resolved against the spec file's directory.
    public var path: String
    /// `fasta` or `labels`.
    public var role: String
    /// File size, bytes.
    public var sizeBytes: Int64
    /// SHA-256 of the file's bytes, hex.
    public var sha256: String
    /// Creates a record from its fields.
    public init(path: String, role: String, sizeBytes: Int64, sha256: String) {
        self.path = path; self.role = role; self.sizeBytes = sizeBytes; self.sha256 = sha256
    }
}

/// A class the classifier predicts: an EC label at the run's level.
public struct ClassRecord: Sendable, Equatable {
    /// Output index of the classification head, 0-based.
    public var classIndex: Int
    /// EC label at the run's level, e.g. `3.-.-.-`.
    public var ecLabel: String
    /// ExPASy name, e.g. `Hydrolases`.
    public var name: String?
    /// Creates a record from its fields.
    public init(classIndex: Int, ecLabel: String, name: String?) {
        self.classIndex = classIndex; self.ecLabel = ecLabel; self.name = name
    }
}

/// An accepted sequence with its label at the run's level and all its EC numbers.
public struct SequenceRecord: Sendable, Equatable {
    /// Sequence ID (accession, e.g. `P12345`).
    public var id: String
    /// Residues, uppercase.
    public var sequence: String
    /// The class label: the EC at the run's level, e.g. `3.-.-.-` (a `ClassRecord.ecLabel`).
    public var ecLabel: String
    /// Every EC number given for the sequence, canonical strings (e.g. `3.4.21.-`, `4.2.2.n1`).
    public var ecNumbers: [String]
    /// File the sequence was read from (the FASTA file, or the label table for table-only sequences).
    public var sourceFile: String
    /// 1-based line of the FASTA header, or of the label-table row for table-only sequences.
    public var sourceLine: Int
    /// Notes such as "lowercase residues uppercased", joined with "; ".
    public var notes: String
    /// Creates a record from its fields.
    public init(id: String, sequence: String, ecLabel: String, ecNumbers: [String], sourceFile: String, sourceLine: Int, notes: String) {
        self.id = id; self.sequence = sequence; self.ecLabel = ecLabel; self.ecNumbers = ecNumbers
        self.sourceFile = sourceFile; self.sourceLine = sourceLine; self.notes = notes
    }
}

/// A sequence kept in the database but excluded from training (`sequences.excluded_reason`
/// not NULL, `ec_label` NULL), e.g. a protein whose ECs span several classes at the label level.
public struct ExcludedSequenceRecord: Sendable, Equatable {
    /// Sequence ID (accession, e.g. `P12345`).
    public var id: String
    /// Residues, uppercase.
    public var sequence: String
    /// Every EC number given for the sequence, canonical strings (stored in `labels`).
    public var ecNumbers: [String]
    /// File the sequence was read from (the FASTA file, or the label table for table-only sequences).
    public var sourceFile: String
    /// 1-based line of the FASTA header, or of the label-table row for table-only sequences.
    public var sourceLine: Int
    /// Notes such as "lowercase residues uppercased", joined with "; ".
    public var notes: String
    /// Why it is excluded from training, e.g. "ECs span several classes at level 1: 4.1.2.19; 1.2.1.22".
    public var reason: String
    /// Creates a record from its fields.
    public init(id: String, sequence: String, ecNumbers: [String], sourceFile: String, sourceLine: Int, notes: String, reason: String) {
        self.id = id; self.sequence = sequence; self.ecNumbers = ecNumbers
        self.sourceFile = sourceFile; self.sourceLine = sourceLine; self.notes = notes; self.reason = reason
    }
}

/// A record that could not be used, with its reason.
public struct RejectedRow: Sendable, Equatable {
    /// Path of the file the record came from.
    public var file: String
    /// 1-based line, 0 when not tied to a line.
    public var line: Int
    /// The record's ID, '' when it has none.
    public var recordID: String
    /// A sentence saying why the record was not used (tokenizer refusals start with `tokenize:`).
    public var reason: String
    /// Creates a row from its fields.
    public init(file: String, line: Int, recordID: String, reason: String) {
        self.file = file; self.line = line; self.recordID = recordID; self.reason = reason
    }
}

/// A tokenized sequence (`<cls>` residues `<eos>`, cropped to the max length).
public struct TokenRecord: Sendable, Equatable {
    /// ID of the tokenized sequence (`SequenceRecord.id`).
    public var sequenceID: String
    /// ESM-2 token ids.
    public var ids: [Int32]
    /// 0-based first kept residue.
    public var residueStart: Int
    /// Exclusive end of the kept residues.
    public var residueEnd: Int
    /// Residues in the original, uncropped sequence.
    public var originalLength: Int
    /// True when residues were dropped (`residueEnd - residueStart < originalLength`).
    public var cropped: Bool { residueEnd - residueStart < originalLength }
    /// Creates a record from its fields.
    public init(sequenceID: String, ids: [Int32], residueStart: Int, residueEnd: Int, originalLength: Int) {
        self.sequenceID = sequenceID; self.ids = ids; self.residueStart = residueStart
        self.residueEnd = residueEnd; self.originalLength = originalLength
    }
}

/// One training epoch's curve point.
public struct EpochRecord: Sendable, Equatable {
    /// 1-based.
    public var epoch: Int
    /// Mean cross-entropy per training example over the epoch, nats.
    public var trainLoss: Double
    /// Fraction of training examples predicted correctly during the epoch, in [0, 1].
    public var trainAccuracy: Double
    /// Mean cross-entropy on the select split after the epoch, nats; NaN when that split is empty.
    public var selectLoss: Double
    /// Fraction of the select split predicted correctly after the epoch, in [0, 1]; NaN when that split is empty.
    public var selectAccuracy: Double
    /// Wall time of the epoch (training, select evaluation, saving the state), seconds.
    public var seconds: Double
    /// Creates a record from its fields.
    public init(epoch: Int, trainLoss: Double, trainAccuracy: Double, selectLoss: Double, selectAccuracy: Double, seconds: Double) {
        self.epoch = epoch; self.trainLoss = trainLoss; self.trainAccuracy = trainAccuracy
        self.selectLoss = selectLoss; self.selectAccuracy = selectAccuracy; self.seconds = seconds
    }
}

/// How the train stage obtained the classifier head of the initial model (table `model_head`
/// and `model_head_classes`, migration 0017).
public struct ModelHeadRecord: Sendable, Equatable {
    /// One run class mapped to an output of the stored head.
    public struct ClassMapping: Sendable, Equatable {
        /// The run's class index (`classes.class_index`).
        public var classIndex: Int
        /// The stored head's output index it came from.
        public var checkpointIndex: Int
        /// The stored head's `id2label` text of that output.
        public var checkpointLabel: String
        /// Creates a mapping from its fields.
        public init(classIndex: Int, checkpointIndex: Int, checkpointLabel: String) {
            self.classIndex = classIndex; self.checkpointIndex = checkpointIndex; self.checkpointLabel = checkpointLabel
        }
    }
    /// `preset NAME` or the checkpoint directory as given in the spec.
    public var source: String
    /// `preset`, `initialised`, `reinitialised`, `kept` or `reordered` (the SQL CHECK's values).
    public var decision: String
    /// The sentence the train stage printed.
    public var detail: String
    /// Stored tensors not loaded, e.g. `lm_head: 5 tensors`; empty when none.
    public var ignored: String
    /// Per class, for a kept or reordered head; empty otherwise.
    public var classes: [ClassMapping]
    /// Creates a record from its fields.
    public init(source: String, decision: String, detail: String, ignored: String, classes: [ClassMapping]) {
        self.source = source; self.decision = decision; self.detail = detail; self.ignored = ignored; self.classes = classes
    }
}

/// A saved model directory.
public struct CheckpointRecord: Sendable, Equatable {
    /// `initial` or `final`.
    public var name: String
    /// Path of the HF model directory (absolute, standardized, as written by the train stage).
    public var directory: String
    /// SHA-256 of model.safetensors.
    public var sha256: String
    /// Size of model.safetensors, bytes.
    public var sizeBytes: Int64
    /// Creates a record from its fields.
    public init(name: String, directory: String, sha256: String, sizeBytes: Int64) {
        self.name = name; self.directory = directory; self.sha256 = sha256; self.sizeBytes = sizeBytes
    }
}

/// A finished attribution shard: its partial sums are its done mark.
public struct ShardRecord: Sendable, Equatable {
    /// Attribution method name (`activation`, `integrated_gradients`, `gradient_x_activation`).
    public var method: String
    /// `weight` or `neuron`.
    public var granularity: String
    /// 0-based shard number: sequences `shardIndex * shard_size ..< (shardIndex + 1) * shard_size` of the attribution set (the last shard may be shorter).
    public var shardIndex: Int
    /// Sequences in the shard (at most `attribution.shard_size`).
    public var nSequences: Int
    /// Sequences of each class in the shard when the sums are grouped by class (per_class
    /// targets); nil = one group of every sequence.
    public var classCounts: [Int]?
    /// Partial sums over the shard's sequences (float64; one group, or one group per class
    /// concatenated; the group layout is documented by the producer).
    public var sums: [Double]
    /// Wall time to compute the shard, seconds.
    public var seconds: Double
    /// The attribute stage's content key the shard was computed under.
    public var contentKey: String
    /// Creates a record from its fields.
    public init(method: String, granularity: String = "weight", shardIndex: Int, nSequences: Int, classCounts: [Int]? = nil,
                sums: [Double], seconds: Double, contentKey: String = "") {
        self.method = method; self.granularity = granularity; self.shardIndex = shardIndex; self.nSequences = nSequences
        self.classCounts = classCounts; self.sums = sums; self.seconds = seconds; self.contentKey = contentKey
    }
}

/// Integrated-gradients completeness of one sequence and path.
public struct CompletenessRecord: Sendable, Equatable {
    /// ID of the attributed sequence.
    public var sequenceID: String
    /// `weight` (one path scaling every chosen matrix) or `neuron` (one path per layer x module).
    public var granularity: String
    /// Layer of the scaled output (neuron paths); -1 for the weight path.
    public var layer: Int
    /// Module of the scaled output (neuron paths); '' for the weight path.
    public var module: String
    /// 0-based shard the sequence was attributed in.
    public var shardIndex: Int
    /// 0-based class index of the sequence's label (the integrated-gradients target).
    public var targetClass: Int
    /// P(target) of the model (probability).
    public var pFull: Double
    /// P(target) at the zero baseline (probability).
    public var pBaseline: Double
    /// Sum of the path's attributions.
    public var attributionSum: Double
    /// Creates a record from its fields.
    public init(sequenceID: String, granularity: String = "weight", layer: Int = -1, module: String = "", shardIndex: Int,
                targetClass: Int, pFull: Double, pBaseline: Double, attributionSum: Double) {
        self.sequenceID = sequenceID; self.granularity = granularity; self.layer = layer; self.module = module
        self.shardIndex = shardIndex; self.targetClass = targetClass
        self.pFull = pFull; self.pBaseline = pBaseline; self.attributionSum = attributionSum
    }
    /// `attributionSum - (pFull - pBaseline)`.
    public var gap: Double { attributionSum - (pFull - pBaseline) }
}

/// Which ranking a score set, selection or evaluation belongs to (the database's
/// `(method, granularity, target_class, seed)`).
public struct RankingID: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Method name (`random` for the baseline, `full` for the unpruned model's evaluation).
    public var method: String
    /// `weight`, `neuron` (`none` for the full model).
    public var granularity: String
    /// -1: F = P(true class) (and random, full); c >= 0: the per_class ranking of class c.
    public var targetClass: Int
    /// Random baseline seed; 0 otherwise.
    public var seed: Int
    /// Creates an id from its fields.
    public init(method: String, granularity: String = "weight", targetClass: Int = -1, seed: Int = 0) {
        self.method = method; self.granularity = granularity; self.targetClass = targetClass; self.seed = seed
    }
    public static func < (a: Self, b: Self) -> Bool {
        (a.granularity, a.method, a.targetClass, a.seed) < (b.granularity, b.method, b.targetClass, b.seed)
    }
    /// `integrated_gradients/neuron`, `integrated_gradients/neuron/class 2`, `random/weight/seed 3`.
    public var description: String {
        "\(method)/\(granularity)" + (targetClass >= 0 ? "/class \(targetClass)" : "") + (seed != 0 ? "/seed \(seed)" : "")
    }
}

/// The layout of a score set as stored in `score_blocks`: the scored linear maps and where
/// each (layer, module) block starts in the set's canonical index. Built by the producer
/// (the pipeline's `ScoreLayout`); the store only records and decodes it.
public struct ScoreSetLayout: Sendable, Equatable {
    /// One weight matrix (rows x cols) or one map's units (rows x 1).
    public struct Block: Sendable, Equatable {
        /// 0-based layer.
        public var layer: Int
        /// Module name (`query`, ..., `output`).
        public var module: String
        /// Output units.
        public var rows: Int
        /// Input features, or 1 for neuron granularity.
        public var cols: Int
        /// Canonical index of the first element.
        public var offset: Int
        /// Creates a block from its fields.
        public init(layer: Int, module: String, rows: Int, cols: Int, offset: Int) {
            self.layer = layer; self.module = module; self.rows = rows; self.cols = cols; self.offset = offset
        }
    }
    /// Scored module names in canonical order.
    public var modules: [String]
    /// Layers of the model.
    public var layers: Int
    /// Blocks in canonical order, contiguous from offset 0.
    public var blocks: [Block]
    /// Creates a layout from its fields.
    public init(modules: [String], layers: Int, blocks: [Block]) { self.modules = modules; self.layers = layers; self.blocks = blocks }
    /// Number of scores.
    public var count: Int { blocks.last.map { $0.offset + $0.rows * $0.cols } ?? 0 }
}

/// A stored selection (the `n_kept` highest ranked weights of a method and seed).
public struct SelectionRecord: Sendable, Equatable {
    /// Method name, or `random`.
    public var method: String
    /// `weight` or `neuron`.
    public var granularity: String
    /// -1 = true class (and random); c = the per_class ranking of class c.
    public var targetClass: Int
    /// Fraction of all q/k/v weights kept, in (0, 1].
    public var retentionFraction: Double
    /// Seed of the random baseline; 0 for `activation` and `integrated_gradients`.
    public var seed: Int
    /// Weights kept (ranks 1...nKept): round(fraction x nTotal), at least 1.
    public var nKept: Int
    /// Number of scored elements (the layout's count).
    public var nTotal: Int
    /// Lowest score among the kept weights; nil when the stored value is NULL.
    public var minKeptScore: Double?
    /// Creates a record from its fields.
    public init(method: String, granularity: String = "weight", targetClass: Int = -1, retentionFraction: Double, seed: Int,
                nKept: Int, nTotal: Int, minKeptScore: Double?) {
        self.method = method; self.granularity = granularity; self.targetClass = targetClass
        self.retentionFraction = retentionFraction; self.seed = seed
        self.nKept = nKept; self.nTotal = nTotal; self.minKeptScore = minKeptScore
    }
}

/// Kept weights of one selection in one layer x module.
public struct DensityRecord: Sendable, Equatable {
    /// Method name, or `random`.
    public var method: String
    /// `weight` or `neuron`.
    public var granularity: String
    /// -1 = true class (and random); c = the per_class ranking of class c.
    public var targetClass: Int
    /// Fraction of all q/k/v weights kept, in (0, 1].
    public var retentionFraction: Double
    /// Seed of the random baseline; 0 for `activation` and `integrated_gradients`.
    public var seed: Int
    /// 0-based layer.
    public var layer: Int
    /// Module name (`query`, ..., `output`).
    public var module: String
    /// Kept weights (or neurons) in this block.
    public var nKept: Int
    /// Weights in this matrix (rows x cols).
    public var nTotal: Int
    /// Creates a record from its fields.
    public init(method: String, granularity: String = "weight", targetClass: Int = -1, retentionFraction: Double, seed: Int,
                layer: Int, module: String, nKept: Int, nTotal: Int) {
        self.method = method; self.granularity = granularity; self.targetClass = targetClass
        self.retentionFraction = retentionFraction; self.seed = seed
        self.layer = layer; self.module = module; self.nKept = nKept; self.nTotal = nTotal
    }
}

/// One neuron's selectivity for one class motif (table `motif_selectivity`).
public struct SelectivityRecord: Sendable, Equatable {
    public var layer: Int
    /// `LinearModule` raw value.
    public var module: String
    public var unit: Int
    /// The class whose motif it is.
    public var classIndex: Int
    /// AUROC in [0, 1]; nil when the motif has no residue in the split.
    public var auroc: Double?
    /// The split the activations were taken on.
    public var split: String
    /// Creates a record from its fields.
    public init(layer: Int, module: String, unit: Int, classIndex: Int, auroc: Double?, split: String) {
        self.layer = layer; self.module = module; self.unit = unit; self.classIndex = classIndex; self.auroc = auroc; self.split = split
    }
}

/// How well one neuron ranking recovers the planted knowledge at one k (table `planted_recovery`).
public struct RecoveryRecord: Sendable, Equatable {
    /// The ranking (seed 0).
    public var ranking: RankingID
    /// Top neurons considered.
    public var k: Int
    /// Mean selectivity of the top k; the random sets' mean and sd; their number; one-sided p.
    public var meanSelectivity: Double, randomMean: Double, randomSD: Double
    public var nRandom: Int
    public var pValue: Double
    /// Share of the top k with selectivity >= 0.9, and the random sets' mean share.
    public var precisionAtK: Double, randomPrecision: Double
    /// Creates a record from its fields.
    public init(ranking: RankingID, k: Int, meanSelectivity: Double, randomMean: Double, randomSD: Double, nRandom: Int, pValue: Double,
                precisionAtK: Double, randomPrecision: Double) {
        self.ranking = ranking; self.k = k; self.meanSelectivity = meanSelectivity; self.randomMean = randomMean; self.randomSD = randomSD
        self.nRandom = nRandom; self.pValue = pValue; self.precisionAtK = precisionAtK; self.randomPrecision = randomPrecision
    }
}

/// One planted motif of the planted-knowledge benchmark (table `planted_motifs`).
public struct PlantedMotifRecord: Sendable, Equatable {
    /// The sequence's ID.
    public var sequenceID: String
    /// 1-based first and last residue, inclusive.
    public var start: Int, end: Int
    /// The residues there.
    public var residues: String
    /// PROSITE pattern.
    public var pattern: String
    /// The class label the motif defines; nil for a decoy.
    public var ecLabel: String?
    /// Creates a record from its fields.
    public init(sequenceID: String, start: Int, end: Int, residues: String, pattern: String, ecLabel: String?) {
        self.sequenceID = sequenceID; self.start = start; self.end = end; self.residues = residues; self.pattern = pattern; self.ecLabel = ecLabel
    }
}

/// The full model's prediction for one test sequence (table `predictions`).
public struct PredictionRecord: Sendable, Equatable {
    /// FASTA record ID.
    public var sequenceID: String
    /// `classes.class_index` of the sequence's label.
    public var trueClass: Int
    /// Argmax of the logits (lowest index on ties).
    public var predictedClass: Int
    /// Softmax probability of `trueClass`, in [0, 1].
    public var pTrue: Double
    /// Softmax probability of `predictedClass`, in [0, 1].
    public var pPredicted: Double
    /// Creates a record from its fields.
    public init(sequenceID: String, trueClass: Int, predictedClass: Int, pTrue: Double, pPredicted: Double) {
        self.sequenceID = sequenceID; self.trueClass = trueClass; self.predictedClass = predictedClass
        self.pTrue = pTrue; self.pPredicted = pPredicted
    }
}

/// Test-set quality of one model (full or submodel).
public struct EvaluationRecord: Sendable, Equatable {
    /// `full` for the unpruned model, else the selection's method (or `random`).
    public var method: String
    /// The selection's granularity (`weight`, `neuron`); `none` for `full`.
    public var granularity: String
    /// -1 = true class (and random, full); c = the per_class ranking of class c.
    public var targetClass: Int
    /// Fraction of q/k/v weights kept; 1.0 for `full`.
    public var retentionFraction: Double
    /// Seed of the random baseline; 0 for `full`, `activation` and `integrated_gradients`.
    public var seed: Int
    /// Number of test sequences evaluated.
    public var nTest: Int
    /// Test sequences whose predicted class is the label.
    public var nCorrect: Int
    /// nCorrect / nTest, in [0, 1] (0 when nTest is 0).
    public var accuracy: Double
    /// Mean over all the run's classes of F1 = 2TP / (2TP + FP + FN), in [0, 1]; a class with no test
    /// sequence and no prediction counts 0 (sklearn `f1_score(average="macro", zero_division=0)`).
    public var macroF1: Double
    /// Per class: (class index, n, n correct, F1).
    public var perClass: [(classIndex: Int, n: Int, nCorrect: Int, f1: Double)]
    /// Creates a record from its fields.
    public init(method: String, granularity: String = "weight", targetClass: Int = -1, retentionFraction: Double, seed: Int,
                nTest: Int, nCorrect: Int, accuracy: Double, macroF1: Double, perClass: [(classIndex: Int, n: Int, nCorrect: Int, f1: Double)]) {
        self.method = method; self.granularity = granularity; self.targetClass = targetClass
        self.retentionFraction = retentionFraction; self.seed = seed; self.nTest = nTest
        self.nCorrect = nCorrect; self.accuracy = accuracy; self.macroF1 = macroF1; self.perClass = perClass
    }
    /// Equality of every field except `perClass` (tuples are not `Equatable`).
    public static func == (a: EvaluationRecord, b: EvaluationRecord) -> Bool {
        a.method == b.method && a.granularity == b.granularity && a.targetClass == b.targetClass
            && a.retentionFraction == b.retentionFraction && a.seed == b.seed
            && a.nTest == b.nTest && a.nCorrect == b.nCorrect && a.accuracy == b.accuracy && a.macroF1 == b.macroF1
    }
}

/// A ledger row that must still be recorded, unchanged, when a process commits work derived
/// from it (checked inside the commit's transaction).
public struct LedgerRequirement: Sendable, Equatable {
    /// Stage name, e.g. `train`.
    public var stage: String
    /// The content key the work was computed from.
    public var contentKey: String
    /// Creates a requirement from its fields.
    public init(stage: String, contentKey: String) { self.stage = stage; self.contentKey = contentKey }
}

/// The ranking stored with every score set (`neuron_scores.rank`).
public enum ScoreRanking {
    /// Ranks of `scores` in their canonical order: 1 = highest score, ties broken by canonical
    /// index (lower first); -0.0 and 0.0 are equal. One sort of n Int32 indices, O(n log n).
    public static func ranks(_ scores: [Float]) -> [Int32] {
        var rank = [Int32](repeating: 0, count: scores.count)
        for (r, i) in order(scores, Array(0 ..< Int32(scores.count))).enumerated() { rank[Int(i)] = Int32(r + 1) }
        return rank
    }

    /// The canonical indices of the `count` best-ranked scores, best first: exactly the first
    /// `count` of the order `ranks` gives, in O(n) passes plus a sort of at most `count`
    /// indices (a two-level radix histogram over the scores' order-preserving 32-bit keys finds
    /// the key of rank `count`; the elements above it are sorted, its ties follow in index order).
    /// - Parameter count: how many; clamped to 0 ... scores.count.
    public static func top(_ scores: [Float], count: Int) -> [Int32] {
        let n = scores.count, k = max(0, min(count, n))
        if k == 0 { return [] }
        if k == n { return order(scores, Array(0 ..< Int32(n))) }
        return scores.withUnsafeBufferPointer { sc in
            // Histogram of the high 16 bits, walked from the highest key down to the bin of rank k.
            var high = [Int](repeating: 0, count: 65536)
            for v in sc { high[Int(key(v) >> 16)] += 1 }
            var above = 0, bin = 65535
            while above + high[bin] < k { above += high[bin]; bin -= 1 }
            // The low 16 bits inside that bin.
            var low = [Int](repeating: 0, count: 65536)
            for v in sc where Int(key(v) >> 16) == bin { low[Int(key(v) & 0xFFFF)] += 1 }
            var lowBin = 65535
            while above + low[lowBin] < k { above += low[lowBin]; lowBin -= 1 }
            let cut = UInt32(bin) << 16 | UInt32(lowBin)
            // Every element with a key above `cut` (fewer than k), then ties at `cut` by index.
            var better: [Int32] = [], ties: [Int32] = []
            better.reserveCapacity(above)
            for i in 0 ..< n {
                let kv = key(sc[i])
                if kv > cut { better.append(Int32(i)) } else if kv == cut && ties.count < k - above { ties.append(Int32(i)) }
            }
            return order(scores, better) + ties
        }
    }

    /// A key whose unsigned order is the scores' order (IEEE 754 total order with -0.0 = 0.0).
    @inline(__always) static func key(_ v: Float) -> UInt32 {
        let bits = v == 0 ? 0 : v.bitPattern
        return bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000
    }

    /// `indices` sorted by score (highest first), ties by index.
    static func order(_ scores: [Float], _ indices: [Int32]) -> [Int32] {
        var order = indices
        scores.withUnsafeBufferPointer { sc in
            order.sort { a, b in sc[Int(a)] != sc[Int(b)] ? sc[Int(a)] > sc[Int(b)] : a < b }
        }
        return order
    }
}

/// One score set to store: its ranking, layout and scores in layout order (ranks are
/// computed by the store with `ScoreRanking.ranks` unless given).
public struct ScoreSet: Sendable {
    /// Which ranking.
    public var id: RankingID
    /// Where each block sits.
    public var layout: ScoreSetLayout
    /// Scores, `layout.count` values.
    public var values: [Float]
    /// Ranks (1 = highest) when already computed; nil = computed on insert.
    public var ranks: [Int32]?
    /// Whether every score is stored (`score_rows`); false for a set its producer regenerates
    /// (the random baseline), which keeps only its ranked rows (`score_values`).
    public var storesScores: Bool
    /// Creates a set from its fields.
    public init(id: RankingID, layout: ScoreSetLayout, values: [Float], ranks: [Int32]? = nil, storesScores: Bool = true) {
        self.id = id; self.layout = layout; self.values = values; self.ranks = ranks; self.storesScores = storesScores
    }
}

extension SelectionRecord {
    /// The ranking this selection keeps the top of.
    public var ranking: RankingID { RankingID(method: method, granularity: granularity, targetClass: targetClass, seed: seed) }
}

extension EvaluationRecord {
    /// The ranking whose selection was evaluated (`full`: method full, granularity none).
    public var ranking: RankingID { RankingID(method: method, granularity: granularity, targetClass: targetClass, seed: seed) }
}

extension DensityRecord {
    /// The ranking of the selection.
    public var ranking: RankingID { RankingID(method: method, granularity: granularity, targetClass: targetClass, seed: seed) }
}
