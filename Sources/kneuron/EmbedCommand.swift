import ArgumentParser
import ESM
import Foundation
import Pipeline
import ProteinData
import Store

/// `kneuron embed --model DIR --fasta F... --db PATH [--layer L]`: stores per-sequence
/// mean and `<cls>` embeddings in the `embeddings` table.
struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Store per-sequence mean-over-residues and <cls> embeddings of one layer in SQLite.",
        discussion: "Layer 0 = embeddings, i = output of block i, default = last_hidden_state (after the final LayerNorm). Vectors are little-endian float32 BLOBs in table `embeddings`.")

    @Option(help: "ESM-2 checkpoint: a HuggingFace directory (config.json + model.safetensors or pytorch_model.bin) or a fair-esm ESM-2 .pt file.") var model: String
    @Option(parsing: .upToNextOption, help: "FASTA file(s).") var fasta: [String]
    @Option(help: "SQLite database (created when missing; a run database works too).") var db: String
    @Option(help: "Layer: 0 ... num_hidden_layers (default: the last, after the final LayerNorm).") var layer: Int?
    @Option(help: "Tokens per sequence including <cls> and <eos> (default: the model's positions, at most 1024; more than the model's max_position_embeddings is an error).") var maxLength: Int?
    @Option(help: "Longer sequences: head, center or reject.") var crop: String = "head"

    func run() throws {
        guard let policy = CropPolicy(rawValue: crop) else {
            throw ValidationError("--crop must be one of \(CropPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let maxLength, maxLength < 3 { throw ValidationError("--max-length must be at least 3") }
        // A checkpoint that cannot be read is reported before the database is created.
        _ = try Checkpoint.inspect(directory: model)
        let database = try RunDatabase(path: db)
        let s = try Embedder.run(model: model, fasta: fasta, db: database, layer: layer, maxLength: maxLength, crop: policy)
        let err = FileHandle.standardError
        for note in s.notes { err.write(Data("note: \(note)\n".utf8)) }
        for line in CroppedSequence.report(s.crops, total: s.embedded, maxLength: s.maxLength) { err.write(Data((line + "\n").utf8)) }
        for r in s.rejected {
            err.write(Data("not embedded: \(r.file):\(r.line.map(String.init) ?? "?") \(r.id ?? "(no id)"): \(r.reason)\n".utf8))
        }
        err.write(Data("embedded \(s.embedded) sequences into \(db) (table embeddings); \(s.crops.count) cropped; \(s.rejected.count) not embedded\n".utf8))
    }
}
