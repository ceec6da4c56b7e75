import Foundation
import XCTest
@testable import ESM

final class CheckpointTests: XCTestCase {
    /// Every tensor of the fixture's model.safetensors: (stored name, shape, values).
    private func fixtureTensors(_ file: String = "model.safetensors") throws -> [(name: String, shape: [Int], values: [Float])] {
        let f = try SafeTensorsFile(path: Fixture.tinyESM.appendingPathComponent(file).path)
        return try f.tensors.keys.sorted().map { ($0, f.tensors[$0]!.shape, try f.floats($0)) }
    }

    private func fixtureConfigJSON() throws -> [String: Any] {
        let data = try Data(contentsOf: Fixture.tinyESM.appendingPathComponent("config.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Writes a checkpoint directory with `config` as config.json and `tensors` as model.safetensors.
    private func writeCheckpoint(_ tensors: [(name: String, shape: [Int], values: [Float])],
                                 config: [String: Any]? = nil) throws -> String {
        let dir = try temporaryDirectory(self)
        let json = try config ?? fixtureConfigJSON()
        try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("config.json"))
        try SafeTensorsWriter.write(tensors, metadata: ["format": "pt"], to: dir.appendingPathComponent("model.safetensors").path)
        return dir.path
    }

    func testLoadsFixtureWithGammaBetaNamesAndSkipsExtras() throws {
        let (config, parameters, initialised) = try Checkpoint.load(directory: Fixture.tinyESM.path)
        XCTAssertEqual(config.hiddenSize, 32)
        XCTAssertEqual(config.numHiddenLayers, 2)
        XCTAssertEqual(config.numAttentionHeads, 4)
        XCTAssertEqual(config.intermediateSize, 64)
        XCTAssertEqual(config.numLabels, 7)
        XCTAssertEqual(config.id2label?["6"], "Translocases")
        XCTAssertEqual(config.layerNormEps, 1e-5)
        XCTAssertTrue(config.tokenDropout)
        XCTAssertEqual(config.classifierPooling, .cls)
        XCTAssertEqual(initialised, [])
        let layout = parameters.layout
        XCTAssertEqual(layout.count, parameters.values.count)
        // Values read in Python (see SafeTensorsTests.pythonValues).
        XCTAssertEqual(parameters.tensor(layout.spec(layer: 0, .ffnLayerNormWeight))[4], Float(0.9724313616752625))
        XCTAssertEqual(parameters.tensor(layout.spec(layer: 1, .attentionLayerNormBias))[31], Float(0.06391388177871704))
        XCTAssertEqual(parameters.tensor(layout.spec(layer: 1, .keyWeight))[3 * 32 + 17], Float(0.31657955050468445))
        XCTAssertEqual(parameters.tensor(layout.spec(.wordEmbeddings))[5 * 32 + 7], Float(-0.027861563488841057))
        XCTAssertEqual(parameters.tensor(layout.spec(.classifierOutBias))[6], Float(0.08274035155773163))
        // Every parameter equals its stored tensor (gamma/beta mapped to weight/bias).
        let stored = Dictionary(uniqueKeysWithValues: try fixtureTensors().map { ($0.name, $0.values) })
        for spec in layout.tensors {
            let name = spec.name.replacingOccurrences(of: "LayerNorm.weight", with: "LayerNorm.gamma")
                .replacingOccurrences(of: "LayerNorm.bias", with: "LayerNorm.beta")
            XCTAssertEqual(parameters.tensor(spec), stored[name], spec.name)
        }
    }

    func testLoadsF16AndBF16Checkpoints() throws {
        let reference = try Checkpoint.load(directory: Fixture.tinyESM.path).parameters.values
        for (file, bound) in [("model-f16.safetensors", Float(1.0 / 2048)), ("model-bf16.safetensors", Float(1.0 / 256))] {
            let dir = try temporaryDirectory(self)
            try FileManager.default.copyItem(at: Fixture.tinyESM.appendingPathComponent("config.json"),
                                             to: dir.appendingPathComponent("config.json"))
            try FileManager.default.copyItem(at: Fixture.tinyESM.appendingPathComponent(file),
                                             to: dir.appendingPathComponent("model.safetensors"))
            let values = try Checkpoint.load(directory: dir.path).parameters.values
            var worst: Float = 0
            for i in values.indices { worst = max(worst, abs(values[i] - reference[i]) / max(abs(reference[i]), 0x1p-14)) }
            print("\(file): max relative difference from F32 \(worst)")
            XCTAssertLessThanOrEqual(worst, bound, file)
            XCTAssertGreaterThan(worst, 0, file)
        }
    }

    func testSaveThenLoadIsExact() throws {
        let (config, parameters, _) = try Checkpoint.load(directory: Fixture.tinyESM.path)
        // scripts/reference/check_roundtrip.py sets KNEURON_ROUNDTRIP_DIR to load the saved
        // directory with transformers' EsmForSequenceClassification.from_pretrained.
        let dir = try ProcessInfo.processInfo.environment["KNEURON_ROUNDTRIP_DIR"]
            ?? temporaryDirectory(self).appendingPathComponent("saved").path
        try Checkpoint.save(config: config, parameters: parameters, to: dir)
        let again = try Checkpoint.load(directory: dir)
        XCTAssertEqual(again.config, config)
        XCTAssertEqual(again.parameters.values.map(\.bitPattern), parameters.values.map(\.bitPattern))
        XCTAssertEqual(again.initialisedTensors, [])
        // The file uses HF weight/bias names and the writer's metadata.
        let file = try SafeTensorsFile(path: dir + "/model.safetensors")
        XCTAssertEqual(Set(file.tensors.keys), Set(parameters.layout.tensors.map(\.name)))
        XCTAssertEqual(file.metadata, ["format": "pt"])
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        XCTAssertEqual(json["architectures"] as? [String], ["EsmForSequenceClassification"])
        XCTAssertEqual(json["model_type"] as? String, "esm")
        XCTAssertEqual((json["label2id"] as? [String: Int])?["Ligases"], 5)
        XCTAssertEqual(json["layer_norm_eps"] as? Double, 1e-5)
        XCTAssertEqual(json["num_labels"] as? Int, 7)
        XCTAssertEqual((json["id2label"] as? [String: String])?["2"], "Hydrolases")
        // transformers 5.x rejects `0` for float fields: floats must carry a decimal point.
        let text = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        XCTAssertTrue(text.contains("\"hidden_dropout_prob\": 0.0,"), text)
        XCTAssertTrue(text.contains("\"layer_norm_eps\": 1e-05,"), text)
    }

    func testSaveRejectsForeignLayout() throws {
        let (config, parameters, _) = try Checkpoint.load(directory: Fixture.tinyESM.path)
        var other = config
        other.numLabels = 3
        let dir = try temporaryDirectory(self).path
        guard case .layoutMismatch? = assertThrows(CheckpointError.self, { try Checkpoint.save(config: other, parameters: parameters, to: dir) })
        else { return XCTFail("expected layoutMismatch") }
    }

    func testMaskedLMCheckpointGetsSeededClassifier() throws {
        // EsmForMaskedLM layout: esm.* + lm_head.*, no classifier.
        var tensors = try fixtureTensors().filter { !$0.name.hasPrefix("classifier.") }
        tensors.append(("lm_head.dense.weight", [32, 32], [Float](repeating: 0.5, count: 1024)))
        tensors.append(("lm_head.bias", [33], [Float](repeating: 0, count: 33)))
        tensors.append(("esm.embeddings.position_ids", [1, 4], [0, 1, 2, 3]))
        let dir = try writeCheckpoint(tensors)
        XCTAssertEqual(assertThrows(CheckpointError.self) { try Checkpoint.load(directory: dir) },
                       .numLabelsRequired(directory: dir))

        let a = try Checkpoint.load(directory: dir, numLabels: 5, seed: 7)
        XCTAssertEqual(a.config.numLabels, 5)
        XCTAssertNil(a.config.id2label, "7 stale class names are dropped for 5 classes")
        XCTAssertEqual(a.initialisedTensors, ["classifier.dense.weight", "classifier.dense.bias",
                                              "classifier.out_proj.weight", "classifier.out_proj.bias"])
        let layout = a.parameters.layout
        XCTAssertEqual(layout.spec(.classifierOutWeight).shape, [5, 32])
        XCTAssertEqual(a.parameters.tensor(layout.spec(.classifierDenseBias)), [Float](repeating: 0, count: 32))
        XCTAssertEqual(a.parameters.tensor(layout.spec(.classifierOutBias)), [Float](repeating: 0, count: 5))
        let w = a.parameters.tensor(layout.spec(.classifierDenseWeight))
        let mean = w.reduce(0, +) / Float(w.count)
        let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)).squareRoot()
        print("seeded classifier.dense.weight: mean \(mean), std \(std)")
        XCTAssertEqual(std, 0.02, accuracy: 0.002)
        XCTAssertEqual(mean, 0, accuracy: 0.002)
        // Deterministic in the seed; the encoder is loaded as stored.
        XCTAssertEqual(try Checkpoint.load(directory: dir, numLabels: 5, seed: 7).parameters, a.parameters)
        XCTAssertNotEqual(try Checkpoint.load(directory: dir, numLabels: 5, seed: 8).parameters.tensor(layout.spec(.classifierDenseWeight)), w)
        let full = try Checkpoint.load(directory: Fixture.tinyESM.path).parameters
        XCTAssertEqual(a.parameters.tensor(layout.spec(layer: 1, .valueWeight)), full.tensor(full.layout.spec(layer: 1, .valueWeight)))
    }

