import ArgumentParser
import Foundation

/// The `kneuron` command: the root only lists subcommands (one file each).
@main
struct Kneuron: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kneuron",
        abstract: "Find knowledge neurons in protein language models (ESM-2, EC classification).",
        discussion: "Run a whole pipeline with `kneuron run SPEC.yaml`, or one stage at a time. Every result is in SQLite (`kneuron query`).",
        subcommands: [RunCommand.self, IngestCommand.self, TokenizeCommand.self, SplitCommand.self, TrainCommand.self,
                      AttributeCommand.self, SelectCommand.self, EvaluateCommand.self, EvidenceCommand.self, SanityCommand.self, NeuronsCommand.self, CardsCommand.self, ReportCommand.self,
                      NeuronCommand.self,
                      StatusCommand.self, QueryCommand.self, PredictCommand.self, EmbedCommand.self, PlantCommand.self, BenchCommand.self]
    )

    /// Parses and runs the command; on failure, removes a database this process created but
    /// recorded nothing in (see `FreshDatabase`), then exits as ArgumentParser does.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            FreshDatabase.removeIfEmpty()
            exit(withError: error)
        }
    }
}
