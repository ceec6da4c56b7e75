import ArgumentParser
import Foundation
import Pipeline
import ProteinData

/// `kneuron predict --model DIR --fasta F... [--out PATH]`: class probabilities per sequence.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify the sequences of FASTA files with a fine-tuned checkpoint (TSV of logits, probabilities, predicted class).",
        discussion: "Crops and records that cannot be used are reported on stderr with file, line and reason.")

    @Option(help: "Fine-tuned EsmForSequenceClassification directory (config.json + model.safetensors), e.g. runs/NAME.artifacts/final.")
    var model: String
    @Option(parsing: .upToNextOption, help: "FASTA file(s).") var fasta: [String]
    @Option(help: "Output TSV (default: stdout).") var out: String?
    @Option(help: "Tokens per sequence including <cls> and <eos> (at most the model's positions).") var maxLength = 1024
    @Option(help: "Longer sequences: head, center or reject.") var crop: String = "head"
    @Option(help: "Sequences per forward pass.") var batchSize = 8

    func run() throws {
        guard let policy = CropPolicy(rawValue: crop) else {
            throw ValidationError("--crop must be one of \(CropPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard maxLength >= 3 else { throw ValidationError("--max-length must be at least 3") }
        let s = try Predictor.run(model: model, fasta: fasta, output: out, maxLength: maxLength, crop: policy, batchSize: batchSize)
        let err = FileHandle.standardError
        for c in s.crops { err.write(Data("cropped: \(c)\n".utf8)) }
        for r in s.rejected {
            err.write(Data("not predicted: \(r.file):\(r.line.map(String.init) ?? "?") \(r.id ?? "(no id)"): \(r.reason)\n".utf8))
        }
        err.write(Data("predicted \(s.predicted) sequences\(out.map { " into \($0)" } ?? ""); \(s.crops.count) cropped; \(s.rejected.count) not predicted\n".utf8))
    }
}
