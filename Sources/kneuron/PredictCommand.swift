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

    @Option(help: "Fine-tuned EsmForSequenceClassification: a HuggingFace directory (config.json + model.safetensors or pytorch_model.bin), e.g. runs/NAME.artifacts/final.")
    var model: String
    @Option(parsing: .upToNextOption, help: "FASTA file(s).") var fasta: [String]
    @Option(help: "Output TSV (default: stdout).") var out: String?
    @Option(help: "Tokens per sequence including <cls> and <eos> (default: the model's positions, at most 1024; more than the model's max_position_embeddings is an error).") var maxLength: Int?
    @Option(help: "Longer sequences: head, center or reject.") var crop: String = "head"
    @Option(help: "Sequences per forward pass.") var batchSize = 8

    func run() throws {
        guard let policy = CropPolicy(rawValue: crop) else {
            throw ValidationError("--crop must be one of \(CropPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let maxLength, maxLength < 3 { throw ValidationError("--max-length must be at least 3") }
        let s = try Predictor.run(model: model, fasta: fasta, output: out, maxLength: maxLength, crop: policy, batchSize: batchSize)
        let err = FileHandle.standardError
        for note in s.notes { err.write(Data("note: \(note)\n".utf8)) }
        for line in CroppedSequence.report(s.crops, total: s.predicted, maxLength: s.maxLength) { err.write(Data((line + "\n").utf8)) }
        for r in s.rejected {
            err.write(Data("not predicted: \(r.file):\(r.line.map(String.init) ?? "?") \(r.id ?? "(no id)"): \(r.reason)\n".utf8))
        }
        err.write(Data(("columns logit_i / prob_i are the classes " + s.classes.enumerated().map { "\($0.offset) = \($0.element)" }.joined(separator: ", ") + " (the checkpoint's id2label)\n").utf8))
        if s.nonFinite > 0 {
            err.write(Data("warning: \(s.nonFinite) sequences have non-finite logits (NaN or infinite): their predicted class is NaN; the checkpoint's weights or config (e.g. layer_norm_eps) are broken\n".utf8))
        }
        err.write(Data("predicted \(s.predicted) sequences\(out.map { " into \($0)" } ?? ""); \(s.crops.count) cropped; \(s.rejected.count) not predicted\n".utf8))
    }
}
