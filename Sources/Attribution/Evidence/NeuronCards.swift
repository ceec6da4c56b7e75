import ESM
import Foundation

/// A neuron: output unit `unit` of the linear map `module` of block `layer` (for `intermediate`
/// the activation after GELU), as HuggingFace's `EsmLayer` names the modules.
public struct NeuronUnit: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Block index, 0-based.
    public var layer: Int
    /// The linear map.
    public var module: LinearModule
    /// Output unit (row of the weight), 0-based.
    public var unit: Int
    /// Creates a neuron id.
    public init(layer: Int, module: LinearModule, unit: Int) { self.layer = layer; self.module = module; self.unit = unit }
    /// The module site it lives at.
    public var site: ModuleSite { ModuleSite(layer: layer, module: module) }
    /// Canonical order: layer, module (`LinearModule.allCases` order), unit.
    public static func < (a: NeuronUnit, b: NeuronUnit) -> Bool { (a.site, a.unit) < (b.site, b.unit) }
    /// `layer 1 query 36`.
    public var description: String { "layer \(layer) \(module.rawValue) \(unit)" }
}

/// A neuron's peak on one sequence: its largest activation over the sequence's residues
/// (token positions 1 ... count - 2: not `<cls>`, `<eos>` or padding) and the residue where it
/// is reached: the first residue within `NeuronCards.tieTolerance` of the largest (0-based
/// residue index), so that a neuron giving the same activation at every occurrence of a residue
/// (up to float rounding, which depends on the batch's padding) peaks at its first occurrence.
public struct NeuronPeak: Sendable, Equatable {
    /// The largest activation.
    public var activation: Float
    /// Its residue, 0-based (token position residue + 1).
    public var residue: Int32
    /// Creates a peak.
    public init(activation: Float, residue: Int32) { self.activation = activation; self.residue = residue }
}

/// The statistics of a neuron card (issue 12; the examples follow Neuroscope's max-activating
/// examples and InterProt's quantile examples): peaks, residue enrichment, class specificity.
public enum NeuronCards {
    /// Activations closer than this relative tolerance (times max(1, |value|)) are ties: float32
    /// rounding of the same computation in differently padded batches differs by about 1e-7
    /// relative, so without it the order of a residue detector's equal peaks would be noise.
    public static let tieTolerance: Float = 1e-5

