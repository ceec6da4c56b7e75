// Finite-difference checks of every hand-written backward kernel (Kernels.swift) and of the
// whole classifier, llm.c style. For an op y = f(x1, x2, ...), a random projection R gives
// the scalar L = sum(y * R); its analytic gradient dL/dxi = backward(dout: R) is compared
// with the central difference (L(x + eps e_j) - L(x - eps e_j)) / (2 eps), eps = 1e-2,
// evaluated in float32 kernels with the projection summed in Double.
//
// Tolerance: max |analytic - numeric| <= 1e-2 * max |analytic| per tensor. Float32 central
// differences with eps = 1e-2 on O(1) inputs carry truncation error ~eps^2 and round-off
// ~1e-7 * |L| / eps; the measured worst relative error is printed for every tensor
// (typically 1e-5 .. 1e-3), while a wrong formula (sign, missing term, transposed index)
// gives relative errors of order 1.

import Foundation
import XCTest
@testable import ESM

final class GradientCheckTests: XCTestCase {
    private var rng = SplitMix64(seed: 2024)

    private func randn(_ n: Int, std: Double = 1) -> [Float] {
        var a = [Float](repeating: 0, count: n)
        a.withUnsafeMutableBufferPointer { rng.fillNormal($0, std: std) }
        return a
    }

