import ArgumentParser
import Foundation
import Pipeline
import Store

/// Options shared by the commands that run stages.
struct RunOptions: ParsableArguments {
    @Argument(help: "Pipeline spec (YAML).")
    var spec: String

    @Option(help: "Database path (default: runs/<spec name>.sqlite).")
    var db: String?

    @Option(name: .customLong("force"), help: ArgumentHelp("Redo this stage and every later one (discards their recorded results); "
        + "a single-stage command accepts only its own stage.", valueName: "stage"))
    var force: String?

    @Flag(help: "No progress output on stderr.")
    var quiet = false

    /// Loads the spec, takes the run's lock, opens the database and returns a runner.
    /// With a shard selection (one task of an array job) the lock is the task's own, so the
    /// tasks of one run can work on the database at the same time.
    func runner(shards: ShardSelection? = nil) throws -> PipelineRunner {
        let spec = try PipelineSpec.load(path: self.spec)
        return try openRunner(spec: spec, specPath: self.spec, db: db ?? "runs/\(spec.name).sqlite",
                              force: force, quiet: quiet, shards: shards)
    }
}

/// Takes the run's lock, opens (migrating) the database at `db`, and returns a runner for
/// `spec`, after discarding the `force`d stage and later ones. `specYAML` is recorded instead
/// of the spec file's text (for a spec built in memory).
/// - Throws: `PipelineError.unknownStage`, `StoreError.readOnly` (before any lock or
///   write), lock and database errors.
func openRunner(spec: PipelineSpec, specPath: String, specYAML: String? = nil, db path: String, force: String?,
                quiet: Bool, shards: ShardSelection? = nil) throws -> PipelineRunner {
    if let force, Stage(rawValue: force) == nil { throw PipelineError.unknownStage(force) }
    try RunDatabase.preflight(path: path, readOnly: false)
    try RunLock.acquire(databasePath: path, suffix: shards.map { ".attribute-\($0.index)-of-\($0.count)" } ?? "")
    // Only under the run's own lock (not a shard task's) is this process the only writer.
    if shards == nil && !FileManager.default.fileExists(atPath: path) { FreshDatabase.path = path }
    let database = try RunDatabase(path: path)
    let context = try RunContext(spec: spec, specPath: specPath, db: database, quiet: quiet, specYAML: specYAML)
    context.shardSelection = shards
    let runner = PipelineRunner(context: context)
    if let force {
        guard let stage = Stage(rawValue: force) else { throw PipelineError.unknownStage(force) }
        try runner.force(stage)
    }
    return runner
}

/// A failure of the environment rather than of the command line (printed without the usage
/// text that ArgumentParser adds to a `ValidationError`).
struct OperationalError: Error, CustomStringConvertible {
    /// What went wrong and what to do.
    let description: String
    init(_ description: String) { self.description = description }
}

/// The database this process created, if any: when the command then fails before any stage
/// is recorded, `removeIfEmpty()` deletes it so a failed first attempt (a missing input file,
/// a bad label file) leaves no empty run behind.
enum FreshDatabase {
    nonisolated(unsafe) static var path: String?
    /// The database's directory, when this process created it (removed with the database when empty).
    nonisolated(unsafe) static var directory: String?

    /// Deletes the database created by this process (with its -wal, -shm and lock files) when
    /// no stage is recorded in it; leaves anything else alone.
    static func removeIfEmpty() {
        guard let path, let db = try? RunDatabase(path: path, readOnly: true), (try? db.stages().isEmpty) == true else { return }
        for suffix in ["", "-wal", "-shm", ".lock"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        if let dir = directory, (try? FileManager.default.contentsOfDirectory(atPath: dir).isEmpty) == true {
            try? FileManager.default.removeItem(atPath: dir)
        }
    }
}

/// One writer per run: an exclusive `flock` on `<db>.lock`, held until the process exits
/// (the kernel releases it even after kill -9, so a stale lock file is harmless).
enum RunLock {
    nonisolated(unsafe) private static var descriptor: Int32 = -1

    /// Takes the lock of the database at `databasePath` (creating its directory).
    /// - Throws: `OperationalError` when another process holds it or the lock file cannot be made.
    static func acquire(databasePath: String, suffix: String = "") throws {
        if descriptor >= 0 { return }
        let dir = (databasePath as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            FreshDatabase.directory = dir
        }
        let lockPath = databasePath + suffix + ".lock"
        let fd = open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw OperationalError("cannot create the lock file \(lockPath): \(String(cString: strerror(errno))); check that the directory is writable")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw OperationalError("another kneuron process is working on \(databasePath) (lock \(lockPath)); wait for it to finish or stop it, then run again")
        }
        descriptor = fd
    }
}

/// The database of a read-only command: `--db PATH`, or the default `runs/<spec name>.sqlite`
/// of a spec given instead.
/// - Throws: `ValidationError` when neither is given; spec errors.
func databasePath(db: String?, spec: String?) throws -> String {
    if let db { return db }
    guard let spec else { throw ValidationError("give --db PATH or the pipeline spec (its database is runs/<spec name>.sqlite)") }
    return "runs/\(try PipelineSpec.load(path: spec).name).sqlite"
}

/// Runs the given stages and prints a one-line summary per stage.
func runStages(_ options: RunOptions, _ stages: [Stage], shards: ShardSelection? = nil) throws {
    // A single-stage command may only force its own stage: forcing an earlier one would
    // discard stages it does not run again.
    if stages.count == 1, let force = options.force, let forced = Stage(rawValue: force), forced != stages[0] {
        throw ValidationError("`kneuron \(stages[0].rawValue) --force` can only redo \(stages[0].rawValue); use `kneuron run SPEC --force \(force)` to redo \(force) and the stages after it")
    }
    let runner = try options.runner(shards: shards)
    let outcomes = try runner.run(stages)
    if outcomes.allSatisfy({ !$0.ran }) {
        print("nothing to do: \(stages.map(\.rawValue).joined(separator: ", ")) already done in \(runner.context.db.path)")
    }
}

/// Defines one single-stage subcommand.
protocol StageCommand: ParsableCommand {
    static var stage: Stage { get }
    var options: RunOptions { get }
}

extension StageCommand {
    func run() throws { try runStages(options, [Self.stage]) }
}