    /// `values` with every run of values within `tieTolerance` of the run's smallest (in sorted
    /// order) replaced by the run's largest, so that near-equal values compare equal (midranks,
    /// ties by index) whatever their last bits; values further apart keep their order.
    public static func snapTies(_ values: [Float]) -> [Float] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var out = values
        var i = 0
        while i < order.count {
            let start = values[order[i]], tol = tieTolerance * max(1, abs(start))
            var j = i
            while j + 1 < order.count && values[order[j + 1]] - start <= tol { j += 1 }
            for k in i ... j { out[order[k]] = values[order[j]] }
            i = j + 1
        }
        return out
    }

    /// The peak of every neuron on every sequence, from forward passes over batches of
    /// `batchSize` sequences in the given order (only the per-sequence peaks are kept:
    /// memory neurons x sequences pairs, plus one batch's activations).
    /// - Parameters:
    ///   - sequences: token ids, each `<cls>` residues `<eos>` with at least one residue.
    ///   - neurons: units of `model`'s linear maps.
    /// - Returns: `result[n][s]`, neuron n's peak on sequence s.
    /// - Precondition: every neuron is inside `model`'s config.
    public static func peaks(model: ESMClassifier, sequences: [[Int32]], neurons: [NeuronUnit], batchSize: Int) -> [[NeuronPeak]] {
        var out = [[NeuronPeak]](repeating: [], count: neurons.count)
        for n in out.indices { out[n].reserveCapacity(sequences.count) }
        let sites = Set(neurons.map(\.site))
        var start = 0
        while start < sequences.count {
            let chunk = Array(sequences[start ..< min(start + max(1, batchSize), sequences.count)])
            let batch = TokenBatch(sequences: chunk, padTokenId: Int32(model.config.padTokenId))
            _ = model.forward(batch, hooks: ForwardHooks(capture: sites))
            var outputs: [ModuleSite: [Float]] = [:]
            for site in sites { outputs[site] = model.output(at: site) }
            for (n, neuron) in neurons.enumerated() {
                let rows = neuron.module.outFeatures(model.config)
                let y = outputs[neuron.site]!   // (B, T, rows)
                precondition(neuron.unit >= 0 && neuron.unit < rows, "unit \(neuron.unit) outside \(neuron.module.rawValue)'s \(rows)")
                for (b, tokens) in chunk.enumerated() {
                    let base = b * batch.length
                    var best = -Float.infinity
                    for r in 0 ..< max(0, tokens.count - 2) { best = max(best, y[(base + r + 1) * rows + neuron.unit]) }
                    // The first residue within the tolerance of the largest.
                    let floor = best - tieTolerance * max(1, abs(best))
                    var at: Int32 = 0
                    for r in 0 ..< max(0, tokens.count - 2) where y[(base + r + 1) * rows + neuron.unit] >= floor { at = Int32(r); break }
                    out[n].append(NeuronPeak(activation: best, residue: at))
                }
            }
            start += chunk.count
        }
        return out
    }

    /// Sequence indices ordered by peak, highest first; ties by `tieKeys` (lower first, e.g. a
    /// hash of the sequence ID: a fixed pseudo-random order, so that the first of many tied
    /// sequences are a sample of them and not, say, the alphabetically first), then by index.
    /// Snap the peaks first (`snapTies`) for near-equal values to count as ties.
    /// - Precondition: `tieKeys` is empty or has one key per peak.
    public static func order(_ peaks: [NeuronPeak], tieKeys: [UInt64] = []) -> [Int] {
        precondition(tieKeys.isEmpty || tieKeys.count == peaks.count, "one tie key per peak")
        return peaks.indices.sorted {
            if peaks[$0].activation != peaks[$1].activation { return peaks[$0].activation > peaks[$1].activation }
            if !tieKeys.isEmpty && tieKeys[$0] != tieKeys[$1] { return tieKeys[$0] < tieKeys[$1] }
            return $0 < $1
        }
    }

    /// FNV-1a (64-bit) of `text`'s UTF-8 bytes (Fowler, Noll, Vo): a tie key that depends on
    /// the sequence ID alone.
    public static func fnv1a(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    /// The sequence at quantile q of the peaks: index `round(q (n - 1))` (half to even) of the
    /// ascending order (ties by index), the position numpy's `quantile(method='nearest')` takes.
    /// - Precondition: `peaks` is not empty and q is in [0, 1].
    public static func quantileIndex(_ peaks: [NeuronPeak], _ q: Double, tieKeys: [UInt64] = []) -> Int {
        precondition(!peaks.isEmpty && q >= 0 && q <= 1, "a quantile in [0, 1] of at least one peak")
        let ascending = Array(order(peaks, tieKeys: tieKeys).reversed())
        return ascending[Int((q * Double(peaks.count - 1)).rounded(.toNearestOrEven))]
    }

    /// The exact two-sided binomial test of `k` successes in `n` trials with success probability
    /// `p`: the total probability of the outcomes no more likely than k, with scipy's relative
    /// tolerance 1e-7 (`scipy.stats.binomtest(k, n, p).pvalue`; 1 when k = n p).
    /// - Precondition: 0 <= k <= n, 0 < p < 1.
    public static func binomialTwoSided(k: Int, n: Int, p: Double) -> Double {
        precondition(k >= 0 && k <= n && p > 0 && p < 1, "0 <= k <= n and 0 < p < 1")
        if Double(k) == p * Double(n) { return 1 }
        func logPMF(_ y: Int) -> Double {
            lgamma(Double(n + 1)) - lgamma(Double(y + 1)) - lgamma(Double(n - y + 1)) + Double(y) * log(p) + Double(n - y) * log1p(-p)
        }
        let threshold = logPMF(k) + log1p(1e-7)
        var total = 0.0
        for y in 0 ... n where logPMF(y) <= threshold { total += exp(logPMF(y)) }
        return min(1, total)
    }

    /// Benjamini-Hochberg adjusted p-values (q-values) in the input order: q_(i) = min over j >= i
    /// of p_(j) m / j for the ascending p_(1) ... p_(m), capped at 1 (`statsmodels`
    /// `multipletests(method='fdr_bh')`; Benjamini & Hochberg 1995, JRSS B 57:289).
    public static func benjaminiHochberg(_ p: [Double]) -> [Double] {
        let m = p.count
        let ascending = p.indices.sorted { p[$0] < p[$1] }
        var q = [Double](repeating: 1, count: m)
        var running = 1.0
        for (i, idx) in ascending.enumerated().reversed() {
            running = min(running, p[idx] * Double(m) / Double(i + 1))
            q[idx] = min(1, running)
        }
        return q
    }

    /// The 20 standard amino acids, one-letter codes in alphabetical order of the code.
    public static let aminoAcids: [UInt8] = Array("ACDEFGHIKLMNPQRSTVWY".utf8)

    /// For each byte, its position in `aminoAcids`, or -1 for any other letter.
    static let aminoAcidIndex: [Int] = {
        var index = [Int](repeating: -1, count: 256)
        for (i, a) in aminoAcids.enumerated() { index[Int(a)] = i }
        return index
    }()

    /// Residue offsets from the peak the enrichment looks at.
    public static let offsets = Array(-3 ... 3)

    /// One row of a residue-enrichment table.
    public struct Enrichment: Sendable, Equatable {
        /// Offset from the peak residue (-3 ... 3).
        public var offset: Int
        /// One-letter amino-acid code.
        public var residue: Character
        /// Top sequences with this amino acid at the offset, of `n` with a standard residue there.
        public var count: Int, n: Int
        /// The amino acid's frequency among the standard residues of the background.
        public var background: Double
        /// ln(((count + 0.5) / (n + 10)) / background).
        public var logOdds: Double
        /// Exact two-sided binomial p-value of count against n x background.
        public var pValue: Double
        /// Benjamini-Hochberg q-value over every (offset, amino acid) test of the table.
        public var qValue: Double
    }

    /// Background frequencies of the 20 standard amino acids over `residues` (other letters are
    /// left out of numerator and denominator), in `aminoAcids` order; a zero frequency is
    /// raised to 0.5 / (total + 10) so that log-odds and tests stay finite.
    public static func background<S: Sequence>(_ residues: S) -> [Double] where S.Element == UInt8 {
        var counts = [Int](repeating: 0, count: 20)
        let index = aminoAcidIndex
        for r in residues where index[Int(r)] >= 0 { counts[index[Int(r)]] += 1 }
        let total = Double(counts.reduce(0, +))
        return counts.map { $0 > 0 ? Double($0) / total : 0.5 / (total + 10) }
    }

    /// The residue-enrichment table of the residues at `offsets` from each peak: `contexts[i]`
    /// is a sequence (one-letter codes) and `peaks[i]` the 0-based index of its peak residue;
    /// positions outside a sequence, and non-standard residues, are not counted.
    /// - Returns: 7 x 20 rows, by offset then amino acid.
    /// - Precondition: `contexts.count == peaks.count`, `background` has 20 entries in (0, 1).
    public static func enrichment(contexts: [[UInt8]], peaks: [Int], background: [Double]) -> [Enrichment] {
        precondition(contexts.count == peaks.count && background.count == 20, "one peak per context, 20 background frequencies")
        let index = aminoAcidIndex
        var rows: [Enrichment] = []
        for o in offsets {
            var counts = [Int](repeating: 0, count: 20)
            for (s, p) in zip(contexts, peaks) {
                let j = p + o
                if j >= 0 && j < s.count, index[Int(s[j])] >= 0 { counts[index[Int(s[j])]] += 1 }
            }
            let n = counts.reduce(0, +)
            for (a, c) in counts.enumerated() {
                let bg = background[a]
                rows.append(Enrichment(offset: o, residue: Character(UnicodeScalar(aminoAcids[a])), count: c, n: n, background: bg,
                                       logOdds: log((Double(c) + 0.5) / (Double(n) + 10) / bg),
                                       pValue: n == 0 ? 1 : binomialTwoSided(k: c, n: n, p: bg), qValue: 1))
            }
        }
        let q = benjaminiHochberg(rows.map(\.pValue))
        for i in rows.indices { rows[i].qValue = q[i] }
        return rows
    }

    /// Shannon entropy in bits of the distribution given by `counts` (0 for no counts).
    public static func entropyBits(_ counts: [Int]) -> Double {
        let total = Double(counts.reduce(0, +))
        guard total > 0 else { return 0 }
        return counts.reduce(0.0) { h, c in c == 0 ? h : h - Double(c) / total * log2(Double(c) / total) }
    }

    /// One column of a sequence logo (Schneider & Stephens 1990, Nucleic Acids Res. 18:6097): the
    /// information of the column R = log2(20) - (H + e(n)), H the Shannon entropy (bits) of the
    /// amino-acid counts and e(n) = 19 / (2 ln 2 n) their small-sample correction (s = 20 letters),
    /// clamped at 0, and each amino acid's letter height f_a R (f_a = count_a / n), in bits.
    /// - Parameter counts: the 20 standard amino acids' counts, in `aminoAcids` order.
    /// - Returns: (R, heights in `aminoAcids` order); (0, zeros) for no counts.
    /// - Precondition: `counts.count == 20`.
    public static func logoColumn(_ counts: [Int]) -> (information: Double, heights: [Double]) {
        precondition(counts.count == aminoAcids.count, "one count per standard amino acid")
        let n = counts.reduce(0, +)
        guard n > 0 else { return (0, [Double](repeating: 0, count: counts.count)) }
        let correction = Double(aminoAcids.count - 1) / (2 * log(2) * Double(n))
        let r = max(0, log2(Double(aminoAcids.count)) - (entropyBits(counts) + correction))
        return (r, counts.map { Double($0) / Double(n) * r })
    }

    /// The residues `peak - half ... peak + half` of `residues` that exist, and the 0-based index
    /// of the first (an example window; the peak is at `peak - start` inside it).
    /// - Precondition: `peak` indexes `residues`.
    public static func window(_ residues: [UInt8], peak: Int, half: Int) -> (text: String, start: Int) {
        precondition(peak >= 0 && peak < residues.count, "the peak is a residue")
        let lo = max(0, peak - half), hi = min(residues.count, peak + half + 1)
        return (String(decoding: residues[lo ..< hi], as: UTF8.self), lo)
    }

    /// Bin of a peak's relative position: residue `position` (0-based, in the original sequence)
    /// of a sequence of `length` residues, (position + 0.5) / length in ten bins of a tenth each.
    /// - Precondition: 0 <= position < length.
    public static func positionBin(position: Int, length: Int) -> Int {
        precondition(position >= 0 && position < length, "a residue of the sequence")
        return min(9, Int((Double(position) + 0.5) / Double(length) * 10))
    }
}
