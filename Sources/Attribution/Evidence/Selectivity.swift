import ESM
import Foundation

/// Motif selectivity, the ground truth of the planted-knowledge benchmark (issue 12): how well a
/// neuron's activation tells the residues of a planted motif from every other residue.
///
/// For neuron n (output unit of a linear map, `LinearModule`; for `intermediate` after GELU)
/// and motif group g, the selectivity is the area under the ROC curve of the activation y_n at
/// the residue positions inside group g's motifs (positives) against all other residue positions
/// of the same sequences (negatives; `<cls>`, `<eos>` and padding are neither):
/// AUROC = U / (n_pos n_neg), U the Mann-Whitney statistic with midranks for ties
/// (Hanley & McNeil 1982, Radiology 143:29; equal to sklearn's `roc_auc_score`). 1 = every motif
/// residue activates the neuron more than every other residue; 0.5 = no better than chance.
public enum MotifSelectivity {
    /// AUROC of `values` for the `positive` ones against the others (midranks for ties), or nil
    /// when either group is empty.
    /// - Precondition: `values.count == positive.count`.
    public static func auroc(_ values: [Float], positive: [Bool]) -> Double? {
        precondition(values.count == positive.count, "one label per value")
        return aurocs(values, labels: positive.map { $0 ? 0 : -1 }, groups: 1)[0]
    }

    /// For each group g in 0 ..< groups, the AUROC of the values labelled g against all other
    /// values (labels outside 0 ..< groups are negatives for every group), from one sort.
    /// - Returns: one entry per group, nil when the group or its complement is empty.
    /// - Precondition: `values.count == labels.count`.
    public static func aurocs(_ values: [Float], labels: [Int], groups: Int) -> [Double?] {
        precondition(values.count == labels.count, "one label per value")
        let order = values.indices.sorted { values[$0] < values[$1] }
        var rankSum = [Double](repeating: 0, count: groups), count = [Int](repeating: 0, count: groups)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && values[order[j + 1]] == values[order[i]] { j += 1 }
            let midrank = Double(i + j + 2) / 2   // 1-based ranks i + 1 ... j + 1
            for k in i ... j {
                let g = labels[order[k]]
                if g >= 0 && g < groups { rankSum[g] += midrank; count[g] += 1 }
            }
            i = j + 1
        }
        return (0 ..< groups).map { g in
            let nPos = count[g], nNeg = values.count - nPos
            guard nPos > 0, nNeg > 0 else { return nil }
            return (rankSum[g] - Double(nPos) * Double(nPos + 1) / 2) / (Double(nPos) * Double(nNeg))
        }
    }

    /// One sequence: its tokens (`<cls>` residues `<eos>`) and, per residue (token position
    /// 1 ... count), the motif group it belongs to (0 ..< groups) or -1 for none.
    public struct Sequence: Sendable {
        /// Token ids including `<cls>` and `<eos>`.
        public var tokens: [Int32]
        /// Motif group of residue r (token position r + 1), -1 outside every planted class motif;
        /// `tokens.count - 2` entries.
        public var group: [Int]
        /// Creates a sequence.
        /// - Precondition: `group.count == tokens.count - 2`.
        public init(tokens: [Int32], group: [Int]) {
            precondition(group.count == tokens.count - 2, "one group per residue")
            self.tokens = tokens; self.group = group
        }
    }

    /// The selectivity of the neurons `neurons` of `layout` (default: all) for every motif group,
    /// from one forward pass per batch of `sequences` that captures only the sites those neurons
    /// belong to. The activations of those neurons at every residue are held in memory
    /// (`neurons.count` x residues floats): callers bound the memory by passing shards of neurons.
    /// A neuron's activations, hence its AUROCs, do not depend on which other neurons are in the
    /// shard (the same forward in the same batches), so any sharding gives the same values.
    /// - Returns: `result[k][g]` for neuron `neurons.lowerBound + k` of `layout` and group g; nil
    ///   where a group has no residue or covers every residue.
    /// - Precondition: `layout.granularity == .neuron`, the layout is `model`'s and `neurons` lies in `0 ..< layout.count`.
    public static func compute(model: ESMClassifier, sequences: [Sequence], layout: ScoreLayout, groups: Int, neurons: Range<Int>? = nil,
                               batchSize: Int = 8) -> [[Double?]] {
        precondition(layout.granularity == .neuron, "selectivity is per neuron")
        let range = neurons ?? 0 ..< layout.count
        precondition(range.lowerBound >= 0 && range.upperBound <= layout.count, "neurons \(range) outside the layout's 0..<\(layout.count)")
        // The blocks the shard touches, and the rows of each that are in it.
        let blocks = layout.blocks.compactMap { b -> (block: ScoreLayout.Block, rows: Range<Int>)? in
            let lo = max(range.lowerBound, b.offset), hi = min(range.upperBound, b.offset + b.rows)
            return lo < hi ? (b, lo - b.offset ..< hi - b.offset) : nil
        }
        let residues = sequences.reduce(0) { $0 + $1.group.count }
        var activations = [[Float]](repeating: [], count: range.count)
        for k in activations.indices { activations[k].reserveCapacity(residues) }
        var labels: [Int] = []
        labels.reserveCapacity(residues)
        var start = 0
        while start < sequences.count {
            let chunk = Array(sequences[start ..< min(start + max(1, batchSize), sequences.count)])
            let batch = TokenBatch(sequences: chunk.map(\.tokens), padTokenId: Int32(model.config.padTokenId))
            _ = model.forward(batch, hooks: ForwardHooks(capture: Set(blocks.map(\.block.site))))
            for (block, rows) in blocks {
                let y = model.output(at: block.site)   // (B, T, rows)
                let first = block.offset + rows.lowerBound - range.lowerBound
                for (b, s) in chunk.enumerated() {
                    let base = b * batch.length * block.rows
                    for r in 0 ..< s.group.count {
                        let row = base + (r + 1) * block.rows   // token position r + 1: skip <cls>
                        for i in rows { activations[first + i - rows.lowerBound].append(y[row + i]) }
                    }
                }
            }
            for s in chunk { labels += s.group }
            start += chunk.count
        }
        return activations.map { aurocs($0, labels: labels, groups: groups) }
    }
}
