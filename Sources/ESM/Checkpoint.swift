import Foundation

/// A HuggingFace ESM-2 checkpoint directory that cannot be loaded or saved.
/// Malformed safetensors files raise `SafeTensorsError` instead.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    /// The directory has no config.json.
    case missingConfig(directory: String)
    /// The checkpoint path does not exist.
    case notFound(path: String)
    /// config.json is unreadable, not JSON, or a field is missing, mistyped or unsupported.
    case badConfig(path: String, field: String, detail: String)
    /// The directory has no weight file kneuron reads.
    case missingWeights(directory: String)
    /// model.safetensors.index.json is malformed.
    case badIndex(path: String, detail: String)
    /// A tensor the model needs is absent.
    case missingTensor(name: String, file: String)
    /// A tensor has a shape other than the one config.json implies.
    case wrongShape(name: String, expected: [Int], found: [Int], file: String)
    /// A tensor that is neither an ESM-2 classifier tensor nor a known ignorable extra.
    case unexpectedTensor(name: String, file: String)
    /// Two stored tensors map to the same parameter (e.g. `LayerNorm.gamma` and
    /// `LayerNorm.weight`, or one name in two shards).
    case duplicateTensor(name: String, files: [String])
    /// The checkpoint has no classifier head and no `numLabels` was given.
    case numLabelsRequired(directory: String)
    /// The parameter buffer does not match the configuration being saved.
    case layoutMismatch(detail: String)
    /// Writing the directory failed.
    case writeFailed(path: String, detail: String)

    public var description: String {
        switch self {
        case .notFound(let path):
            return "\(path): no such file or directory; model.checkpoint (or --model) names a HuggingFace ESM-2 directory or a fair-esm .pt file"
        case .missingConfig(let dir):
            return "\(dir): no config.json; a HuggingFace ESM-2 checkpoint directory holds config.json and model.safetensors"
        case .badConfig(let path, let field, let detail):
            return "\(path): field '\(field)': \(detail)"
        case .missingWeights(let dir):
            return "\(dir): no weights: kneuron reads model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json in a HuggingFace directory, or a fair-esm ESM-2 .pt file given as the path itself"
        case .badIndex(let path, let detail):
            return "\(path): \(detail)"
        case .missingTensor(let name, let file):
            return "\(file): tensor '\(name)' is missing; the checkpoint does not match config.json"
        case .wrongShape(let name, let expected, let found, let file):
            return "\(file): tensor '\(name)' has shape \(found) but config.json implies \(expected)"
        case .unexpectedTensor(let name, let file):
            return "\(file): unexpected tensor '\(name)'; kneuron reads HuggingFace ESM-2 names (EsmModel, EsmForMaskedLM or EsmForSequenceClassification) and fair-esm ESM-2 names (give the .pt file itself)"
        case .duplicateTensor(let name, let files):
            return "tensor '\(name)' is stored more than once (\(files.joined(separator: ", "))), e.g. as both LayerNorm.gamma and LayerNorm.weight"
        case .numLabelsRequired(let dir):
            return "\(dir): the checkpoint has no classifier head (EsmModel or EsmForMaskedLM); give the number of classes so a new head can be initialised"
        case .layoutMismatch(let detail):
            return "parameters do not match the configuration: \(detail)"
        case .writeFailed(let path, let detail):
            return "\(path): cannot write: \(detail)"
        }
    }
}

/// Reading and writing HuggingFace ESM-2 checkpoint directories (config.json + safetensors).
///
/// Name mapping lives in one place, `canonicalName(_:)`: stored names are mapped to the
/// `EsmForSequenceClassification` names of `ParameterLayout`.
public enum Checkpoint {
    /// The classifier-head tensors, initialised when a checkpoint has none.
    static let classifierTensors: [GlobalTensor] = [.classifierDenseWeight, .classifierDenseBias,
                                                     .classifierOutWeight, .classifierOutBias]