    func testBaseModelNamesWithoutPrefix() throws {
        // EsmModel layout: no "esm." prefix, a pooler, no classifier.
        var tensors = try fixtureTensors().filter { !$0.name.hasPrefix("classifier.") }
            .map { (name: $0.name.hasPrefix("esm.") ? String($0.name.dropFirst(4)) : $0.name, shape: $0.shape, values: $0.values) }
        tensors.append(("pooler.dense.weight", [32, 32], [Float](repeating: 0.1, count: 1024)))
        tensors.append(("rotary_embeddings.inv_freq", [4], [1, 0.1, 0.01, 0.001]))
        let dir = try writeCheckpoint(tensors)
        let loaded = try Checkpoint.load(directory: dir, numLabels: 7)
        XCTAssertEqual(loaded.config.id2label?["0"], "Oxidoreductases", "same class count keeps the names")
        let full = try Checkpoint.load(directory: Fixture.tinyESM.path).parameters
        for spec in full.layout.tensors where !spec.name.hasPrefix("classifier.") {
            XCTAssertEqual(loaded.parameters.tensor(spec), full.tensor(spec), spec.name)
        }
    }

    func testShardedCheckpoint() throws {
        let tensors = try fixtureTensors()
        let dir = try temporaryDirectory(self)
        try FileManager.default.copyItem(at: Fixture.tinyESM.appendingPathComponent("config.json"),
                                         to: dir.appendingPathComponent("config.json"))
        let first = tensors.filter { $0.name.contains("layer.0") }, second = tensors.filter { !$0.name.contains("layer.0") }
        try SafeTensorsWriter.write(first, metadata: [:], to: dir.appendingPathComponent("model-00001-of-00002.safetensors").path)
        try SafeTensorsWriter.write(second, metadata: [:], to: dir.appendingPathComponent("model-00002-of-00002.safetensors").path)
        var map: [String: String] = [:]
        for t in first { map[t.name] = "model-00001-of-00002.safetensors" }
        for t in second { map[t.name] = "model-00002-of-00002.safetensors" }
        try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 1], "weight_map": map])
            .write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        let sharded = try Checkpoint.load(directory: dir.path)
        XCTAssertEqual(sharded.parameters, try Checkpoint.load(directory: Fixture.tinyESM.path).parameters)

        // An index naming a tensor its shard does not hold.
        map["esm.encoder.layer.0.output.dense.bias"] = "model-00002-of-00002.safetensors"
        try JSONSerialization.data(withJSONObject: ["weight_map": map])
            .write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertEqual(assertThrows(CheckpointError.self) { try Checkpoint.load(directory: dir.path) },
                       .missingTensor(name: "esm.encoder.layer.0.output.dense.bias",
                                      file: dir.appendingPathComponent("model-00002-of-00002.safetensors").path))
    }

    // MARK: - Errors

    func testMissingTensor() throws {
        let dir = try writeCheckpoint(try fixtureTensors().filter { $0.name != "esm.encoder.layer.1.attention.self.value.bias" })
        XCTAssertEqual(assertThrows(CheckpointError.self) { try Checkpoint.load(directory: dir) },
                       .missingTensor(name: "esm.encoder.layer.1.attention.self.value.bias", file: dir + "/model.safetensors"))
    }

    func testWrongShape() throws {
        let tensors = try fixtureTensors().map { t in
            t.name == "esm.encoder.layer.0.intermediate.dense.weight" ? (name: t.name, shape: [32, 64], values: t.values) : t
        }
        let dir = try writeCheckpoint(tensors)
        let error = assertThrows(CheckpointError.self) { try Checkpoint.load(directory: dir) }
        XCTAssertEqual(error, .wrongShape(name: "esm.encoder.layer.0.intermediate.dense.weight", expected: [64, 32],
                                          found: [32, 64], file: dir + "/model.safetensors"))
        XCTAssertTrue(error?.description.contains("[32, 64]") ?? false)
    }

    func testUnexpectedTensor() throws {
        var tensors = try fixtureTensors()
        tensors.append(("esm.encoder.layer.0.attention.self.distance.weight", [2], [1, 2]))
        let dir = try writeCheckpoint(tensors)
        XCTAssertEqual(assertThrows(CheckpointError.self) { try Checkpoint.load(directory: dir) },
                       .unexpectedTensor(name: "esm.encoder.layer.0.attention.self.distance.weight", file: dir + "/model.safetensors"))
    }

    func testGammaAndWeightTogetherIsDuplicate() throws {
        var tensors = try fixtureTensors()
        tensors.append(("esm.encoder.layer.0.LayerNorm.weight", [32], [Float](repeating: 1, count: 32)))
        let dir = try writeCheckpoint(tensors)
        guard case .duplicateTensor(let name, _)? = assertThrows(CheckpointError.self, { try Checkpoint.load(directory: dir) }) else {
            return XCTFail("expected duplicateTensor")
        }
        XCTAssertEqual(name, "esm.encoder.layer.0.LayerNorm.weight")
    }

    func testMissingConfigAndWeights() throws {
        let empty = try temporaryDirectory(self).path
        XCTAssertEqual(assertThrows(CheckpointError.self) { try Checkpoint.load(directory: empty) }, .missingConfig(directory: empty))
        try FileManager.default.copyItem(atPath: Fixture.tinyESM.appendingPathComponent("config.json").path, toPath: empty + "/config.json")
        XCTAssertEqual(assertThrows(CheckpointError.self) { try Checkpoint.load(directory: empty) }, .missingWeights(directory: empty))
    }

    func testBadConfigNamesTheField() throws {
        let tensors = try fixtureTensors()
        var heads = try fixtureConfigJSON()
        heads["num_attention_heads"] = 5
        var dir = try writeCheckpoint(tensors, config: heads)
        guard case .badConfig(let path, let field, _)? = assertThrows(CheckpointError.self, { try Checkpoint.load(directory: dir) }) else {
            return XCTFail("expected badConfig")
        }
        XCTAssertEqual(path, dir + "/config.json")
        XCTAssertEqual(field, "num_attention_heads")

        var missing = try fixtureConfigJSON()
        missing["hidden_size"] = nil
        dir = try writeCheckpoint(tensors, config: missing)
        guard case .badConfig(_, let field2, let detail)? = assertThrows(CheckpointError.self, { try Checkpoint.load(directory: dir) }) else {
            return XCTFail("expected badConfig")
        }
        XCTAssertEqual(field2, "hidden_size")
        XCTAssertEqual(detail, "is missing")

        var absolute = try fixtureConfigJSON()
        absolute["position_embedding_type"] = "absolute"
        dir = try writeCheckpoint(tensors, config: absolute)
        guard case .badConfig(_, let field3, _)? = assertThrows(CheckpointError.self, { try Checkpoint.load(directory: dir) }) else {
            return XCTFail("expected badConfig")
        }
        XCTAssertEqual(field3, "position_embedding_type")
    }

    func testMalformedWeightsSurfaceAsSafeTensorsError() throws {
        let dir = try writeCheckpoint(try fixtureTensors())
        let path = dir + "/model.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        guard case .offsetsOutOfRange(let p, _, _, _, _)? = assertThrows(SafeTensorsError.self, { try Checkpoint.load(directory: dir) }) else {
            return XCTFail("expected offsetsOutOfRange")
        }
        XCTAssertEqual(p, path)
    }

    func testCanonicalNames() {
        XCTAssertEqual(Checkpoint.canonicalName("encoder.layer.3.attention.LayerNorm.gamma"), "esm.encoder.layer.3.attention.LayerNorm.weight")
        XCTAssertEqual(Checkpoint.canonicalName("esm.encoder.emb_layer_norm_after.beta"), "esm.encoder.emb_layer_norm_after.bias")
        XCTAssertEqual(Checkpoint.canonicalName("classifier.dense.weight"), "classifier.dense.weight")
        XCTAssertNil(Checkpoint.canonicalName("esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq"))
        XCTAssertNil(Checkpoint.canonicalName("esm.contact_head.regression.weight"))
        XCTAssertNil(Checkpoint.canonicalName("lm_head.layer_norm.weight"))
        XCTAssertEqual(Checkpoint.canonicalName("esm.encoder.layer.0.output.gamma"), "esm.encoder.layer.0.output.gamma",
                       "only LayerNorm parameters have gamma/beta aliases")
    }

    func testSeededNormalIsPortable() {
        var g = SeededNormal(seed: 0)
        // SplitMix64 reference outputs for seed 0 (Vigna's splitmix64.c).
        XCTAssertEqual(g.nextUInt64(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(g.nextUInt64(), 0x6E78_9E6A_A1B9_65F4)
        var n = SeededNormal(seed: 42)
        let samples = (0 ..< 20000).map { _ in n.next() }
        let mean = samples.reduce(0, +) / 20000
        let variance = samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 20000
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.04)
    }
}
