import ESM
import Foundation

/// The scored weights of a model: every element of the query, key and value weight
/// matrices of every layer, flattened in canonical order `(layer, module, row, col)` with
/// modules ordered query, key, value; `row` is the output unit and `col` the input
/// feature of the PyTorch `(out, in)` weight. Count = layers x 3 x H x H.
public struct ScoredWeights: Sendable, Equatable {
    /// Number of transformer layers (`config.numHiddenLayers`).
    public let layers: Int
    /// Hidden size H (`config.hiddenSize`); every q/k/v weight matrix is H x H.
    public let hidden: Int
    /// Creates the shape for a config.
    public init(config: ESMConfig) { layers = config.numHiddenLayers; hidden = config.hiddenSize }
    /// Elements per matrix, H x H.
    public var perMatrix: Int { hidden * hidden }
    /// Total number of scored weights.
    public var count: Int { layers * 3 * perMatrix }
    /// Offset of matrix (layer, module) in the canonical order.
    public func offset(layer: Int, module: AttentionModule) -> Int {
        (layer * 3 + AttentionModule.allCases.firstIndex(of: module)!) * perMatrix
    }
    /// Copies the current q/k/v weights of `parameters` in canonical order.
    public func gather(_ parameters: ParameterBuffer) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        for l in 0 ..< layers {
            for m in AttentionModule.allCases {
                let spec = parameters.layout.spec(layer: l, LayerTensor.weight(m))
                let o = offset(layer: l, module: m)
                out.withUnsafeMutableBufferPointer { dst in
                    parameters.values.withUnsafeBufferPointer { src in
                        for k in 0 ..< perMatrix { dst[o + k] = src[spec.offset + k] }
                    }
                }
            }
        }
        return out
    }
}

/// Activation-based scores (arXiv 2312.10770 section 3.2, made precise here): the score of
/// weight w_ij of a query/key/value matrix is the mean, over sequences s and their
/// non-padding positions t, of |w_ij * x_stj| where x is the matrix's input (the layer's
/// attention LayerNorm output). Because |w_ij x_j| = |w_ij| |x_j|, this equals
/// |w_ij| * A_lj with A_lj = mean_s mean_t |x_stj|; only A is accumulated.
public enum ActivationAttribution {
    /// Sums, over the given sequences, of the per-sequence mean |x_tj| of each layer's
    /// attention input: `(layers, H)` row-major, float64.
    /// - Parameters: sequences as token ids (`<cls>` ... `<eos>`); batchSize rows per forward.
    public static func sumMeanAbsInputs(model: ESMClassifier, sequences: [[Int32]], batchSize: Int = 8) -> [Double] {
        let L = model.config.numHiddenLayers, H = model.config.hiddenSize
        var sums = [Double](repeating: 0, count: L * H)
        var start = 0
        while start < sequences.count {
            let chunk = Array(sequences[start ..< min(start + batchSize, sequences.count)])
            let batch = TokenBatch(sequences: chunk, padTokenId: Int32(model.config.padTokenId))
            _ = model.forward(batch)
            for l in 0 ..< L {
                let x = model.attentionInput(layer: l)  // (B,T,H)
                for b in 0 ..< batch.batchSize {
                    let n = batch.lengths[b]
                    var acc = [Double](repeating: 0, count: H)
                    for t in 0 ..< n {
                        let base = (b * batch.length + t) * H
                        for j in 0 ..< H { acc[j] += Double(abs(x[base + j])) }
                    }
                    for j in 0 ..< H { sums[l * H + j] += acc[j] / Double(n) }
                }
            }
            start += chunk.count
        }
        return sums
    }

    /// Final scores in canonical order: |w_ij| * sums_lj / count.
    public static func scores(parameters: ParameterBuffer, sums: [Double], count: Int) -> [Float] {
        let shape = ScoredWeights(config: parameters.layout.config)
        let w = shape.gather(parameters)
        let H = shape.hidden
        var out = [Float](repeating: 0, count: shape.count)
        for l in 0 ..< shape.layers {
            for m in AttentionModule.allCases {
                let o = shape.offset(layer: l, module: m)
                for i in 0 ..< H {
                    for j in 0 ..< H {
                        out[o + i * H + j] = Float(Double(abs(w[o + i * H + j])) * sums[l * H + j] / Double(max(count, 1)))
                    }
                }
            }
        }
        return out
    }
}

/// Integrated gradients over the query/key/value weights (Sundararajan et al. 2017;
/// arXiv 2312.10770 section 3.3): target F = P(true class); baseline = all q/k/v weights
/// zero (biases and every other parameter unchanged); path alpha*W for alpha in (0, 1];
/// midpoint Riemann sum with `steps` points (captum's `riemann_middle`:
/// alpha_k = (k - 0.5)/steps). Attribution of w_ij = w_ij * mean_k dF/dw_ij(alpha_k W).
public enum IntegratedGradients {
    /// One sequence's attributions and its completeness check.
    public struct Result: Sendable {
        /// Attributions in canonical order (see `ScoredWeights`).
        public var attributions: [Float]
        /// F at alpha = 1 (probability).
        public var pFull: Double
        /// F at alpha = 0 (probability).
        public var pBaseline: Double
        /// Sum of `attributions` (should approach pFull - pBaseline as steps grow).
        public var attributionSum: Double
    }

