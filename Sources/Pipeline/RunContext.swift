import Crypto
import ESM
import Foundation
import Store

/// kneuron's version, recorded in every run.
public let kneuronVersion = "0.1.0"

/// Errors raised while running pipeline stages.
public enum PipelineError: Error, CustomStringConvertible {
    /// A stage needs a stage that has not finished.
    case missingStage(stage: String, needs: String)
    /// Recorded work was made from other inputs or parameters.
    case changedInputs(stage: String, recorded: String, now: String, differences: [String])
    /// An input file cannot be read.
    case unreadableInput(path: String, reason: String)
    /// An output file or directory could not be written (with the reason and what to do).
    case unwritableOutput(path: String, reason: String)
    /// A checkpoint on disk is not the one recorded (changed or deleted).
    case checkpointChanged(path: String, recorded: String, found: String)
    /// Nothing usable in a stage's input (e.g. no accepted sequence).
    case empty(stage: String, what: String)
    /// `--shard-index` / `--num-shards` out of range.
    case badShardSelection(index: Int, count: Int)
    /// This array task's part of a stage (attribution shards, evidence rankings) is done; other
    /// tasks' parts are still left (not a failure). `unit` names the parts ("shards", "rankings").
    case shardsLeft(stage: String, task: String, left: Int, total: Int, unit: String)
    /// Training produced a non-finite loss.
    case diverged(epoch: Int, detail: String)
    /// An unknown stage name.
    case unknownStage(String)
    /// A checkpoint's classifier head cannot be used for the data's classes as `model.head`
    /// says (labels differ, no EC labels, nothing to keep); `detail` names both label lists
    /// and what to change.
    case headMismatch(checkpoint: String, detail: String)
    /// The run's estimated memory (`MemoryPlan`) exceeds what this process may use.
    case insufficientMemory(needed: String, limit: String, detail: String)

    public var description: String {
        switch self {
        case .missingStage(let stage, let needs):
            return "stage \(stage) needs stage \(needs) to be done first; run `kneuron \(needs)` or `kneuron run SPEC`"
        case .changedInputs(let stage, let recorded, let now, let differences):
            let what = differences.isEmpty
                ? "other inputs or parameters (recorded key \(recorded.prefix(16)), now \(now.prefix(16)))"
                : "other inputs or parameters: " + differences.joined(separator: "; ")
            return "stage \(stage) was recorded with \(what). Use `--force \(stage)` to redo it and the stages after it, or a new --db."
        case .unreadableInput(let path, let reason):
            return "cannot read input \(path): \(reason)"
        case .unwritableOutput(let path, let reason):
            return "cannot write \(path): \(reason)"
        case .checkpointChanged(let path, let recorded, let found):
            return "checkpoint \(path) changed since it was recorded (sha256 \(recorded.prefix(12)) recorded, \(found.prefix(12)) found). Use `--force train` to retrain."
        case .empty(let stage, let what):
            return "stage \(stage): \(what)"
        case .headMismatch(let checkpoint, let detail):
            return "checkpoint \(checkpoint): \(detail)"
        case .insufficientMemory(let needed, let limit, let detail):
            return "the run needs \(needed) of memory but this process may use \(limit) (the smaller of the machine's memory and its cgroup limit, e.g. Slurm's --mem): \(detail). "
                + "Lower train.batch_size (training activations grow with it) or model.max_length (activations grow with it, attention scratch with its square), "
                + "or run where there is more memory. Nothing was written. (KNEURON_SKIP_MEMORY_CHECK=1 skips this check if the estimate is wrong.)"
        case .badShardSelection(let index, let count):
            return "shard index \(index) with \(count) shards: give --num-shards N >= 1 and --shard-index in 0..<N"
        case .shardsLeft(let stage, let task, let left, let total, let unit):
            return "\(stage) (\(task)): this task's \(unit) are done; \(left) of \(total) \(unit) belong to other tasks and are not done yet. "
                + "The last task to finish combines the results. If a task was killed, run `kneuron \(stage) SPEC` (without --shard-index) "
                + "once the others have stopped: it does the \(unit) that are left and combines"
        case .diverged(let epoch, let detail):
            return "training diverged in epoch \(epoch): \(detail)"
        case .unknownStage(let s):
            return "unknown stage '\(s)'; stages are: \(Stage.allCases.map(\.rawValue).joined(separator: ", "))"
        }
    }
}

/// The pipeline's stages in run order.
public enum Stage: String, CaseIterable, Sendable, Comparable {
    case ingest, tokenize, split, train, attribute, select, evaluate, evidence, sanity, neurons, cards, report

