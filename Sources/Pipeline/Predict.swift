import ESM
import Foundation
import ProteinData

/// Errors of `Predictor`.
public enum PredictError: Error, CustomStringConvertible {
    /// The checkpoint has no trained classification head (e.g. an `EsmForMaskedLM` directory).
    case noClassifier(directory: String, initialised: [String])
    /// The output file cannot be written.
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case .noClassifier(let dir, let tensors):
            return "\(dir) has no trained classification head (missing \(tensors.joined(separator: ", "))); "
                + "give a fine-tuned EsmForSequenceClassification directory, e.g. <run>.artifacts/final"
        case .cannotWrite(let path, let reason):
            return "cannot write \(path): \(reason)"
        }
    }
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
        /// Records not predicted, with file, line, ID and reason.
        public var rejected: [RejectedRecord] = []
        /// `id: N residues cropped to M (policy)` lines.
        public var crops: [String] = []
    }

    /// Predicts every record of `fasta` with the checkpoint in `model`, writing the TSV to
    /// `output` (stdout when nil), in batches of `batchSize` sequences.
    /// - Throws: checkpoint errors (`CheckpointError`, `SafeTensorsError`), `PredictError`,
    ///   FASTA read errors for a file that cannot be read at all.
    public static func run(model directory: String, fasta: [String], output: String?, maxLength: Int = 1024,
                           crop: CropPolicy = .head, batchSize: Int = 8) throws -> Summary {
        let loaded = try Checkpoint.load(directory: directory)
        if !loaded.initialisedTensors.isEmpty {
            throw PredictError.noClassifier(directory: directory, initialised: loaded.initialisedTensors)
        }
        let model = try ESMClassifier(config: loaded.config, parameters: loaded.parameters)
        let C = loaded.config.numLabels
        let tokenizer = Tokenizer(maxLength: min(maxLength, loaded.config.maxPositionEmbeddings), cropPolicy: crop)
        var summary = Summary()
        var rows: [(id: String, tokens: [Int32])] = []
        for path in fasta {
            let read = try FastaReader.read(path: path)
            summary.rejected += read.rejected
            for r in read.records {
                do {
                    let t = try tokenizer.encode(r.sequence)
                    if t.cropped {
                        summary.crops.append("\(r.id): \(t.originalLength) residues cropped to \(t.residueEnd - t.residueStart) (residues \(t.residueStart + 1)-\(t.residueEnd), policy \(crop.rawValue))")
                    }
                    rows.append((r.id, t.ids))
                } catch {
                    summary.rejected.append(RejectedRecord(file: path, line: r.line, id: r.id, reason: "\(error)"))
                }
            }
        }
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
                let name = loaded.config.id2label?[String(best)] ?? String(best)
                text += row.id + "\t" + l.map { String($0) }.joined(separator: "\t") + "\t"
                    + p.map { String($0) }.joined(separator: "\t") + "\t" + name + "\n"
            }
            start += chunk.count
        }
        summary.predicted = rows.count
        if let output {
            do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                throw PredictError.cannotWrite(path: output, reason: "\(error)")
            }
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
        return summary
    }
}
