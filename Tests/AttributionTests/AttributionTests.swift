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
        let tokens = randomSequence(30, seed: 1)
        var gaps: [Int: Double] = [:]
        for steps in [1, 20, 400] {
            let r = try IntegratedGradientsAttributor().contributions(model: m, sequences: [AttributionInput(tokens: tokens, target: 2)],
                                                                      layout: .paper(m.config), options: AttributionOptions(steps: steps))[0].completeness[0]
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
        let layout = ScoreLayout.paper(m.config)
        let r = try IntegratedGradientsAttributor().contributions(model: m, sequences: [AttributionInput(tokens: tokens, target: target)],
                                                                  layout: layout, options: AttributionOptions(steps: steps))[0]

        var acc = ParameterBuffer(layout: m.parameters.layout)
        for k in 0 ..< steps {
            let alpha = Float((Double(k) + 0.5) / Double(steps))
            let logits = m.forward(TokenBatch(sequences: [tokens]), hooks: ForwardHooks(weightScale: .init(modules: Set(LinearModule.attention), factors: [alpha])))
            let d = Loss.targetProbabilityGradient(logits: logits, targets: [target], classes: C).dLogits
            m.backward(dLogits: d.map { $0 / alpha }, into: &acc)
        }
        let w = layout.gatherWeights(m.parameters), grad = layout.gatherWeights(acc)
        let expected = (0 ..< layout.count).map { w[$0] * grad[$0] / Float(steps) }
        let scale = expected.map { abs($0) }.max()!
        let diff = zip(expected, r.contribution).map { abs($0 - Float($1)) }.max()!
        print(String(format: "IG chunked vs per-alpha: max |diff| %.3e (max |attr| %.3e)", diff, scale))
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThan(diff, 1e-5 * scale)
    }

    /// The activation score of w_ij is mean_s mean_t |w_ij x_stj| over non-padding positions,
    /// for the weights of all six linear maps; computed here element by element from each
    /// sequence alone (no padding, no factoring), with the input read from the model.
    func testActivationScoresMatchBruteForce() throws {
        let m = try model()
        let seqs = [randomSequence(5, seed: 3), randomSequence(17, seed: 4), randomSequence(9, seed: 5)]
        let layout = try ScoreLayout(config: m.config, modules: LinearModule.allCases, granularity: .weight)
        let a = ActivationAttributor()
        let parts = try a.contributions(model: m, sequences: seqs.map { AttributionInput(tokens: $0, target: 0) }, layout: layout,
                                        options: AttributionOptions(batchSize: 2))
        var sums = [Double](repeating: 0, count: a.contributionCount(layout: layout, config: m.config))
        for p in parts { for i in sums.indices { sums[i] += p.contribution[i] } }
        let scores = a.scores(sums: sums, count: seqs.count, parameters: m.parameters, layout: layout)
        let w = layout.gatherWeights(m.parameters)
        var expected = [Double](repeating: 0, count: layout.count)
        for s in seqs {
            _ = m.forward(TokenBatch(sequences: [s]))
            for block in layout.blocks {
                let x = m.input(at: block.site)
                for i in 0 ..< block.rows {
                    for j in 0 ..< block.cols {
                        let k = block.offset + i * block.cols + j
                        var acc = 0.0
                        for t in 0 ..< s.count { acc += abs(Double(w[k]) * Double(x[t * block.cols + j])) }
                        expected[k] += acc / Double(s.count) / Double(seqs.count)
                    }
                }
            }
        }
        let scale = expected.max()!
        let diff = zip(expected, scores).map { abs($0 - Double($1)) }.max()!
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThan(diff, 1e-5 * scale, "max |diff| \(diff)")
        // Query, key and value share one input: the contribution holds it once per layer.
        let paper = ScoreLayout.paper(m.config)
        XCTAssertEqual(a.contributionCount(layout: paper, config: m.config), m.config.numHiddenLayers * m.config.hiddenSize)
    }

    /// Restricting the backward to the chosen modules' parameters gives bit-identical
    /// gradients there (the paper's default path does not move) and leaves other slots alone.
    func testBackwardRestrictedToModulesIsExact() throws {
        let m = try model()
        let batch = TokenBatch(sequences: [randomSequence(12, seed: 8), randomSequence(7, seed: 9)])
        let logits = m.forward(batch, hooks: ForwardHooks(weightScale: .init(modules: Set(LinearModule.attention), factors: [0.4, 0.9])))
        let d = Loss.targetProbabilityGradient(logits: logits, targets: [1, 2], classes: m.config.numLabels).dLogits
        var all = ParameterBuffer(layout: m.parameters.layout), some = all
        m.backward(dLogits: d, into: &all)
        m.backward(dLogits: d, into: &some, modules: Set(LinearModule.attention))
        let paper = ScoreLayout.paper(m.config)
        XCTAssertEqual(paper.gatherWeights(some), paper.gatherWeights(all))
        let ffn = m.parameters.layout.spec(layer: 0, .intermediateWeight)
        XCTAssertEqual(some.tensor(ffn).filter { $0 != 0 }.count, 0)
        XCTAssertGreaterThan(all.tensor(ffn).filter { $0 != 0 }.count, 0)
    }

    func testSubmodelZeroesDroppedWeightsAndFullyDroppedRowBiases() throws {
        let m = try model()
        let layout = ScoreLayout.paper(m.config)
        let H = m.config.hiddenSize
        var p = m.parameters
        // Make every bias non-zero so zeroing is visible.
        for l in 0 ..< layout.layers {
            for mod in LinearModule.attention {
                let b = p.layout.spec(layer: l, mod.bias)
                for i in b.range { p.values[i] = 0.5 }
            }
        }
        var kept = [Bool](repeating: true, count: layout.count)
        let o = layout.block(ModuleSite(layer: 1, module: .key))!.offset
        for j in 0 ..< H { kept[o + 3 * H + j] = false }   // row 3 of layer 1 key: all dropped
        kept[o + 4 * H + 7] = false                          // one weight of row 4
        let masked = Submodel.masked(p, layout: layout, kept: kept)
        let wk = p.layout.spec(layer: 1, .keyWeight), bk = p.layout.spec(layer: 1, .keyBias)
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
