import ESM
import Foundation

/// Hyper-parameters of AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay
/// Regularization"), with PyTorch `torch.optim.AdamW` defaults and update rule.
public struct AdamWConfig: Sendable, Equatable {
    /// Step size (learning rate), dimensionless.
    public var learningRate: Float
    /// Decay of the first-moment estimate (PyTorch default 0.9).
    public var beta1: Float
    /// Decay of the second-moment estimate (PyTorch default 0.999).
    public var beta2: Float
    /// Added to the denominator for stability (PyTorch default 1e-8).
    public var epsilon: Float
    /// Decoupled weight decay (PyTorch default 0.01), applied to the tensors for which
    /// `ParameterLayout.decays` is true (Linear weights; not biases, LayerNorm, embeddings).
    public var weightDecay: Float

    /// A configuration; every argument but the learning rate defaults to PyTorch's value.
    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0.01) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }
}

/// AdamW optimizer state over one `ParameterBuffer` and its update, exactly PyTorch's
/// `torch.optim.AdamW` (non-amsgrad, non-foreach semantics):
///
///     t += 1
///     p  *= 1 - lr * wd                        (decayed tensors only)
///     m   = b1 m + (1 - b1) g
///     v   = b2 v + (1 - b2) g^2
///     p  -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
public struct AdamW: Sendable {
    /// Hyper-parameters.
    public var config: AdamWConfig
    /// First moments, same layout as the parameters.
    public var m: ParameterBuffer
    /// Second moments, same layout as the parameters.
    public var v: ParameterBuffer
    /// Number of updates done so far (PyTorch `state["step"]`).
    public var step: Int = 0
    private let decayMask: [Bool]   // per tensor of the layout

    /// Zero state for parameters of `layout`.
    public init(config: AdamWConfig, layout: ParameterLayout) {
        self.config = config
        m = ParameterBuffer(layout: layout)
        v = ParameterBuffer(layout: layout)
        decayMask = layout.tensors.map { layout.decays($0) }
    }

