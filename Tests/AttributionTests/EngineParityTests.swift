//
// The attribution engine against captum 0.9 / torch 2.13 on the tiny large-weight ESM-2
// classifier (scripts/reference/make_engine_fixtures.py writes Fixtures/engine-reference.*):
// every method x granularity x module of an ESM-2 block, for the true class and another
// class (the per_class target). Tolerances: per element 1e-4 of the max |attribution| of the
// compared tensor; probabilities 1e-5. Every test prints its max diffs.

import Foundation
import XCTest
@testable import Attribution
@testable import ESM

/// `Fixtures/engine-reference.json`.
struct EngineReference: Decodable {
    struct Path: Decodable {
        let p_full: Double
        let p_baseline: Double
        let sum: Double
    }
    struct Sequence: Decodable {
        let tokens: [Int32]
        let targets: [Int]
        /// [target][layer][module]
        let neuron_ig: [[[String: Path]]]
        /// [target]
        let weight_ig_all: [Path]
    }
    struct Activation: Decodable {
        let input_ids: [[Int32]]
        let attention_mask: [[Int]]
    }
    let steps: Int
    let modules: [String]
    let sequences: [Sequence]
    let activation: Activation

    static func load() throws -> (ESMClassifier, EngineReference, SafeTensorsFile) {
        let (model, _, _) = try IGReference.load()
        let dir = IGReference.directory
        let meta = try JSONDecoder().decode(EngineReference.self, from: Data(contentsOf: dir.appendingPathComponent("engine-reference.json")))
        let tensors = try SafeTensorsFile(path: dir.appendingPathComponent("engine-reference.safetensors").path)
        return (model, meta, tensors)
    }
}

/// Max |a - b| and max |b|.
func maxDiff(_ ours: [Float], _ reference: [Float]) -> (diff: Double, scale: Double) {
    precondition(ours.count == reference.count, "sizes \(ours.count) vs \(reference.count)")
    var diff = 0.0, scale = 0.0
    for i in reference.indices {
        diff = max(diff, abs(Double(ours[i]) - Double(reference[i])))
        scale = max(scale, abs(Double(reference[i])))
    }
    return (diff, scale)
}

final class EngineParityTests: XCTestCase {
    let all = LinearModule.allCases

    func testFixtureNamesTheModulesAsKneuronDoes() throws {
        let (_, meta, _) = try EngineReference.load()
        XCTAssertEqual(meta.modules, all.map(\.rawValue))
    }

    /// Neuron-level IG for each module's output, one path per (layer, module), vs captum on the
    /// hooked output (zero baseline, 16 riemann_middle steps), true class and another class:
    /// per position x unit within 1e-4 of max |attr|; the engine's neuron contribution is the
    /// sum over positions of the same tensor.
    func testNeuronIntegratedGradientsMatchCaptumForEveryModule() throws {
        let (model, meta, ref) = try EngineReference.load()
        let layout = try ScoreLayout(config: model.config, modules: all, granularity: .neuron)
        var worst = 0.0
        for (k, seq) in meta.sequences.enumerated() {
            for (t, target) in seq.targets.enumerated() {
                let input = AttributionInput(tokens: seq.tokens, target: target)
                let engine = try IntegratedGradientsAttributor().contributions(model: model, sequences: [input], layout: layout,
                                                                               options: AttributionOptions(steps: meta.steps))[0]
                XCTAssertEqual(engine.completeness.count, layout.blocks.count)
                for (b, block) in layout.blocks.enumerated() {
                    let name = "neuron_ig.\(k).\(t).\(block.site.layer).\(block.site.module.rawValue)"
                    let expected = try ref.floats(name)
                    let r = IntegratedGradientsAttributor.neuronPath(model, input, site: block.site, steps: meta.steps)
                    let (diff, scale) = maxDiff(r.attributions, expected)
                    worst = max(worst, diff / scale)
                    XCTAssertGreaterThan(scale, 1e-4, name)
                    XCTAssertLessThanOrEqual(diff, 1e-4 * scale, name)
                    let path = seq.neuron_ig[t][block.site.layer][block.site.module.rawValue]!
                    XCTAssertEqual(r.pFull, path.p_full, accuracy: 1e-5, name)
                    XCTAssertEqual(r.pBaseline, path.p_baseline, accuracy: 1e-5, name)
                    XCTAssertEqual(engine.completeness[b].site, block.site)
                    XCTAssertEqual(engine.completeness[b].attributionSum, path.sum, accuracy: 1e-4 * scale * Double(expected.count).squareRoot(), name)
                    // Neuron contribution = per-position attributions summed over positions.
                    for i in 0 ..< block.rows {
                        let s = (0 ..< seq.tokens.count).reduce(0.0) { $0 + Double(expected[$1 * block.rows + i]) }
                        XCTAssertEqual(engine.contribution[block.offset + i], s, accuracy: 1e-4 * scale * Double(seq.tokens.count), "\(name) unit \(i)")
                    }
                }
            }
        }
        print(String(format: "parity: neuron IG, 6 modules x 2 layers x 2 sequences x 2 targets: worst max|diff|/max|attr| %.3e (tolerance 1e-4)", worst))
    }