    /// The stage's implementation: its parameters, version and work (one file per stage in
    /// `Stages/`); the runner loops over stages and calls these.
    var implementation: any StageImplementation.Type {
        switch self {
        case .ingest: IngestStage.self
        case .tokenize: TokenizeStage.self
        case .split: SplitStage.self
        case .train: TrainStage.self
        case .attribute: AttributeStage.self
        case .select: SelectStage.self
        case .evaluate: EvaluateStage.self
        case .evidence: EvidenceStage.self
        case .sanity: SanityStage.self
        case .neurons: NeuronsStage.self
        case .cards: CardsStage.self
        case .report: ReportStage.self
        }
    }

    /// Version of the stage's algorithm; part of its content key.
    var version: Int { implementation.version }

    public static func < (a: Stage, b: Stage) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }

    /// The stage whose output this stage reads.
    var previous: Stage? {
        let i = Stage.allCases.firstIndex(of: self)!
        return i == 0 ? nil : Stage.allCases[i - 1]
    }
}

/// Test hooks of the crash and resume tests, read once from the environment
/// (`KNEURON_DEBUG_*`, milliseconds) and carried by the run context. Unset in normal use.
public struct DebugHooks: Sendable, Equatable {
    /// `KNEURON_DEBUG_STAGE_DELAY_MS`: pause before every stage's work (kills inside the short stages).
    public var stageDelayMilliseconds: Int?
    /// `KNEURON_DEBUG_SHARD_DELAY_MS`: pause after each committed attribution shard.
    public var shardDelayMilliseconds: Int?
    /// `KNEURON_DEBUG_BATCH_DELAY_MS`: pause after every training batch and every evaluated submodel.
    public var batchDelayMilliseconds: Int?

    /// The hooks set in `environment`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        func ms(_ name: String) -> Int? { environment[name].flatMap { Int($0) } }
        stageDelayMilliseconds = ms("KNEURON_DEBUG_STAGE_DELAY_MS")
        shardDelayMilliseconds = ms("KNEURON_DEBUG_SHARD_DELAY_MS")
        batchDelayMilliseconds = ms("KNEURON_DEBUG_BATCH_DELAY_MS")
    }

    /// Sleeps for `milliseconds` when set.
    static func pause(_ milliseconds: Int?) {
        if let ms = milliseconds { usleep(UInt32(ms) * 1000) }
    }
}

/// The three splits of a run (`splits.split` in the database).
public enum SplitRole: String, Codable, Sendable, CaseIterable {
    case train, select, test
}

extension SelectOn {
    /// The split neurons are selected (attributed) on.
    public var split: SplitRole { self == .select ? .select : .test }
}

/// One stage of the pipeline: what its content key is made from, its version, its work.
/// The content key of a stage is `stage@version:` + SHA-256 of the previous stage's key and
/// these parameter lines, so changing a parameter or the version redoes the stage and the
/// ones after it (redun-style, see `Hashing.contentKey`).
protocol StageImplementation {
    /// Version of the stage's algorithm (bumped when its output would change).
    static var version: Int { get }
    /// The named inputs and parameters of the stage (`inputs.fasta[0]` -> its SHA-256 and size,
    /// `train.epochs` -> `60`, ...), in a fixed order.
    /// - Throws: `PipelineError.unreadableInput` when an input file cannot be hashed.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)]
    /// Does the stage's work and records it with its ledger row (one transaction, or one per
    /// shard/epoch for the long stages). Returns the rows written.
    static func run(_ ctx: RunContext, key: String) throws -> Int
}

extension StageImplementation {
    /// Version 1 unless a stage says otherwise.
    static var version: Int { 1 }
}

/// Everything a stage needs: the spec, where it lives, the database and the artifacts
/// directory (`<db without .sqlite>.artifacts/`: checkpoints, training state, reports).
public final class RunContext: @unchecked Sendable {
    /// The parsed pipeline spec.
    public let spec: PipelineSpec
    /// Path of the spec file (inputs are relative to its directory).
    public let specPath: String
    /// The run's database.
    public let db: RunDatabase
    /// Directory for files too large for the database.
    public let artifactsDirectory: String
    /// Silences progress output.
    public let quiet: Bool
    /// Test hooks, parsed once from the environment.
    public var debug = DebugHooks()
    /// When set, the attribute stage works only on shards `s` with `s % count == index`
    /// (one task of an array job); nil = all shards.
    public var shardSelection: ShardSelection?
    /// The spec text recorded in the `run` table; nil = read from `specPath` (a spec built in
    /// memory, as `kneuron ingest --fasta ...` does, passes its rendering here).
    public let specYAML: String?
    /// When true, an ingest that accepts no sequence is recorded (with its rejections) instead
    /// of failing; `kneuron ingest` without a spec sets it, so every file is reported.
    public var allowEmptyIngest = false
    /// What the ingest stage read, accepted and rejected per file; set when ingest ran in this
    /// process, nil otherwise.
    public internal(set) var ingestSummary: IngestSummary?
    /// What the preflight read for the ingest stage (`IngestStage.read`), handed to the stage
    /// so the inputs are parsed once.
    var preread: IngestStage.Result?
    /// What the preflight read of the spec's checkpoint (`Checkpoint.inspect`), so the train
    /// stage does not read it again.
    var checkpointContents: Checkpoint.Contents?

