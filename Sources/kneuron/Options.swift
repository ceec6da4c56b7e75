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

    @Option(name: .customLong("force"), help: "Redo this stage and every later one (discards their recorded results).")
    var force: String?

    @Flag(help: "No progress output on stderr.")
    var quiet = false

    /// Loads the spec, opens the database and returns a runner.
    func runner() throws -> PipelineRunner {
        let spec = try PipelineSpec.load(path: self.spec)
        let path = db ?? "runs/\(spec.name).sqlite"
        let database = try RunDatabase(path: path)
        let context = try RunContext(spec: spec, specPath: self.spec, db: database, quiet: quiet)
        let runner = PipelineRunner(context: context)
        if let force {
            guard let stage = Stage(rawValue: force) else { throw PipelineError.unknownStage(force) }
            try runner.force(stage)
        }
        return runner
    }
}

/// Runs the given stages and prints a one-line summary per stage.
func runStages(_ options: RunOptions, _ stages: [Stage]) throws {
    let runner = try options.runner()
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