    /// Weight-level IG over all six matrices of every layer at once (path alpha*W over the 12
    /// matrices) vs captum on the scaled weights, true class and another class.
    func testWeightIntegratedGradientsOverEveryModuleMatchCaptum() throws {
        let (model, meta, ref) = try EngineReference.load()
        let layout = try ScoreLayout(config: model.config, modules: all, granularity: .weight)
        var worst = 0.0
        for (k, seq) in meta.sequences.enumerated() {
            for (t, target) in seq.targets.enumerated() {
                let r = try IntegratedGradientsAttributor().contributions(model: model, sequences: [AttributionInput(tokens: seq.tokens, target: target)],
                                                                          layout: layout, options: AttributionOptions(steps: meta.steps))[0]
                let ours = r.contribution.map(Float.init)
                var scale = 0.0
                for block in layout.blocks {
                    let expected = try ref.floats("weight_ig_all.\(k).\(t).\(block.site.layer).\(block.site.module.rawValue)")
                    let (diff, s) = maxDiff(Array(ours[block.range]), expected)
                    scale = max(scale, s)
                    worst = max(worst, diff / s)
                    XCTAssertLessThanOrEqual(diff, 1e-4 * s, "sequence \(k) target \(target) \(block.site)")
                }
                let path = seq.weight_ig_all[t]
                XCTAssertEqual(r.completeness.count, 1)
                XCTAssertNil(r.completeness[0].site)
                XCTAssertEqual(r.completeness[0].pFull, path.p_full, accuracy: 1e-5)
                XCTAssertEqual(r.completeness[0].pBaseline, path.p_baseline, accuracy: 1e-5)
                XCTAssertEqual(r.completeness[0].attributionSum, path.sum, accuracy: 1e-3 * scale)
            }
        }
        print(String(format: "parity: weight IG over 6 modules x 2 layers, 2 sequences x 2 targets: worst max|diff|/max|attr| %.3e (tolerance 1e-4)", worst))
    }

    /// Gradient x activation (neurons: y * dF/dy summed over positions; weights: w * dF/dw) vs
    /// torch autograd, every module, true class and another class.
    func testGradientXActivationMatchesAutograd() throws {
        let (model, meta, ref) = try EngineReference.load()
        var worst = 0.0
        for granularity in Granularity.allCases {
            let layout = try ScoreLayout(config: model.config, modules: all, granularity: granularity)
            for (k, seq) in meta.sequences.enumerated() {
                for (t, target) in seq.targets.enumerated() {
                    let r = try GradientXActivationAttributor().contributions(model: model, sequences: [AttributionInput(tokens: seq.tokens, target: target)],
                                                                              layout: layout, options: AttributionOptions())[0]
                    for block in layout.blocks {
                        let name = "gxa_\(granularity).\(k).\(t).\(block.site.layer).\(block.site.module.rawValue)"
                        var expected = try ref.floats(name)
                        if granularity == .neuron {   // (T, out) -> per unit, summed over positions
                            expected = (0 ..< block.rows).map { i in
                                Float((0 ..< seq.tokens.count).reduce(0.0) { $0 + Double(expected[$1 * block.rows + i]) })
                            }
                        }
                        let (diff, scale) = maxDiff(r.contribution[block.range].map(Float.init), expected)
                        worst = max(worst, diff / scale)
                        XCTAssertGreaterThan(scale, 1e-5, name)
                        XCTAssertLessThanOrEqual(diff, 1e-4 * scale, name)
                    }
                }
            }
        }
        print(String(format: "parity: gradient x activation, weights and neurons of 6 modules: worst max|diff|/max|value| %.3e (tolerance 1e-4)", worst))
    }

