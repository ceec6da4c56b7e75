import ESM
import Foundation

/// How an ablated element is replaced (spec `evaluation.ablation`).
public enum Ablation: String, Codable, Sendable, CaseIterable {
    /// Weights, or a neuron's weight row and bias, set to 0 (arXiv 2312.10770: "all weights and
    /// biases associated with the neuron are set to zero"). Every granularity.
    case zero
    /// A neuron's activation replaced at every position by its mean over the selection split's
    /// tokens (mean ablation, the usual remedy for the out-of-distribution inputs zero-ablation
    /// creates; e.g. Wang et al. 2022, arXiv 2211.00593, section 3). Neuron granularity only: a
    /// single weight has no activation of its own.
    case mean
}

/// Edits of neuron activations made by weight surgery, so that the edited model is an ordinary
/// parameter buffer (same forward, same batching, no hook): every edit below is exact, not an
/// approximation. Neuron i of site (l, m) is output unit i of that linear map; for
/// `intermediate` it is the activation after GELU (Dai et al. 2021, arXiv 2104.08696).
///
/// - scaling activation y_i by s: for a linear map's own output (query, key, value,
///   attention output, output) weight row i and bias i are multiplied by s (y_i = W_i x + b_i);
///   for `intermediate`, whose activation gelu(W_i x + b_i) is not linear in them, column i of the
///   `output.dense` weight that reads it is multiplied by s instead (the only reader of h_i);
/// - replacing y_i by a constant c: row i set to 0 and bias i to c; for `intermediate`, row i and
///   bias i set to 0 (h_i = gelu(0) = 0) and c times column i of `output.dense` added to its bias.
public enum NeuronEdit {
    /// The parameters with the activation of neuron k of `layout` multiplied by `factors[k]`
    /// (Dai et al.'s suppress (0) and amplify (2); EleutherAI `knowledge-neurons`
    /// `suppress_knowledge` / `enhance_knowledge`). A factor of exactly 1 leaves every value untouched.
    /// - Precondition: `layout.granularity == .neuron`, `factors.count == layout.count`.
    public static func scaled(_ parameters: ParameterBuffer, layout: ScoreLayout, factors: [Float]) -> ParameterBuffer {
        precondition(layout.granularity == .neuron && factors.count == layout.count, "factors do not match the neuron layout")
        var p = parameters
        let pl = parameters.layout
        p.values.withUnsafeMutableBufferPointer { v in
            for block in layout.blocks {
                let l = block.site.layer
                for i in 0 ..< block.rows {
                    let s = factors[block.offset + i]
                    if s == 1 { continue }
                    if block.site.module == .intermediate {
                        let w2 = pl.spec(layer: l, .outputWeight)   // (H, I)
                        let cols = w2.shape[1]
                        for r in 0 ..< w2.shape[0] { v[w2.offset + r * cols + i] *= s }
                    } else {
                        let w = pl.spec(layer: l, block.site.module.weight), b = pl.spec(layer: l, block.site.module.bias)
                        let cols = w.shape[1]
                        for j in 0 ..< cols { v[w.offset + i * cols + j] *= s }
                        v[b.offset + i] *= s
                    }
                }
            }
        }
        return p
    }

    /// The parameters with every neuron of `layout` not `kept` replaced by its mean activation
    /// `means[k]` (`NeuronEdit.means`) at every position; kept neurons are unchanged. Sites are
    /// edited in canonical order (a layer's `intermediate` before its `output`), so an `output`
    /// neuron that is itself replaced ends up constant whatever was added to its bias.
    /// - Precondition: `layout.granularity == .neuron`, `kept.count == means.count == layout.count`.
    public static func meanAblated(_ parameters: ParameterBuffer, layout: ScoreLayout, kept: [Bool], means: [Double]) -> ParameterBuffer {
        precondition(layout.granularity == .neuron && kept.count == layout.count && means.count == layout.count,
                     "mask or means do not match the neuron layout")
        var p = parameters
        let pl = parameters.layout
        p.values.withUnsafeMutableBufferPointer { v in
            for block in layout.blocks {
                let l = block.site.layer
                let w = pl.spec(layer: l, block.site.module.weight), b = pl.spec(layer: l, block.site.module.bias)
                let cols = w.shape[1]
                for i in 0 ..< block.rows where !kept[block.offset + i] {
                    for j in 0 ..< cols { v[w.offset + i * cols + j] = 0 }
                    let c = Float(means[block.offset + i])
                    if block.site.module == .intermediate {
                        v[b.offset + i] = 0
                        let w2 = pl.spec(layer: l, .outputWeight), b2 = pl.spec(layer: l, .outputBias)
                        let icols = w2.shape[1]
                        for r in 0 ..< w2.shape[0] { v[b2.offset + r] += c * v[w2.offset + r * icols + i] }
                    } else {
                        v[b.offset + i] = c
                    }
                }
            }
        }
        return p
    }