    /// Rows of one forward/backward: the steps are processed in chunks of at most this
    /// many tokens, so memory stays flat as `steps` grows.
    public static let tokensPerChunk = 4096

    /// Attributes `target` for one sequence.
    /// - Parameters: tokens (`<cls>` ... `<eos>`), target class index, steps >= 1, and a
    ///   gradient buffer of the model's layout (reused between calls; zeroed here).
    public static func attribute(model: ESMClassifier, tokens: [Int32], target: Int, steps: Int,
                                 gradients: inout ParameterBuffer) -> Result {
        let C = model.config.numLabels
        let pad = Int32(model.config.padTokenId)
        // Endpoints.
        let ends = TokenBatch(sequences: [tokens, tokens], padTokenId: pad)
        let endLogits = model.forward(ends, qkvScale: [1, 0])
        let endP = Loss.softmax(logits: endLogits, classes: C)
        let pFull = Double(endP[target]), pBaseline = Double(endP[C + target])

        gradients.zero()
        let chunk = max(1, min(steps, tokensPerChunk / max(tokens.count, 1)))
        var k = 0
        while k < steps {
            let rows = min(chunk, steps - k)
            let alphas = (0 ..< rows).map { Float((Double(k + $0) + 0.5) / Double(steps)) }
            let batch = TokenBatch(sequences: Array(repeating: tokens, count: rows), padTokenId: pad)
            let logits = model.forward(batch, qkvScale: alphas)
            var (_, dLogits) = Loss.targetProbabilityGradient(logits: logits, targets: Array(repeating: target, count: rows), classes: C)
            // backward returns dF/dW = alpha * dF/dw_eff for scaled rows; divide by alpha
            // so the accumulated sum is sum_k dF/dw_eff(alpha_k W).
            for r in 0 ..< rows { for c in 0 ..< C { dLogits[r * C + c] /= alphas[r] } }
            model.backward(dLogits: dLogits, into: &gradients)
            k += rows
        }
        let shape = ScoredWeights(config: model.config)
        let w = shape.gather(model.parameters)
        let g = shape.gather(gradients)
        var attributions = [Float](repeating: 0, count: shape.count)
        var sum = 0.0
        let inv = 1 / Float(steps)
        for i in 0 ..< shape.count {
            let a = w[i] * g[i] * inv
            attributions[i] = a
            sum += Double(a)
        }
        return Result(attributions: attributions, pFull: pFull, pBaseline: pBaseline, attributionSum: sum)
    }
}

/// Errors of the attribution methods.
public enum AttributionError: Error, CustomStringConvertible, Equatable {
    /// A layer index outside `0 ..< layers`.
    case layerOutOfRange(layer: Int, layers: Int)
    /// Fewer than one Riemann step.
    case invalidSteps(Int)
    /// An empty token sequence.
    case emptySequence
    /// A target class outside `0 ..< classes`.
    case targetOutOfRange(target: Int, classes: Int)

    /// A one-line message saying what was wrong and what to do.
    public var description: String {
        switch self {
        case .layerOutOfRange(let l, let n):
            return "layer \(l) is outside 0..<\(n); choose a layer of the model (0-based)"
        case .invalidSteps(let s):
            return "integrated gradients needs at least 1 step, got \(s)"
        case .emptySequence:
            return "cannot attribute an empty token sequence; tokenize it with <cls>/<eos>"
        case .targetOutOfRange(let t, let c):
            return "target class \(t) is outside 0..<\(c)"
        }
    }
}

/// Integrated gradients over the FFN intermediate activations of one layer, the knowledge-
/// neuron attribution of Dai et al. 2021 ("Knowledge Neurons in Pretrained Transformers",
/// arXiv 2104.08696, section 3.1) applied to the ESM-2 classifier: a = gelu(W1 LN_f(x) + b1)
/// of block `layer` (HF `EsmIntermediate` output, (T,I) for one sequence), target
/// F = P(target class), baseline a' = 0, path alpha*a at every position at once, midpoint
/// Riemann sum with `steps` points (captum `riemann_middle`: alpha_k = (k - 0.5)/steps):
///
///     Attr(a_ti) = a_ti * (1/steps) * sum_k dF/da'_ti (alpha_k a)
///
/// Equal to captum `IntegratedGradients` on the activation injected by a forward hook
/// (scripts/reference/make_attribution_fixtures.py; Tests/AttributionTests/ReferenceParityTests).
/// A neuron's score over the sequence is the sum of its per-position attributions.
public enum IntermediateIntegratedGradients {
    /// One sequence's attributions and its completeness check.
    public struct Result: Sendable {
        /// Per-position attributions (T,I) row-major, T = tokens.count (incl. `<cls>`/`<eos>`).
        public var attributions: [Float]
        /// Per-neuron scores (I): the sum over positions of `attributions`.
        public var neuronScores: [Float]
        /// F at alpha = 1 (probability).
        public var pFull: Double
        /// F at alpha = 0 (probability).
        public var pBaseline: Double
        /// Sum of `attributions` (approaches pFull - pBaseline as steps grow; completeness).
        public var attributionSum: Double
    }