    /// Neuron activation scores (mean over sequences of mean_t |y_t| over non-padding
    /// positions) vs torch forward hooks on the padded 4-sequence batch, every module; batch
    /// sizes 1 and 3 give the same (padding is masked).
    func testNeuronActivationScoresMatchTorchHooks() throws {
        let (model, meta, ref) = try EngineReference.load()
        let sequences = zip(meta.activation.input_ids, meta.activation.attention_mask).map {
            AttributionInput(tokens: Array($0.prefix($1.reduce(0, +))), target: 0)
        }
        let layout = try ScoreLayout(config: model.config, modules: all, granularity: .neuron)
        for batchSize in [1, 3] {
            let a = ActivationAttributor()
            let parts = try a.contributions(model: model, sequences: sequences, layout: layout, options: AttributionOptions(batchSize: batchSize))
            var sums = [Double](repeating: 0, count: layout.count)
            for p in parts { for i in sums.indices { sums[i] += p.contribution[i] } }
            var worst = 0.0
            for block in layout.blocks {
                let expected = try ref.floats("activation_neuron.\(block.site.layer).\(block.site.module.rawValue)")
                let (diff, scale) = maxDiff(sums[block.range].map(Float.init), expected)
                worst = max(worst, diff)
                XCTAssertGreaterThan(scale, 0.01)
                XCTAssertLessThanOrEqual(diff, 1e-5 * max(1, scale), "\(block.site)")
            }
            let scores = a.scores(sums: sums, count: sequences.count, parameters: model.parameters, layout: layout)
            XCTAssertEqual(Double(scores[5]), sums[5] / 4, accuracy: 1e-6)
            print(String(format: "parity: neuron activation sums (batch %d), 6 modules: max |diff| %.3e (tolerance 1e-5)", batchSize, worst))
        }
    }

    /// per_class is a regrouping: a sequence's contribution for its own class equals its
    /// true_class contribution, so the engine attributes target = label and the stage groups.
    /// Here: attributing with target c equals captum's run with target c (t = 1 above) and
    /// differs from the true-class run.
    func testTargetChangesTheAttribution() throws {
        let (model, meta, _) = try EngineReference.load()
        let seq = meta.sequences[0]
        let layout = try ScoreLayout(config: model.config, modules: [.key], granularity: .neuron)
        let runs = try seq.targets.map { target in
            try IntegratedGradientsAttributor().contributions(model: model, sequences: [AttributionInput(tokens: seq.tokens, target: target)],
                                                              layout: layout, options: AttributionOptions(steps: 8))[0].contribution
        }
        XCTAssertGreaterThan(zip(runs[0], runs[1]).map { abs($0 - $1) }.max()!, 1e-3)
    }

