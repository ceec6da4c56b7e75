import Foundation
import ArgumentParser
import Pipeline
import Store
import ESM

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

struct NeuronsCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "neurons",
        abstract: "What the neurons respond to: on a planted benchmark, every neuron's motif selectivity and how well each ranking recovers it.")
    static let stage = Stage.neurons
    @OptionGroup var options: RunOptions
}

struct CardsCommand: StageCommand {
    static let configuration = CommandConfiguration(
        commandName: "cards",
        abstract: "Neuron cards: for the top neurons of every ranking, top-activating windows, residue enrichment, position and class profile "
            + "(resumable shards; `kneuron neuron --db RUN` shows them).")
    static let stage = Stage.cards
    @OptionGroup var options: RunOptions
}

/// The output formats of `kneuron neuron`.
enum CardFormat: String, CaseIterable, ExpressibleByArgument { case text, json }

/// `kneuron neuron --db RUN --layer L --module M --unit U`: one neuron's card, read-only; without
/// the neuron, the list of every card.
struct NeuronCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "neuron",
        abstract: "Show a neuron's card (top windows, residue enrichment, position, classes) from a run's database, read-only; "
            + "without --layer/--module/--unit, list the neurons that have cards.")
    @Argument(help: "Pipeline spec (YAML); only to find its database. Optional with --db.") var spec: String?
    @Option(help: "Database path (default: runs/<spec name>.sqlite).") var db: String?
    @Option(help: "Block, 0-based.") var layer: Int?
    @Option(help: ArgumentHelp("Linear map: " + LinearModule.allCases.map(\.rawValue).joined(separator: ", ") + ".")) var module: LinearModule?
    @Option(help: "Output unit of the map, 0-based.") var unit: Int?
    @Option(help: "text (default) or json.") var format: CardFormat = .text

    func run() throws {
        let path = try databasePath(db: db, spec: spec)
        let database = try RunDatabase(path: path, readOnly: true)
        try database.requireCurrentSchema()
        guard try database.stage(Stage.cards.rawValue) != nil else {
            throw OperationalError("\(path) has no finished cards stage. Run `kneuron run SPEC --db \(path)` (or `kneuron cards SPEC`) first")
        }
        let list = try database.cardNeurons()
        guard layer != nil || module != nil || unit != nil else {
            let neurons = Array(Set(list.map(\.neuron))).sorted()
            if format == .json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(neurons), as: UTF8.self))
                return
            }
            guard let first = neurons.first, let card = try database.neuronCard(first) else {
                print("no neuron has a card in \(path) (cards.top is 0, or the run has no ranking)")
                return
            }
            print("\(neurons.count) neurons have cards (kneuron neuron --db \(path) --layer L --module M --unit U):")
            let namer = NeuronCardView(card: card, rankings: [], classes: try database.classes())
            for k in neurons {
                let who = list.filter { $0.neuron == k }.map { "\(namer.rankingName($0.ranking)) #\($0.cardRank)" }
                print("  layer \(k.layer) \(k.module) unit \(k.unit): " + who.joined(separator: "; "))
            }
            return
        }
        guard let layer, let module, let unit else { throw ValidationError("give all three of --layer, --module and --unit (or none, to list the cards)") }
        guard layer >= 0, unit >= 0 else { throw ValidationError("--layer and --unit are 0-based: give 0 or more") }
        let key = NeuronKey(layer: layer, module: module.rawValue, unit: unit)
        guard let view = try NeuronCardView.load(db: database, neuron: key) else {
            throw OperationalError("layer \(layer) \(module.rawValue) unit \(unit) has no card in \(path): cards are made for the top "
                + "neurons of each ranking (\(Set(list.map(\.neuron)).count) neurons); `kneuron neuron --db \(path)` lists them")
        }
        print(format == .json ? try view.json() : view.text, terminator: "")
    }
}

extension LinearModule: ExpressibleByArgument {}

extension ReportFormat: ExpressibleByArgument {}

