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

final class ReferenceParityTests: XCTestCase {
    /// IG over q/k/v weights vs captum `IntegratedGradients` (zero-weight baseline, same 16
    /// steps, `riemann_middle`, target P(class)): per-element |diff| <= 1e-4 * max |attribution|.
    /// The canonical order (layer, module, row, col) is the fixture's (L, 3, H, H) layout.
    func testQKVIntegratedGradientsMatchCaptum() throws {
        let (model, meta, reference) = try IGReference.load()
        XCTAssertEqual(meta.runs.count, 2)
        for (i, run) in meta.runs.enumerated() {
            let part = try IntegratedGradientsAttributor().contributions(model: model, sequences: [AttributionInput(tokens: run.tokens, target: run.target)],
                                                                         layout: .paper(model.config), options: AttributionOptions(steps: meta.steps))[0]
            let r = part.completeness[0]
            let (diff, scale) = maxDiff(part.contribution.map(Float.init), try reference.floats("qkv_ig.\(i)"))
            print(String(format: "parity: qkv IG sequence %d (%d tokens): max |diff| %.3e, max |attr| %.3e, relative %.3e (tolerance 1e-4)",
                         i, run.tokens.count, diff, scale, diff / scale))
            XCTAssertGreaterThan(scale, 1e-3, "the fixture should have sizeable attributions")
            XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "sequence \(i)")
            XCTAssertEqual(r.pFull, run.qkv.p_full, accuracy: 1e-5)
            XCTAssertEqual(r.pBaseline, run.qkv.p_baseline, accuracy: 1e-5)
            XCTAssertEqual(r.attributionSum, run.qkv.sum, accuracy: 1e-4 * scale)
        }
    }

    /// Completeness (Sundararajan et al. 2017): with 400 midpoint steps the FFN neuron
    /// attributions (Dai et al. 2021) sum to P(full) - P(baseline) within 1e-4. (Parity of the
    /// FFN path with captum, ffn_ig.*, is part of EngineParityTests: neuron_ig of intermediate.)
    func testIntermediateIntegratedGradientsCompleteness() throws {
        let (model, meta, reference) = try IGReference.load()
        let run = meta.runs[0]
        let input = AttributionInput(tokens: run.tokens, target: run.target)
        let site = ModuleSite(layer: 1, module: .intermediate)
        let r = IntegratedGradientsAttributor.neuronPath(model, input, site: site, steps: 400)
        let sum = r.attributions.reduce(0.0) { $0 + Double($1) }
        let gap = abs(sum - (r.pFull - r.pBaseline))
        print(String(format: "FFN IG completeness, 400 steps: sum %.6f vs %.6f - %.6f, |gap| %.3e",
                     sum, r.pFull, r.pBaseline, gap))
        XCTAssertGreaterThan(abs(r.pFull - r.pBaseline), 0.05)
        XCTAssertLessThan(gap, 1e-4)
        // The 16-step path equals the first fixture's captum FFN run too.
        let r16 = IntegratedGradientsAttributor.neuronPath(model, input, site: site, steps: meta.steps)
        let (diff, scale) = maxDiff(r16.attributions, try reference.floats("ffn_ig.0.1"))
        XCTAssertLessThanOrEqual(diff, 1e-4 * scale)
    }

    /// Activation scores (|w_ij| * mean_s mean_t |x_stj|) vs the same formula on values taken by
    /// torch forward pre-hooks on every `attention.self.{query,key,value}` of the padded
    /// 4-sequence batch: absolute |diff| <= 1e-5 for the per-layer sums and the scores.
    func testActivationScoresMatchTorchHooks() throws {
        let (model, meta, reference) = try IGReference.load()
        let sequences = zip(meta.activation.input_ids, meta.activation.attention_mask).map { Array($0.prefix($1.reduce(0, +))) }
        XCTAssertEqual(sequences.map(\.count), [5, 11, 17, 24])
        for batchSize in [1, 3] {
            let a = ActivationAttributor(), layout = ScoreLayout.paper(model.config)
            var sums = [Double](repeating: 0, count: a.contributionCount(layout: layout, config: model.config))
            for p in try a.contributions(model: model, sequences: sequences.map { AttributionInput(tokens: $0, target: 0) }, layout: layout,
                                         options: AttributionOptions(batchSize: batchSize)) {
                for i in sums.indices { sums[i] += p.contribution[i] }
            }
            let (sumDiff, sumScale) = maxDiff(sums.map(Float.init), try reference.floats("activation_sums"))
            let scores = a.scores(sums: sums, count: sequences.count, parameters: model.parameters, layout: layout)
            let (diff, scale) = maxDiff(scores, try reference.floats("activation_scores"))
            print(String(format: "parity: activation scores (batch %d): sums max |diff| %.3e (max %.3e), scores max |diff| %.3e (max %.3e) (tolerance 1e-5)",
                         batchSize, sumDiff, sumScale, diff, scale))
            XCTAssertGreaterThan(scale, 0.1)
            XCTAssertLessThanOrEqual(sumDiff, 1e-5)
            XCTAssertLessThanOrEqual(diff, 1e-5)
        }
    }
}