    /// Bad arguments throw before any work.
    func testErrors() throws {
        let (model, meta, _) = try EngineReference.load()
        let tokens = meta.sequences[0].tokens
        let layout = ScoreLayout.paper(model.config)
        func error(_ body: () throws -> Void) -> AttributionError? {
            do { try body() } catch let e as AttributionError { return e } catch { XCTFail("\(error)") }
            return nil
        }
        for method in AttributionMethod.allCases {
            let a = method.implementation
            XCTAssertEqual(error { _ = try a.contributions(model: model, sequences: [AttributionInput(tokens: [], target: 0)], layout: layout, options: AttributionOptions()) },
                           .emptySequence, "\(method)")
            XCTAssertEqual(error { _ = try a.contributions(model: model, sequences: [AttributionInput(tokens: tokens, target: 7)], layout: layout, options: AttributionOptions()) },
                           .targetOutOfRange(target: 7, classes: 7), "\(method)")
        }
        XCTAssertEqual(error { _ = try IntegratedGradientsAttributor().contributions(model: model, sequences: [AttributionInput(tokens: tokens, target: 0)], layout: layout, options: AttributionOptions(steps: 0)) },
                       .invalidSteps(0))
        XCTAssertEqual(error { _ = try ScoreLayout(config: model.config, modules: [], granularity: .weight) }, .noModules)
        let other = try ESMConfig.preset("mini", numLabels: 7, pooling: .cls)   // hidden 64, not 32
        let foreign = try ScoreLayout(config: other, modules: [.intermediate], granularity: .neuron)
        for method in AttributionMethod.allCases {
            guard case .layoutMismatch = error({ _ = try method.implementation.contributions(model: model, sequences: [AttributionInput(tokens: tokens, target: 0)], layout: foreign, options: AttributionOptions()) }) else {
                return XCTFail("\(method): a layout of another model shape must be refused")
            }
        }
    }

    /// The paper's layout is the first three modules' weights in (layer, module, row, col) order,
    /// and a neuron layout of every module has one entry per output unit.
    func testLayoutOrder() throws {
        let (model, _, _) = try EngineReference.load()
        let c = model.config
        let paper = ScoreLayout.paper(c)
        XCTAssertEqual(paper.count, c.numHiddenLayers * 3 * c.hiddenSize * c.hiddenSize)
        XCTAssertEqual(paper.blocks.map(\.site), (0 ..< c.numHiddenLayers).flatMap { l in LinearModule.attention.map { ModuleSite(layer: l, module: $0) } })
        XCTAssertEqual(paper.block(ModuleSite(layer: 1, module: .key))!.offset, (1 * 3 + 1) * c.hiddenSize * c.hiddenSize)
        let neurons = try ScoreLayout(config: c, modules: [.output, .intermediate, .output], granularity: .neuron)
        XCTAssertEqual(neurons.modules, [.intermediate, .output])
        XCTAssertEqual(neurons.count, c.numHiddenLayers * (c.intermediateSize + c.hiddenSize))
        XCTAssertNil(neurons.block(ModuleSite(layer: 0, module: .query)))
        XCTAssertEqual(neurons.block(ModuleSite(layer: 1, module: .output))!.offset, c.intermediateSize + c.hiddenSize + c.intermediateSize)
    }

    /// Neuron ablation zeroes the unit's weight row and bias, so its output is 0 at every
    /// position (after GELU for intermediate); kept units are untouched.
    func testNeuronSubmodelSilencesTheUnit() throws {
        let (model, meta, _) = try EngineReference.load()
        let layout = try ScoreLayout(config: model.config, modules: all, granularity: .neuron)
        var kept = [Bool](repeating: true, count: layout.count)
        let site = ModuleSite(layer: 1, module: .intermediate), unit = 5
        kept[layout.block(site)!.offset + unit] = false
        let full = model.parameters
        model.parameters = Submodel.masked(full, layout: layout, kept: kept)
        defer { model.parameters = full }
        _ = model.forward(TokenBatch(sequences: [meta.sequences[0].tokens]))
        let y = model.output(at: site)
        let I = model.config.intermediateSize
        for t in 0 ..< meta.sequences[0].tokens.count {
            XCTAssertEqual(y[t * I + unit], 0)
            XCTAssertNotEqual(y[t * I + unit + 1], 0)
        }
        var changed = 0
        for i in full.values.indices where full.values[i] != model.parameters.values[i] { changed += 1 }
        XCTAssertEqual(changed, model.config.hiddenSize + 1)
    }
}
