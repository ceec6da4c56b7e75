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
    @Option(help: "This task's index in 0..<num-shards.") var shardIndex: Int?
    @Option(help: "Number of tasks the shards are divided among.") var numShards: Int?

    func run() throws {
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
        var shards: ShardSelection?
        // One task must not discard the shards the others are writing.
        if index != nil || count != nil, options.force != nil {
            throw ValidationError("--force cannot be combined with array-job shards (--shard-index/--num-shards or SLURM_ARRAY_TASK_ID): "
                + "it would discard the other tasks' finished shards. Run `kneuron attribute SPEC --force attribute` once before "
                + "submitting the array, or submit the array without --force")
        }
        switch (index, count) {
        case (nil, nil): shards = nil
        case (let i?, let n?): shards = try ShardSelection(index: i, count: n)
        default: throw ValidationError("give --shard-index and --num-shards together")
        }
        do {
            try runStages(options, [.attribute], shards: shards)
        } catch let e as PipelineError {
            guard case .shardsLeft = e else { throw e }
            print("\(e)")
        }
    }
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

struct EvidenceCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "evidence",
        abstract: "Retain and delete curves of every ranking against random rankings: bootstrap intervals, permutation p-values, curve areas.")
    static let stage = Stage.evidence
    @OptionGroup var options: RunOptions
}

struct ReportCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Print and write the accuracy tables and the densities of what was kept.")
    static let stage = Stage.report
    @OptionGroup var options: RunOptions
}
