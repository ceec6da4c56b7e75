import Foundation

/// The `run` row: which spec this database was created from.
public struct RunRecord: Sendable, Equatable {
    public var name: String
    public var specPath: String
    public var specYAML: String
    /// SHA-256 (hex) of the spec file's bytes.
    public var specSHA256: String
    public var kneuronVersion: String
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
    public init(stage: String, contentKey: String, rowsWritten: Int, seconds: Double, finishedAt: String? = nil) {
        self.stage = stage; self.contentKey = contentKey; self.rowsWritten = rowsWritten
        self.seconds = seconds; self.finishedAt = finishedAt
    }
}

/// An input file as read by ingest.
public struct InputFileRecord: Sendable, Equatable {
    public var path: String
    /// `fasta` or `labels`.
    public var role: String
    public var sizeBytes: Int64
    public var sha256: String
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
    public init(classIndex: Int, ecLabel: String, name: String?) {
        self.classIndex = classIndex; self.ecLabel = ecLabel; self.name = name
    }
}

/// An accepted sequence with its label at the run's level and all its EC numbers.
public struct SequenceRecord: Sendable, Equatable {
    public var id: String
    public var sequence: String
    public var ecLabel: String
    public var ecNumbers: [String]
    public var sourceFile: String
    public var sourceLine: Int
    /// Notes such as "lowercase residues uppercased", joined with "; ".
    public var notes: String
    public init(id: String, sequence: String, ecLabel: String, ecNumbers: [String], sourceFile: String, sourceLine: Int, notes: String) {
        self.id = id; self.sequence = sequence; self.ecLabel = ecLabel; self.ecNumbers = ecNumbers
        self.sourceFile = sourceFile; self.sourceLine = sourceLine; self.notes = notes
    }
}

/// A record that could not be used, with its reason.
public struct RejectedRow: Sendable, Equatable {
    public var file: String
    /// 1-based line, 0 when not tied to a line.
    public var line: Int
    /// The record's ID, '' when it has none.
    public var recordID: String
    public var reason: String
    public init(file: String, line: Int, recordID: String, reason: String) {
        self.file = file; self.line = line; self.recordID = recordID; self.reason = reason
    }
}

/// A tokenized sequence (`<cls>` residues `<eos>`, cropped to the max length).
public struct TokenRecord: Sendable, Equatable {
    public var sequenceID: String
    /// ESM-2 token ids.
    public var ids: [Int32]
    /// 0-based first kept residue.
    public var residueStart: Int
    /// Exclusive end of the kept residues.
    public var residueEnd: Int
    public var originalLength: Int
    public var cropped: Bool { residueEnd - residueStart < originalLength }
    public init(sequenceID: String, ids: [Int32], residueStart: Int, residueEnd: Int, originalLength: Int) {
        self.sequenceID = sequenceID; self.ids = ids; self.residueStart = residueStart
        self.residueEnd = residueEnd; self.originalLength = originalLength
    }
}

/// One training epoch's curve point.
public struct EpochRecord: Sendable, Equatable {
    /// 1-based.
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var selectLoss: Double
    public var selectAccuracy: Double
    public var seconds: Double
    public init(epoch: Int, trainLoss: Double, trainAccuracy: Double, selectLoss: Double, selectAccuracy: Double, seconds: Double) {
        self.epoch = epoch; self.trainLoss = trainLoss; self.trainAccuracy = trainAccuracy
        self.selectLoss = selectLoss; self.selectAccuracy = selectAccuracy; self.seconds = seconds
    }
}

/// A saved model directory.
public struct CheckpointRecord: Sendable, Equatable {
    /// `initial` or `final`.
    public var name: String
    public var directory: String
    /// SHA-256 of model.safetensors.
    public var sha256: String
    public var sizeBytes: Int64
    public init(name: String, directory: String, sha256: String, sizeBytes: Int64) {
        self.name = name; self.directory = directory; self.sha256 = sha256; self.sizeBytes = sizeBytes
    }
}

/// A finished attribution shard: its partial sums are its done mark.
public struct ShardRecord: Sendable, Equatable {
    /// `activation` or `integrated_gradients`.
    public var method: String
    public var shardIndex: Int
    public var nSequences: Int
    /// Partial sums over the shard's sequences (float64; layout documented by the producer).
    public var sums: [Double]
    public var seconds: Double
    /// The attribute stage's content key the shard was computed under.
    public var contentKey: String
    public init(method: String, shardIndex: Int, nSequences: Int, sums: [Double], seconds: Double, contentKey: String = "") {
        self.method = method; self.shardIndex = shardIndex; self.nSequences = nSequences
        self.sums = sums; self.seconds = seconds; self.contentKey = contentKey
    }
}

