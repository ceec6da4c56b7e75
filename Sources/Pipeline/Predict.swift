import ESM
import Foundation
import ProteinData
import Store

/// Errors of `Predictor`.
public enum PredictError: Error, CustomStringConvertible {
    /// The checkpoint has no trained classification head (e.g. an `EsmForMaskedLM` directory).
    case noClassifier(directory: String, initialised: [String])
    /// The output file cannot be written.
    case cannotWrite(path: String, reason: String)
    /// `--max-length` is more than the model's positions (`max_position_embeddings`).
    case maxLengthTooLong(asked: Int, limit: Int, directory: String)

    public var description: String {
        switch self {
        case .noClassifier(let dir, let tensors):
            return "\(dir) has no trained classification head (missing \(tensors.joined(separator: ", "))); "
                + "give a fine-tuned EsmForSequenceClassification directory, e.g. <run>.artifacts/final"
        case .cannotWrite(let path, let reason):
            return "cannot write \(path): \(reason)"
        case .maxLengthTooLong(let asked, let limit, let dir):
            return "--max-length \(asked) is more than the \(limit) positions of the model in \(dir) (max_position_embeddings in config.json; ESM-2 has 1026); give --max-length \(limit) or less"
        }
    }
}

/// A sequence cropped to fit the tokenizer's maximum length, with where it came from.
public struct CroppedSequence: Sendable, Equatable, CustomStringConvertible {
    /// FASTA file and 1-based line of the record's header.
    public var file: String
    public var line: Int
    /// The record's ID.
    public var id: String
    /// Residues before cropping.
    public var originalLength: Int
    /// Residues kept, 0-based half-open `[start, end)`.
    public var start: Int
    public var end: Int
    /// The crop policy applied.
    public var policy: CropPolicy

    /// `FILE:LINE ID: N residues cropped to M (residues a-b, policy P)`.
    public var description: String {
        "\(file):\(line) \(id): \(originalLength) residues cropped to \(end - start) (residues \(start + 1)-\(end), policy \(policy.rawValue))"
    }

    /// The lines `predict` and `embed` print for `crops` of `total` sequences: a count, then the
    /// first `limit` crops (file, line, ID, lengths), then how many more there are.
    public static func report(_ crops: [CroppedSequence], total: Int, maxLength: Int, limit: Int = 5) -> [String] {
        guard let first = crops.first else { return [] }
        var lines = ["cropped: \(crops.count) of \(total) sequences are longer than \(maxLength - 2) residues (--max-length \(maxLength) tokens with <cls> and <eos>) and were cropped, policy \(first.policy.rawValue)"]
        lines += crops.prefix(limit).map { "cropped: \($0)" }
        if crops.count > limit { lines.append("cropped: ... and \(crops.count - limit) more") }
        return lines
    }
}

/// The tokenizer of `predict` and `embed` for the model `config` in `directory`: at most
/// `maxLength` tokens (nil = the model's positions, at most 1024).
/// - Throws: `PredictError.maxLengthTooLong` when `maxLength` exceeds the model's positions.
func tokenizer(maxLength: Int?, crop: CropPolicy, config: ESMConfig, directory: String) throws -> Tokenizer {
    let limit = config.maxPositionEmbeddings
    if let m = maxLength, m > limit { throw PredictError.maxLengthTooLong(asked: m, limit: limit, directory: directory) }
    return Tokenizer(maxLength: maxLength ?? min(1024, limit), cropPolicy: crop)
}

/// Reads FASTA files and tokenizes every record for `predict` and `embed`: usable records in
/// input order, the rejected ones (reader rejections and tokenizer refusals, with file, line,
/// ID and reason; a repeated ID is rejected, its first record kept) and the cropped ones.
/// - Throws: FASTA read errors for a file that cannot be read at all.
func readAndTokenize(_ fasta: [String], tokenizer: Tokenizer)
    throws -> (rows: [(id: String, tokens: TokenizedSequence)], rejected: [RejectedRecord], crops: [CroppedSequence]) {
    var rows: [(id: String, tokens: TokenizedSequence)] = []
    var rejected: [RejectedRecord] = []
    var crops: [CroppedSequence] = []
    var firstSeen: [String: String] = [:]   // id -> "file:line" of its first record
    for path in fasta {
        let read = try FastaReader.read(path: path)
        rejected += read.rejected
        for r in read.records {
            if let first = firstSeen[r.id] {
                rejected.append(RejectedRecord(file: path, line: r.line, id: r.id,
                                               reason: "duplicate ID (first at \(first)); only the first record with an ID is used"))
                continue
            }
            firstSeen[r.id] = "\(path):\(r.line)"
            do {
                let t = try tokenizer.encode(r.sequence)
                if t.cropped {
                    crops.append(CroppedSequence(file: path, line: r.line, id: r.id, originalLength: t.originalLength,
                                                 start: t.residueStart, end: t.residueEnd, policy: tokenizer.cropPolicy))
                }
                rows.append((r.id, t))
            } catch {
                rejected.append(RejectedRecord(file: path, line: r.line, id: r.id, reason: "\(error)"))
            }
        }
    }
    return (rows, rejected, crops)
}

