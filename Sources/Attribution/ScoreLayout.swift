import ESM
import Foundation

/// The one description of a score vector: which linear maps of which layers are scored, at
/// which granularity, and where each block sits in the flat vector. Every score, rank,
/// selection mask and shard sum is in this order; the database stores the blocks
/// (`score_blocks`) so its views read offsets from there instead of re-deriving them.
///
/// Order: for layer 0 ..< L, for each module of `modules` (canonical `LinearModule` order),
/// one block. A `weight` block is the PyTorch `(out, in)` weight row-major (rows = output units,
/// cols = input features); a `neuron` block is the map's `out` units (cols = 1). With the
/// default modules query, key, value at weight granularity this is the paper's layout
/// (layer, module, row, col) of arXiv 2312.10770.
public struct ScoreLayout: Sendable, Equatable {
    /// One matrix (weight granularity) or one map's units (neuron granularity).
    public struct Block: Sendable, Equatable {
        /// Layer and linear map.
        public var site: ModuleSite
        /// Output units of the map.
        public var rows: Int
        /// Input features (weight granularity) or 1 (neuron granularity).
        public var cols: Int
        /// Index of the block's first element in the score vector.
        public var offset: Int
        /// rows x cols.
        public var count: Int { rows * cols }
        /// The block's index range in the score vector.
        public var range: Range<Int> { offset ..< offset + count }
    }

    /// What is scored.
    public let granularity: Granularity
    /// The scored linear maps, canonical order, no duplicates.
    public let modules: [LinearModule]
    /// Layers of the model.
    public let layers: Int
    /// Blocks in vector order.
    public let blocks: [Block]
    /// Length of the score vector.
    public let count: Int

    /// The layout of `modules` (any order, duplicates ignored) of every layer of `config`.
    /// - Throws: `AttributionError.noModules` for an empty module list.
    public init(config: ESMConfig, modules: [LinearModule], granularity: Granularity) throws {
        let chosen = Array(Set(modules)).sorted()
        guard !chosen.isEmpty else { throw AttributionError.noModules }
        self.granularity = granularity
        self.modules = chosen
        layers = config.numHiddenLayers
        var blocks: [Block] = []
        var offset = 0
        for l in 0 ..< config.numHiddenLayers {
            for m in chosen {
                let rows = m.outFeatures(config), cols = granularity == .weight ? m.inFeatures(config) : 1
                blocks.append(Block(site: ModuleSite(layer: l, module: m), rows: rows, cols: cols, offset: offset))
                offset += rows * cols
            }
        }
        self.blocks = blocks
        count = offset
    }

    /// The paper's layout: query, key and value weights of every layer.
    public static func paper(_ config: ESMConfig) -> ScoreLayout {
        // swiftlint:disable:next force_try
        try! ScoreLayout(config: config, modules: LinearModule.attention, granularity: .weight)   // non-empty module list
    }

    /// The block of `site`, or nil when the layout does not score it.
    public func block(_ site: ModuleSite) -> Block? {
        guard site.layer >= 0, site.layer < layers, let m = modules.firstIndex(of: site.module) else { return nil }
        return blocks[site.layer * modules.count + m]
    }

    /// Every scored site, in vector order.
    public var sites: [ModuleSite] { blocks.map(\.site) }

    /// For weight granularity: the scored weights of `parameters` in vector order. For neuron
    /// granularity: the weight matrices are not the scored elements, so this returns [].
    public func gatherWeights(_ parameters: ParameterBuffer) -> [Float] {
        guard granularity == .weight else { return [] }
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { dst in
            parameters.values.withUnsafeBufferPointer { src in
                for b in blocks {
                    let spec = parameters.layout.spec(layer: b.site.layer, b.site.module.weight)
                    precondition(spec.count == b.count, "layout built for another model shape")
                    for k in 0 ..< b.count { dst[b.offset + k] = src[spec.offset + k] }
                }
            }
        }
        return out
    }

    /// Checks that the layout was built for `config`.
    /// - Throws: `AttributionError.layoutMismatch`.
    public func check(_ config: ESMConfig) throws {
        guard layers == config.numHiddenLayers,
              blocks.allSatisfy({ $0.rows == $0.site.module.outFeatures(config)
                  && $0.cols == (granularity == .weight ? $0.site.module.inFeatures(config) : 1) })
        else { throw AttributionError.layoutMismatch("built for another layer count, hidden or intermediate size") }
    }
}

/// Submodels: keep the top of a ranking and ablate the rest, with no retraining
/// (arXiv 2312.10770: "all weights and biases associated with the neuron are set to zero").
/// - weight granularity: a weight not kept is set to 0, and the bias of an output unit is set
///   to 0 when its whole row is dropped;
/// - neuron granularity: a unit not kept has its weight row and bias set to 0, so its
///   activation is zero at every position (for `intermediate`, gelu(0) = 0 after GELU).
public enum Submodel {
    /// Applies `kept` (layout order, true = keep) to a copy of `parameters`.
    /// `kept.count` must equal `layout.count` (programming error otherwise).
    public static func masked(_ parameters: ParameterBuffer, layout: ScoreLayout, kept: [Bool]) -> ParameterBuffer {
        precondition(kept.count == layout.count, "mask does not match the score layout")
        var p = parameters
        p.values.withUnsafeMutableBufferPointer { v in
            for block in layout.blocks {
                let w = parameters.layout.spec(layer: block.site.layer, block.site.module.weight)
                let b = parameters.layout.spec(layer: block.site.layer, block.site.module.bias)
                let inFeatures = w.shape[1]
                for i in 0 ..< block.rows {
                    switch layout.granularity {
                    case .weight:
                        var anyKept = false
                        for j in 0 ..< inFeatures {
                            if kept[block.offset + i * inFeatures + j] { anyKept = true } else { v[w.offset + i * inFeatures + j] = 0 }
                        }
                        if !anyKept { v[b.offset + i] = 0 }
                    case .neuron:
                        if !kept[block.offset + i] {
                            for j in 0 ..< inFeatures { v[w.offset + i * inFeatures + j] = 0 }
                            v[b.offset + i] = 0
                        }
                    }
                }
            }
        }
        return p
    }
}
