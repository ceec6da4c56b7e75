import ArgumentParser
import Pipeline

/// `kneuron run SPEC`: every stage in order, skipping recorded work.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run every stage of a pipeline spec, skipping work already recorded in the database.",
        discussion: "After a crash, run it again: it continues where it stopped. After success it does nothing and says so."
    )
    @OptionGroup var options: RunOptions

    func run() throws { try runStages(options, Stage.allCases) }
}
