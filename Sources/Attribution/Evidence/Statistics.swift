import ESM
import Foundation

/// The statistics of the evidence that a ranking of neurons is special (issue 11): bootstrap
/// confidence intervals, permutation tests against random rankings, areas under curves, and
/// rank correlation for the sanity checks. Each names the reference it matches.
public enum EvidenceStatistics {
    /// Percentile bootstrap confidence interval of the mean of `values` (Efron & Tibshirani 1993,
    /// ch. 13): `resamples` resamples of n values drawn with replacement (SplitMix64 from
    /// `seed`), and the (1 - confidence)/2 and (1 + confidence)/2 quantiles of their means,
    /// interpolated linearly between order statistics (numpy.quantile's default, as
    /// `scipy.stats.bootstrap(method="percentile")` uses).
    /// For per-sequence correctness (0/1) this is the CI of an accuracy.
    /// - Returns: (low, high); (mean, mean) for fewer than two values.
    /// - Precondition: resamples >= 1, 0 < confidence < 1.
    public static func bootstrapInterval(_ values: [Double], resamples: Int, confidence: Double = 0.95, seed: UInt64) -> (low: Double, high: Double) {
        precondition(resamples >= 1 && confidence > 0 && confidence < 1, "resamples >= 1 and confidence in (0, 1)")
        let n = values.count
        guard n > 1 else { let m = values.first ?? .nan; return (m, m) }
        var rng = SplitMix64(seed: seed)
        var means = [Double](repeating: 0, count: resamples)
        values.withUnsafeBufferPointer { v in
            for r in 0 ..< resamples {
                var s = 0.0
                for _ in 0 ..< n { s += v[rng.nextIndex(below: n)] }
                means[r] = s / Double(n)
            }
        }
        means.sort()
        return (quantile(sorted: means, (1 - confidence) / 2), quantile(sorted: means, (1 + confidence) / 2))
    }

    /// The q-quantile of sorted values, linear interpolation between order statistics at
    /// position q (n - 1) (numpy.quantile's default `method="linear"`).
    /// - Precondition: `sorted` is non-empty and sorted ascending, 0 <= q <= 1.
    public static func quantile(sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty && q >= 0 && q <= 1, "non-empty values, q in [0, 1]")
        let h = q * Double(sorted.count - 1)
        let lo = Int(h.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (h - Double(lo)) * (sorted[hi] - sorted[lo])
    }

    /// One-sided empirical p-value of `observed` against `null` draws (e.g. the accuracies of
    /// random rankings of the same size): (1 + #{null >= observed}) / (1 + N), never 0
    /// (Phipson & Smyth 2010, Stat. Appl. Genet. Mol. Biol. 9:39; the "+1" counts the observed
    /// ranking as one of the permutations).
    /// - Returns: a value in (0, 1]; 1 when `null` is empty.
    public static func permutationPValue(observed: Double, null: [Double]) -> Double {
        Double(1 + null.filter { $0 >= observed }.count) / Double(1 + null.count)
    }

    /// The log-odds of class `c`, log(p_c / (1 - p_c)) in nats, from a row of log-probabilities
    /// (`Trainer.evaluate`'s log-softmax): log p_c - log sum_{j != c} p_j, the sum taken as a
    /// max-shifted log-sum-exp (scipy `special.logsumexp`) so that neither a p_c near 1 (where
    /// 1 - p_c cancels) nor a p_c that underflows loses precision. A knowledge edit's effect is the
    /// change of this between the edited and the unedited model: unlike the relative change of
    /// p_c, it does not explode when p_c was tiny before the edit, and it is symmetric in
    /// suppression and amplification.
    /// - Precondition: at least two classes, `c` one of them.
    public static func logOdds(logProbabilities lp: [Double], class c: Int) -> Double {
        precondition(lp.count >= 2 && lp.indices.contains(c), "log-odds need two classes or more")
        let others = lp.indices.filter { $0 != c }.map { lp[$0] }
        let m = others.max()!
        return lp[c] - (m + log(others.reduce(0) { $0 + exp($1 - m) }))
    }