/// `kneuron predict`: classifies every sequence of FASTA files with a fine-tuned checkpoint.
///
/// Output: a TSV with header `id`, `logit_0..logit_{C-1}`, `prob_0..prob_{C-1}` (softmax),
/// `predicted` (the `id2label` name of the arg-max class when the config has one, else its
/// index), one row per usable record in input order. Sequences longer than `maxLength - 2`
/// residues are cropped by `crop` (keeping `<cls>`/`<eos>`), and each crop is reported;
/// records that cannot be used (unknown residue letters, empty, duplicate IDs with different
/// sequences, or refused by `crop: reject`) are reported with file, line and reason.
public enum Predictor {
    /// What `run` did.
    public struct Summary: Sendable {
        /// Rows written.
        public var predicted = 0
        /// The class of each `logit_i` / `prob_i` column: the checkpoint's `id2label` (its index when absent).
        public var classes: [String] = []
        /// Sequences whose logits are not finite (`predicted` is then `NaN`).
        public var nonFinite = 0
        /// Records not predicted, with file, line, ID and reason.
        public var rejected: [RejectedRecord] = []
        /// The cropped sequences, in input order.
        public var crops: [CroppedSequence] = []
        /// The tokenizer's maximum length, tokens.
        public var maxLength = 0
        /// What the checkpoint's reader noted (`Checkpoint.Contents.notes`).
        public var notes: [String] = []
    }

    /// Predicts every record of `fasta` with the checkpoint in `model`, writing the TSV to
    /// `output` (stdout when nil), in batches of `batchSize` sequences.
    /// - Throws: checkpoint errors (`CheckpointError`, `SafeTensorsError`), `PredictError`,
    ///   FASTA read errors for a file that cannot be read at all.
    public static func run(model directory: String, fasta: [String], output: String?, maxLength: Int? = nil,
                           crop: CropPolicy = .head, batchSize: Int = 8) throws -> Summary {
        let loaded: (config: ESMConfig, parameters: ParameterBuffer, initialisedTensors: [String], contents: Checkpoint.Contents)
        do {
            loaded = try Checkpoint.loadWithContents(directory: directory)
        } catch CheckpointError.numLabelsRequired {
            throw PredictError.noClassifier(directory: directory, initialised: ["classifier.*"])
        }
        if !loaded.initialisedTensors.isEmpty {
            throw PredictError.noClassifier(directory: directory, initialised: loaded.initialisedTensors)
        }
        let model = try ESMClassifier(config: loaded.config, parameters: loaded.parameters)
        let C = loaded.config.numLabels
        let tokenizer = try tokenizer(maxLength: maxLength, crop: crop, config: loaded.config, directory: directory)
        let input = try readAndTokenize(fasta, tokenizer: tokenizer)
        var summary = Summary()
        summary.rejected = input.rejected
        summary.crops = input.crops
        summary.maxLength = tokenizer.maxLength
        summary.notes = loaded.contents.notes
        summary.classes = (0 ..< C).map { loaded.config.id2label?[String($0)] ?? String($0) }
        let rows = input.rows.map { (id: $0.id, tokens: $0.tokens.ids) }
        var text = "id\t" + (0 ..< C).map { "logit_\($0)" }.joined(separator: "\t") + "\t"
            + (0 ..< C).map { "prob_\($0)" }.joined(separator: "\t") + "\tpredicted\n"
        var start = 0
        while start < rows.count {
            let chunk = rows[start ..< min(start + max(1, batchSize), rows.count)]
            let logits = model.forward(TokenBatch(sequences: chunk.map(\.tokens), padTokenId: Int32(loaded.config.padTokenId)))
            let probabilities = Loss.softmax(logits: logits, classes: C)
            for (b, row) in chunk.enumerated() {
                let l = logits[(b * C) ..< ((b + 1) * C)], p = probabilities[(b * C) ..< ((b + 1) * C)]
                var best = 0
                for c in 1 ..< max(1, C) where l[l.startIndex + c] > l[l.startIndex + best] { best = c }
                // A NaN logit (a broken checkpoint) has no class; a label's tabs and newlines would break the TSV.
                let finite = l.allSatisfy(\.isFinite)
                if !finite { summary.nonFinite += 1 }
                let label = loaded.config.id2label?[String(best)] ?? String(best)
                let name = finite ? String(label.map { $0 == "\t" || $0.isNewline ? " " : $0 }) : "NaN"
                text += row.id + "\t" + l.map { String($0) }.joined(separator: "\t") + "\t"
                    + p.map { String($0) }.joined(separator: "\t") + "\t" + name + "\n"
            }
            start += chunk.count
        }
        summary.predicted = rows.count
        if let output {
            if fasta.contains(where: { URL(fileURLWithPath: $0).standardizedFileURL == URL(fileURLWithPath: output).standardizedFileURL }) {
                throw PredictError.cannotWrite(path: output, reason: "it is one of the input FASTA files; choose another --out")
            }
            do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                throw PredictError.cannotWrite(path: output, reason: (error as NSError).localizedDescription + " Check that the directory exists and is writable.")
            }
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        return summary
    }
}

