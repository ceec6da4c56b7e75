import Foundation
import XCTest
@testable import ESM

/// Checkpoints as downloaded (issue 16): `pytorch_model.bin` and fair-esm `.pt` files read by the
/// restricted unpickler, against fixtures made by scripts/reference/make_torch_fixtures.py with
/// torch 2.13 / transformers 5.24 / fair-esm 2.0.0.
final class TorchCheckpointTests: XCTestCase {
    static var fixtures: URL { Fixture.tinyESM.deletingLastPathComponent() }

    struct Parity: Decodable { let input_ids: [[Int]]; let attention_mask: [[Int]]; let logits: [[Double]] }
    struct FairReference: Decodable { let input_ids: [[Int]]; let last_hidden_state: [[[Double]]]; let fair_esm_max_abs_diff: Double }

    /// `torch.save(model.state_dict())` (as transformers 4.x's save_pretrained(safe_serialization=False)),
    /// plain and with a strided (non-contiguous) tensor: every parameter equals the safetensors
    /// fixture's, and the logits are transformers' (parity.json, 1e-5).
    func testPytorchModelBinLoadsToTheSafetensorsWeightsAndTransformersLogits() throws {
        let reference = try Checkpoint.load(directory: Fixture.tinyESM.path)
        let parity = try JSONDecoder().decode(Parity.self, from: Data(contentsOf: Fixture.tinyESM.appendingPathComponent("parity.json")))
        for name in ["tiny-esm-bin", "tiny-esm-state"] {
            let dir = Self.fixtures.appendingPathComponent(name).path
            let contents = try Checkpoint.inspect(directory: dir)
            XCTAssertTrue(contents.hasClassifier, name)
            XCTAssertEqual(contents.weightFiles.map { ($0 as NSString).lastPathComponent }, ["pytorch_model.bin"])
            let loaded = try Checkpoint.load(directory: dir)
            XCTAssertEqual(loaded.initialisedTensors, [])
            XCTAssertEqual(loaded.parameters.values, reference.parameters.values, name)
            let model = try ESMClassifier(config: loaded.config, parameters: loaded.parameters)
            let lengths = parity.attention_mask.map { $0.reduce(0, +) }
            let logits = model.forward(TokenBatch(sequences: zip(parity.input_ids, lengths).map { ids, n in ids.prefix(n).map(Int32.init) }, padTokenId: 1))
            let c = loaded.config.numLabels
            var worst = 0.0
            for s in parity.logits.indices { for k in 0 ..< c { worst = max(worst, abs(Double(logits[s * c + k]) - parity.logits[s][k])) } }
            XCTAssertLessThan(worst, 1e-5, name)
        }
    }

