import Foundation

/// How the classification head summarises a sequence before `dense -> tanh -> out_proj`.
///
/// - `cls`: the final hidden state of `<cls>` (position 0), exactly as HuggingFace
///   `EsmClassificationHead` does.
/// - `mean`: the mean of the final hidden states over the residue positions
///   `1 ..< 1+L` (`<cls>`, `<eos>` and padding excluded). REFERENCE.md section 6 shows
///   this learns from scratch where `cls` does not.
public enum Pooling: String, Codable, Sendable, CaseIterable {
    case cls
    case mean
}

/// Errors raised while building or loading an ESM-2 configuration.
public enum ESMConfigError: Error, CustomStringConvertible, Equatable {
    /// The preset name is not one of `ESMConfig.presetNames`.
    case unknownPreset(String)
    /// A field has a value ESM-2 does not support; `field` is the config.json key.
    case unsupported(field: String, value: String, expected: String)

    public var description: String {
        switch self {
        case .unknownPreset(let name):
            return "unknown model preset '\(name)'; choose one of: \(ESMConfig.presetNames.joined(separator: ", "))"
        case .unsupported(let field, let value, let expected):
            return "config field '\(field)' is \(value); kneuron supports \(expected)"
        }
    }
}

/// The architecture of an ESM-2 encoder with a sequence-classification head.
///
/// Field names follow HuggingFace `EsmConfig` (config.json keys in snake_case), so an
/// HF checkpoint's config.json decodes into this type. Only the ESM-2 variant is
/// supported: rotary positions, no embedding LayerNorm, pre-LN blocks, exact-erf GELU
/// (REFERENCE.md section 2).
public struct ESMConfig: Codable, Sendable, Equatable {
    /// Vocabulary size (33 for the ESM-2 alphabet).
    public var vocabSize: Int
    /// Model width H.
    public var hiddenSize: Int
    /// Number of transformer blocks.
    public var numHiddenLayers: Int
    /// Number of attention heads; `hiddenSize` must be divisible by it.
    public var numAttentionHeads: Int
    /// FFN width (4H in every ESM-2 checkpoint).
    public var intermediateSize: Int
    /// Largest number of token positions, `<cls>` and `<eos>` included (1026 for ESM-2).
    public var maxPositionEmbeddings: Int
    /// LayerNorm epsilon (1e-5 for ESM-2).
    public var layerNormEps: Float
    /// ESM-2 token-dropout rescaling of embeddings (x 0.88 / (1 - mask fraction)).
    public var tokenDropout: Bool
    /// Token id of `<mask>` (32).
    public var maskTokenId: Int
    /// Token id of `<pad>` (1).
    public var padTokenId: Int
    /// Number of output classes C of the classification head.
    public var numLabels: Int
    /// Class names by id (HF `id2label`), when known.
    public var id2label: [String: String]?
    /// How the classification head pools the sequence (kneuron extension; HF uses `cls`).
    public var classifierPooling: Pooling

