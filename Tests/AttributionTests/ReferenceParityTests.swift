//
// Compares kneuron's attributions with captum 0.9 / torch 2.13 on a tiny large-weight ESM-2
// classifier (scripts/reference/make_attribution_fixtures.py writes Fixtures/): integrated
// gradients over the query/key/value weights, integrated gradients over FFN intermediate
// activations, and activation scores from forward hooks. Every test prints its max diff.

import Foundation
import XCTest
@testable import Attribution
@testable import ESM

/// The captum reference fixture (`Tests/AttributionTests/Fixtures` in the test bundle).
enum IGReference {
    static var directory: URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    }

    struct Run: Decodable {
        struct Scalars: Decodable {
            let p_full: Double
            let p_baseline: Double
            let sum: Double
        }
        let tokens: [Int32]
        let target: Int
        let qkv: Scalars
        let ffn: [Scalars]
    }

    struct Activation: Decodable {
        let input_ids: [[Int32]]
        let attention_mask: [[Int]]
    }

    struct Meta: Decodable {
        let steps: Int
        let runs: [Run]
        let activation: Activation
    }

    static func load() throws -> (ESMClassifier, Meta, SafeTensorsFile) {
        let (config, parameters, initialised) = try Checkpoint.load(directory: directory.appendingPathComponent("tiny-ig-model").path)
        XCTAssertEqual(initialised, [])
        let model = try ESMClassifier(config: config, parameters: parameters)
        let meta = try JSONDecoder().decode(Meta.self, from: Data(contentsOf: directory.appendingPathComponent("tiny-ig-reference.json")))
        let tensors = try SafeTensorsFile(path: directory.appendingPathComponent("tiny-ig-reference.safetensors").path)
        return (model, meta, tensors)
    }
}

/// Max |a - b| and max |b|.
private func compare(_ ours: [Float], _ reference: [Float]) -> (diff: Double, scale: Double) {
    precondition(ours.count == reference.count, "sizes \(ours.count) vs \(reference.count)")
    var diff = 0.0, scale = 0.0
    for i in reference.indices {
        diff = max(diff, abs(Double(ours[i]) - Double(reference[i])))
        scale = max(scale, abs(Double(reference[i])))
    }
    return (diff, scale)
}

