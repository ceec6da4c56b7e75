//
// Compares the Swift ESM-2 classifier with HuggingFace transformers 5.24 / torch 2.13 on the
// tiny-esm fixture (scripts/reference/make_fixtures.py): logits, per-layer hidden states,
// loss and the gradient of every parameter. Prints the max difference of every tensor
// (llm.c test_gpt2.c style).
//
// API used:
//   ESMClassifier(config:parameters:)            (throws or not)
//   TokenBatch(sequences: [[Int]])               unpadded token ids incl. <cls>/<eos>
//   model.forward(batch) -> [Float]              logits (B,C) row-major
//   model.hiddenStates(afterLayer: i) -> [Float] (B,T,H) = HF hidden_states[i+1]; for the last
//                                                layer that is AFTER emb_layer_norm_after (HF 5.x
//                                                overwrites hidden_states[-1]); parity.json also
//                                                has `final_block_output` (before it)
//   Loss.crossEntropy(logits:labels:classes:) -> (loss: Float, dLogits: [Float])   mean over B
//   model.backward(dLogits:into:)                accumulates dLoss/dparam into a ParameterBuffer

import Foundation
import XCTest
@testable import ESM
@testable import Training

final class ParityTests: XCTestCase {
    private struct Parity: Decodable {
        let input_ids: [[Int]]
        let attention_mask: [[Int]]
        let labels: [Int]
        let logits: [[Double]]
        let loss: Double
        let hidden_states: [[[[Double]]]]      // (L+1, B, T, H)
        let final_block_output: [[[Double]]]   // (B, T, H)
    }

    private func loadParity() throws -> Parity {
        let data = try Data(contentsOf: Fixture.tinyESM.appendingPathComponent("parity.json"))
        return try JSONDecoder().decode(Parity.self, from: data)
    }

    /// Max |a - b| over the real (unpadded) token positions of a (B,T,H) tensor; `swift` has
    /// the model's padded length T' >= every sequence length.
    private func maxDiff(swift: [Float], reference: [[[Double]]], lengths: [Int], hidden: Int) -> Double {
        let b = reference.count
        let tSwift = swift.count / (b * hidden)
        var worst = 0.0
        for s in 0 ..< b {
            for t in 0 ..< lengths[s] {
                for h in 0 ..< hidden {
                    worst = max(worst, abs(Double(swift[(s * tSwift + t) * hidden + h]) - reference[s][t][h]))
                }
            }
        }
        return worst
    }

    func testForwardAndBackwardMatchPyTorch() throws {
        let parity = try loadParity()
        let (config, parameters, initialised) = try Checkpoint.load(directory: Fixture.tinyESM.path)
        XCTAssertEqual(initialised, [])
        let lengths = parity.attention_mask.map { $0.reduce(0, +) }
        let sequences = zip(parity.input_ids, lengths).map { Array($0.prefix($1)) }
        let b = sequences.count, c = config.numLabels, h = config.hiddenSize, layers = config.numHiddenLayers

        let model = try ESMClassifier(config: config, parameters: parameters)          // API
        let batch = TokenBatch(sequences: sequences.map { $0.map(Int32.init) }, padTokenId: Int32(config.padTokenId))
        let logits = model.forward(batch)
        XCTAssertEqual(logits.count, b * c)

        // Logits: 1e-5 absolute.
        var logitDiff = 0.0
        for s in 0 ..< b { for k in 0 ..< c { logitDiff = max(logitDiff, abs(Double(logits[s * c + k]) - parity.logits[s][k])) } }
        print(String(format: "parity: logits max |diff| %.3e", logitDiff))
        XCTAssertLessThan(logitDiff, 1e-5)

        // Embeddings and the residual stream after each block: 1e-4 absolute on real tokens.
        // HF 5.x overwrites hidden_states[L] with the output of emb_layer_norm_after, so the
        // last block is compared with `final_block_output` and the final LayerNorm separately.
        let embDiff = maxDiff(swift: model.embeddingOutput(), reference: parity.hidden_states[0], lengths: lengths, hidden: h)
        print(String(format: "parity: hidden_states[0] (embeddings) max |diff| %.3e", embDiff))
        XCTAssertLessThan(embDiff, 1e-5)
        for i in 0 ..< layers {
            let ours = model.hiddenStates(afterLayer: i)
            let reference = i == layers - 1 ? parity.final_block_output : parity.hidden_states[i + 1]
            let diff = maxDiff(swift: ours, reference: reference, lengths: lengths, hidden: h)
            print(String(format: "parity: hidden_states[%d] (after layer %d) max |diff| %.3e", i + 1, i, diff))
            XCTAssertLessThan(diff, 1e-4, "after layer \(i)")
        }
        let finalDiff = maxDiff(swift: model.finalHiddenStates(), reference: parity.hidden_states[layers], lengths: lengths, hidden: h)
        print(String(format: "parity: last_hidden_state (after emb_layer_norm_after) max |diff| %.3e", finalDiff))
        XCTAssertLessThan(finalDiff, 1e-4)

        // Loss and gradients.
        let (loss, dLogits) = Loss.crossEntropy(logits: logits, labels: parity.labels, classes: c)   // API
        print(String(format: "parity: loss %.9f (PyTorch %.9f)", Double(loss), parity.loss))
        XCTAssertEqual(Double(loss), parity.loss, accuracy: 1e-5)
        var grads = ParameterBuffer(layout: parameters.layout)
        model.backward(dLogits: dLogits, into: &grads)

        let reference = try SafeTensorsFile(path: Fixture.tinyESM.appendingPathComponent("grads.safetensors").path)
        XCTAssertEqual(Set(reference.tensors.keys), Set(parameters.layout.tensors.map(\.name)),
                       "grads.safetensors holds exactly the classifier's parameters")
        var failures: [String] = []
        for spec in parameters.layout.tensors {
            let expected = try reference.floats(spec.name)
            let ours = grads.tensor(spec)
            XCTAssertEqual(ours.count, expected.count, spec.name)
            let scale = Double(expected.map { abs($0) }.max() ?? 0)
            var diff = 0.0
            for i in expected.indices { diff = max(diff, abs(Double(ours[i]) - Double(expected[i]))) }
            let relative = scale > 0 ? diff / scale : diff
            print(String(format: "parity: grad %-55@ max|g| %.3e  max|diff| %.3e  relative %.3e",
                         spec.name as NSString, scale, diff, relative))
            if relative > 1e-4 { failures.append("\(spec.name): relative \(relative)") }
        }
        XCTAssertEqual(failures, [], "gradients beyond 1e-4 of each tensor's max |value|")
    }

    /// The fixture batch mixes lengths 5..24, the rare letters X B U Z O and one <mask>
    /// (token dropout rescales that row by 0.88 / (1 - 1/17)); guard against a regenerated
    /// fixture silently dropping those cases.
    func testFixtureCoversRareTokensAndMask() throws {
        let parity = try loadParity()
        let ids = parity.input_ids.flatMap { $0 }
        for id in [24, 25, 26, 27, 28] { XCTAssertTrue(ids.contains(id), "token \(id)") }
        XCTAssertEqual(ids.filter { $0 == 32 }.count, 1)
        XCTAssertEqual(parity.attention_mask.map { $0.reduce(0, +) }, [5, 11, 17, 24])
        XCTAssertEqual(parity.hidden_states.count, 3)
    }
}