    /// What a checkpoint directory holds, read from config.json and the tensor headers only
    /// (no tensor values): the stored configuration, its weight files, whether it has a
    /// classifier head, and the ignorable tensors it carries. Every tensor name and shape has
    /// been checked against the configuration, so a later `load` of the same directory fails
    /// only on I/O.
    public struct Contents: Sendable {
        /// The configuration as stored (its `numLabels` is the stored head's when there is one).
        public var config: ESMConfig
        /// The weight files read, in order (model.safetensors, or the index's shards).
        public var weightFiles: [String]
        /// True when the classifier head (`classifier.dense`, `classifier.out_proj`) is stored.
        public var hasClassifier: Bool
        /// Tensors skipped by name, counted by group: `lm_head` (EsmForMaskedLM's language-model
        /// head), `contact_head`, `pooler`, `rotary inv_freq`, `position_ids`.
        public var ignored: [String: Int]
        /// config.json's `architectures`, when given (e.g. `EsmForMaskedLM`).
        public var architectures: [String]
        /// What a user should know about tensors that were not loaded: a stored rotary
        /// `inv_freq` that differs from the exact 1 / 10000^(2i/d) (rounded when the checkpoint
        /// was saved in F16 or BF16; kneuron recomputes it, transformers uses the stored one).
        public var notes: [String] = []
        /// The stored head's labels in output order, from `id2label`; nil when config.json has
        /// no `id2label` for every output, or there is no head.
        public var headLabels: [String]? {
            guard hasClassifier, let map = config.id2label else { return nil }
            let labels = (0 ..< config.numLabels).map { map[String($0)] }
            return labels.allSatisfy { $0 != nil } ? labels.map { $0! } : nil
        }
    }

    /// Reads and checks what the HF ESM-2 directory `directory` holds, without reading tensor
    /// values (safetensors files are memory-mapped; only their headers are parsed).
    /// - Throws: the `CheckpointError`s of `load(directory:numLabels:seed:initialiseHead:)`
    ///   except `.numLabelsRequired`, and `SafeTensorsError` for malformed files.
    public static func inspect(directory: String) throws -> Contents {
        let plan = try resolve(directory: directory, numLabels: nil, initialiseHead: false, requireLabels: false)
        return plan.contents
    }

    /// Loads an HF ESM-2 directory: config.json (with `id2label`) and model.safetensors or a
    /// sharded model.safetensors.index.json. Tensor names may carry the prefix `esm.`
    /// (EsmForSequenceClassification / EsmForMaskedLM) or none (EsmModel); `LayerNorm.gamma`
    /// and `LayerNorm.beta` (written by transformers 5.x) are aliases of `weight` and `bias`.
    /// Known ignorable extras are skipped: `*.rotary_embeddings.inv_freq` (recomputed),
    /// `esm.contact_head.*`, `lm_head.*`, `esm.pooler.*`, `esm.embeddings.position_ids`
    /// (`inspect` counts them). Any other extra tensor is an error. F32, F16, BF16 and F64
    /// tensors are converted to Float32.
    ///
    /// The classifier head (HF `EsmClassificationHead`: `classifier.dense` H x H and
    /// `classifier.out_proj` numLabels x H) is initialised instead of loaded when the
    /// checkpoint has none (EsmForMaskedLM / EsmModel) or `initialiseHead` is true:
    /// `numLabels` must then be given; both weights are drawn from N(0, 0.02) (HF's
    /// `initializer_range`) with a generator seeded by `seed`, the biases are zero, and their
    /// names are returned in `initialisedTensors`. When `numLabels` is
    /// given it overrides config.json (and drops its `id2label` when the
    /// count differs); a stored classifier of another size is then a `wrongShape` error.
    ///
    /// - Returns: the configuration, every parameter in `ParameterLayout(config:)` order,
    ///   and the names of tensors initialised rather than loaded.
    /// - Throws: `CheckpointError` (`.missingConfig`, `.badConfig`, `.missingWeights`,
    ///   `.badIndex`, `.missingTensor`, `.wrongShape`, `.unexpectedTensor`,
    ///   `.duplicateTensor`, `.numLabelsRequired`) and `SafeTensorsError` for malformed files.
    public static func load(directory: String, numLabels: Int? = nil, seed: UInt64 = 0, initialiseHead: Bool = false) throws
        -> (config: ESMConfig, parameters: ParameterBuffer, initialisedTensors: [String]) {
        let (config, parameters, initialised, _) = try loadWithContents(directory: directory, numLabels: numLabels, seed: seed, initialiseHead: initialiseHead)
        return (config, parameters, initialised)
    }