    /// One update of `parameters` with `gradients` (same layout as the state).
    /// A layout mismatch is a programming error (precondition).
    public mutating func update(_ parameters: inout ParameterBuffer, gradients: ParameterBuffer) {
        precondition(parameters.values.count == m.values.count && gradients.values.count == m.values.count,
                     "AdamW: parameters, gradients and state must share one layout")
        step += 1
        let c = config
        let bc1 = 1 - Float(pow(Double(c.beta1), Double(step)))
        let bc2Sqrt = Float((1 - pow(Double(c.beta2), Double(step))).squareRoot())
        let stepSize = c.learningRate / bc1
        let decay = 1 - c.learningRate * c.weightDecay
        let tensors = m.layout.tensors
        let mask = decayMask
        parameters.values.withUnsafeMutableBufferPointer { p in
            gradients.values.withUnsafeBufferPointer { g in
                m.values.withUnsafeMutableBufferPointer { mm in
                    v.values.withUnsafeMutableBufferPointer { vv in
                        for (ti, spec) in tensors.enumerated() {
                            let d: Float = mask[ti] ? decay : 1
                            for i in spec.range {
                                let gi = g[i]
                                let mi = c.beta1 * mm[i] + (1 - c.beta1) * gi
                                let vi = c.beta2 * vv[i] + (1 - c.beta2) * gi * gi
                                mm[i] = mi
                                vv[i] = vi
                                p[i] = p[i] * d - stepSize * mi / (vi.squareRoot() / bc2Sqrt + c.epsilon)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Learning-rate multiplier as a function of the optimizer step, as HF `transformers`'
/// `get_linear_schedule_with_warmup` / `get_constant_schedule`.
public enum LearningRateSchedule: Sendable, Equatable {
    /// Factor 1 at every step.
    case constant
    /// Factor `s / warmup` for the steps s < warmup, then `(total - s) / (total - warmup)`,
    /// reaching 0 at s = total (s counts updates already done, starting at 0).
    case linear(warmupSteps: Int, totalSteps: Int)

    /// The multiplier for the update after `stepsDone` updates, in [0, 1].
    public func factor(stepsDone s: Int) -> Float {
        switch self {
        case .constant:
            return 1
        case .linear(let warmup, let total):
            if s < warmup { return Float(s) / Float(max(1, warmup)) }
            return max(0, Float(total - s) / Float(max(1, total - warmup)))
        }
    }
}

/// One labelled, tokenised sequence.
public struct Example: Sendable, Equatable {
    /// `<cls>` residues `<eos>` token ids (ESM-2 alphabet).
    public var tokens: [Int32]
    /// Class index in `0 ..< numLabels`.
    public var label: Int

    /// An example.
    public init(tokens: [Int32], label: Int) {
        self.tokens = tokens
        self.label = label
    }
}

/// Summary of one pass over a set of examples.
public struct EpochStats: Sendable, Equatable {
    /// Mean cross-entropy per example (nats).
    public var loss: Double
    /// Fraction of examples whose arg-max logit is the label, in [0, 1].
    public var accuracy: Double
    /// Number of examples seen.
    public var examples: Int
    /// Wall time in seconds.
    public var seconds: Double

    /// A summary.
    public init(loss: Double, accuracy: Double, examples: Int, seconds: Double) {
        self.loss = loss
        self.accuracy = accuracy
        self.examples = examples
        self.seconds = seconds
    }
}

/// Full fine-tuning of an `ESMClassifier` with AdamW on mean cross-entropy over padded,
/// masked mini-batches, and batched evaluation.
///
/// Data order: epoch `e` with seed `s` shuffles the examples with a Fisher-Yates pass driven
/// by `SplitMix64(seed: s &* 0x9E3779B97F4A7C15 &+ e)`, so the order depends only on
/// (seed, epoch) and a resumed run sees the same batches as an uninterrupted one.
public final class Trainer {
    /// The model being trained (updated in place).
    public let model: ESMClassifier
    /// Optimizer state (saved and restored by the pipeline between epochs).
    public var optimizer: AdamW
    /// Sequences per mini-batch (>= 1).
    public let batchSize: Int
    /// Global L2 gradient-norm clip as `torch.nn.utils.clip_grad_norm_` (nil: no clipping).
    public let maxGradNorm: Float?
    /// Multiplier of the base learning rate per step (default constant).
    public var schedule: LearningRateSchedule = .constant
    private let baseLearningRate: Float
    private var gradients: ParameterBuffer

    /// A trainer with fresh optimizer state.
    public init(model: ESMClassifier, optimizer: AdamWConfig, batchSize: Int, maxGradNorm: Float?) {
        self.model = model
        self.optimizer = AdamW(config: optimizer, layout: model.parameters.layout)
        self.batchSize = max(1, batchSize)
        self.maxGradNorm = maxGradNorm
        baseLearningRate = optimizer.learningRate
        gradients = ParameterBuffer(layout: model.parameters.layout)
    }

    /// The shuffled order of `count` examples for (seed, epoch); see the type's doc.
    public static func order(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(truncatingIfNeeded: epoch))
        var idx = Array(0 ..< count)
        rng.shuffle(&idx)
        return idx
    }

    /// One optimisation step on a batch: forward, mean cross-entropy, backward, optional
    /// clipping, AdamW update. Returns the batch loss (mean over rows) and the number of rows
    /// whose arg-max logit (before the update) equals the label.
    @discardableResult
    public func step(_ batch: [Example]) -> (loss: Float, correct: Int) {
        let tb = TokenBatch(sequences: batch.map(\.tokens), padTokenId: Int32(model.config.padTokenId))
        let logits = model.forward(tb)
        let C = model.config.numLabels
        let labels = batch.map(\.label)
        let (loss, dLogits) = Loss.crossEntropy(logits: logits, labels: labels, classes: C)
        gradients.values.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        model.backward(dLogits: dLogits, into: &gradients)
        if let maxNorm = maxGradNorm {
            var sq = 0.0
            for g in gradients.values { sq += Double(g) * Double(g) }
            let norm = Float(sq.squareRoot())
            let coef = maxNorm / (norm + 1e-6)
            if coef < 1 {
                gradients.values.withUnsafeMutableBufferPointer { g in
                    for i in g.indices { g[i] *= coef }
                }
            }
        }
        optimizer.config.learningRate = baseLearningRate * schedule.factor(stepsDone: optimizer.step)
        optimizer.update(&model.parameters, gradients: gradients)
        return (loss, Trainer.correct(logits: logits, labels: labels, classes: C))
    }

    /// One epoch over `examples` in the (seed, epoch) order, in batches of `batchSize`.
    /// `progress(done, total)` is called after each batch. Loss and accuracy are measured on
    /// each batch before its update (as training logs usually report them).
    public func trainEpoch(_ examples: [Example], seed: UInt64, epoch: Int,
                           progress: ((Int, Int) -> Void)? = nil) -> EpochStats {
        let t0 = Date()
        let order = Trainer.order(count: examples.count, seed: seed, epoch: epoch)
        var lossSum = 0.0, correct = 0, done = 0
        var start = 0
        while start < order.count {
            let end = min(start + batchSize, order.count)
            let batch = order[start ..< end].map { examples[$0] }
            let (loss, c) = step(batch)
            lossSum += Double(loss) * Double(batch.count)
            correct += c
            done = end
            progress?(done, examples.count)
            start = end
        }
        let n = max(1, done)
        return EpochStats(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), examples: done,
                          seconds: Date().timeIntervalSince(t0))
    }

    /// Forward-only pass over `examples` in their order, in batches of `batchSize` sorted by
    /// length within the pass (less padding; results are put back in input order).
    /// - Returns: the stats (mean cross-entropy, accuracy), the arg-max class per example,
    ///   each example's softmax probability of its label, every example's softmax row
    ///   (examples x classes) and its log-softmax row log p_c = (z_c - m) - log sum_j exp(z_j - m)
    ///   (exact where p_c underflows), float64 from the float32 logits.
    public func evaluate(_ examples: [Example], batchSize: Int)
        -> (stats: EpochStats, predictions: [Int], trueClassProbabilities: [Double], probabilities: [[Double]], logProbabilities: [[Double]]) {
        let t0 = Date()
        let C = model.config.numLabels
        let bs = max(1, batchSize)
        let byLength = examples.indices.sorted { (examples[$0].tokens.count, $0) < (examples[$1].tokens.count, $1) }
        var predictions = [Int](repeating: -1, count: examples.count)
        var pTrue = [Double](repeating: 0, count: examples.count)
        var probabilities = [[Double]](repeating: [], count: examples.count)
        var logProbabilities = [[Double]](repeating: [], count: examples.count)
        var lossSum = 0.0, correct = 0
        var start = 0
        while start < byLength.count {
            let idx = Array(byLength[start ..< min(start + bs, byLength.count)])
            let tb = TokenBatch(sequences: idx.map { examples[$0].tokens }, padTokenId: Int32(model.config.padTokenId))
            let logits = model.forward(tb)
            let labels = idx.map { examples[$0].label }
            lossSum += Double(Loss.crossEntropy(logits: logits, labels: labels, classes: C).loss) * Double(idx.count)
            for (r, i) in idx.enumerated() {
                predictions[i] = Trainer.argmax(logits, row: r, classes: C)
                if predictions[i] == examples[i].label { correct += 1 }
                // softmax of the row, max-shifted: P(label) = exp(z_y - m) / sum_c exp(z_c - m)
                let row = (0 ..< C).map { Double(logits[r * C + $0]) }
                let m = row.max() ?? 0
                let z = row.reduce(0) { $0 + exp($1 - m) }
                probabilities[i] = row.map { exp($0 - m) / z }
                logProbabilities[i] = row.map { ($0 - m) - log(z) }
                pTrue[i] = probabilities[i][examples[i].label]
            }
            start += bs
        }
        let n = max(1, examples.count)
        return (EpochStats(loss: lossSum / Double(n), accuracy: Double(correct) / Double(n), examples: examples.count,
                           seconds: Date().timeIntervalSince(t0)), predictions, pTrue, probabilities, logProbabilities)
    }

    /// Index of the largest logit of row `row` of (B,C) logits (first on ties).
    public static func argmax(_ logits: [Float], row: Int, classes: Int) -> Int {
        var best = 0
        for c in 1 ..< max(1, classes) where logits[row * classes + c] > logits[row * classes + best] { best = c }
        return best
    }

    static func correct(logits: [Float], labels: [Int], classes: Int) -> Int {
        labels.enumerated().filter { argmax(logits, row: $0.offset, classes: classes) == $0.element }.count
    }
}