    /// fair-esm's ESM-2 layout (`encoder.sentence_encoder.*`, `cfg.model` a Namespace): the
    /// architecture comes from cfg, lm_head and rot_emb.inv_freq are skipped and counted, and the
    /// final hidden states equal transformers' last_hidden_state (1e-5; fair-esm itself agrees
    /// with transformers to the printed difference).
    func testFairESMCheckpointLoadsAsTransformersComputesIt() throws {
        let pt = Self.fixtures.appendingPathComponent("tiny-esm2.pt").path
        let reference = try JSONDecoder().decode(FairReference.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("tiny-esm2.json")))
        XCTAssertLessThan(reference.fair_esm_max_abs_diff, 1e-5, "fair-esm and transformers agree on the fixture")
        let contents = try Checkpoint.inspect(directory: pt)
        XCTAssertFalse(contents.hasClassifier)
        XCTAssertEqual(contents.ignored["lm_head"], 6)
        XCTAssertEqual(contents.ignored["rotary inv_freq"], 2)
        XCTAssertEqual(contents.architectures, ["fair-esm ESM2"])
        let loaded = try Checkpoint.load(directory: pt, numLabels: 3, seed: 1)
        XCTAssertEqual(loaded.config.numHiddenLayers, 2)
        XCTAssertEqual(loaded.config.hiddenSize, 32)
        XCTAssertEqual(loaded.config.numAttentionHeads, 4)
        XCTAssertEqual(loaded.config.intermediateSize, 128)
        XCTAssertTrue(loaded.config.tokenDropout)
        XCTAssertEqual(loaded.initialisedTensors.count, 4)
        let model = try ESMClassifier(config: loaded.config, parameters: loaded.parameters)
        var worst = 0.0
        for (ids, expected) in zip(reference.input_ids, reference.last_hidden_state) {
            _ = model.forward(TokenBatch(sequences: [ids.map(Int32.init)], padTokenId: 1))
            let states = model.finalHiddenStates()
            for t in ids.indices { for h in 0 ..< 32 { worst = max(worst, abs(Double(states[t * 32 + h]) - expected[t][h])) } }
        }
        print(String(format: "fair-esm .pt vs transformers last_hidden_state: max |diff| %.3e", worst))
        XCTAssertLessThan(worst, 1e-5)
    }

    /// Hostile pickles are refused with a message naming what is wrong, never run or crash.
    func testHostileFilesAreRefused() throws {
        let hostile = Self.fixtures.appendingPathComponent("hostile")
        func refused(_ file: String, _ check: (TorchCheckpointError) -> Bool) {
            XCTAssertThrowsError(try Checkpoint.stateDict(path: hostile.appendingPathComponent(file).path)) { error in
                guard let e = error as? TorchCheckpointError else { return XCTFail("\(file): \(error)") }
                XCTAssertTrue(check(e), "\(file): \(e)")
            }
        }
        refused("global-os-system.bin") { if case .forbiddenGlobal(_, "posix.system") = $0 { return true } else { return false } }
        refused("reduce-not-callable.bin") { "\($0)".contains("REDUCE applies a str, which is not an allowed callable") }
        refused("truncated.bin") { if case .badArchive = $0 { return true } else { return false } }
        refused("short-storage.bin") { "\($0)".contains("holds 8 bytes, fewer than its 4 elements of 4 bytes") }
        // Sizes that overflow or would expand a few bytes into gigabytes (this module is built
        // with -Ounchecked, so only explicit checks stand between them and memory corruption).
        refused("size-overflow.bin") { "\($0)".contains("has more elements than can be counted") || "\($0)".contains("an expanded, broadcast view") }
        refused("numel-overflow.bin") { "\($0)".contains("fewer than its 4611686018427387904 elements") }
        refused("broadcast.bin") { "\($0)".contains("has 4294967296 elements but its storage only 1 (an expanded, broadcast view)") }
        refused("deep-tuples.bin") { "\($0)".contains("tuples nested more than 1000 levels deep") }
        refused("deep-lists.bin") { "\($0)".contains("holds a list, not a state_dict") }
        // A legacy (pre-zip) torch.save file starts with a pickle.
        let legacy = try temporaryDirectory(self).appendingPathComponent("legacy.bin")
        try Data([0x80, 0x02, 0x8A, 0x0A] + [UInt8](repeating: 0, count: 40)).write(to: legacy)
        XCTAssertThrowsError(try Checkpoint.stateDict(path: legacy.path)) { XCTAssertTrue("\($0)".contains("legacy (PyTorch < 1.6) format"), "\($0)") }
    }

    /// Every truncation and 300 random byte changes of a real file end in a load or an error.
    func testDamagedFilesNeverCrash() throws {
        let good = try Data(contentsOf: Self.fixtures.appendingPathComponent("tiny-esm-state/pytorch_model.bin"))
        let dir = try temporaryDirectory(self)
        let file = dir.appendingPathComponent("damaged.bin")
        var rng = SplitMix64(seed: 3)
        var loaded = 0, refused = 0
        var cuts = Array(stride(from: 0, to: good.count, by: max(1, good.count / 150)))
        cuts.append(good.count - 1)
        for cut in cuts {
            try good.prefix(cut).write(to: file)
            do { _ = try Checkpoint.stateDict(path: file.path); loaded += 1 } catch { refused += 1 }
        }
        XCTAssertEqual(loaded, 0, "no truncation loads")
        // Damage inside data.pkl (the pickle) and anywhere in the file.
        let pklStart = try XCTUnwrap(ZipEntries(path: "x", data: good).entries.first { $0.key.hasSuffix("data.pkl") }?.value)
        for i in 0 ..< 300 {
            var bytes = [UInt8](good)
            let at = i % 2 == 0 ? pklStart.lowerBound + Int(rng.next() % UInt64(pklStart.count)) : Int(rng.next() % UInt64(bytes.count))
            bytes[at] = UInt8(truncatingIfNeeded: rng.next())
            try Data(bytes).write(to: file)
            do { _ = try Checkpoint.stateDict(path: file.path); loaded += 1 } catch { refused += 1 }
        }
        print("damaged files: \(loaded) loaded (a changed value or an unread byte), \(refused) refused")
        XCTAssertGreaterThan(refused, cuts.count)
    }

    /// A stored rotary inv_freq rounded to F16 is noted (kneuron recomputes it; transformers uses
    /// the stored values, so their outputs differ): the F16 fixture's inv_freq (head dim 8: 1, 0.1,
    /// 0.01, 0.001) is stored as the nearest halves, the largest relative error 4.04e-4 at 0.001
    /// (numpy: float16(0.001) = 0.0010004); the F32 fixture's is exact.
    func testRoundedInvFreqIsNoted() throws {
        XCTAssertEqual(try Checkpoint.inspect(directory: Fixture.tinyESM.path).notes, [])
        let dir = try temporaryDirectory(self)
        try FileManager.default.copyItem(at: Fixture.tinyESM.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: Fixture.tinyESM.appendingPathComponent("model-f16.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
        let notes = try Checkpoint.inspect(directory: dir.path).notes
        XCTAssertEqual(notes.count, 1)
        XCTAssertTrue(notes.first?.contains("differs from the exact 1/10000^(2i/d) by up to 0.0004 ") ?? false, "\(notes)")
    }

    /// A config.json whose sizes are absurd, or whose vocabulary is smaller than ESM-2's
    /// alphabet, is refused before any layout is built.
    func testAbsurdConfigsAreRefusedBeforeAllocating() throws {
        let base = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Fixture.tinyESM.appendingPathComponent("config.json"))) as? [String: Any])
        for (key, value, message) in [("num_hidden_layers", 1_000_000_000, "at most 1024"), ("vocab_size", 20, "at least 33"),
                                      ("max_position_embeddings", -5, "at least 3"), ("num_hidden_layers", 3, "esm.encoder.layer.2.attention.self.query.weight' is missing")] {
            let dir = try temporaryDirectory(self)
            var config = base
            config[key] = value
            try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))
            try FileManager.default.copyItem(at: Fixture.tinyESM.appendingPathComponent("model.safetensors"), to: dir.appendingPathComponent("model.safetensors"))
            XCTAssertThrowsError(try Checkpoint.inspect(directory: dir.path)) { XCTAssertTrue("\($0)".contains(message), "\(key): \($0)") }
        }
        XCTAssertThrowsError(try Checkpoint.inspect(directory: "/nonexistent/esm2")) { XCTAssertTrue("\($0)".contains("no such file or directory"), "\($0)") }
    }

    /// The weight files of each layout, found by name (the content key hashes them).
    func testWeightFilePathsByLayout() {
        let f = Self.fixtures
        XCTAssertEqual(Checkpoint.weightFilePaths(f.appendingPathComponent("tiny-esm").path), [f.appendingPathComponent("tiny-esm/model.safetensors").path])
        XCTAssertEqual(Checkpoint.weightFilePaths(f.appendingPathComponent("tiny-esm-bin").path), [f.appendingPathComponent("tiny-esm-bin/pytorch_model.bin").path])
        XCTAssertEqual(Checkpoint.weightFilePaths(f.appendingPathComponent("tiny-esm2.pt").path), [f.appendingPathComponent("tiny-esm2.pt").path])
        XCTAssertEqual(Checkpoint.weightFilePaths("/nonexistent/x"), [])
    }
}