    /// `load` that also returns what `inspect` would, from the same single read of the files
    /// (a pickled checkpoint is unpickled once).
    /// - Throws: as `load`.
    public static func loadWithContents(directory: String, numLabels: Int? = nil, seed: UInt64 = 0, initialiseHead: Bool = false) throws
        -> (config: ESMConfig, parameters: ParameterBuffer, initialisedTensors: [String], contents: Contents) {
        let plan = try resolve(directory: directory, numLabels: numLabels, initialiseHead: initialiseHead, requireLabels: true)
        let config = plan.config
        let layout = ParameterLayout(config: config)
        var parameters = ParameterBuffer(layout: layout)
        for (spec, file, info) in plan.copies {
            try parameters.values.withUnsafeMutableBufferPointer { all in
                try file.copyFloats(info, into: UnsafeMutableBufferPointer(rebasing: all[spec.range]))
            }
        }
        if !plan.initialised.isEmpty {
            var rng = SeededNormal(seed: seed)
            for g in [GlobalTensor.classifierDenseWeight, .classifierOutWeight] {
                let range = layout.spec(g).range
                for i in range { parameters.values[i] = 0.02 * rng.next() }
            }
        }
        return (config, parameters, plan.initialised, plan.contents)
    }

    /// The checked plan of a load: configuration, which stored tensor fills which parameter,
    /// and which head tensors are initialised.
    private struct LoadPlan {
        var contents: Contents
        var config: ESMConfig
        var copies: [(spec: TensorSpec, file: SafeTensorsFile, info: SafeTensorInfo)]
        var initialised: [String]
    }

    /// Reads config.json and the tensor headers and matches every parameter of the layout to a
    /// stored tensor (names via `canonicalName`, shapes checked). With `requireLabels` false a
    /// headless checkpoint is checked with its config's `numLabels` (only the encoder matters).
    private static func resolve(directory: String, numLabels: Int?, initialiseHead: Bool, requireLabels: Bool) throws -> LoadPlan {
        let dir = URL(fileURLWithPath: directory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory) else { throw CheckpointError.notFound(path: directory) }
        let configPath: String
        var config: ESMConfig
        let architectures: [String]
        let files: [SafeTensorsFile]
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            // A fair-esm checkpoint file (`esm.pretrained`'s esm2_*.pt).
            configPath = directory
            let fair = try fairESM(path: directory)
            config = fair.config
            files = [fair.file]
            architectures = ["fair-esm ESM2"]
        } else {
            configPath = dir.appendingPathComponent("config.json").path
            config = try readConfig(configPath, directory: directory)
            architectures = Self.architectures(configPath)
            files = try weightFiles(dir, directory: directory)
        }

        // Collect the stored tensors by canonical name.
        var found: [String: (file: SafeTensorsFile, info: SafeTensorInfo)] = [:]
        var ignored: [String: Int] = [:]
        var worstInvFreq: Float = 0
        for file in files {
            for stored in file.tensors.keys.sorted() {
                guard let name = canonicalName(stored) else {
                    ignored[ignoredGroup(stored), default: 0] += 1
                    if stored.hasSuffix("inv_freq"), let values = try? file.floats(stored), config.numAttentionHeads > 0 {
                        let d = config.hiddenSize / config.numAttentionHeads
                        for (i, v) in values.enumerated() where i < d / 2 {
                            let exact = Float(1) / powf(10000, Float(2 * i) / Float(d))
                            worstInvFreq = max(worstInvFreq, abs(v - exact) / exact)
                        }
                    }
                    continue
                }
                if let previous = found[name] {
                    throw CheckpointError.duplicateTensor(name: name, files: [previous.file.path + ":" + previous.info.name,
                                                                              file.path + ":" + stored])
                }
                found[name] = (file, file.tensors[stored]!)
            }
        }

        let hasHead = classifierTensors.contains { found[$0.rawValue] != nil }
        var contents = Contents(config: config, weightFiles: files.map(\.path), hasClassifier: hasHead,
                                ignored: ignored, architectures: architectures)
        if worstInvFreq > 1e-6 {
            contents.notes.append(String(format: "the stored rotary inv_freq differs from the exact 1/10000^(2i/d) by up to %.2g (relative; rounded when the checkpoint was saved in a lower precision): kneuron recomputes it exactly, so its outputs differ slightly from transformers', which uses the stored values", Double(worstInvFreq)))
        }
        let initialiseHead = initialiseHead || !hasHead
        if let n = numLabels {
            if n != config.numLabels {
                config.numLabels = n
                if config.id2label?.count != n { config.id2label = nil }
            }
        } else if initialiseHead && requireLabels {
            throw CheckpointError.numLabelsRequired(directory: directory)
        }
        do { try config.validate() } catch let e as ESMConfigError {
            if case .unsupported(let field, let value, let expected) = e {
                throw CheckpointError.badConfig(path: configPath, field: field, detail: "is \(value); expected \(expected)")
            }
            throw e
        }