    /// Attributes P(`target`) of one sequence to block `layer`'s intermediate activations.
    /// Steps run as batch rows, `IntegratedGradients.tokensPerChunk` tokens per forward, so
    /// memory stays flat as `steps` grows; each chunk is one forward with an
    /// `IntermediateScale` and one input-gradient-only backward down to that layer.
    /// - Parameters: tokens (`<cls>` ... `<eos>`, ids in the vocabulary), layer (0-based),
    ///   target class index, steps >= 1.
    /// - Throws: `AttributionError` for an empty sequence, a layer or target out of range, or
    ///   steps < 1.
    public static func attribute(model: ESMClassifier, tokens: [Int32], layer: Int, target: Int,
                                 steps: Int) throws -> Result {
        let C = model.config.numLabels, I = model.config.intermediateSize
        guard !tokens.isEmpty else { throw AttributionError.emptySequence }
        guard layer >= 0, layer < model.config.numHiddenLayers else {
            throw AttributionError.layerOutOfRange(layer: layer, layers: model.config.numHiddenLayers)
        }
        guard target >= 0, target < C else { throw AttributionError.targetOutOfRange(target: target, classes: C) }
        guard steps >= 1 else { throw AttributionError.invalidSteps(steps) }
        let pad = Int32(model.config.padTokenId)
        let T = tokens.count, TI = T * I

        // Endpoints: row 0 the model (alpha 1), row 1 the baseline (alpha 0).
        let ends = TokenBatch(sequences: [tokens, tokens], padTokenId: pad)
        let endLogits = model.forward(ends, intermediateScale: IntermediateScale(layer: layer, factors: [1, 0]))
        let endP = Loss.softmax(logits: endLogits, classes: C)
        let pFull = Double(endP[target]), pBaseline = Double(endP[C + target])
        let activation = Array(model.intermediateActivation(layer: layer)[0 ..< TI])   // a (T,I), row 0

        var gradientSum = [Float](repeating: 0, count: TI)   // sum_k dF/da'(alpha_k a)
        let chunk = max(1, min(steps, IntegratedGradients.tokensPerChunk / T))
        var k = 0
        while k < steps {
            let rows = min(chunk, steps - k)
            let alphas = (0 ..< rows).map { Float((Double(k + $0) + 0.5) / Double(steps)) }
            let batch = TokenBatch(sequences: Array(repeating: tokens, count: rows), padTokenId: pad)
            let logits = model.forward(batch, intermediateScale: IntermediateScale(layer: layer, factors: alphas))
            let dLogits = Loss.targetProbabilityGradient(logits: logits, targets: Array(repeating: target, count: rows),
                                                         classes: C).dLogits
            let g = model.intermediateGradient(dLogits: dLogits, layer: layer)   // (rows,T,I), no padding
            g.withUnsafeBufferPointer { gp in
                gradientSum.withUnsafeMutableBufferPointer { acc in
                    for r in 0 ..< rows {
                        let row = gp.baseAddress! + r * TI
                        for i in 0 ..< TI { acc[i] += row[i] }
                    }
                }
            }
            k += rows
        }
        let inv = 1 / Float(steps)
        var attributions = [Float](repeating: 0, count: TI)
        var neuronScores = [Float](repeating: 0, count: I)
        var sum = 0.0
        for t in 0 ..< T {
            for i in 0 ..< I {
                let a = activation[t * I + i] * gradientSum[t * I + i] * inv
                attributions[t * I + i] = a
                neuronScores[i] += a
                sum += Double(a)
            }
        }
        return Result(attributions: attributions, neuronScores: neuronScores, pFull: pFull, pBaseline: pBaseline,
                      attributionSum: sum)
    }
}

/// Submodels: keep a subset of q/k/v weights, zero the rest (arXiv 2312.10770: "all
/// weights and biases associated with the neuron are set to zero"): a weight not kept is
/// set to 0, and the bias of an output unit is set to 0 when its whole row is dropped.
public enum Submodel {
    /// Applies `kept` (canonical order, true = keep) to a copy of `parameters`.
    public static func masked(_ parameters: ParameterBuffer, kept: [Bool]) -> ParameterBuffer {
        var p = parameters
        let shape = ScoredWeights(config: parameters.layout.config)
        let H = shape.hidden
        for l in 0 ..< shape.layers {
            for m in AttentionModule.allCases {
                let w = parameters.layout.spec(layer: l, LayerTensor.weight(m))
                let b = parameters.layout.spec(layer: l, LayerTensor.bias(m))
                let o = shape.offset(layer: l, module: m)
                for i in 0 ..< H {
                    var anyKept = false
                    for j in 0 ..< H {
                        if kept[o + i * H + j] { anyKept = true } else { p.values[w.offset + i * H + j] = 0 }
                    }
                    if !anyKept { p.values[b.offset + i] = 0 }
                }
            }
        }
        return p
    }
}
