// A sequence's logits must not depend on what else is in its batch (REFERENCE.md section 5:
// "results changing with batch padding" is a reported problem of the peers), and the
// FFN-intermediate scale used by integrated gradients must follow the chain rule exactly.

import Foundation
import XCTest
@testable import ESM

final class BatchInvarianceTests: XCTestCase {
    private func fixtureModel() throws -> ESMClassifier {
        let (config, parameters, _) = try Checkpoint.load(directory: Fixture.tinyESM.path)
        return try ESMClassifier(config: config, parameters: parameters)
    }

    /// Sequences of 5..60 tokens with the rare letters and a `<mask>` (token dropout rescales
    /// that row only): each row's logits alone, inside a padded batch of all of them, in
    /// reversed order, and with a long neighbour agree to 1e-5 absolute.
    func testLogitsAloneEqualLogitsInPaddedBatch() throws {
        let model = try fixtureModel()
        let C = model.config.numLabels
        var rng = SplitMix64(seed: 77)
        var sequences: [[Int32]] = [[0, 20, 15, 24, 2], [0, 5, 6, 25, 4, 26, 7, 8, 9, 2], [0, 20, 11, 9, 27, 12, 28, 32, 14, 2]]
        for n in [23, 58] { sequences.append([0] + (0 ..< n).map { _ in Int32(4 + rng.nextIndex(below: 20)) } + [2]) }
        let alone = sequences.map { model.forward(TokenBatch(sequences: [$0])) }
        let batches: [(String, [Int])] = [("all", Array(sequences.indices)), ("reversed", sequences.indices.reversed()),
                                          ("with the longest", [0, 4]), ("pairs", [1, 2])]
        var worst = 0.0
        for (name, order) in batches {
            let logits = model.forward(TokenBatch(sequences: order.map { sequences[$0] }))
            for (row, s) in order.enumerated() {
                for c in 0 ..< C {
                    let d = abs(Double(logits[row * C + c]) - Double(alone[s][c]))
                    worst = max(worst, d)
                    XCTAssertLessThanOrEqual(d, 1e-5, "\(name): sequence \(s) class \(c)")
                }
            }
        }
        print(String(format: "batch invariance: logits alone vs in padded batches max |diff| %.3e (tolerance 1e-5)", worst))
        // The same with mean pooling (padding must stay out of the mean).
        var meanConfig = model.config
        meanConfig.classifierPooling = .mean
        var meanParameters = ParameterBuffer(layout: ParameterLayout(config: meanConfig))
        meanParameters.values = model.parameters.values
        let meanModel = try ESMClassifier(config: meanConfig, parameters: meanParameters)
        let meanAlone = sequences.map { meanModel.forward(TokenBatch(sequences: [$0])) }
        let meanBatch = meanModel.forward(TokenBatch(sequences: sequences))
        var meanWorst = 0.0
        for s in sequences.indices { for c in 0 ..< C { meanWorst = max(meanWorst, abs(Double(meanBatch[s * C + c]) - Double(meanAlone[s][c]))) } }
        print(String(format: "batch invariance (mean pooling): max |diff| %.3e (tolerance 1e-5)", meanWorst))
        XCTAssertLessThanOrEqual(meanWorst, 1e-5)
    }

    /// Scaling block l's intermediate activation by alpha is the same function as scaling
    /// that block's `output.dense` weight by alpha: W2 (alpha a) = (alpha W2) a. So the logits
    /// agree, every parameter gradient except W2's agrees, and dL/dW2 (scaled activation) =
    /// alpha * dL/dW2' (scaled weight); and `outputGradients` dL/da' = (dL/da of the
    /// scaled-weight model) / alpha. Tolerance 1e-4 of each tensor's max (float32 order of sums).
    func testIntermediateScaleFollowsTheChainRule() throws {
        let model = try fixtureModel()
        let C = model.config.numLabels, layer = 1
        let sequences: [[Int32]] = [[0, 20, 15, 9, 12, 2], [0, 5, 6, 7, 8, 9, 10, 11, 32, 2]]
        let alphas: [Float] = [0.3, 0.8]
        var rng = SplitMix64(seed: 5)
        let dLogits = (0 ..< 2 * C).map { _ in Float(rng.nextNormalPair().0) }
        var gScaled = ParameterBuffer(layout: model.parameters.layout)
        let site = ModuleSite(layer: layer, module: .intermediate)
        let logitsScaled = model.forward(TokenBatch(sequences: sequences),
                                         hooks: ForwardHooks(outputScale: .init(site: site, factors: alphas)))
        model.backward(dLogits: dLogits, into: &gScaled)
        let dAct = model.outputGradients(dLogits: dLogits, at: [site])[site]!

        let w2 = model.parameters.layout.spec(layer: layer, .outputWeight)
        let I = model.config.intermediateSize, T = sequences.map(\.count).max()!
        var logitsRef: [Float] = [], gRef = ParameterBuffer(layout: model.parameters.layout), dActRef: [Float] = []
        for (b, s) in sequences.enumerated() {   // one row at a time, W2 scaled by that row's alpha
            var p = model.parameters
            for i in w2.range { p.values[i] *= alphas[b] }
            let m = try ESMClassifier(config: model.config, parameters: p)
            logitsRef += m.forward(TokenBatch(sequences: [s, sequences[1 - b]]))[0 ..< C]
            var g = ParameterBuffer(layout: p.layout)
            m.backward(dLogits: Array(dLogits[b * C ..< (b + 1) * C]) + [Float](repeating: 0, count: C), into: &g)
            for spec in p.layout.tensors {
                let f: Float = spec == w2 ? alphas[b] : 1
                for i in spec.range { gRef.values[i] += f * g.values[i] }
            }
            let dA = m.outputGradients(dLogits: Array(dLogits[b * C ..< (b + 1) * C]) + [Float](repeating: 0, count: C),
                                       at: [site])[site]!
            dActRef += dA[0 ..< T * I].map { $0 / alphas[b] }
        }
        let logitDiff = zip(logitsScaled, logitsRef).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(logitDiff, 1e-5)
        var worst = 0.0
        for spec in model.parameters.layout.tensors {
            let scale = Double(gRef.tensor(spec).map { abs($0) }.max()!)
            let diff = Double(zip(gScaled.tensor(spec), gRef.tensor(spec)).map { abs($0 - $1) }.max()!)
            worst = max(worst, scale > 0 ? diff / scale : diff)
            XCTAssertLessThanOrEqual(diff, 1e-4 * max(scale, 1e-12), spec.name)
        }
        XCTAssertEqual(dAct.count, 2 * T * I)
        let dActScale = Double(dActRef.map { abs($0) }.max()!)
        let dActDiff = Double(zip(dAct, dActRef).map { abs($0 - $1) }.max()!)
        XCTAssertGreaterThan(dActScale, 0)
        XCTAssertLessThanOrEqual(dActDiff, 1e-4 * dActScale)
        print(String(format: "intermediate scale vs scaled output.dense: logits max |diff| %.3e, gradients max relative diff %.3e, dL/da' relative diff %.3e",
                     logitDiff, worst, dActDiff / dActScale))
        // dL/da' (B,T,I) is zero on padding rows and non-trivial elsewhere.
        XCTAssertEqual(dAct[(0 * T + 7) * I ..< (0 * T + 8) * I].map { abs($0) }.max(), 0, "padding position")
        XCTAssertGreaterThan(dAct[0 ..< I].map { abs($0) }.max()!, 0)
        XCTAssertEqual(model.outputGradients(dLogits: dLogits, at: [ModuleSite(layer: 2, module: .intermediate)]), [:], "layer out of range")
    }
}