    /// Head dimension `hiddenSize / numAttentionHeads`.
    public var headDim: Int { hiddenSize / numAttentionHeads }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings"
        case layerNormEps = "layer_norm_eps"
        case tokenDropout = "token_dropout"
        case maskTokenId = "mask_token_id"
        case padTokenId = "pad_token_id"
        case numLabels = "num_labels"
        case id2label
        case classifierPooling = "classifier_pooling"
        case positionEmbeddingType = "position_embedding_type"
        case embLayerNormBefore = "emb_layer_norm_before"
        case hiddenAct = "hidden_act"
    }

    /// Creates a configuration; defaults are those of every ESM-2 checkpoint.
    public init(vocabSize: Int = 33, hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                intermediateSize: Int, maxPositionEmbeddings: Int = 1026, layerNormEps: Float = 1e-5,
                tokenDropout: Bool = true, maskTokenId: Int = 32, padTokenId: Int = 1,
                numLabels: Int, id2label: [String: String]? = nil, classifierPooling: Pooling = .cls) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.intermediateSize = intermediateSize
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.layerNormEps = layerNormEps
        self.tokenDropout = tokenDropout
        self.maskTokenId = maskTokenId
        self.padTokenId = padTokenId
        self.numLabels = numLabels
        self.id2label = id2label
        self.classifierPooling = classifierPooling
    }

    /// Decodes an HF config.json. Throws `DecodingError` for missing/mistyped fields and
    /// `ESMConfigError.unsupported` for a non-ESM-2 variant (absolute positions,
    /// embedding LayerNorm, a non-GELU activation, heads not dividing the width).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 33
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 1026
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? 1e-5
        tokenDropout = try c.decodeIfPresent(Bool.self, forKey: .tokenDropout) ?? true
        maskTokenId = try c.decodeIfPresent(Int.self, forKey: .maskTokenId) ?? 32
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId) ?? 1
        id2label = try c.decodeIfPresent([String: String].self, forKey: .id2label)
        numLabels = try c.decodeIfPresent(Int.self, forKey: .numLabels) ?? id2label?.count ?? 2
        classifierPooling = try c.decodeIfPresent(Pooling.self, forKey: .classifierPooling) ?? .cls
        if let p = try c.decodeIfPresent(String.self, forKey: .positionEmbeddingType), p != "rotary" {
            throw ESMConfigError.unsupported(field: "position_embedding_type", value: p, expected: "rotary (ESM-2)")
        }
        if let b = try c.decodeIfPresent(Bool.self, forKey: .embLayerNormBefore), b {
            throw ESMConfigError.unsupported(field: "emb_layer_norm_before", value: "true", expected: "false (ESM-2)")
        }
        if let act = try c.decodeIfPresent(String.self, forKey: .hiddenAct), act != "gelu" {
            throw ESMConfigError.unsupported(field: "hidden_act", value: act, expected: "gelu (exact erf)")
        }
        try validate()
    }

    /// Encodes as an HF-compatible config.json body (with `architectures` and
    /// `model_type` written by the checkpoint writer, not here).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(tokenDropout, forKey: .tokenDropout)
        try c.encode(maskTokenId, forKey: .maskTokenId)
        try c.encode(padTokenId, forKey: .padTokenId)
        try c.encode(numLabels, forKey: .numLabels)
        try c.encodeIfPresent(id2label, forKey: .id2label)
        try c.encode(classifierPooling, forKey: .classifierPooling)
        try c.encode("rotary", forKey: .positionEmbeddingType)
        try c.encode(false, forKey: .embLayerNormBefore)
        try c.encode("gelu", forKey: .hiddenAct)
    }

    /// Checks invariants the kernels rely on.
    /// - Throws: `ESMConfigError.unsupported` when heads do not divide the width, the head
    ///   dimension is odd (rotary needs pairs) or a size is not positive.
    public func validate() throws {
        for (name, v) in [("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                          ("num_attention_heads", numAttentionHeads), ("intermediate_size", intermediateSize),
                          ("num_labels", numLabels), ("vocab_size", vocabSize)] where v <= 0 {
            throw ESMConfigError.unsupported(field: name, value: "\(v)", expected: "a positive number")
        }
        // Bounds far above every ESM-2 (the largest: 48 layers, hidden 5120, FFN 20480), so that a
        // hostile config.json cannot make the parameter layout allocate without limit.
        for (name, v, limit) in [("num_hidden_layers", numHiddenLayers, 1024), ("hidden_size", hiddenSize, 65_536),
                                 ("intermediate_size", intermediateSize, 262_144), ("num_labels", numLabels, 100_000),
                                 ("vocab_size", vocabSize, 1_000_000), ("max_position_embeddings", maxPositionEmbeddings, 1_000_000)] where v > limit {
            throw ESMConfigError.unsupported(field: name, value: "\(v)", expected: "at most \(limit)")
        }
        if vocabSize < 33 {
            throw ESMConfigError.unsupported(field: "vocab_size", value: "\(vocabSize)", expected: "at least 33 (ESM-2's alphabet: <cls> <pad> <eos> <unk>, 25 residue letters, . - <null_1> <mask>)")
        }
        if maxPositionEmbeddings < 3 {
            throw ESMConfigError.unsupported(field: "max_position_embeddings", value: "\(maxPositionEmbeddings)", expected: "at least 3 (<cls>, one residue, <eos>)")
        }
        if !(layerNormEps > 0) || !layerNormEps.isFinite {
            throw ESMConfigError.unsupported(field: "layer_norm_eps", value: "\(layerNormEps)", expected: "a positive number")
        }
        if hiddenSize % numAttentionHeads != 0 || headDim % 2 != 0 {
            throw ESMConfigError.unsupported(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                             expected: "a divisor of hidden_size \(hiddenSize) giving an even head dimension")
        }
    }

    /// Names accepted by `preset(_:numLabels:pooling:)`.
    public static let presetNames = ["esm2_t6_8M", "esm2_t12_35M", "esm2_t30_150M", "esm2_t33_650M", "small", "mini", "tiny"]

    /// A named architecture: the four published ESM-2 shapes (REFERENCE.md section 2)
    /// and three small ones for runs on a laptop: `small` (4 layers, H=128, 8 heads,
    /// FFN 512), `mini` (2 layers, H=64, 4 heads, FFN 256) and `tiny` (2 layers, H=32,
    /// 4 heads, FFN 64; for tests).
    /// - Throws: `ESMConfigError.unknownPreset`.
    public static func preset(_ name: String, numLabels: Int, pooling: Pooling = .cls) throws -> ESMConfig {
        let shape: (Int, Int, Int, Int)
        switch name {
        case "esm2_t6_8M": shape = (6, 320, 20, 1280)
        case "esm2_t12_35M": shape = (12, 480, 20, 1920)
        case "esm2_t30_150M": shape = (30, 640, 20, 2560)
        case "esm2_t33_650M": shape = (33, 1280, 20, 5120)
        case "small": shape = (4, 128, 8, 512)
        case "mini": shape = (2, 64, 4, 256)
        case "tiny": shape = (2, 32, 4, 64)
        default: throw ESMConfigError.unknownPreset(name)
        }
        return ESMConfig(hiddenSize: shape.1, numHiddenLayers: shape.0, numAttentionHeads: shape.2,
                         intermediateSize: shape.3, numLabels: numLabels, classifierPooling: pooling)
    }
}
