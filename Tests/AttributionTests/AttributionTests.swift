import Foundation
import XCTest
@testable import Attribution
@testable import ESM

final class AttributionTests: XCTestCase {
    /// A tiny random model whose weights are large enough (std 0.3) that attention and the
    /// classifier are far from linear in alpha: a hard case for the Riemann sum.
    private func model(pooling: Pooling = .mean, seed: UInt64 = 3) throws -> ESMClassifier {
        let config = try ESMConfig.preset("tiny", numLabels: 4, pooling: pooling)
        let m = ESMClassifier(config: config, seed: seed)
        var rng = SplitMix64(seed: seed &+ 100)
        var p = m.parameters
        for spec in p.layout.tensors where spec.shape.count == 2 {
            for i in spec.range { p.values[i] = Float(rng.nextNormalPair().0 * 0.3) }
        }
        m.parameters = p
        return m
    }

    private func randomSequence(_ n: Int, seed: UInt64) -> [Int32] {
        var rng = SplitMix64(seed: seed)
        return [0] + (0 ..< n).map { _ in Int32(4 + rng.nextIndex(below: 20)) } + [2]
    }

    /// IG's completeness axiom (Sundararajan et al. 2017, proposition 1): the attributions sum
    /// to F(W) - F(0). With the midpoint rule the gap shrinks like 1/steps^2; here it must
    /// fall below 1e-4 at 400 steps, while 1 step (a crude rectangle) is visibly off.
    func testCompletenessConvergesWithSteps() throws {
        let m = try model()
        var g = ParameterBuffer(layout: m.parameters.layout)
        let tokens = randomSequence(30, seed: 1)
        var gaps: [Int: Double] = [:]
        for steps in [1, 20, 400] {
            let r = IntegratedGradients.attribute(model: m, tokens: tokens, target: 2, steps: steps, gradients: &g)
            gaps[steps] = abs(r.attributionSum - (r.pFull - r.pBaseline))
            print(String(format: "IG completeness, %3d steps: sum %.6f vs P(full) - P(baseline) = %.6f - %.6f, |gap| %.3e",
                         steps, r.attributionSum, r.pFull, r.pBaseline, gaps[steps]!))
        }
        XCTAssertLessThan(gaps[400]!, 1e-4)
        XCTAssertLessThan(gaps[400]!, gaps[1]!)
        XCTAssertGreaterThan(gaps[1]!, 1e-4, "the 1-step sum should differ, or this model is too linear to test anything")
    }

    /// Batched and chunked steps give the same attributions as one forward/backward per alpha
    /// (independent loop written here), on a sequence long enough to need several chunks.
    func testChunkedStepsEqualOneAlphaAtATime() throws {
        let m = try model(pooling: .cls)
        let tokens = randomSequence(400, seed: 2)   // 402 tokens: 10 steps per chunk
        let steps = 23, target = 1, C = m.config.numLabels
        var g = ParameterBuffer(layout: m.parameters.layout)
        let r = IntegratedGradients.attribute(model: m, tokens: tokens, target: target, steps: steps, gradients: &g)

        var acc = ParameterBuffer(layout: m.parameters.layout)
        for k in 0 ..< steps {
            let alpha = Float((Double(k) + 0.5) / Double(steps))
            let logits = m.forward(TokenBatch(sequences: [tokens]), qkvScale: [alpha])
            let d = Loss.targetProbabilityGradient(logits: logits, targets: [target], classes: C).dLogits
            m.backward(dLogits: d.map { $0 / alpha }, into: &acc)
        }
        let shape = ScoredWeights(config: m.config)
        let w = shape.gather(m.parameters), grad = shape.gather(acc)
        let expected = (0 ..< shape.count).map { w[$0] * grad[$0] / Float(steps) }
        let scale = expected.map { abs($0) }.max()!
        let diff = zip(expected, r.attributions).map { abs($0 - $1) }.max()!
        print(String(format: "IG chunked vs per-alpha: max |diff| %.3e (max |attr| %.3e)", diff, scale))
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThan(diff, 1e-5 * scale)
    }

    /// The activation score of w_ij is mean_s mean_t |w_ij x_stj| over non-padding positions;
    /// computed here element by element from each sequence alone (no padding, no factoring).
    func testActivationScoresMatchBruteForce() throws {
        let m = try model()
        let seqs = [randomSequence(5, seed: 3), randomSequence(17, seed: 4), randomSequence(9, seed: 5)]
        let sums = ActivationAttribution.sumMeanAbsInputs(model: m, sequences: seqs, batchSize: 2)
        let scores = ActivationAttribution.scores(parameters: m.parameters, sums: sums, count: seqs.count)
        let shape = ScoredWeights(config: m.config)
        let H = shape.hidden
        let w = shape.gather(m.parameters)
        var expected = [Double](repeating: 0, count: shape.count)
        for s in seqs {
            _ = m.forward(TokenBatch(sequences: [s]))
            for l in 0 ..< shape.layers {
                let x = m.attentionInput(layer: l)
                for mod in AttentionModule.allCases {
                    let o = shape.offset(layer: l, module: mod)
                    for i in 0 ..< H {
                        for j in 0 ..< H {
                            var a = 0.0
                            for t in 0 ..< s.count { a += abs(Double(w[o + i * H + j]) * Double(x[t * H + j])) }
                            expected[o + i * H + j] += a / Double(s.count) / Double(seqs.count)
                        }
                    }
                }
            }
        }
        let scale = expected.max()!
        let diff = zip(expected, scores).map { abs($0 - Double($1)) }.max()!
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThan(diff, 1e-5 * scale, "max |diff| \(diff)")
    }

    func testSubmodelZeroesDroppedWeightsAndFullyDroppedRowBiases() throws {
        let m = try model()
        let shape = ScoredWeights(config: m.config)
        let H = shape.hidden
        var p = m.parameters
        // Make every bias non-zero so zeroing is visible.
        for l in 0 ..< shape.layers {
            for mod in AttentionModule.allCases {
                let b = p.layout.spec(layer: l, LayerTensor.bias(mod))
                for i in b.range { p.values[i] = 0.5 }
            }
        }
        var kept = [Bool](repeating: true, count: shape.count)
        let o = shape.offset(layer: 1, module: .key)
        for j in 0 ..< H { kept[o + 3 * H + j] = false }   // row 3 of layer 1 key: all dropped
        kept[o + 4 * H + 7] = false                          // one weight of row 4
        let masked = Submodel.masked(p, kept: kept)
        let wk = p.layout.spec(layer: 1, LayerTensor.weight(.key)), bk = p.layout.spec(layer: 1, LayerTensor.bias(.key))
        XCTAssertEqual(masked.values[wk.offset + 3 * H ..< wk.offset + 4 * H].filter { $0 != 0 }.count, 0)
        XCTAssertEqual(masked.values[bk.offset + 3], 0)
        XCTAssertEqual(masked.values[wk.offset + 4 * H + 7], 0)
        XCTAssertEqual(masked.values[bk.offset + 4], 0.5, "a row with kept weights keeps its bias")
        // Nothing else changed.
        var changed = 0
        for i in p.values.indices where p.values[i] != masked.values[i] { changed += 1 }
        XCTAssertEqual(changed, H + 1 + 1 - [Float](p.values[wk.offset + 3 * H ..< wk.offset + 4 * H]).filter { $0 == 0 }.count)
    }
}
