import Foundation

/// Losses and probabilities over classifier logits (B,C) row-major.
public enum Loss {
    /// Mean cross-entropy over the batch and dL/dlogits (B,C), as PyTorch
    /// `CrossEntropyLoss(reduction="mean")`, computed with log-sum-exp (stable for any
    /// logits). A row whose label is outside `0 ..< classes` is ignored like PyTorch's
    /// `ignore_index` (no loss, zero gradient, not counted in the mean); with no valid
    /// row the loss is 0.
    public static func crossEntropy(logits: [Float], labels: [Int], classes: Int) -> (loss: Float, dLogits: [Float]) {
        let B = labels.count
        var d = [Float](repeating: 0, count: B * classes)
        let valid = labels.filter { $0 >= 0 && $0 < classes }.count
        if valid == 0 || classes == 0 || logits.count < B * classes { return (0, d) }
        var total = 0.0
        let invB = 1 / Float(valid)
        for b in 0 ..< B where labels[b] >= 0 && labels[b] < classes {
            let row = logits[(b * classes) ..< ((b + 1) * classes)]
            let m = row.max()!
            var s = 0.0
            for z in row { s += Foundation.exp(Double(z - m)) }
            let lse = Double(m) + Foundation.log(s)
            total += lse - Double(logits[b * classes + labels[b]])
            for c in 0 ..< classes {
                let p = Float(Foundation.exp(Double(logits[b * classes + c]) - lse))
                d[b * classes + c] = (p - (c == labels[b] ? 1 : 0)) * invB
            }
        }
        return (Float(total / Double(valid)), d)
    }

    /// Row-wise softmax of logits (B,C): probabilities (B,C).
    public static func softmax(logits: [Float], classes: Int) -> [Float] {
        guard classes > 0 else { return [] }
        var p = [Float](repeating: 0, count: logits.count)
        for b in 0 ..< logits.count / classes {
            let r = (b * classes) ..< ((b + 1) * classes)
            let m = logits[r].max()!
            var s = 0.0
            for i in r { s += Foundation.exp(Double(logits[i] - m)) }
            for i in r { p[i] = Float(Foundation.exp(Double(logits[i] - m)) / s) }
        }
        return p
    }

    /// Softmax probabilities (B,C) and the gradient of `p_target` (the probability of class
    /// `targets[b]` in row b) w.r.t. the logits: `p_y (e_y - p)` (B,C). Used by integrated
    /// gradients (target = probability of the true class, arXiv 2312.10770 section 3).
    /// A row whose target is outside `0 ..< classes` gets a zero gradient.
    public static func targetProbabilityGradient(logits: [Float], targets: [Int], classes: Int)
        -> (probabilities: [Float], dLogits: [Float]) {
        let p = softmax(logits: logits, classes: classes)
        var d = [Float](repeating: 0, count: p.count)
        for b in 0 ..< targets.count where targets[b] >= 0 && targets[b] < classes && (b + 1) * classes <= p.count {
            let py = p[b * classes + targets[b]]
            for c in 0 ..< classes {
                d[b * classes + c] = py * ((c == targets[b] ? 1 : 0) - p[b * classes + c])
            }
        }
        return (p, d)
    }
}
