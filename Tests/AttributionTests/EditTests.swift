//
// Knowledge edits and mean ablation by weight surgery (`NeuronEdit`) against torch forward
// hooks on the tiny ESM-2 classifier (scripts/reference/make_edit_fixtures.py writes
// Fixtures/edit-reference.json): a hook that scales or replaces a module's output units must
// give the logits of the edited parameters. Tolerances: logits 2e-5 absolute (float32 model,
// logits of order 1); means 1e-5 relative to the largest |mean| of the module. Also the
// identities of issue 11: suppress x0 of all neurons of a module = ablating the module
// (`Submodel.masked`), amplify x1 = no change (bit for bit).

import Foundation
import XCTest
@testable import Attribution
@testable import ESM

struct EditReference: Decodable {
    struct Factor: Decodable {
        let value: Float?   // nil for "mean"
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Float.self) { value = v } else { _ = try c.decode(String.self); value = nil }
        }
    }
    struct Edit: Decodable {
        let layer: Int
        let module: String
        let factor: Factor
        let logits: [[Double]]
    }
    let modules: [String]
    let units: [Int]
    let means: [[[Double]]]
    let sequences: [[Int32]]
    let base_logits: [[Double]]
    let edits: [Edit]
}

final class EditTests: XCTestCase {
    func load() throws -> (ESMClassifier, EditReference, IGReference.Meta) {
        let (model, meta, _) = try IGReference.load()
        let ref = try JSONDecoder().decode(EditReference.self, from: Data(contentsOf: IGReference.directory.appendingPathComponent("edit-reference.json")))
        return (model, ref, meta)
    }

    func logits(_ model: ESMClassifier, _ tokens: [Int32]) -> [Float] {
        model.forward(TokenBatch(sequences: [tokens], padTokenId: Int32(model.config.padTokenId)))
    }

    func testMeansMatchTorchHooks() throws {
        let (model, ref, meta) = try load()
        let layout = try ScoreLayout(config: model.config, modules: LinearModule.allCases, granularity: .neuron)
        // The activation batch, without its padding (means are over real positions).
        let sequences = zip(meta.activation.input_ids, meta.activation.attention_mask).map { ids, mask in Array(ids.prefix(mask.reduce(0, +))) }
        let means = NeuronEdit.means(model: model, sequences: sequences, layout: layout, batchSize: 3)
        var worst = 0.0
        for block in layout.blocks {
            let m = ref.modules.firstIndex(of: block.site.module.rawValue)!
            let expected = ref.means[block.site.layer][m]
            let scale = expected.map(abs).max()!
            for i in 0 ..< block.rows {
                let d = abs(means[block.offset + i] - expected[i]) / scale
                worst = max(worst, d)
                XCTAssertLessThan(d, 1e-5, "\(block.site) unit \(i): \(means[block.offset + i]) vs torch \(expected[i])")
            }
        }
        print("means: max relative diff \(worst)")
    }

    func testScalingAndMeanAblationMatchTorchHooks() throws {
        let (model, ref, meta) = try load()
        let full = model.parameters
        let sequences = zip(meta.activation.input_ids, meta.activation.attention_mask).map { ids, mask in Array(ids.prefix(mask.reduce(0, +))) }
        for (k, tokens) in ref.sequences.enumerated() {
            let base = logits(model, tokens)
            for c in base.indices { XCTAssertEqual(Double(base[c]), ref.base_logits[k][c], accuracy: 2e-5) }
        }
        var worst = 0.0
        for edit in ref.edits {
            let module = LinearModule(rawValue: edit.module)!
            let layout = try ScoreLayout(config: model.config, modules: [module], granularity: .neuron)
            let block = layout.block(ModuleSite(layer: edit.layer, module: module))!
            if let f = edit.factor.value {
                var factors = [Float](repeating: 1, count: layout.count)
                for u in ref.units { factors[block.offset + u] = f }
                model.parameters = NeuronEdit.scaled(full, layout: layout, factors: factors)
            } else {
                let means = NeuronEdit.means(model: model, sequences: sequences, layout: layout)
                var kept = [Bool](repeating: true, count: layout.count)
                for u in ref.units { kept[block.offset + u] = false }
                model.parameters = NeuronEdit.meanAblated(full, layout: layout, kept: kept, means: means)
            }
            for (k, tokens) in ref.sequences.enumerated() {
                let ours = logits(model, tokens)
                XCTAssertNotEqual(edit.logits[k], ref.base_logits[k], "the reference edit must change the logits")
                for c in ours.indices {
                    worst = max(worst, abs(Double(ours[c]) - edit.logits[k][c]))
                    XCTAssertEqual(Double(ours[c]), edit.logits[k][c], accuracy: 2e-5, "layer \(edit.layer) \(edit.module) x \(edit.factor.value.map { "\($0)" } ?? "mean") sequence \(k) class \(c)")
                }
            }
            model.parameters = full
        }
        print("edits: max |logit diff| \(worst) over \(ref.edits.count) edits")
    }

    func testSuppressingEveryNeuronOfAModuleIsAblatingItAndAmplifyByOneChangesNothing() throws {
        let (model, ref, _) = try load()
        let full = model.parameters
        for module in LinearModule.allCases {
            let layout = try ScoreLayout(config: model.config, modules: [module], granularity: .neuron)
            // Layer 1's units all suppressed, layer 0's kept.
            let inLayer1 = layout.blocks.flatMap { b in [Bool](repeating: b.site.layer == 1, count: b.count) }
            model.parameters = NeuronEdit.scaled(full, layout: layout, factors: inLayer1.map { $0 ? 0 : 1 })
            let suppressed = ref.sequences.map { logits(model, $0) }
            model.parameters = Submodel.masked(full, layout: layout, kept: inLayer1.map { !$0 })
            let ablated = ref.sequences.map { logits(model, $0) }
            for k in suppressed.indices {
                for c in suppressed[k].indices { XCTAssertEqual(suppressed[k][c], ablated[k][c], accuracy: 1e-6, "\(module) sequence \(k) class \(c)") }
            }
            XCTAssertEqual(NeuronEdit.scaled(full, layout: layout, factors: [Float](repeating: 1, count: layout.count)), full, "\(module): x1 changes a value")
        }
        model.parameters = full
    }

    func testCascadingRandomizationReplacesTheHeadAndTopBlocksOnly() throws {
        let (model, _, _) = try load()
        let full = model.parameters
        let fresh = ESMClassifier(config: model.config, seed: 7).parameters
        for k in 0 ... model.config.numHiddenLayers {
            let p = ModelRandomization.cascading(full, layers: k, seed: 7)
            for spec in full.layout.tensors {
                let layer = spec.name.hasPrefix("esm.encoder.layer.") ? Int(spec.name.split(separator: ".")[3])! : nil
                let randomized = spec.name.hasPrefix("classifier.") || (layer.map { $0 >= model.config.numHiddenLayers - k } ?? false)
                XCTAssertEqual(p.tensor(spec), randomized ? fresh.tensor(spec) : full.tensor(spec), "k = \(k): \(spec.name)")
            }
        }
    }
}
