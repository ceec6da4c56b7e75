import ESM
import Foundation

/// Integrated gradients (Sundararajan et al. 2017) of F = P(target) from the zero baseline,
/// midpoint Riemann sum with `steps` points (captum's `riemann_middle`, alpha_k = (k - 0.5)/steps).
///
/// - weight granularity (arXiv 2312.10770 section 3.3): one path alpha*W scaling every chosen
///   matrix of every layer at once (biases and all other parameters unchanged);
///   Attr(w_ij) = w_ij * (1/steps) * sum_k dF/dw_ij(alpha_k W). One backward per step gives the
///   gradients of every chosen matrix. Equals captum `IntegratedGradients` whose inputs are
///   the weights (scripts/reference/make_attribution_fixtures.py, make_engine_fixtures.py).
/// - neuron granularity (Dai et al. 2021, arXiv 2104.08696 section 3.1, applied to every chosen
///   map): for each (layer, map) its own path alpha*y scaling that map's output y at every
///   position; Attr(y_ti) = y_ti * (1/steps) * sum_k dF/dy'_ti(alpha_k y), and a neuron's
///   contribution is the sum over the sequence's positions. Equals captum's
///   `LayerIntegratedGradients` on the module output with a zero layer baseline (computed as
///   `IntegratedGradients` on the output injected by a forward hook).
///
/// Steps run as batch rows, `tokensPerChunk` tokens per forward, so memory stays flat as
/// `steps` grows. Each sequence gives one completeness check per path.
public struct IntegratedGradientsAttributor: Attributor {
    /// Rows of one forward/backward are capped at this many tokens.
    public static let tokensPerChunk = 4096

    /// Creates the method.
    public init() {}
    /// `.integratedGradients`.
    public var method: AttributionMethod { .integratedGradients }

    public func contributionCount(layout: ScoreLayout, config: ESMConfig) -> Int { layout.count }

    public func contributions(model: ESMClassifier, sequences: [AttributionInput], layout: ScoreLayout,
                              options: AttributionOptions) throws -> [SequenceAttribution] {
        try validate(model: model, sequences: sequences, layout: layout, steps: options.steps)
        var gradients = ParameterBuffer(layout: model.parameters.layout)
        let weights = layout.gatherWeights(model.parameters)
        return sequences.map { s in
            switch layout.granularity {
            case .weight: return weightPath(model, s, layout, options.steps, weights, &gradients)
            case .neuron: return neuronPaths(model, s, layout, options.steps)
            }
        }
    }

    /// alpha values of steps k ..< k + rows.
    static func alphas(_ k: Int, _ rows: Int, steps: Int) -> [Float] {
        (0 ..< rows).map { Float((Double(k + $0) + 0.5) / Double(steps)) }
    }

    /// Steps per forward for a sequence of `tokens` tokens.
    static func chunk(steps: Int, tokens: Int) -> Int { max(1, min(steps, tokensPerChunk / max(tokens, 1))) }

    func weightPath(_ model: ESMClassifier, _ s: AttributionInput, _ layout: ScoreLayout, _ steps: Int,
                    _ weights: [Float], _ gradients: inout ParameterBuffer) -> SequenceAttribution {
        let C = model.config.numLabels, pad = Int32(model.config.padTokenId)
        let modules = Set(layout.modules)
        let ends = TokenBatch(sequences: [s.tokens, s.tokens], padTokenId: pad)
        let endP = Loss.softmax(logits: model.forward(ends, hooks: ForwardHooks(weightScale: .init(modules: modules, factors: [1, 0]))),
                                classes: C)
        gradients.zero()
        let chunk = Self.chunk(steps: steps, tokens: s.tokens.count)
        var k = 0
        while k < steps {
            let rows = min(chunk, steps - k)
            let alphas = Self.alphas(k, rows, steps: steps)
            let batch = TokenBatch(sequences: Array(repeating: s.tokens, count: rows), padTokenId: pad)
            let logits = model.forward(batch, hooks: ForwardHooks(weightScale: .init(modules: modules, factors: alphas)))
            var dLogits = Loss.targetProbabilityGradient(logits: logits, targets: Array(repeating: s.target, count: rows), classes: C).dLogits
            // backward gives dF/dW = alpha * dF/dw_eff for scaled rows; dividing by alpha leaves
            // sum_k dF/dw_eff(alpha_k W) in the chosen matrices' slots.
            for r in 0 ..< rows { for c in 0 ..< C { dLogits[r * C + c] /= alphas[r] } }
            model.backward(dLogits: dLogits, into: &gradients, modules: modules)
            k += rows
        }
        let g = layout.gatherWeights(gradients)
        var contribution = [Double](repeating: 0, count: layout.count)
        var sum = 0.0
        let inv = 1 / Float(steps)
        for i in 0 ..< layout.count {
            let a = weights[i] * g[i] * inv
            contribution[i] = Double(a)
            sum += Double(a)
        }
        let check = CompletenessCheck(site: nil, pFull: Double(endP[s.target]), pBaseline: Double(endP[C + s.target]), attributionSum: sum)
        return SequenceAttribution(contribution: contribution, completeness: [check])
    }

