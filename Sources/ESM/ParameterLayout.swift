import Foundation

/// One tensor of every transformer block, in the order it is stored in the flat
/// parameter buffer. The raw value is the HuggingFace name suffix after
/// `esm.encoder.layer.{i}.` (REFERENCE.md section 2). Linear weights have the PyTorch
/// shape `(out, in)`, row-major.
public enum LayerTensor: String, CaseIterable, Sendable {
    case attentionLayerNormWeight = "attention.LayerNorm.weight"     // (H)
    case attentionLayerNormBias = "attention.LayerNorm.bias"         // (H)
    case queryWeight = "attention.self.query.weight"                 // (H,H)
    case queryBias = "attention.self.query.bias"                     // (H)
    case keyWeight = "attention.self.key.weight"                     // (H,H)
    case keyBias = "attention.self.key.bias"                         // (H)
    case valueWeight = "attention.self.value.weight"                 // (H,H)
    case valueBias = "attention.self.value.bias"                     // (H)
    case attentionOutputWeight = "attention.output.dense.weight"     // (H,H)
    case attentionOutputBias = "attention.output.dense.bias"         // (H)
    case ffnLayerNormWeight = "LayerNorm.weight"                     // (H)
    case ffnLayerNormBias = "LayerNorm.bias"                         // (H)
    case intermediateWeight = "intermediate.dense.weight"            // (I,H)
    case intermediateBias = "intermediate.dense.bias"                // (I)
    case outputWeight = "output.dense.weight"                        // (H,I)
    case outputBias = "output.dense.bias"                            // (H)

    /// The tensor's shape for `config` (PyTorch order, `(out, in)` for weights).
    public func shape(_ config: ESMConfig) -> [Int] {
        let h = config.hiddenSize, i = config.intermediateSize
        switch self {
        case .queryWeight, .keyWeight, .valueWeight, .attentionOutputWeight: return [h, h]
        case .intermediateWeight: return [i, h]
        case .outputWeight: return [h, i]
        case .intermediateBias: return [i]
        default: return [h]
        }
    }
}

/// Tensors outside the blocks, by their HuggingFace `EsmForSequenceClassification` names.
public enum GlobalTensor: String, CaseIterable, Sendable {
    case wordEmbeddings = "esm.embeddings.word_embeddings.weight"    // (V,H)
    case finalLayerNormWeight = "esm.encoder.emb_layer_norm_after.weight" // (H)
    case finalLayerNormBias = "esm.encoder.emb_layer_norm_after.bias"     // (H)
    case classifierDenseWeight = "classifier.dense.weight"          // (H,H)
    case classifierDenseBias = "classifier.dense.bias"              // (H)
    case classifierOutWeight = "classifier.out_proj.weight"         // (C,H)
    case classifierOutBias = "classifier.out_proj.bias"             // (C)

    /// The tensor's shape for `config`.
    public func shape(_ config: ESMConfig) -> [Int] {
        let h = config.hiddenSize
        switch self {
        case .wordEmbeddings: return [config.vocabSize, h]
        case .classifierDenseWeight: return [h, h]
        case .classifierOutWeight: return [config.numLabels, h]
        case .classifierOutBias: return [config.numLabels]
        default: return [h]
        }
    }
}

/// Where one tensor lives in the flat parameter buffer.
public struct TensorSpec: Sendable, Equatable {
    /// HuggingFace checkpoint name, e.g. `esm.encoder.layer.0.attention.self.key.weight`.
    public let name: String
    /// PyTorch shape, row-major.
    public let shape: [Int]
    /// Offset of the first element in the flat buffer, in elements.
    public let offset: Int
    /// Number of elements (product of `shape`).
    public var count: Int { shape.reduce(1, *) }
    /// The index range in the flat buffer.
    public var range: Range<Int> { offset ..< offset + count }
}

/// The table of every parameter tensor of an ESM-2 classifier, derived from its config
/// (one source of truth, llm.c style): `wordEmbeddings`, then each block's
/// `LayerTensor.allCases`, then `finalLayerNorm*` and the classifier tensors.
/// Parameters, gradients and AdamW moments all share this layout.
public struct ParameterLayout: Sendable, Equatable {
    /// The configuration the layout was derived from.
    public let config: ESMConfig
    /// Every tensor in buffer order.
    public let tensors: [TensorSpec]
    /// Total number of parameters (elements).
    public let count: Int
    private let index: [String: Int]

    /// Builds the layout for `config`.
    public init(config: ESMConfig) {
        self.config = config
        var specs: [TensorSpec] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            let s = TensorSpec(name: name, shape: shape, offset: offset)
            specs.append(s)
            offset += s.count
        }
        add(GlobalTensor.wordEmbeddings.rawValue, GlobalTensor.wordEmbeddings.shape(config))
        for layer in 0 ..< config.numHiddenLayers {
            for t in LayerTensor.allCases {
                add(Self.name(layer: layer, t), t.shape(config))
            }
        }
        for g in GlobalTensor.allCases where g != .wordEmbeddings {
            add(g.rawValue, g.shape(config))
        }
        tensors = specs
        count = offset
        var idx: [String: Int] = [:]
        for (i, s) in specs.enumerated() { idx[s.name] = i }
        index = idx
    }

    /// HF name of a block tensor: `esm.encoder.layer.{layer}.{tensor}`.
    public static func name(layer: Int, _ t: LayerTensor) -> String {
        "esm.encoder.layer.\(layer).\(t.rawValue)"
    }

    /// The spec of the named tensor, or nil when the layout has no such tensor.
    public func spec(named name: String) -> TensorSpec? {
        index[name].map { tensors[$0] }
    }

    /// The spec of a block tensor. `layer` must be in `0 ..< numHiddenLayers`.
    public func spec(layer: Int, _ t: LayerTensor) -> TensorSpec {
        tensors[index[Self.name(layer: layer, t)]!]
    }

    /// The spec of a global tensor.
    public func spec(_ g: GlobalTensor) -> TensorSpec {
        tensors[index[g.rawValue]!]
    }

    /// Whether a tensor gets AdamW weight decay: matrices (2-D) yes; biases, LayerNorm
    /// parameters and embeddings no (the usual BERT/ESM fine-tuning recipe).
    public func decays(_ spec: TensorSpec) -> Bool {
        spec.shape.count == 2 && spec.name != GlobalTensor.wordEmbeddings.rawValue
    }
}

/// A flat float32 buffer holding one value per parameter of `layout` (parameters,
/// gradients, or optimizer moments).
public struct ParameterBuffer: Sendable, Equatable {
    /// The tensor table.
    public let layout: ParameterLayout
    /// The values, `layout.count` elements.
    public var values: [Float]

    /// A zero-filled buffer.
    public init(layout: ParameterLayout) {
        self.layout = layout
        values = [Float](repeating: 0, count: layout.count)
    }

    /// Copies the named tensor's values out.
    public func tensor(_ spec: TensorSpec) -> [Float] { Array(values[spec.range]) }

    /// Sets every element to zero.
    public mutating func zero() {
        values.withUnsafeMutableBufferPointer { p in p.update(repeating: 0) }
    }
}