final class ReferenceParityTests: XCTestCase {
    /// IG over q/k/v weights vs captum `IntegratedGradients` (zero-weight baseline, same 16
    /// steps, `riemann_middle`, target P(class)): per-element |diff| <= 1e-4 * max |attribution|.
    /// The canonical order (layer, module, row, col) is the fixture's (L, 3, H, H) layout.
    func testQKVIntegratedGradientsMatchCaptum() throws {
        let (model, meta, reference) = try IGReference.load()
        var gradients = ParameterBuffer(layout: model.parameters.layout)
        XCTAssertEqual(meta.runs.count, 2)
        for (i, run) in meta.runs.enumerated() {
            let r = IntegratedGradients.attribute(model: model, tokens: run.tokens, target: run.target,
                                                  steps: meta.steps, gradients: &gradients)
            let (diff, scale) = compare(r.attributions, try reference.floats("qkv_ig.\(i)"))
            print(String(format: "parity: qkv IG sequence %d (%d tokens): max |diff| %.3e, max |attr| %.3e, relative %.3e (tolerance 1e-4)",
                         i, run.tokens.count, diff, scale, diff / scale))
            XCTAssertGreaterThan(scale, 1e-3, "the fixture should have sizeable attributions")
            XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "sequence \(i)")
            XCTAssertEqual(r.pFull, run.qkv.p_full, accuracy: 1e-5)
            XCTAssertEqual(r.pBaseline, run.qkv.p_baseline, accuracy: 1e-5)
            XCTAssertEqual(r.attributionSum, run.qkv.sum, accuracy: 1e-4 * scale)
        }
    }

    /// IG over every layer's FFN intermediate activations (Dai et al. 2021) vs captum
    /// `IntegratedGradients` on the activation injected by a forward hook (zero baseline, same
    /// 16 steps, `riemann_middle`, target P(class)): per-element |diff| <= 1e-4 * max |attribution|
    /// over the (T,I) positions x neurons.
    func testIntermediateIntegratedGradientsMatchCaptum() throws {
        let (model, meta, reference) = try IGReference.load()
        for (i, run) in meta.runs.enumerated() {
            XCTAssertEqual(run.ffn.count, model.config.numHiddenLayers)
            for layer in 0 ..< model.config.numHiddenLayers {
                let r = try IntermediateIntegratedGradients.attribute(model: model, tokens: run.tokens, layer: layer,
                                                                      target: run.target, steps: meta.steps)
                let expected = try reference.floats("ffn_ig.\(i).\(layer)")
                XCTAssertEqual(r.attributions.count, run.tokens.count * model.config.intermediateSize)
                let (diff, scale) = compare(r.attributions, expected)
                print(String(format: "parity: FFN IG sequence %d layer %d: max |diff| %.3e, max |attr| %.3e, relative %.3e (tolerance 1e-4)",
                             i, layer, diff, scale, diff / scale))
                XCTAssertGreaterThan(scale, 1e-3, "the fixture should have sizeable attributions")
                XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "sequence \(i) layer \(layer)")
                XCTAssertEqual(r.pFull, run.ffn[layer].p_full, accuracy: 1e-5)
                XCTAssertEqual(r.pBaseline, run.ffn[layer].p_baseline, accuracy: 1e-5)
                XCTAssertEqual(r.attributionSum, run.ffn[layer].sum, accuracy: 1e-4 * scale * Double(expected.count).squareRoot())
                // Neuron scores are the per-position attributions summed over positions.
                let I = model.config.intermediateSize
                for n in [0, I / 2, I - 1] {
                    let s = (0 ..< run.tokens.count).reduce(0.0) { $0 + Double(expected[$1 * I + n]) }
                    XCTAssertEqual(Double(r.neuronScores[n]), s, accuracy: 1e-4 * scale * Double(run.tokens.count))
                }
            }
        }
    }

    /// Completeness (Sundararajan et al. 2017): with 400 midpoint steps the FFN attributions
    /// sum to P(full) - P(baseline) within 1e-4; bad arguments throw.
    func testIntermediateIntegratedGradientsCompletenessAndErrors() throws {
        let (model, meta, _) = try IGReference.load()
        let run = meta.runs[0]
        let r = try IntermediateIntegratedGradients.attribute(model: model, tokens: run.tokens, layer: 1,
                                                              target: run.target, steps: 400)
        let gap = abs(r.attributionSum - (r.pFull - r.pBaseline))
        print(String(format: "FFN IG completeness, 400 steps: sum %.6f vs %.6f - %.6f, |gap| %.3e",
                     r.attributionSum, r.pFull, r.pBaseline, gap))
        XCTAssertGreaterThan(abs(r.pFull - r.pBaseline), 0.05)
        XCTAssertLessThan(gap, 1e-4)
        func error(_ body: () throws -> Void) -> AttributionError? {
            do { try body() } catch let e as AttributionError { return e } catch { XCTFail("\(error)") }
            return nil
        }
        XCTAssertEqual(error { _ = try IntermediateIntegratedGradients.attribute(model: model, tokens: run.tokens, layer: 2, target: 0, steps: 4) },
                       .layerOutOfRange(layer: 2, layers: 2))
        XCTAssertEqual(error { _ = try IntermediateIntegratedGradients.attribute(model: model, tokens: run.tokens, layer: 0, target: 7, steps: 4) },
                       .targetOutOfRange(target: 7, classes: 7))
        XCTAssertEqual(error { _ = try IntermediateIntegratedGradients.attribute(model: model, tokens: run.tokens, layer: 0, target: 0, steps: 0) },
                       .invalidSteps(0))
        XCTAssertEqual(error { _ = try IntermediateIntegratedGradients.attribute(model: model, tokens: [], layer: 0, target: 0, steps: 4) },
                       .emptySequence)
    }

    /// Activation scores (|w_ij| * mean_s mean_t |x_stj|) vs the same formula on values taken by
    /// torch forward pre-hooks on every `attention.self.{query,key,value}` of the padded
    /// 4-sequence batch: absolute |diff| <= 1e-5 for the per-layer sums and the scores.
    func testActivationScoresMatchTorchHooks() throws {
        let (model, meta, reference) = try IGReference.load()
        let sequences = zip(meta.activation.input_ids, meta.activation.attention_mask).map { Array($0.prefix($1.reduce(0, +))) }
        XCTAssertEqual(sequences.map(\.count), [5, 11, 17, 24])
        for batchSize in [1, 3] {
            let sums = ActivationAttribution.sumMeanAbsInputs(model: model, sequences: sequences, batchSize: batchSize)
            let (sumDiff, sumScale) = compare(sums.map(Float.init), try reference.floats("activation_sums"))
            let scores = ActivationAttribution.scores(parameters: model.parameters, sums: sums, count: sequences.count)
            let (diff, scale) = compare(scores, try reference.floats("activation_scores"))
            print(String(format: "parity: activation scores (batch %d): sums max |diff| %.3e (max %.3e), scores max |diff| %.3e (max %.3e) (tolerance 1e-5)",
                         batchSize, sumDiff, sumScale, diff, scale))
            XCTAssertGreaterThan(scale, 0.1)
            XCTAssertLessThanOrEqual(sumDiff, 1e-5)
            XCTAssertLessThanOrEqual(diff, 1e-5)
        }
    }
}
