import ArgumentParser
import Pipeline

struct IngestCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "ingest", abstract: "Read FASTA and EC label files into the database.")
    static let stage = Stage.ingest
    @OptionGroup var options: RunOptions
}

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

struct AttributeCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "attribute", abstract: "Score every q/k/v weight by activation and integrated gradients, in resumable shards.")
    static let stage = Stage.attribute
    @OptionGroup var options: RunOptions
}

struct SelectCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "select", abstract: "Keep the top fraction of weights per method, and random baselines.")
    static let stage = Stage.select
    @OptionGroup var options: RunOptions
}

struct EvaluateCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "evaluate", abstract: "Test accuracy and macro-F1 of the full model and every submodel.")
    static let stage = Stage.evaluate
    @OptionGroup var options: RunOptions
}

struct ReportCommand: StageCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Print and write the accuracy table and kept-weight densities.")
    static let stage = Stage.report
    @OptionGroup var options: RunOptions
}
