import ESM
import Foundation

/// Gradient x activation of F = P(target) at the model itself (Shrikumar et al. 2016,
/// "input x gradient"; the cheap baseline that planted-motif benchmarks found competitive
/// with integrated gradients, Prakash et al. PMLR 165): one forward and one backward per sequence.
///
/// - weight granularity: w_ij * dF/dw_ij for every chosen matrix;
/// - neuron granularity: sum over the sequence's positions of y_ti * dF/dy_ti for the output y
///   of every chosen map (after GELU for `intermediate`).
///
/// It is the first-order (one-step, alpha = 1) approximation of integrated gradients; scores
/// are signed and averaged over sequences. Checked against torch autograd
/// (scripts/reference/make_engine_fixtures.py).
public struct GradientXActivationAttributor: Attributor {
    /// Creates the method.
    public init() {}
    /// `.gradientXActivation`.
    public var method: AttributionMethod { .gradientXActivation }

    public func contributionCount(layout: ScoreLayout, config: ESMConfig) -> Int { layout.count }

    public func contributions(model: ESMClassifier, sequences: [AttributionInput], layout: ScoreLayout,
                              options: AttributionOptions) throws -> [SequenceAttribution] {
        try validate(model: model, sequences: sequences, layout: layout)
        let C = model.config.numLabels, pad = Int32(model.config.padTokenId)
        var gradients = ParameterBuffer(layout: model.parameters.layout)
        let weights = layout.gatherWeights(model.parameters)
        let sites = Set(layout.sites)
        return sequences.map { s in
            let batch = TokenBatch(sequences: [s.tokens], padTokenId: pad)
            let hooks = layout.granularity == .neuron ? ForwardHooks(capture: sites) : .none
            let logits = model.forward(batch, hooks: hooks)
            let dLogits = Loss.targetProbabilityGradient(logits: logits, targets: [s.target], classes: C).dLogits
            var contribution = [Double](repeating: 0, count: layout.count)
            switch layout.granularity {
            case .weight:
                gradients.zero()
                model.backward(dLogits: dLogits, into: &gradients, modules: Set(layout.modules))
                let g = layout.gatherWeights(gradients)
                for i in 0 ..< layout.count { contribution[i] = Double(weights[i] * g[i]) }
            case .neuron:
                let grads = model.outputGradients(dLogits: dLogits, at: sites)
                for block in layout.blocks {
                    let y = model.output(at: block.site)
                    accumulateOverPositions(&contribution, at: block.offset, y: y[...], g: grads[block.site]![...],
                                            length: s.tokens.count, width: block.rows)
                }
            }
            return SequenceAttribution(contribution: contribution, completeness: [])
        }
    }

    public func scores(sums: [Double], count: Int, parameters: ParameterBuffer, layout: ScoreLayout) -> [Float] {
        averaged(sums, count)
    }
}