/// `kneuron report SPEC` runs the report stage (all formats into the run's artifacts directory,
/// recorded in the ledger); `kneuron report --db RUN [--format html|md|csv] [--out PATH]` renders
/// one format from a finished run's database without writing to it (read-only: a colleague's run
/// or a copy works too).
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write the report (report.html, report.md, CSV files); with --format or --out, render one format from a run's database read-only.",
        discussion: """
            kneuron report SPEC                 the report stage: every format into <db>.artifacts/, recorded
            kneuron report --db RUN.sqlite      report.html next to the database (RUN.report.html)
            kneuron report --db RUN.sqlite --format md                 Markdown on stdout
            kneuron report --db RUN.sqlite --format csv --out DIR      the CSV files into DIR
            """)
    @Argument(help: "Pipeline spec (YAML); runs the report stage. Optional with --db.") var spec: String?
    @Option(help: "Database path (default: runs/<spec name>.sqlite).") var db: String?
    @Option(help: "Render only this format, read-only: html (default), md or csv.") var format: ReportFormat?
    @Option(help: ArgumentHelp("Where to write: a file for html and md (md without it prints to stdout), a directory for csv "
        + "(default: next to the database, RUN.report.html or RUN.report-csv/).")) var out: String?
    @Option(name: .customLong("force"), help: ArgumentHelp("With SPEC: redo the report stage.", valueName: "stage")) var force: String?
    @Flag(help: "No progress output on stderr.") var quiet = false

    func run() throws {
        if let spec, format == nil, out == nil {
            let options = try RunOptions.parse([spec] + (db.map { ["--db", $0] } ?? []) + (force.map { ["--force", $0] } ?? []) + (quiet ? ["--quiet"] : []))
            return try runStages(options, [.report])
        }
        if force != nil { throw ValidationError("--force runs the report stage: give SPEC without --format and --out") }
        let path = try databasePath(db: db, spec: spec)
        let database = try RunDatabase(path: path, readOnly: true)
        try database.requireCurrentSchema()
        guard try database.stage(Stage.evaluate.rawValue) != nil else {
            throw OperationalError("\(path) has no finished evaluate stage: the report needs it. Run `kneuron run SPEC --db \(path)` first "
                + "(`kneuron status --db \(path)` shows what is left)")
        }
        let chosen = format ?? .html
        let base = path.hasSuffix(".sqlite") ? String(path.dropLast(".sqlite".count)) : path
        if let out { try refuseUnsafeOutput(out, database: path, directory: chosen == .csv) }
        let files = try RunReport.files(db: database, formats: [chosen])
        switch chosen {
        case .md where out == nil:
            print(files[0].text, terminator: "")
        case .html, .md:
            let target = out ?? base + ".report.html"
            try write(files[0].text, to: target)
            if !quiet { FileHandle.standardError.write(Data("wrote \(target)\n".utf8)) }
        case .csv:
            let dir = out ?? base + ".report-csv"
            do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                throw OperationalError("cannot create the directory \(dir): \(error.localizedDescription); give --out DIR")
            }
            for f in files { try write(f.text, to: (dir as NSString).appendingPathComponent(f.name)) }
            if !quiet { FileHandle.standardError.write(Data(("wrote " + files.map { (dir as NSString).appendingPathComponent($0.name) }.joined(separator: ", ") + "\n").utf8)) }
        }
    }

    /// Refuses an output path that is the database or one of its side files (after resolving
    /// symbolic links and `..`), or an existing path that is not a regular file (html, md) or a
    /// directory (csv): a device, a FIFO, a directory given for a file.
    /// - Throws: `ValidationError` naming the path and what to give instead.
    private func refuseUnsafeOutput(_ out: String, database: String, directory: Bool) throws {
        func resolved(_ p: String) -> String { URL(fileURLWithPath: p).resolvingSymlinksInPath().standardizedFileURL.path }
        let target = resolved(out), db = resolved(database)
        for suffix in ["", "-wal", "-shm", "-journal", ".lock"] where target == db + suffix {
            throw ValidationError("--out \(out) is the run's database\(suffix.isEmpty ? "" : " (its \(suffix) file)"): writing there would destroy it; give another path")
        }
        guard let type = try? FileManager.default.attributesOfItem(atPath: target)[.type] as? FileAttributeType else { return }
        if directory {
            guard type == .typeDirectory else { throw ValidationError("--out \(out) exists and is not a directory: --format csv writes its files into a directory") }
        } else if type != .typeRegular {
            throw ValidationError("--out \(out) is not a regular file (\(type == .typeDirectory ? "a directory" : "a device, FIFO or socket")): give a file path"
                + (chosen == .md ? ", or no --out to print the Markdown to stdout" : ""))
        }
    }

    private var chosen: ReportFormat { format ?? .html }

    private func write(_ text: String, to path: String) throws {
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw OperationalError("cannot write \(path): \(error.localizedDescription); give --out PATH somewhere writable")
        }
    }
}
