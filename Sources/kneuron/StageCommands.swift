import Foundation
import ArgumentParser
import Pipeline

struct TokenizeCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "tokenize", abstract: "Tokenize sequences with the ESM-2 alphabet (crop by the spec's policy).")
    static let stage = Stage.tokenize
    @OptionGroup var options: RunOptions
}

struct SplitCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "split", abstract: "Stratified train/select/test split.")
    static let stage = Stage.split
    @OptionGroup var options: RunOptions
}

struct TrainCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Fine-tune the ESM-2 classifier (resumes from the last finished epoch).")
    static let stage = Stage.train
    @OptionGroup var options: RunOptions
}

/// The array-task options of the stages whose work array tasks share (attribute, evidence).
struct ArrayTaskOptions: ParsableArguments {
    @Option(help: "This task's index in 0..<num-shards.") var shardIndex: Int?
    @Option(help: "Number of tasks the work is divided among.") var numShards: Int?

    /// The task's selection: the options, else Slurm's array variables (SLURM_ARRAY_TASK_ID -
    /// SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT), else nil (all the work).
    /// - Throws: `ValidationError` for half-given options, non-integer or non-contiguous Slurm
    ///   variables, or `--force` with a selection (it would discard the other tasks' work).
    func selection(stage: Stage, force: String?) throws -> ShardSelection? {
        let env = ProcessInfo.processInfo.environment
        var index = shardIndex, count = numShards
        if index == nil, count == nil, let rawID = env["SLURM_ARRAY_TASK_ID"] {
            guard let id = Int(rawID), let n = env["SLURM_ARRAY_TASK_COUNT"].flatMap(Int.init) else {
                throw ValidationError("SLURM_ARRAY_TASK_ID=\(rawID) with SLURM_ARRAY_TASK_COUNT=\(env["SLURM_ARRAY_TASK_COUNT"] ?? "unset"): "
                    + "both must be integers; or give --shard-index and --num-shards")
            }
            index = id - (env["SLURM_ARRAY_TASK_MIN"].flatMap(Int.init) ?? 0)
            count = n
            guard index! >= 0, index! < n else {
                throw ValidationError("SLURM_ARRAY_TASK_ID \(id) - SLURM_ARRAY_TASK_MIN gives task \(index!) of \(n): use a contiguous array "
                    + "(--array=0-\(n - 1), no step) or give --shard-index and --num-shards")
            }
        }
        // One task must not discard the work the others are writing.
        if index != nil || count != nil, force != nil {
            throw ValidationError("--force cannot be combined with array-job tasks (--shard-index/--num-shards or SLURM_ARRAY_TASK_ID): "
                + "it would discard the other tasks' finished work. Run `kneuron \(stage.rawValue) SPEC --force \(stage.rawValue)` once before "
                + "submitting the array, or submit the array without --force")
        }
        switch (index, count) {
        case (nil, nil): return nil
        case (let i?, let n?): return try ShardSelection(index: i, count: n)
        default: throw ValidationError("give --shard-index and --num-shards together")
        }
    }

    /// Runs `stage` as this task; a task whose part is done while others work exits 0 and says so.
    func run(_ stage: Stage, _ options: RunOptions) throws {
        let shards = try selection(stage: stage, force: options.force)
        do {
            try runStages(options, [stage], shards: shards)
        } catch let e as PipelineError {
            switch e {
            case .shardsLeft: print("\(e)")
            case .changedInputs where shards != nil:
                // --force is refused for a task: say how to redo the stage before submitting the array.
                throw ValidationError("\(e)\nAs a task of an array job: run `kneuron \(stage.rawValue) SPEC --force \(stage.rawValue)` once, without "
                    + "--shard-index/--num-shards, then submit the array again")
            default: throw e
            }
        }
    }
}

/// `kneuron attribute SPEC [--shard-index I --num-shards N]`: all shards, or the shards
/// `s % N == I` of one array-job task (defaults from Slurm's array variables).
struct AttributeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attribute",
        abstract: "Score the weights or neurons of the spec's modules by each attribution method, in resumable shards.",
        discussion: """
            As one task of an array job, --shard-index I --num-shards N processes only the shards s with \
            s % N == I (defaults: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT when set). \
            Tasks share the database; the last one to finish combines the scores. A task whose shards are done \
            while others are still working exits 0 and says so.
            """)
    @OptionGroup var options: RunOptions
    @OptionGroup var task: ArrayTaskOptions

    func run() throws { try task.run(.attribute, options) }
}

struct SelectCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "select", abstract: "Keep the top fraction of each ranking (method x granularity x target), and random baselines.")
    static let stage = Stage.select
    @OptionGroup var options: RunOptions
}

struct EvaluateCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "evaluate", abstract: "Test accuracy and macro-F1 of the full model and every submodel.")
    static let stage = Stage.evaluate
    @OptionGroup var options: RunOptions
}

/// `kneuron evidence SPEC [--shard-index I --num-shards N]`: every ranking's curves, or the
/// rankings `i % N == I` of one array-job task (defaults from Slurm's array variables).
struct EvidenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evidence",
        abstract: "Retain and delete curves of every ranking against random rankings (bootstrap intervals, permutation p-values, "
            + "curve areas) and the knowledge edits.",
        discussion: """
            As one task of an array job, --shard-index I --num-shards N evaluates only the rankings i with i % N == I \
            (attributed rankings first, then the random rankings, seeds 1 ... evidence.random_rankings per granularity; defaults: SLURM_ARRAY_TASK_ID - \
            SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT when set). Tasks share the database; the last one to finish \
            runs the tests and the knowledge edits. A task whose rankings are done while others are still working exits 0 and says so.
            """)
    @OptionGroup var options: RunOptions
    @OptionGroup var task: ArrayTaskOptions

    func run() throws { try task.run(.evidence, options) }
}

struct SanityCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "sanity",
        abstract: "Sanity checks (Adebayo et al.): Spearman correlation of every ranking with the same method on cascading-randomised "
            + "and label-randomised models.")
    static let stage = Stage.sanity
    @OptionGroup var options: RunOptions
}

struct ReportCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Print and write the accuracy tables and the densities of what was kept.")
    static let stage = Stage.report
    @OptionGroup var options: RunOptions
}