    /// Compares analytic and numeric gradients of `L = sum(forward(x) * R)` w.r.t. the
    /// tensors `wrt` of `inputs`, checking at most `maxElements` evenly spaced elements each.
    private func check(_ name: String, _ inputs: [[Float]], wrt: [Int], eps: Float = 1e-2, tolerance: Double = 1e-2,
                       maxElements: Int = 150,
                       forward: ([[Float]]) -> [Float], backward: ([[Float]], [Float]) -> [[Float]],
                       file: StaticString = #filePath, line: UInt = #line) {
        var x = inputs
        let y = forward(x)
        let r = randn(y.count)
        let analytic = backward(x, r)
        func loss(_ x: [[Float]]) -> Double {
            zip(forward(x), r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        for t in wrt {
            let count = x[t].count
            let stride = max(1, count / maxElements)
            let scale = Double(analytic[t].map { abs($0) }.max() ?? 0)
            var worst = 0.0
            for j in Swift.stride(from: 0, to: count, by: stride) {
                let saved = x[t][j]
                x[t][j] = saved + eps
                let lp = loss(x)
                x[t][j] = saved - eps
                let lm = loss(x)
                x[t][j] = saved
                let numeric = (lp - lm) / Double(2 * eps)
                worst = max(worst, abs(numeric - Double(analytic[t][j])))
            }
            let relative = scale > 0 ? worst / scale : worst
            print(String(format: "gradcheck %-28@ input %d: max|grad| %.3e  max|diff| %.3e  relative %.3e",
                         name as NSString, t, scale, worst, relative))
            XCTAssertGreaterThan(scale, 0, "\(name) input \(t): gradient is identically zero", file: file, line: line)
            XCTAssertLessThanOrEqual(relative, tolerance, "\(name) input \(t)", file: file, line: line)
        }
    }

    func testLayerNorm() {
        let N = 5, H = 24
        let inputs = [randn(N * H), randn(H, std: 0.5).map { $0 + 1 }, randn(H)]
        check("layerNorm", inputs, wrt: [0, 1, 2], forward: { x in
            var out = [Float](repeating: 0, count: N * H), mean = [Float](repeating: 0, count: N), rstd = mean
            layerNormForward(&out, mean: &mean, rstd: &rstd, inp: x[0], weight: x[1], bias: x[2], N: N, H: H, eps: 1e-5)
            return out
        }, backward: { x, dout in
            var out = [Float](repeating: 0, count: N * H), mean = [Float](repeating: 0, count: N), rstd = mean
            layerNormForward(&out, mean: &mean, rstd: &rstd, inp: x[0], weight: x[1], bias: x[2], N: N, H: H, eps: 1e-5)
            var dx = [Float](repeating: 0, count: N * H), dw = [Float](repeating: 0, count: H), db = dw
            var scratch = [Float](repeating: 0, count: 2 * H)
            layerNormBackward(dinp: &dx, dweight: &dw, dbias: &db, dout: dout, inp: x[0], weight: x[1],
                              mean: mean, rstd: rstd, N: N, H: H, scratch: &scratch)
            return [dx, dw, db]
        })
    }

    func testLinearPlainAndRowScaled() {
        let B = 3, T = 2, N = B * T, IN = 7, OUT = 5
        for scaled in [false, true] {
            let scales: [Float] = [0.25, 1, 0.6]
            let inputs = [randn(N * IN), randn(OUT * IN), randn(OUT)]
            func fwd(_ x: [[Float]]) -> [Float] {
                var out = [Float](repeating: 0, count: N * OUT)
                scales.withUnsafeBufferPointer { s in
                    linearForward(&out, inp: x[0], weight: x[1], bias: x[2], N: N, IN: IN, OUT: OUT,
                                  rowScale: scaled ? s.baseAddress : nil, rowsPerScale: T)
                }
                return out
            }
            check(scaled ? "linear(rowScale)" : "linear", inputs, wrt: [0, 1, 2], forward: fwd, backward: { x, dout in
                var dx = [Float](repeating: 0, count: N * IN), dw = [Float](repeating: 0, count: OUT * IN)
                var db = [Float](repeating: 0, count: OUT), scratch = [Float](repeating: 0, count: N * OUT)
                scales.withUnsafeBufferPointer { s in
                    linearBackward(dinp: &dx, dweight: &dw, dbias: &db, dout: dout, inp: x[0], weight: x[1],
                                   N: N, IN: IN, OUT: OUT, rowScale: scaled ? s.baseAddress : nil, rowsPerScale: T,
                                   scratch: &scratch)
                }
                return [dx, dw, db]
            })
        }
    }

    func testGelu() {
        let n = 200
        // Spread over [-5, 5] to cover the clamped erf range and the GELU knee.
        let x = (0 ..< n).map { Float($0) / Float(n - 1) * 10 - 5 + 0.013 }
        check("gelu", [x], wrt: [0], eps: 1e-3, forward: { x in
            var out = [Float](repeating: 0, count: n)
            geluForward(&out, inp: x[0], count: n)
            return out
        }, backward: { x, dout in
            var d = [Float](repeating: 0, count: n)
            geluBackward(dinp: &d, inp: x[0], dout: dout, count: n)
            return [d]
        })
    }

    func testGeluMatchesExactErf() {
        // Forward accuracy of the vectorised erf against libm's double erf.
        var worst = 0.0
        for i in 0 ... 20000 {
            let x = Float(i) / 20000 * 12 - 6
            var out: Float = 0
            var inp = x
            geluForward(&out, inp: &inp, count: 1)
            let exact = Double(x) * 0.5 * (1 + erf(Double(x) / 2.0.squareRoot()))
            worst = max(worst, abs(Double(out) - exact))
        }
        print(String(format: "gelu forward vs double erf on [-6, 6]: max |diff| %.3e", worst))
        XCTAssertLessThan(worst, 2e-6)   // float32 ulp at |x| = 6 is 4.8e-7
    }

    func testTanh() {
        let n = 40
        check("tanh", [randn(n)], wrt: [0], forward: { x in
            var out = [Float](repeating: 0, count: n)
            tanhForward(&out, inp: x[0], count: n)
            return out
        }, backward: { x, dout in
            var out = [Float](repeating: 0, count: n), d = out
            tanhForward(&out, inp: x[0], count: n)
            tanhBackward(dinp: &d, out: out, dout: dout, count: n)
            return [d]
        })
    }

    func testRotary() {
        let B = 2, T = 5, NH = 2, HD = 8, n = B * T * NH * HD
        var cos = [Float](repeating: 0, count: T * HD / 2), sin = cos
        rotaryTables(cos: &cos, sin: &sin, T: T, HD: HD)
        for scale: Float in [1, 0.35] {
            check("rotary(scale \(scale))", [randn(n)], wrt: [0], forward: { x in
                var out = [Float](repeating: 0, count: n)
                rotaryForward(&out, inp: x[0], cos: cos, sin: sin, scale: scale, B: B, T: T, NH: NH, HD: HD)
                return out
            }, backward: { _, dout in
                var d = [Float](repeating: 0, count: n)
                rotaryBackward(dinp: &d, dout: dout, cos: cos, sin: sin, scale: scale, B: B, T: T, NH: NH, HD: HD)
                return [d]
            })
        }
    }

    func testRotaryTablesMatchTorchFormula() {
        // inv_freq = 1 / 10000^(2i/HD), angle = t * inv_freq (HF EsmRotaryEmbedding).
        let T = 300, HD = 16
        var cos = [Float](repeating: 0, count: T * HD / 2), sin = cos
        rotaryTables(cos: &cos, sin: &sin, T: T, HD: HD)
        XCTAssertEqual(cos[0], 1)
        XCTAssertEqual(sin[0], 0)
        let t = 299, i = 3
        let angle = Double(Float(t) * (Float(1) / powf(10000, Float(2 * i) / Float(HD))))
        XCTAssertEqual(Double(sin[t * HD / 2 + i]), Foundation.sin(angle), accuracy: 1e-6)
        XCTAssertEqual(Double(cos[t * HD / 2 + i]), Foundation.cos(angle), accuracy: 1e-6)
    }

    func testAttentionWithPaddedKeys() {
        let B = 3, T = 6, NH = 2, HD = 4, H = NH * HD, n = B * T * H
        let lengths = [6, 4, 1]   // full, padded, a single token
        for workers in [1, 2] {
            let scratchCount = workers * 2 * T * T
            check("attention(workers \(workers))", [randn(n), randn(n), randn(n)], wrt: [0, 1, 2], forward: { x in
                var out = [Float](repeating: 0, count: n), scratch = [Float](repeating: 0, count: scratchCount)
                attentionForward(&out, q: x[0], k: x[1], v: x[2], lengths: lengths, B: B, T: T, NH: NH, HD: HD,
                                 scratch: &scratch, workers: workers)
                return out
            }, backward: { x, dout in
                var dq = [Float](repeating: 0, count: n), dk = dq, dv = dq
                var scratch = [Float](repeating: 0, count: scratchCount)
                attentionBackward(dq: &dq, dk: &dk, dv: &dv, dout: dout, q: x[0], k: x[1], v: x[2], lengths: lengths,
                                  B: B, T: T, NH: NH, HD: HD, scratch: &scratch, workers: workers)
                return [dq, dk, dv]
            })
        }
    }

    func testAttentionIgnoresPaddedKeys() {
        // Changing a padded key or value must not change any output.
        let B = 1, T = 4, NH = 1, HD = 4, H = 4, n = B * T * H
        let q = randn(n), k = randn(n), v = randn(n)
        func run(_ k: [Float], _ v: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: n), scratch = [Float](repeating: 0, count: 2 * T * T)
            attentionForward(&out, q: q, k: k, v: v, lengths: [3], B: B, T: T, NH: NH, HD: HD, scratch: &scratch, workers: 1)
            return out
        }
        var k2 = k, v2 = v
        for i in 3 * H ..< 4 * H { k2[i] += 5; v2[i] -= 7 }
        XCTAssertEqual(run(k, v), run(k2, v2))
    }

    func testPooling() {
        let B = 3, T = 5, H = 4, n = B * T * H
        let lengths = [5, 3, 2]   // the last row has no residue: mean pooling gives zero
        for pooling in [Pooling.cls, .mean] {
            check("pool(\(pooling.rawValue))", [randn(n)], wrt: [0], forward: { x in
                var out = [Float](repeating: 0, count: B * H)
                poolForward(&out, inp: x[0], lengths: lengths, pooling: pooling, B: B, T: T, H: H)
                return out
            }, backward: { _, dout in
                var d = [Float](repeating: 0, count: n)
                poolBackward(dinp: &d, dout: dout, lengths: lengths, pooling: pooling, B: B, T: T, H: H)
                return [d]
            })
        }
    }

    func testEmbeddingWithTokenDropout() {
        let B = 2, T = 4, H = 3, V = 6
        let tokens: [Int32] = [0, 5, 4, 2, 0, 3, 2, 1]   // token 4 plays <mask>; row 1 has 3 tokens
        let lengths = [4, 3], scale: [Float] = [0.88 / 0.75, 0.88]
        check("embedding", [randn(V * H)], wrt: [0], forward: { x in
            var out = [Float](repeating: 0, count: B * T * H)
            embeddingForward(&out, tokens: tokens, lengths: lengths, wte: x[0], rowScale: scale, maskToken: 4,
                             zeroMask: true, B: B, T: T, H: H, V: V)
            return out
        }, backward: { _, dout in
            var d = [Float](repeating: 0, count: V * H)
            embeddingBackward(dwte: &d, dout: dout, tokens: tokens, lengths: lengths, rowScale: scale, maskToken: 4,
                              zeroMask: true, B: B, T: T, H: H, V: V)
            return [d]
        })
    }

    func testCrossEntropyAndTargetProbabilityGradients() {
        let B = 3, C = 4
        let labels = [2, 0, 3]
        check("crossEntropy", [randn(B * C)], wrt: [0], forward: { x in
            [Loss.crossEntropy(logits: x[0], labels: labels, classes: C).loss]
        }, backward: { x, dout in
            [Loss.crossEntropy(logits: x[0], labels: labels, classes: C).dLogits.map { $0 * dout[0] }]
        })
        check("targetProbability", [randn(B * C)], wrt: [0], forward: { x in
            let p = Loss.softmax(logits: x[0], classes: C)
            return labels.enumerated().map { p[$0.offset * C + $0.element] }
        }, backward: { x, dout in
            let d = Loss.targetProbabilityGradient(logits: x[0], targets: labels, classes: C).dLogits
            return [d.enumerated().map { $0.element * dout[$0.offset / C] }]
        })
    }

    /// The whole classifier: gradient of the loss w.r.t. sampled parameters of every tensor,
    /// both poolings, a padded batch with a <mask>, and the integrated-gradients path
    /// with each generic hook: a `WeightScale` on all six linear maps (dW carry the per-row
    /// factor) and an `OutputScale` at one site of each module (the gradient below the site
    /// carries the factor).
    func testWholeClassifier() throws {
        let sites = LinearModule.allCases.enumerated().map { ModuleSite(layer: $0.offset % 2, module: $0.element) }
        let variants: [(String, ForwardHooks)] = [("none", .none),
            ("weight scale, 6 modules", ForwardHooks(weightScale: .init(modules: Set(LinearModule.allCases), factors: [0.3, 0.8])))]
            + sites.map { ("output scale at \($0)", ForwardHooks(outputScale: .init(site: $0, factors: [0.3, 0.8]))) }
        for pooling in [Pooling.cls, .mean] {
            for (name, hooks) in variants where pooling == .cls || name == "none" || name.hasPrefix("weight") {
                var config = try ESMConfig.preset("tiny", numLabels: 3, pooling: pooling)
                config.numHiddenLayers = 2
                let model = ESMClassifier(config: config, seed: 7)
                // Larger weights than the 0.02 init so that every path carries signal.
                var p = model.parameters
                var r = SplitMix64(seed: 11)
                for i in p.values.indices {
                    p.values[i] += Float(r.nextNormalPair().0 * 0.2)
                }
                model.parameters = p
                let batch = TokenBatch(sequences: [[0, 5, 6, 32, 9, 2], [0, 10, 11, 2]], padTokenId: 1)
                let labels = [1, 2]
                let logits = model.forward(batch, hooks: hooks)
                let (_, dLogits) = Loss.crossEntropy(logits: logits, labels: labels, classes: 3)
                var grads = ParameterBuffer(layout: p.layout)
                model.backward(dLogits: dLogits, into: &grads)
                func loss() -> Double {
                    Double(Loss.crossEntropy(logits: model.forward(batch, hooks: hooks), labels: labels, classes: 3).loss)
                }
                var worstOverall = 0.0
                let eps: Float = 1e-2
                for spec in p.layout.tensors {
                    let scale = Double(grads.tensor(spec).map { abs($0) }.max() ?? 0)
                    if scale == 0 { continue }   // e.g. embedding rows of unused tokens only
                    var worst = 0.0
                    let step = max(1, spec.range.count / 12)
                    for j in Swift.stride(from: spec.range.lowerBound, to: spec.range.upperBound, by: step) {
                        let saved = model.parameters.values[j]
                        model.parameters.values[j] = saved + eps
                        let lp = loss()
                        model.parameters.values[j] = saved - eps
                        let lm = loss()
                        model.parameters.values[j] = saved
                        worst = max(worst, abs((lp - lm) / Double(2 * eps) - Double(grads.values[j])))
                    }
                    let rel = worst / scale
                    worstOverall = max(worstOverall, rel)
                    XCTAssertLessThanOrEqual(rel, 2e-2, "\(spec.name) pooling \(pooling) hooks \(name)")
                }
                print(String(format: "gradcheck whole classifier (pooling %@, hooks: %@): worst relative %.3e",
                             pooling.rawValue, name, worstOverall))
            }
        }
    }
}