/// `kneuron embed`: per-sequence mean-over-residues and `<cls>` embeddings of one layer.
public enum Embedder {
    /// What `run` did.
    public struct Summary: Sendable {
        /// Sequences embedded (two rows each: mean and cls).
        public var embedded = 0
        /// Records not embedded, with file, line, ID and reason.
        public var rejected: [RejectedRecord] = []
        /// The cropped sequences, in input order.
        public var crops: [CroppedSequence] = []
        /// The tokenizer's maximum length, tokens.
        public var maxLength = 0
        /// What the checkpoint's reader noted (`Checkpoint.Contents.notes`).
        public var notes: [String] = []
    }

    /// Embeds every usable record of `fasta` with the checkpoint in `model` and stores the
    /// `mean` and `cls` vectors (H floats each) of `layer` in `db`'s `embeddings` table.
    /// `layer`: 0 = embeddings after token dropout, i = output of block i, nil or
    /// `num_hidden_layers` = HF `last_hidden_state` (after `emb_layer_norm_after`).
    /// - Throws: checkpoint errors (`CheckpointError`, `SafeTensorsError`), `StoreError`, FASTA
    ///   read errors, and `EmbedError.badLayer` for a layer outside 0...num_hidden_layers.
    public static func run(model directory: String, fasta: [String], db: RunDatabase, layer: Int?, maxLength: Int? = nil,
                           crop: CropPolicy = .head, batchSize: Int = 8) throws -> Summary {
        // Embeddings do not use the classification head: an EsmModel / EsmForMaskedLM
        // checkpoint gets a placeholder 2-class head that is never read.
        let loaded: (config: ESMConfig, parameters: ParameterBuffer, initialisedTensors: [String], contents: Checkpoint.Contents)
        do {
            loaded = try Checkpoint.loadWithContents(directory: directory)
        } catch CheckpointError.numLabelsRequired {
            loaded = try Checkpoint.loadWithContents(directory: directory, numLabels: 2)
        }
        let L = loaded.config.numHiddenLayers, H = loaded.config.hiddenSize
        let chosen = layer ?? L
        guard chosen >= 0 && chosen <= L else { throw EmbedError.badLayer(layer: chosen, layers: L) }
        let model = try ESMClassifier(config: loaded.config, parameters: loaded.parameters)
        // The model's identity: the SHA-256 of its (first) weight file, as stored.
        guard let first = Checkpoint.weightFilePaths(directory).first else { throw CheckpointError.missingWeights(directory: directory) }
        let sha = try Hashing.sha256(file: first).hex
        let tokenizer = try tokenizer(maxLength: maxLength, crop: crop, config: loaded.config, directory: directory)
        let input = try readAndTokenize(fasta, tokenizer: tokenizer)
        var summary = Summary()
        summary.rejected = input.rejected
        summary.crops = input.crops
        summary.maxLength = tokenizer.maxLength
        summary.notes = loaded.contents.notes
        let rows = input.rows
        var records: [EmbeddingRecord] = []
        var start = 0
        while start < rows.count {
            let chunk = Array(rows[start ..< min(start + max(1, batchSize), rows.count)])
            let batch = TokenBatch(sequences: chunk.map(\.tokens.ids), padTokenId: Int32(loaded.config.padTokenId))
            _ = model.forward(batch)
            let states = chosen == 0 ? model.embeddingOutput()
                : chosen == L ? model.finalHiddenStates() : model.hiddenStates(afterLayer: chosen - 1)
            let T = batch.length
            for (b, row) in chunk.enumerated() {
                let n = row.tokens.ids.count
                let cls = Array(states[(b * T) * H ..< (b * T + 1) * H])
                var mean = [Float](repeating: 0, count: H)
                let residues = max(0, n - 2)
                if residues > 0 {
                    for t in 1 ..< n - 1 {
                        let base = (b * T + t) * H
                        for j in 0 ..< H { mean[j] += states[base + j] }
                    }
                    for j in 0 ..< H { mean[j] /= Float(residues) }
                }
                for (pooling, v) in [("mean", mean), ("cls", cls)] {
                    records.append(EmbeddingRecord(modelSHA256: sha, sequenceID: row.id, layer: chosen, pooling: pooling,
                                                   vector: v, residues: residues, cropped: row.tokens.cropped))
                }
            }
            start += chunk.count
        }
        try db.commitEmbeddings(records)
        summary.embedded = rows.count
        return summary
    }
}

/// Errors of `Embedder`.
public enum EmbedError: Error, CustomStringConvertible {
    /// `--layer` outside 0...num_hidden_layers.
    case badLayer(layer: Int, layers: Int)

    public var description: String {
        switch self {
        case .badLayer(let layer, let layers):
            return "layer \(layer) does not exist: give 0 (embeddings) ... \(layers) (last_hidden_state)"
        }
    }
}
