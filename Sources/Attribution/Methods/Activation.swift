import ESM
import Foundation

/// Activation-based scores (arXiv 2312.10770 section 3.2, made precise here).
///
/// - weight granularity: the score of w_ij of a chosen matrix is the mean, over sequences s
///   and their non-padding positions t, of |w_ij * x_stj| where x is the matrix's input. Since
///   |w_ij x_j| = |w_ij| |x_j|, it equals |w_ij| * A_j with A_j = mean_s mean_t |x_stj|, so only
///   A is accumulated, once per distinct input of a layer (query, key and value share LN_a's
///   output): the contribution of a sequence is, for each layer and each distinct input of the
///   chosen maps (LN_a output, attention heads' output, LN_f output, GELU output), mean_t |x_tj|.
///   With the default query/key/value this is the (layers, H) layout of kneuron 0.1.
/// - neuron granularity: the score of output unit i is mean_s mean_t |y_sti| of the map's output
///   (after GELU for `intermediate`); the contribution of a sequence is mean_t |y_ti| per unit.
///
/// Target-independent. Sequences run in padded batches of `options.batchSize`.
public struct ActivationAttributor: Attributor {
    /// Creates the method.
    public init() {}
    /// `.activation`.
    public var method: AttributionMethod { .activation }

    /// The distinct inputs of a layer's chosen maps, in canonical order of their first map.
    enum Input: Int, CaseIterable, Comparable {
        case attention, attentionOutput, intermediate, output
        init(_ m: LinearModule) {
            switch m {
            case .query, .key, .value: self = .attention
            case .attentionOutput: self = .attentionOutput
            case .intermediate: self = .intermediate
            case .output: self = .output
            }
        }
        static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
        /// A map that reads this input.
        var module: LinearModule {
            switch self { case .attention: .query; case .attentionOutput: .attentionOutput; case .intermediate: .intermediate; case .output: .output }
        }
    }

    /// (input, offset in the contribution, width) for every layer, in contribution order.
    func inputSlots(layout: ScoreLayout, config: ESMConfig) -> [(layer: Int, input: Input, offset: Int, width: Int)] {
        let inputs = Array(Set(layout.modules.map(Input.init))).sorted()
        var out: [(Int, Input, Int, Int)] = []
        var offset = 0
        for l in 0 ..< layout.layers {
            for i in inputs {
                let w = i.module.inFeatures(config)
                out.append((l, i, offset, w))
                offset += w
            }
        }
        return out
    }

    public func contributionCount(layout: ScoreLayout, config: ESMConfig) -> Int {
        switch layout.granularity {
        case .weight: return inputSlots(layout: layout, config: config).reduce(0) { $0 + $1.width }
        case .neuron: return layout.count
        }
    }

    public func contributions(model: ESMClassifier, sequences: [AttributionInput], layout: ScoreLayout,
                              options: AttributionOptions) throws -> [SequenceAttribution] {
        try validate(model: model, sequences: sequences, layout: layout)
        let n = contributionCount(layout: layout, config: model.config)
        let slots = layout.granularity == .weight ? inputSlots(layout: layout, config: model.config) : []
        let capture = layout.granularity == .neuron ? Set(layout.sites) : []
        var out: [SequenceAttribution] = []
        var start = 0
        while start < sequences.count {
            let chunk = sequences[start ..< min(start + max(1, options.batchSize), sequences.count)]
            let batch = TokenBatch(sequences: chunk.map(\.tokens), padTokenId: Int32(model.config.padTokenId))
            _ = model.forward(batch, hooks: ForwardHooks(capture: capture))
            var rows = [[Double]](repeating: [Double](repeating: 0, count: n), count: batch.batchSize)
            switch layout.granularity {
            case .weight:
                for s in slots {
                    let x = model.input(at: ModuleSite(layer: s.layer, module: s.input.module))   // (B,T,width)
                    for b in 0 ..< batch.batchSize {
                        let len = batch.lengths[b], base = b * batch.length * s.width
                        accumulateOverPositions(&rows[b], at: s.offset, y: x[base ..< base + len * s.width], g: nil,
                                                length: len, width: s.width, absolute: true)
                        for j in 0 ..< s.width { rows[b][s.offset + j] /= Double(len) }
                    }
                }
            case .neuron:
                for block in layout.blocks {
                    let y = model.output(at: block.site)   // (B,T,rows)
                    for b in 0 ..< batch.batchSize {
                        let len = batch.lengths[b], base = b * batch.length * block.rows
                        accumulateOverPositions(&rows[b], at: block.offset, y: y[base ..< base + len * block.rows], g: nil,
                                                length: len, width: block.rows, absolute: true)
                        for i in 0 ..< block.rows { rows[b][block.offset + i] /= Double(len) }
                    }
                }
            }
            out += rows.map { SequenceAttribution(contribution: $0, completeness: []) }
            start += chunk.count
        }
        return out
    }

    public func scores(sums: [Double], count: Int, parameters: ParameterBuffer, layout: ScoreLayout) -> [Float] {
        guard layout.granularity == .weight else { return averaged(sums, count) }
        let config = parameters.layout.config
        var slot: [Int: (offset: Int, width: Int)] = [:]   // key layer * 4 + input
        for s in inputSlots(layout: layout, config: config) { slot[s.layer * 4 + s.input.rawValue] = (s.offset, s.width) }
        let w = layout.gatherWeights(parameters)
        var out = [Float](repeating: 0, count: layout.count)
        let n = Double(max(count, 1))
        for block in layout.blocks {
            let a = slot[block.site.layer * 4 + Input(block.site.module).rawValue]!
            for i in 0 ..< block.rows {
                for j in 0 ..< block.cols {
                    let k = block.offset + i * block.cols + j
                    out[k] = Float(Double(abs(w[k])) * sums[a.offset + j] / n)
                }
            }
        }
        return out
    }
}