    /// The preflight's ingest result, once (the stage takes it).
    func takePreread() -> IngestStage.Result? {
        defer { preread = nil }
        return preread
    }

    /// Opens the run: loads nothing itself; registers the spec in the database.
    /// `specYAML` replaces the file's text in the `run` table (for specs built in memory).
    /// - Throws: `StoreError` when the run cannot be recorded.
    public init(spec: PipelineSpec, specPath: String, db: RunDatabase, quiet: Bool, specYAML: String? = nil) throws {
        self.spec = spec
        self.specPath = specPath
        self.db = db
        self.quiet = quiet
        self.specYAML = specYAML
        let base = db.path.hasSuffix(".sqlite") ? String(db.path.dropLast(7)) : db.path
        artifactsDirectory = base + ".artifacts"
    }

    /// Records the spec (name, path, YAML, SHA-256) in the `run` table. The runner calls it
    /// only when a stage is about to run, so a refused run leaves the record untouched.
    public func recordRun() throws {
        let yaml = specYAML ?? (try? String(contentsOfFile: specPath, encoding: .utf8)) ?? ""
        try db.registerRun(RunRecord(name: spec.name, specPath: specPath, specYAML: yaml,
                                     specSHA256: Hashing.sha256(Data(yaml.utf8)), kneuronVersion: kneuronVersion))
    }

    /// Resolves a path from the spec relative to the spec file's directory.
    public func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let dir = (specPath as NSString).deletingLastPathComponent
        return ((dir.isEmpty ? "." : dir) as NSString).appendingPathComponent(path)
    }

    /// Writes a line to stderr unless quiet.
    func log(_ message: String) { Pipeline.log(message, quiet: quiet) }
}

/// The shards one task of an array job owns: shard `s` belongs to task `s % count`.
public struct ShardSelection: Sendable, Equatable, CustomStringConvertible {
    /// This task, in `0 ..< count`.
    public let index: Int
    /// Number of tasks.
    public let count: Int

    /// - Throws: `PipelineError.badShardSelection` unless `count >= 1` and `0 <= index < count`.
    public init(index: Int, count: Int) throws {
        guard count >= 1, index >= 0, index < count else { throw PipelineError.badShardSelection(index: index, count: count) }
        self.index = index
        self.count = count
    }

    /// Whether shard `shard` belongs to this task.
    public func owns(_ shard: Int) -> Bool { shard % count == index }

    /// "task I of N", for messages.
    public var description: String { "task \(index) of \(count)" }
}

/// SHA-256 helpers (swift-crypto).
public enum Hashing {
    /// Hex SHA-256 of bytes.
    public static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Hex SHA-256 and size of a file, streamed in 1 MiB chunks.
    /// - Throws: `PipelineError.unreadableInput`.
    public static func sha256(file path: String) throws -> (hex: String, size: Int64) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw PipelineError.unreadableInput(path: path, reason: "it is a directory; give a file")
        }
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw PipelineError.unreadableInput(path: path, reason: FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")
        }
        defer { try? h.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while true {
            let chunk = h.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            size += Int64(chunk.count)
            hasher.update(data: chunk)
        }
        return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), size)
    }

    /// The content key of a stage: `stage@version:` + SHA-256 of the previous key and the
    /// stage's parameters (rendered as sorted-key JSON by the caller).
    static func contentKey(_ stage: Stage, previous: String?, parameters: String) -> String {
        let body = "\(stage.rawValue)@\(stage.version)\n\(previous ?? "")\n\(parameters)"
        return "\(stage.rawValue)@\(stage.version):" + sha256(Data(body.utf8))
    }
}

/// Sorted-key JSON of an Encodable value (stable parameter rendering for content keys).
func canonicalJSON<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    return (try? enc.encode(value)).flatMap { String(data: $0, encoding: .utf8) } ?? ""
}