    func neuronPaths(_ model: ESMClassifier, _ s: AttributionInput, _ layout: ScoreLayout, _ steps: Int) -> SequenceAttribution {
        var contribution = [Double](repeating: 0, count: layout.count)
        var checks: [CompletenessCheck] = []
        for block in layout.blocks {
            let r = Self.neuronPath(model, s, site: block.site, steps: steps)
            var sum = 0.0
            for t in 0 ..< s.tokens.count {
                for i in 0 ..< block.rows {
                    let a = Double(r.attributions[t * block.rows + i])
                    contribution[block.offset + i] += a
                    sum += a
                }
            }
            checks.append(CompletenessCheck(site: block.site, pFull: r.pFull, pBaseline: r.pBaseline, attributionSum: sum))
        }
        return SequenceAttribution(contribution: contribution, completeness: checks)
    }

    /// Per-position integrated gradients of P(`target`) over the output of the map at `site`
    /// for one sequence: attributions (T, out) row-major (every position, `<cls>`/`<eos>`
    /// included), and F at alpha = 1 and 0. Arguments are checked by the caller.
    static func neuronPath(_ model: ESMClassifier, _ s: AttributionInput, site: ModuleSite, steps: Int)
        -> (attributions: [Float], pFull: Double, pBaseline: Double) {
        let C = model.config.numLabels, pad = Int32(model.config.padTokenId)
        let T = s.tokens.count, width = site.module.outFeatures(model.config), n = T * width
        let ends = TokenBatch(sequences: [s.tokens, s.tokens], padTokenId: pad)
        let endP = Loss.softmax(logits: model.forward(ends, hooks: ForwardHooks(outputScale: .init(site: site, factors: [1, 0]),
                                                                                   capture: [site])), classes: C)
        let activation = Array(model.output(at: site)[0 ..< n])   // y (T,out), row 0 (alpha 1)
        var gradientSum = [Float](repeating: 0, count: n)          // sum_k dF/dy'(alpha_k y)
        let chunk = chunk(steps: steps, tokens: T)
        var k = 0
        while k < steps {
            let rows = min(chunk, steps - k)
            let alphas = alphas(k, rows, steps: steps)
            let batch = TokenBatch(sequences: Array(repeating: s.tokens, count: rows), padTokenId: pad)
            let logits = model.forward(batch, hooks: ForwardHooks(outputScale: .init(site: site, factors: alphas)))
            let dLogits = Loss.targetProbabilityGradient(logits: logits, targets: Array(repeating: s.target, count: rows), classes: C).dLogits
            let g = model.outputGradients(dLogits: dLogits, at: [site])[site]!   // (rows,T,out)
            g.withUnsafeBufferPointer { gp in
                gradientSum.withUnsafeMutableBufferPointer { acc in
                    for r in 0 ..< rows {
                        let row = gp.baseAddress! + r * n
                        for i in 0 ..< n { acc[i] += row[i] }
                    }
                }
            }
            k += rows
        }
        let inv = 1 / Float(steps)
        let attributions = (0 ..< n).map { activation[$0] * gradientSum[$0] * inv }
        return (attributions, Double(endP[s.target]), Double(endP[C + s.target]))
    }

    public func scores(sums: [Double], count: Int, parameters: ParameterBuffer, layout: ScoreLayout) -> [Float] {
        averaged(sums, count)
    }
}