    /// Mean and sample standard deviation (n - 1, numpy `std(ddof=1)`, two-pass) of `values`.
    /// The sd is nil for fewer than two values and 0 when the values do not vary beyond rounding
    /// (sd <= 1e-12 x max(1, |mean|): identical accuracies give a two-pass sd of ~1e-17, not 0).
    /// - Returns: (nan, nil) for no values.
    public static func meanAndSD(_ values: [Double]) -> (mean: Double, sd: Double?) {
        guard !values.isEmpty else { return (.nan, nil) }
        let mean = values.reduce(0, +) / Double(values.count)
        guard values.count > 1 else { return (mean, nil) }
        let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot()
        return (mean, sd <= 1e-12 * max(1, abs(mean)) ? 0 : sd)
    }

    /// Effect size in random-sd units: (observed - mean(null)) / sd(null), sd with n - 1
    /// (numpy `std(ddof=1)`). Nil when there are fewer than two null draws or they do not vary
    /// (`meanAndSD`'s sd is 0).
    public static func effectSize(observed: Double, null: [Double]) -> Double? {
        let (mean, sd) = meanAndSD(null)
        guard let sd, sd > 0 else { return nil }
        return (observed - mean) / sd
    }

    /// The smallest p-value `permutationPValue` can give against `nullCount` draws: 1 / (N + 1).
    public static func minimumPValue(nullCount: Int) -> Double { 1 / Double(nullCount + 1) }

    /// The expected number of `tests` one-sided empirical p-values at or below `alpha` when no
    /// ranking is special (each p is uniform on {1, ..., N+1} / (N+1) under the null, ties aside):
    /// tests x floor(alpha (N + 1)) / (N + 1). Zero when 1 / (N + 1) > alpha.
    public static func expectedFalsePositives(tests: Int, alpha: Double, nullCount: Int) -> Double {
        Double(tests) * (alpha * Double(nullCount + 1)).rounded(.down) / Double(nullCount + 1)
    }

    /// Area under the curve y(x) by the trapezoidal rule (numpy.trapezoid), divided by the x
    /// range so that it is the curve's mean height (an accuracy for an accuracy curve).
    /// Points are taken in ascending x.
    /// - Returns: y of the single point for one point; nil for none or a zero-width range.
    public static func normalizedArea(x: [Double], y: [Double]) -> Double? {
        precondition(x.count == y.count, "one y per x")
        let order = x.indices.sorted { x[$0] < x[$1] }
        guard let first = order.first, let last = order.last else { return nil }
        if order.count == 1 { return y[first] }
        let width = x[last] - x[first]
        guard width > 0 else { return nil }
        var area = 0.0
        for k in 1 ..< order.count {
            let a = order[k - 1], b = order[k]
            area += (x[b] - x[a]) * (y[a] + y[b]) / 2
        }
        return area / width
    }

    /// Ranks 1 ... n of `values` in ascending order, ties given the mean of the ranks they
    /// span (scipy.stats.rankdata, `method="average"`).
    public static func averageRanks(_ values: [Float]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var ranks = [Double](repeating: 0, count: values.count)
        var start = 0
        while start < order.count {
            var end = start
            while end + 1 < order.count && values[order[end + 1]] == values[order[start]] { end += 1 }
            let rank = Double(start + end) / 2 + 1
            for k in start ... end { ranks[order[k]] = rank }
            start = end + 1
        }
        return ranks
    }

    /// Spearman's rank correlation: Pearson's correlation of the average ranks
    /// (scipy.stats.spearmanr). Nil when the lengths differ, n < 2, or either side is constant.
    public static func spearman(_ a: [Float], _ b: [Float]) -> Double? {
        guard a.count == b.count, a.count > 1 else { return nil }
        let ra = averageRanks(a), rb = averageRanks(b)
        let mean = Double(a.count + 1) / 2   // the mean of average ranks is always (n + 1) / 2
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for i in 0 ..< a.count {
            let da = ra[i] - mean, db = rb[i] - mean
            sab += da * db; saa += da * da; sbb += db * db
        }
        return saa > 0 && sbb > 0 ? sab / (saa * sbb).squareRoot() : nil
    }
}
