import Attribution
import ESM
import Foundation

/// The submodels of the evaluate and evidence stages under the spec's `evaluation.ablation`:
/// `zero` is `Submodel.masked` (the paper's), `mean` replaces every unkept neuron's activation
/// by its mean over the attribution split's tokens (`NeuronEdit.meanAblated`; the means are
/// computed once, with the full model, when the ablator is made). The spec refuses `mean`
/// with weight granularity, so a weight layout here always takes `zero`.
struct Ablator {
    /// The ablation used.
    let ablation: Ablation
    /// The full model's parameters.
    let full: ParameterBuffer
    /// Neuron means in the neuron layout's order (mean ablation only).
    private let means: [Double]

    /// An ablator for `model` (its current parameters are the full model's).
    /// - Throws: store errors reading the attribution split.
    init(_ ctx: RunContext, model: ESMClassifier, layouts: [Granularity: ScoreLayout]) throws {
        ablation = ctx.spec.evaluation.ablation
        full = model.parameters
        if ablation == .mean, let layout = layouts[.neuron] {
            let split = ctx.spec.split.selectOn.split
            let data = try SplitData.load(ctx, split: split)
            ctx.log("  mean ablation: neuron means over the \(data.examples.count) sequences of the \(split.rawValue) split")
            means = NeuronEdit.means(model: model, sequences: data.examples.map(\.tokens), layout: layout, batchSize: ctx.spec.train.batchSize)
        } else {
            means = []
        }
    }

    /// The full parameters with the elements of `layout` not `kept` ablated.
    func submodel(layout: ScoreLayout, kept: [Bool]) -> ParameterBuffer {
        if ablation == .mean, layout.granularity == .neuron {
            return NeuronEdit.meanAblated(full, layout: layout, kept: kept, means: means)
        }
        return Submodel.masked(full, layout: layout, kept: kept)
    }
}
