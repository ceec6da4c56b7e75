import Foundation

/// The six linear maps of an ESM-2 block, named as HuggingFace `modeling_esm.py` names the
/// modules of `EsmLayer` (the raw value is kneuron's spec and database name):
///
/// | case | raw value | HF module | weight (out, in) | output |
/// |---|---|---|---|---|
/// | query | `query` | `attention.self.query` | (H, H) | the Linear's output, before HF's head_dim^-0.5 and rotary |
/// | key | `key` | `attention.self.key` | (H, H) | before rotary |
/// | value | `value` | `attention.self.value` | (H, H) | |
/// | attentionOutput | `attention_output` | `attention.output.dense` | (H, H) | before the residual |
/// | intermediate | `intermediate` | `intermediate.dense` | (I, H) | the `EsmIntermediate` output, i.e. AFTER GELU (Dai et al.'s FFN neuron) |
/// | output | `output` | `output.dense` | (H, I) | before the residual |
///
/// `allCases` is the canonical order of every score layout (query, key, value first, so
/// the paper's q/k/v layout is a prefix).
public enum LinearModule: String, Codable, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    case query
    case key
    case value
    case attentionOutput = "attention_output"
    case intermediate
    case output

    /// The self-attention projections scored by arXiv 2312.10770 (its default module set).
    public static let attention: [LinearModule] = [.query, .key, .value]

    public static func < (a: LinearModule, b: LinearModule) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// The raw value (`attention_output`, ...).
    public var description: String { rawValue }

    /// The HuggingFace module path inside `esm.encoder.layer.{i}` (`attention.self.query`, ...,
    /// `intermediate.dense`, `output.dense`).
    public var huggingFacePath: String {
        switch self {
        case .query, .key, .value: return "attention.self.\(rawValue)"
        case .attentionOutput: return "attention.output.dense"
        case .intermediate: return "intermediate.dense"
        case .output: return "output.dense"
        }
    }

    /// The weight tensor, PyTorch `(out, in)`.
    public var weight: LayerTensor {
        switch self {
        case .query: .queryWeight
        case .key: .keyWeight
        case .value: .valueWeight
        case .attentionOutput: .attentionOutputWeight
        case .intermediate: .intermediateWeight
        case .output: .outputWeight
        }
    }

    /// The bias tensor `(out)`.
    public var bias: LayerTensor {
        switch self {
        case .query: .queryBias
        case .key: .keyBias
        case .value: .valueBias
        case .attentionOutput: .attentionOutputBias
        case .intermediate: .intermediateBias
        case .output: .outputBias
        }
    }

    /// Output units (weight rows): I for `intermediate`, H otherwise.
    public func outFeatures(_ config: ESMConfig) -> Int { self == .intermediate ? config.intermediateSize : config.hiddenSize }

    /// Input features (weight columns): I for `output`, H otherwise.
    public func inFeatures(_ config: ESMConfig) -> Int { self == .output ? config.intermediateSize : config.hiddenSize }
}

/// One linear map of one block: `esm.encoder.layer.{layer}.{module.huggingFacePath}`.
public struct ModuleSite: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Block index, 0-based.
    public var layer: Int
    /// The linear map.
    public var module: LinearModule

    /// The site `module` of block `layer`.
    public init(layer: Int, module: LinearModule) { self.layer = layer; self.module = module }

    /// Canonical order: by layer, then module.
    public static func < (a: ModuleSite, b: ModuleSite) -> Bool {
        (a.layer, LinearModule.allCases.firstIndex(of: a.module)!) < (b.layer, LinearModule.allCases.firstIndex(of: b.module)!)
    }

    /// `layer 1 intermediate`.
    public var description: String { "layer \(layer) \(module.rawValue)" }
}

/// Generic hooks of one `ESMClassifier.forward`: scale or read the weights and outputs of
/// named linear maps. They are what attribution methods need (integrated gradients along
/// alpha*W or alpha*activation, captum-style layer reads) without the model knowing any method.
public struct ForwardHooks: Sendable, Equatable {
    /// Row b of the batch uses `(factors[b] * W) x + bias` for the weight W of every module in
    /// `modules`, in every layer (integrated gradients over weights, Sundararajan et al. 2017:
    /// path alpha*W from the zero-weight baseline, one step per batch row).
    public struct WeightScale: Sendable, Equatable {
        /// The linear maps whose weights (not biases) are scaled, in every layer.
        public var modules: Set<LinearModule>
        /// One factor per batch row (B).
        public var factors: [Float]
        /// Scales the weights of `modules` in batch row b by `factors[b]`.
        public init(modules: Set<LinearModule>, factors: [Float]) { self.modules = modules; self.factors = factors }
    }

    /// Row b of the batch replaces the output y of the linear map at `site` by `factors[b] * y`
    /// at every position (integrated gradients over a layer's activations, Dai et al. 2021,
    /// arXiv 2104.08696 section 3.1: path alpha*a from the zero baseline). For `intermediate`
    /// the output is the activation after GELU.
    public struct OutputScale: Sendable, Equatable {
        /// Where the output is scaled.
        public var site: ModuleSite
        /// One factor per batch row (B); 1 leaves the row unchanged, 0 is the zero baseline.
        public var factors: [Float]
        /// Scales the output at `site` in batch row b by `factors[b]`.
        public init(site: ModuleSite, factors: [Float]) { self.site = site; self.factors = factors }
    }

    /// Weight scaling, or nil.
    public var weightScale: WeightScale?
    /// Output scaling at one site, or nil.
    public var outputScale: OutputScale?
    /// Sites whose outputs (after `outputScale`, when it applies there) are kept for
    /// `ESMClassifier.output(at:)` (B,T,out). Outputs that the model caches anyway (value,
    /// intermediate) are read without being listed here.
    public var capture: Set<ModuleSite>

    /// Hooks from their parts; the default is the unchanged model.
    public init(weightScale: WeightScale? = nil, outputScale: OutputScale? = nil, capture: Set<ModuleSite> = []) {
        self.weightScale = weightScale
        self.outputScale = outputScale
        self.capture = capture
    }

    /// No hook: the plain model.
    public static let none = ForwardHooks()
}
