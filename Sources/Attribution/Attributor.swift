import ESM
import Foundation

/// One sequence to attribute: token ids (`<cls>` ... `<eos>`) and the class whose probability
/// F = P(target) the target-dependent methods attribute.
public struct AttributionInput: Sendable, Equatable {
    /// Token ids, ESM-2 alphabet.
    public var tokens: [Int32]
    /// Class index in `0 ..< numLabels`.
    public var target: Int
    /// A sequence and its target.
    public init(tokens: [Int32], target: Int) { self.tokens = tokens; self.target = target }
}

/// Integrated gradients' completeness check of one path (Sundararajan et al. 2017, axiom
/// "completeness"): the attributions should sum to F(input) - F(baseline).
public struct CompletenessCheck: Sendable, Equatable {
    /// The scaled site for neuron integrated gradients (one path per site); nil for weight
    /// integrated gradients (one path scaling every chosen matrix).
    public var site: ModuleSite?
    /// F at alpha = 1 (probability).
    public var pFull: Double
    /// F at alpha = 0, the zero baseline (probability).
    public var pBaseline: Double
    /// Sum of the path's attributions (over positions too, for neurons).
    public var attributionSum: Double
    /// `attributionSum - (pFull - pBaseline)`: the Riemann sum's error (falls like 1/steps^2).
    public var gap: Double { attributionSum - (pFull - pBaseline) }
}

/// One sequence's additive contribution to a method's shard sums, and its completeness checks.
public struct SequenceAttribution: Sendable {
    /// `Attributor.contributionCount(layout:config:)` values, float64; shard sums are the sums
    /// of these over the shard's sequences in sequence order.
    public var contribution: [Double]
    /// Completeness of every integrated-gradients path of the sequence (empty for other methods).
    public var completeness: [CompletenessCheck]
}

/// Knobs shared by the methods.
public struct AttributionOptions: Sendable, Equatable {
    /// Riemann steps of integrated gradients (captum `riemann_middle`: alpha_k = (k - 0.5)/steps).
    public var steps: Int
    /// Sequences per forward of the batched methods (activation).
    public var batchSize: Int
    /// Options from their parts; `steps` >= 1.
    public init(steps: Int = 20, batchSize: Int = 8) { self.steps = steps; self.batchSize = batchSize }
}

/// An attribution method: per-sequence contributions that add up over sequences, and the final
/// scores from their sum. Implementations are registered once, in
/// `AttributionMethod.implementation`; the attribute stage loops over what the spec asks
/// without knowing any method.
public protocol Attributor: Sendable {
    /// The method implemented.
    var method: AttributionMethod { get }
    /// Length of one contribution vector (and of a shard's sums) for `layout` of `config`.
    func contributionCount(layout: ScoreLayout, config: ESMConfig) -> Int
    /// Contributions of `sequences`, in order.
    /// - Throws: `AttributionError` for an empty sequence, a target out of range, steps < 1 or a
    ///   layout of another model.
    func contributions(model: ESMClassifier, sequences: [AttributionInput], layout: ScoreLayout,
                       options: AttributionOptions) throws -> [SequenceAttribution]
    /// Scores in layout order from the sum of `count` sequences' contributions.
    func scores(sums: [Double], count: Int, parameters: ParameterBuffer, layout: ScoreLayout) -> [Float]
}

extension Attributor {
    /// Checks the arguments every method shares.
    /// - Throws: `AttributionError`.
    func validate(model: ESMClassifier, sequences: [AttributionInput], layout: ScoreLayout, steps: Int? = nil) throws {
        try layout.check(model.config)
        if let steps, steps < 1 { throw AttributionError.invalidSteps(steps) }
        for s in sequences {
            if s.tokens.isEmpty { throw AttributionError.emptySequence }
            if s.target < 0 || s.target >= model.config.numLabels {
                throw AttributionError.targetOutOfRange(target: s.target, classes: model.config.numLabels)
            }
        }
    }

    /// sums / count as float32 (the average contribution), for methods whose contribution is
    /// already the score.
    func averaged(_ sums: [Double], _ count: Int) -> [Float] {
        let n = Double(max(count, 1))
        return sums.map { Float($0 / n) }
    }
}

/// Per-position sums over the non-padding rows of a (T, width) block of `y` (row-major, row
/// stride `width`) weighted by `g` when given: out[i] += sum_t y[t,i] * g[t,i] (or |y[t,i]|
/// with `absolute`), for t < length. Float64 accumulation.
func accumulateOverPositions(_ out: inout [Double], at offset: Int, y: ArraySlice<Float>, g: ArraySlice<Float>?,
                             length: Int, width: Int, absolute: Bool = false) {
    y.withUnsafeBufferPointer { yp in
        out.withUnsafeMutableBufferPointer { o in
            if let g {
                g.withUnsafeBufferPointer { gp in
                    for t in 0 ..< length {
                        for i in 0 ..< width { o[offset + i] += Double(yp[t * width + i] * gp[t * width + i]) }
                    }
                }
            } else {
                for t in 0 ..< length {
                    for i in 0 ..< width { o[offset + i] += absolute ? Double(abs(yp[t * width + i])) : Double(yp[t * width + i]) }
                }
            }
        }
    }
}