    /// The mean activation of every neuron of `layout` over all (non-padding) token positions of
    /// `sequences` (`<cls>` and `<eos>` included: every position the replacement acts on), pooled
    /// over tokens, float64 accumulation: means[k] = sum_s sum_t y_stk / sum_s T_s.
    /// Sequences run in padded batches of `batchSize`.
    /// - Returns: `layout.count` means (zeros for no sequences).
    /// - Precondition: `layout.granularity == .neuron` and the layout is `model`'s.
    public static func means(model: ESMClassifier, sequences: [[Int32]], layout: ScoreLayout, batchSize: Int = 8) -> [Double] {
        precondition(layout.granularity == .neuron, "means are per neuron")
        var sums = [Double](repeating: 0, count: layout.count)
        var tokens = 0
        var start = 0
        while start < sequences.count {
            let chunk = Array(sequences[start ..< min(start + max(1, batchSize), sequences.count)])
            let batch = TokenBatch(sequences: chunk, padTokenId: Int32(model.config.padTokenId))
            _ = model.forward(batch, hooks: ForwardHooks(capture: Set(layout.sites)))
            for block in layout.blocks {
                let y = model.output(at: block.site)   // (B, T, rows)
                for b in 0 ..< batch.batchSize {
                    let len = batch.lengths[b], base = b * batch.length * block.rows
                    accumulateOverPositions(&sums, at: block.offset, y: y[base ..< base + len * block.rows], g: nil,
                                            length: len, width: block.rows)
                }
            }
            tokens += batch.lengths.reduce(0, +)
            start += chunk.count
        }
        return tokens == 0 ? sums : sums.map { $0 / Double(tokens) }
    }
}

/// Model randomisation for the sanity checks of Adebayo et al. 2018 ("Sanity Checks for
/// Saliency Maps", arXiv 1810.03292, section 3.1, cascading randomisation from the top).
public enum ModelRandomization {
    /// The parameters with the classification head and the top `layers` blocks (layers
    /// L - layers ..< L) replaced by a fresh initialisation of the same shape
    /// (`ESMClassifier(config:seed:)`, HF `_init_weights`: N(0, 0.02^2) weights, zero biases,
    /// unit LayerNorm); embeddings and lower blocks are kept. `layers` = 0 randomises the head only.
    /// - Precondition: `0 <= layers <= numHiddenLayers`.
    public static func cascading(_ parameters: ParameterBuffer, layers: Int, seed: UInt64) -> ParameterBuffer {
        let config = parameters.layout.config
        precondition(layers >= 0 && layers <= config.numHiddenLayers, "cannot randomise \(layers) of \(config.numHiddenLayers) layers")
        let fresh = ESMClassifier(config: config, seed: seed).parameters
        var p = parameters
        var names = [GlobalTensor.classifierDenseWeight, .classifierDenseBias, .classifierOutWeight, .classifierOutBias].map(\.rawValue)
        for l in config.numHiddenLayers - layers ..< config.numHiddenLayers {
            names += LayerTensor.allCases.map { ParameterLayout.name(layer: l, $0) }
        }
        for name in names {
            let s = parameters.layout.spec(named: name)!   // every name is the layout's own
            p.values.replaceSubrange(s.range, with: fresh.values[s.range])
        }
        return p
    }
}