        // The stored layers must be the configured ones before the layout is built for them.
        let lastLayer = "esm.encoder.layer.\(config.numHiddenLayers - 1).\(LayerTensor.queryWeight.rawValue)"
        guard found[lastLayer] != nil else { throw CheckpointError.missingTensor(name: lastLayer, file: files.first?.path ?? directory) }
        if let extra = found["esm.encoder.layer.\(config.numHiddenLayers).\(LayerTensor.queryWeight.rawValue)"] {
            throw CheckpointError.unexpectedTensor(name: extra.info.name, file: extra.file.path)
        }
        let layout = ParameterLayout(config: config)
        var copies: [(spec: TensorSpec, file: SafeTensorsFile, info: SafeTensorInfo)] = []
        var initialised: [String] = []
        var used = Set<String>()
        let firstFile = files.first?.path ?? directory
        for spec in layout.tensors {
            let isHead = GlobalTensor(rawValue: spec.name).map { classifierTensors.contains($0) } ?? false
            if isHead && initialiseHead {
                initialised.append(spec.name)
                if found[spec.name] != nil { used.insert(spec.name) }
                continue
            }
            guard let (file, info) = found[spec.name] else {
                throw CheckpointError.missingTensor(name: spec.name, file: firstFile)
            }
            guard info.shape == spec.shape else {
                throw CheckpointError.wrongShape(name: spec.name, expected: spec.shape, found: info.shape, file: file.path)
            }
            copies.append((spec, file, info))
            used.insert(spec.name)
        }
        if let extra = found.keys.sorted().first(where: { !used.contains($0) }) {
            let (file, info) = found[extra]!
            throw CheckpointError.unexpectedTensor(name: info.name, file: file.path)
        }
        return LoadPlan(contents: contents, config: config, copies: copies, initialised: requireLabels ? initialised : [])
    }

    /// The weight files of the checkpoint at `path`, found by name without reading them: the
    /// file itself (a fair-esm .pt), or a directory's model.safetensors, the shards its index
    /// names, pytorch_model.bin, or the shards of pytorch_model.bin.index.json; empty when there
    /// are none (`inspect` then says why). For content keys: hashing these is cheap, where
    /// `inspect` reads a pickled checkpoint whole.
    public static func weightFilePaths(_ path: String) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return [] }
        guard isDirectory.boolValue else { return [path] }
        let dir = URL(fileURLWithPath: path)
        func shards(_ index: String) -> [String] {
            guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent(index).path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = object["weight_map"] as? [String: String] else { return [] }
            return Set(map.values).sorted().filter { !$0.contains("/") }.map { dir.appendingPathComponent($0).path }
        }
        // The order weightFiles reads them in.
        for (name, isIndex) in [("model.safetensors", false), ("model.safetensors.index.json", true),
                                ("pytorch_model.bin", false), ("pytorch_model.bin.index.json", true)]
        where FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path) {
            return isIndex ? shards(name) : [dir.appendingPathComponent(name).path]
        }
        return []
    }

    /// A `torch.save`d state_dict (HF `pytorch_model.bin`, or `torch.save(model.state_dict())`)
    /// as a safetensors image, read by the restricted unpickler (`TorchCheckpoint`).
    /// - Throws: `TorchCheckpointError`; `.badTensor` when the file holds something other than
    ///   a dict of tensors.
    static func stateDict(path: String) throws -> SafeTensorsFile {
        try TorchCheckpoint.read(path: path) { object, archive, prefix in
            guard case .dict(let state) = object else {
                throw TorchCheckpointError.badTensor(path: path, detail: "holds a \(object.kind), not a state_dict (a dict of name -> tensor)")
            }
            return try TorchCheckpoint.safetensors(state, archive: archive, prefix: prefix, path: path)
        }
    }

    /// A fair-esm ESM-2 checkpoint (`esm.pretrained`'s `esm2_t6_8M_UR50D.pt`: a dict with the
    /// state_dict under `model` and the architecture under `cfg` -> `model`, an
    /// `argparse.Namespace` with `encoder_layers`, `encoder_embed_dim`,
    /// `encoder_attention_heads`, `token_dropout`), read as fair-esm's
    /// `_load_model_and_alphabet_core_v2` does: the prefixes `encoder.sentence_encoder.` and
    /// `encoder.` are removed, then `canonicalName` maps fair-esm's names to HF's (as
    /// transformers' `convert_esm.py`). The configuration is HF's for ESM-2: vocabulary 33,
    /// `<pad>` 1, `<mask>` 32, rotary positions up to 1026, LayerNorm eps 1e-5, FFN size from
    /// `fc1`; no classifier head.
    /// - Throws: `TorchCheckpointError`; `CheckpointError.badConfig` when `cfg` lacks a field or
    ///   the file is an ESM-1 checkpoint (`args` only).
    static func fairESM(path: String) throws -> (config: ESMConfig, file: SafeTensorsFile) {
        try TorchCheckpoint.read(path: path) { object, archive, prefix in try fairESM(path: path, object: object, archive: archive, prefix: prefix) }
    }

    /// `fairESM(path:)` on the unpickled top-level `object`.
    private static func fairESM(path: String, object: PickleValue, archive: ZipEntries, prefix: String) throws -> (config: ESMConfig, file: SafeTensorsFile) {
        guard case .dict(let top) = object, case .dict(let state)? = top["model"] else {
            throw CheckpointError.badConfig(path: path, field: "model", detail: "is missing: a fair-esm checkpoint is a dict with the state_dict under 'model' (for a HuggingFace model give its directory)")
        }
        guard case .dict(let cfg)? = top["cfg"], case .namespace(let model)? = cfg["model"] else {
            let detail = top["args"] != nil ? "is missing and 'args' is present: an ESM-1 / ESM-1b checkpoint, not ESM-2" : "is missing: no cfg['model'] with the architecture"
            throw CheckpointError.badConfig(path: path, field: "cfg.model", detail: detail)
        }
        func int(_ key: String) throws -> Int {
            guard let v = model[key]?.int, v > 0 else { throw CheckpointError.badConfig(path: path, field: "cfg.model.\(key)", detail: "is missing or not a positive integer") }
            return v
        }
        let layers = try int("encoder_layers"), hidden = try int("encoder_embed_dim"), heads = try int("encoder_attention_heads")
        var tokenDropout = true
        if case .bool(let b)? = model["token_dropout"] { tokenDropout = b }
        let file = try TorchCheckpoint.safetensors(state, archive: archive, prefix: prefix, path: path) { name in
            for p in ["encoder.sentence_encoder.", "encoder."] where name.hasPrefix(p) { return String(name.dropFirst(p.count)) }
            return name
        }
        let intermediate = file.tensors["layers.0.fc1.weight"]?.shape.first ?? 4 * hidden
        let vocab = file.tensors["embed_tokens.weight"]?.shape.first ?? 33
        let config = ESMConfig(vocabSize: vocab, hiddenSize: hidden, numHiddenLayers: layers, numAttentionHeads: heads,
                               intermediateSize: intermediate, maxPositionEmbeddings: 1026, layerNormEps: 1e-5,
                               tokenDropout: tokenDropout, maskTokenId: 32, padTokenId: 1, numLabels: 2)
        return (config, file)
    }

    /// The group an ignored stored tensor is counted under in `Contents.ignored`.
    private static func ignoredGroup(_ stored: String) -> String {
        if stored.hasPrefix("lm_head.") { return "lm_head" }
        if stored.contains("contact_head.") { return "contact_head" }
        if stored.contains("pooler.") { return "pooler" }
        if stored.hasSuffix("inv_freq") { return "rotary inv_freq" }
        return "position_ids"
    }

    /// config.json's `architectures` list (empty when absent or not a list of strings).
    private static func architectures(_ path: String) -> [String] {
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return object["architectures"] as? [String] ?? []
    }

    /// Maps a stored tensor name to its `ParameterLayout` name, or nil for a known
    /// ignorable extra. Unknown names are returned unchanged (the caller reports them).
    /// - `embeddings.*`, `encoder.*`, `contact_head.*`, `pooler.*` (EsmModel) gain `esm.`;
    /// - `...LayerNorm.gamma`/`.beta` (and `layer_norm`) become `.weight`/`.bias`.
    static func canonicalName(_ stored: String) -> String? {
        var name = stored
        // fair-esm ESM-2 names (after `fairESM` removed `encoder.sentence_encoder.`), as
        // transformers' models/esm/convert_esm.py maps them.
        if name.hasPrefix("layers.") {
            let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
            guard parts.count == 3 else { return name }
            if parts[2].hasSuffix("rot_emb.inv_freq") { return nil }
            let map = [("self_attn.q_proj.", "attention.self.query."), ("self_attn.k_proj.", "attention.self.key."),
                       ("self_attn.v_proj.", "attention.self.value."), ("self_attn.out_proj.", "attention.output.dense."),
                       ("self_attn_layer_norm.", "attention.LayerNorm."), ("final_layer_norm.", "LayerNorm."),
                       ("fc1.", "intermediate.dense."), ("fc2.", "output.dense.")]
            for (fair, hf) in map where parts[2].hasPrefix(fair) {
                return "esm.encoder.layer.\(parts[1]).\(hf)\(parts[2].dropFirst(fair.count))"
            }
            return name
        }
        if name == "embed_tokens.weight" { return "esm.embeddings.word_embeddings.weight" }
        if name.hasPrefix("emb_layer_norm_after.") { return "esm.encoder." + name }
        for p in ["embeddings.", "encoder.", "contact_head.", "pooler.", "rotary_embeddings."] where name.hasPrefix(p) {
            name = "esm." + name
        }
        if name.hasSuffix(".rotary_embeddings.inv_freq") || name.hasPrefix("esm.contact_head.")
            || name.hasPrefix("lm_head.") || name.hasPrefix("esm.pooler.") || name == "esm.embeddings.position_ids" {
            return nil
        }
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count >= 2, let parent = parts.dropLast().last, parent.lowercased().hasSuffix("layernorm") || parent.hasSuffix("layer_norm") || parent.hasPrefix("emb_layer_norm") {
            if parts[parts.count - 1] == "gamma" { parts[parts.count - 1] = "weight" }
            if parts[parts.count - 1] == "beta" { parts[parts.count - 1] = "bias" }
            name = parts.joined(separator: ".")
        }
        return name
    }

    /// Writes an HF EsmForSequenceClassification directory (created if needed):
    /// config.json (`architectures` ["EsmForSequenceClassification"], `model_type` "esm",
    /// every `ESMConfig` field, `id2label`/`label2id`, ESM-2 dropout 0) and model.safetensors
    /// (F32, every tensor by its HF name, metadata `format: pt`). Both files are written
    /// atomically. The caller hashes model.safetensors if it needs a content key.
    /// - Throws: `CheckpointError.layoutMismatch` when `parameters` was not laid out for
    ///   `config`, `.writeFailed`, and `SafeTensorsError.io`.
    public static func save(config: ESMConfig, parameters: ParameterBuffer, to directory: String) throws {
        let layout = ParameterLayout(config: config)
        guard parameters.layout.tensors == layout.tensors else {
            throw CheckpointError.layoutMismatch(detail: "the buffer has \(parameters.layout.tensors.count) tensors laid out for another configuration than the \(layout.tensors.count) of hidden_size \(config.hiddenSize), \(config.numHiddenLayers) layers, \(config.numLabels) labels")
        }
        guard parameters.values.count == layout.count else {
            throw CheckpointError.layoutMismatch(detail: "the buffer holds \(parameters.values.count) values, the layout needs \(layout.count)")
        }
        let dir = URL(fileURLWithPath: directory)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError.writeFailed(path: directory, detail: error.localizedDescription)
        }

        // config.json: every ESMConfig field plus what HF needs to rebuild the model.
        let configPath = dir.appendingPathComponent("config.json")
        do {
            try Data(configJSON(config).utf8).write(to: configPath, options: .atomic)
        } catch {
            throw CheckpointError.writeFailed(path: configPath.path, detail: error.localizedDescription)
        }

        let tensors = layout.tensors.map { (name: $0.name, shape: $0.shape, values: parameters.tensor($0)) }
        try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"],
                                    to: dir.appendingPathComponent("model.safetensors").path)
    }

    // MARK: - Private helpers

    /// A JSON value for config.json. Floats are always written with a decimal point or an
    /// exponent: transformers 5.x validates config fields strictly and rejects `0` for a
    /// float field such as `hidden_dropout_prob` (JSONSerialization would write `0`).
    private enum ConfigValue {
        case int(Int), float(Double), bool(Bool), string(String)
        case strings([String]), labels([String: String]), ids([String: Int])

        var text: String {
            switch self {
            case .int(let v): return "\(v)"
            case .float(let v):
                let t = "\(v)"  // Swift prints 0.0, 0.02, 1e-05: valid JSON with a float marker
                return t.contains(".") || t.contains("e") ? t : t + ".0"
            case .bool(let v): return v ? "true" : "false"
            case .string(let v): return jsonString(v)
            case .strings(let v): return "[" + v.map(jsonString).joined(separator: ", ") + "]"
            case .labels(let v):
                let body = v.sorted { (Int($0.key) ?? 0, $0.key) < (Int($1.key) ?? 0, $1.key) }
                    .map { "    \(jsonString($0.key)): \(jsonString($0.value))" }
                return "{\n" + body.joined(separator: ",\n") + "\n  }"
            case .ids(let v):
                let body = v.sorted { $0.key < $1.key }.map { "    \(jsonString($0.key)): \($0.value)" }
                return "{\n" + body.joined(separator: ",\n") + "\n  }"
            }
        }
    }

    /// The config.json text of an HF EsmForSequenceClassification with `config`
    /// (keys from `ESMConfig.CodingKeys`, sorted, two-space indented).
    static func configJSON(_ config: ESMConfig) -> String {
        typealias K = ESMConfig.CodingKeys
        let labels = config.id2label
            ?? Dictionary(uniqueKeysWithValues: (0 ..< config.numLabels).map { ("\($0)", "LABEL_\($0)") })
        let fields: [String: ConfigValue] = [
            K.vocabSize.rawValue: .int(config.vocabSize),
            K.hiddenSize.rawValue: .int(config.hiddenSize),
            K.numHiddenLayers.rawValue: .int(config.numHiddenLayers),
            K.numAttentionHeads.rawValue: .int(config.numAttentionHeads),
            K.intermediateSize.rawValue: .int(config.intermediateSize),
            K.maxPositionEmbeddings.rawValue: .int(config.maxPositionEmbeddings),
            // Float -> shortest decimal -> Double, so 1e-5 is written as 1e-05, not 9.99999974e-06.
            K.layerNormEps.rawValue: .float(Double("\(config.layerNormEps)") ?? Double(config.layerNormEps)),
            K.tokenDropout.rawValue: .bool(config.tokenDropout),
            K.maskTokenId.rawValue: .int(config.maskTokenId),
            K.padTokenId.rawValue: .int(config.padTokenId),
            K.numLabels.rawValue: .int(config.numLabels),
            K.id2label.rawValue: .labels(labels),
            K.classifierPooling.rawValue: .string(config.classifierPooling.rawValue),
            K.positionEmbeddingType.rawValue: .string("rotary"),
            K.embLayerNormBefore.rawValue: .bool(false),
            K.hiddenAct.rawValue: .string("gelu"),
            "label2id": .ids(Dictionary(labels.map { ($0.value, Int($0.key) ?? 0) }, uniquingKeysWith: { a, _ in a })),
            "architectures": .strings(["EsmForSequenceClassification"]),
            "model_type": .string("esm"),
            "hidden_dropout_prob": .float(0),
            "attention_probs_dropout_prob": .float(0),
            "initializer_range": .float(0.02),
            "rope_theta": .float(10000),
            "is_decoder": .bool(false),
            "tie_word_embeddings": .bool(false),
            "problem_type": .string("single_label_classification"),
            "dtype": .string("float32"),
            "eos_token_id": .int(2),
            "cls_token_id": .int(0),
        ]
        let body = fields.sorted { $0.key < $1.key }.map { "  \(jsonString($0.key)): \($0.value.text)" }
        return "{\n" + body.joined(separator: ",\n") + "\n}\n"
    }

    private static func readConfig(_ path: String, directory: String) throws -> ESMConfig {
        guard FileManager.default.fileExists(atPath: path) else { throw CheckpointError.missingConfig(directory: directory) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CheckpointError.badConfig(path: path, field: "(file)", detail: error.localizedDescription)
        }
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let type = object["model_type"] as? String, type != "esm" {
            throw CheckpointError.badConfig(path: path, field: "model_type", detail: "is '\(type)'; expected 'esm'")
        }
        do {
            return try JSONDecoder().decode(ESMConfig.self, from: data)
        } catch let e as ESMConfigError {
            if case .unsupported(let field, let value, let expected) = e {
                throw CheckpointError.badConfig(path: path, field: field, detail: "is \(value); expected \(expected)")
            }
            throw CheckpointError.badConfig(path: path, field: "(config)", detail: e.description)
        } catch let e as DecodingError {
            switch e {
            case .keyNotFound(let key, let ctx):
                throw CheckpointError.badConfig(path: path, field: fieldPath(ctx.codingPath + [key]), detail: "is missing")
            case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx):
                throw CheckpointError.badConfig(path: path, field: fieldPath(ctx.codingPath), detail: ctx.debugDescription)
            case .dataCorrupted(let ctx):
                throw CheckpointError.badConfig(path: path, field: ctx.codingPath.isEmpty ? "(file)" : fieldPath(ctx.codingPath),
                                                detail: "not valid JSON: \(ctx.debugDescription)")
            @unknown default:
                throw CheckpointError.badConfig(path: path, field: "(config)", detail: "\(e)")
            }
        }
    }

    private static func fieldPath(_ path: [CodingKey]) -> String {
        path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    /// The safetensors files of a directory: model.safetensors, else the shards named by
    /// model.safetensors.index.json (`weight_map`: tensor name -> file name).
    private static func weightFiles(_ dir: URL, directory: String) throws -> [SafeTensorsFile] {
        let single = dir.appendingPathComponent("model.safetensors").path
        if FileManager.default.fileExists(atPath: single) { return [try SafeTensorsFile(path: single)] }
        var indexPath = dir.appendingPathComponent("model.safetensors.index.json").path
        var pickled = false
        if !FileManager.default.fileExists(atPath: indexPath) {
            let bin = dir.appendingPathComponent("pytorch_model.bin").path
            if FileManager.default.fileExists(atPath: bin) { return [try stateDict(path: bin)] }
            indexPath = dir.appendingPathComponent("pytorch_model.bin.index.json").path
            pickled = true
        }
        guard FileManager.default.fileExists(atPath: indexPath) else { throw CheckpointError.missingWeights(directory: directory) }
        let map: [String: String]
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: indexPath))
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let weightMap = object["weight_map"] as? [String: String] else {
                throw CheckpointError.badIndex(path: indexPath, detail: "no 'weight_map' object of tensor name -> file name")
            }
            map = weightMap
        } catch let e as CheckpointError {
            throw e
        } catch {
            throw CheckpointError.badIndex(path: indexPath, detail: "not readable JSON: \(error.localizedDescription)")
        }
        var files: [SafeTensorsFile] = []
        for name in Set(map.values).sorted() {
            guard !name.contains("/"), !name.hasPrefix(".") else {
                throw CheckpointError.badIndex(path: indexPath, detail: "shard '\(name)' is not a file name in the checkpoint directory")
            }
            let path = dir.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: path) else {
                throw CheckpointError.badIndex(path: indexPath, detail: "shard '\(name)' does not exist")
            }
            files.append(try pickled ? stateDict(path: path) : SafeTensorsFile(path: path))
        }
        for (tensor, shard) in map.sorted(by: { $0.key < $1.key }) {
            guard let file = files.first(where: { URL(fileURLWithPath: $0.path).lastPathComponent == shard }),
                  file.tensors[tensor] != nil else {
                throw CheckpointError.missingTensor(name: tensor, file: dir.appendingPathComponent(shard).path)
            }
        }
        return files
    }
}

/// A portable seeded N(0,1) generator: SplitMix64 (Steele, Lea & Flood 2014) feeding
/// Box-Muller. Identical sequences on every platform for a given seed.
struct SeededNormal {
    private var rng: SplitMix64
    private var spare: Float?

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    /// The next SplitMix64 output.
    mutating func nextUInt64() -> UInt64 { rng.next() }

    /// A uniform double in (0, 1] from the top 53 bits.
    private mutating func uniform() -> Double {
        Double((nextUInt64() >> 11) + 1) * 0x1.0p-53
    }

    /// The next standard normal sample.
    mutating func next() -> Float {
        if let s = spare { spare = nil; return s }
        let u1 = uniform(), u2 = uniform()
        let r = (-2 * Foundation.log(u1)).squareRoot()
        let theta = 2 * Double.pi * u2
        spare = Float(r * Foundation.sin(theta))
        return Float(r * Foundation.cos(theta))
    }
}