/// Integrated-gradients completeness of one sequence.
public struct CompletenessRecord: Sendable, Equatable {
    public var sequenceID: String
    public var shardIndex: Int
    public var targetClass: Int
    /// P(target) with all q/k/v weights (probability).
    public var pFull: Double
    /// P(target) with all q/k/v weights zero (probability).
    public var pBaseline: Double
    /// Sum of the sequence's attributions over all q/k/v weights.
    public var attributionSum: Double
    public init(sequenceID: String, shardIndex: Int, targetClass: Int, pFull: Double, pBaseline: Double, attributionSum: Double) {
        self.sequenceID = sequenceID; self.shardIndex = shardIndex; self.targetClass = targetClass
        self.pFull = pFull; self.pBaseline = pBaseline; self.attributionSum = attributionSum
    }
    /// `attributionSum - (pFull - pBaseline)`.
    public var gap: Double { attributionSum - (pFull - pBaseline) }
}

/// The shape of the scored weights: `layers` layers x (query, key, value) x `rows` x `cols`,
/// flattened in that order (canonical order of every score array).
public struct ScoreShape: Sendable, Equatable {
    public var layers: Int
    public var rows: Int
    public var cols: Int
    /// Module names in canonical order.
    public static let modules = ["query", "key", "value"]
    public init(layers: Int, rows: Int, cols: Int) { self.layers = layers; self.rows = rows; self.cols = cols }
    /// Elements per matrix.
    public var perMatrix: Int { rows * cols }
    /// Total number of scored weights.
    public var count: Int { layers * 3 * rows * cols }
}

/// A stored selection (the `n_kept` highest ranked weights of a method and seed).
public struct SelectionRecord: Sendable, Equatable {
    public var method: String
    public var retentionFraction: Double
    public var seed: Int
    public var nKept: Int
    public var nTotal: Int
    public var minKeptScore: Double?
    public init(method: String, retentionFraction: Double, seed: Int, nKept: Int, nTotal: Int, minKeptScore: Double?) {
        self.method = method; self.retentionFraction = retentionFraction; self.seed = seed
        self.nKept = nKept; self.nTotal = nTotal; self.minKeptScore = minKeptScore
    }
}

/// Kept weights of one selection in one layer x module.
public struct DensityRecord: Sendable, Equatable {
    public var method: String
    public var retentionFraction: Double
    public var seed: Int
    public var layer: Int
    public var module: String
    public var nKept: Int
    public var nTotal: Int
    public init(method: String, retentionFraction: Double, seed: Int, layer: Int, module: String, nKept: Int, nTotal: Int) {
        self.method = method; self.retentionFraction = retentionFraction; self.seed = seed
        self.layer = layer; self.module = module; self.nKept = nKept; self.nTotal = nTotal
    }
}

/// Test-set quality of one model (full or submodel).
public struct EvaluationRecord: Sendable, Equatable {
    public var method: String
    public var retentionFraction: Double
    public var seed: Int
    public var nTest: Int
    public var nCorrect: Int
    public var accuracy: Double
    public var macroF1: Double
    /// Per class: (class index, n, n correct, F1).
    public var perClass: [(classIndex: Int, n: Int, nCorrect: Int, f1: Double)]
    public init(method: String, retentionFraction: Double, seed: Int, nTest: Int, nCorrect: Int, accuracy: Double, macroF1: Double, perClass: [(classIndex: Int, n: Int, nCorrect: Int, f1: Double)]) {
        self.method = method; self.retentionFraction = retentionFraction; self.seed = seed; self.nTest = nTest
        self.nCorrect = nCorrect; self.accuracy = accuracy; self.macroF1 = macroF1; self.perClass = perClass
    }
    public static func == (a: EvaluationRecord, b: EvaluationRecord) -> Bool {
        a.method == b.method && a.retentionFraction == b.retentionFraction && a.seed == b.seed
            && a.nTest == b.nTest && a.nCorrect == b.nCorrect && a.accuracy == b.accuracy && a.macroF1 == b.macroF1
    }
}
