import Attribution
import Foundation
import Store

/// Facts that both reports show (`RunReport` as Markdown text, `HTMLReport` as figures and
/// tables), computed once from the database so the two cannot disagree.
enum ReportFacts {
    /// One of the top elements of a true-class ranking (table `neuron_scores`, seed 0).
    struct TopElement {
        /// `AttributionMethod` raw value.
        var method: String
        /// `Granularity` raw value.
        var granularity: String
        /// 1 = highest score.
        var rank: Int
        var layer: Int
        var module: String
        /// Output unit (weight: the PyTorch (out, in) weight's row).
        var row: Int
        /// Input feature (weight granularity); 0 for neurons.
        var col: Int
        /// The method's own score (activation: mean |w x| or |y|; IG and gradient x activation:
        /// attribution to P(true class), probability units).
        var score: Double
    }

    /// The top `count` elements of every attributed true-class ranking, by granularity, method, rank.
    /// - Throws: `StoreError` on read failures.
    static func topElements(db: RunDatabase, count: Int = 10) throws -> [TopElement] {
        try db.query("""
            SELECT method, granularity, layer, module, row, col, score, rank FROM neuron_scores
            WHERE seed = 0 AND target_class = -1 AND method != 'random' AND rank <= \(count) ORDER BY granularity, method, rank
            """).rows.map {
            TopElement(method: $0[0] ?? "", granularity: $0[1] ?? "", rank: Int($0[7] ?? "") ?? 0, layer: Int($0[2] ?? "") ?? 0,
                       module: $0[3] ?? "", row: Int($0[4] ?? "") ?? 0, col: Int($0[5] ?? "") ?? 0, score: Double($0[6] ?? "") ?? .nan)
        }
    }

    /// The Jaccard overlap |A ∩ B| / |A ∪ B| of two methods' kept sets at each retention fraction.
    struct Overlap {
        var granularity: String
        var methods: (String, String)
        /// (retention fraction, Jaccard index in [0, 1]).
        var jaccard: [(fraction: Double, value: Double)]
    }

    /// Every pair of the true-class rankings of one granularity: the Jaccard index of their top
    /// `SelectStage.keptCount(f)` sets at each retention fraction f the select stage used.
    /// Two random sets of fraction f share f / (2 - f) on average. Rankings of more than
    /// 20 million scores are left out (it reads whole score vectors).
    /// - Throws: `StoreError` on read failures.
    static func overlaps(db: RunDatabase) throws -> [Overlap] {
        let selections = try db.selections().filter { $0.targetClass == -1 && $0.method != Baseline.random && $0.seed == 0 }
        var out: [Overlap] = []
        for g in Granularity.allCases.map(\.rawValue) {
            let methods = AttributionMethod.allCases.map(\.rawValue).filter { m in selections.contains { $0.method == m && $0.granularity == g } }
            guard methods.count >= 2 else { continue }
            let fractions = Array(Set(selections.filter { $0.granularity == g }.map(\.retentionFraction))).sorted()
            var scores: [String: [Float]] = [:]
            for m in methods {
                let id = RankingID(method: m, granularity: g)
                guard let n = try db.scoreLayout(id)?.count, n <= 20_000_000 else { continue }
                scores[m] = try db.scores(id)
            }
            for i in methods.indices {
                for j in methods.indices where j > i {
                    guard let a = scores[methods[i]], let b = scores[methods[j]], a.count == b.count else { continue }
                    let jaccard = fractions.map { f -> (Double, Double) in
                        let k = SelectStage.keptCount(f, total: a.count)
                        let sa = Set(ScoreRanking.top(a, count: k))
                        let inter = ScoreRanking.top(b, count: k).filter { sa.contains($0) }.count
                        return (f, Double(inter) / Double(max(1, 2 * k - inter)))
                    }
                    out.append(Overlap(granularity: g, methods: (methods[i], methods[j]), jaccard: jaccard.map { ($0.0, $0.1) }))
                }
            }
        }
        return out
    }

    /// Integrated gradients' completeness gaps of one granularity: gap = sum of attributions -
    /// (P(target | input) - P(target | zero baseline)) per path (Sundararajan et al. 2017, eq. 3's
    /// axiom; the Riemann sum's error).
    struct Gaps {
        var granularity: String
        /// One gap per path, probability units.
        var gaps: [Double]
        /// Median, 95th percentile and maximum of |gap|.
        var median: Double, p95: Double, max: Double
        /// Median |P(input) - P(baseline)|: the size a gap is to be read against.
        var medianDelta: Double
        /// Paths whose |gap| exceeds their own |P(input) - P(baseline)|.
        var untrusted: Int
    }

    /// The gaps of every granularity the run attributed with integrated gradients.
    /// - Throws: `StoreError` on read failures.
    static func completeness(db: RunDatabase) throws -> [Gaps] {
        let rows = try db.completeness()
        func quantile(_ sorted: [Double], _ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        return Granularity.allCases.map(\.rawValue).compactMap { g in
            let mine = rows.filter { $0.granularity == g }
            guard !mine.isEmpty else { return nil }
            let gaps = mine.map { $0.attributionSum - ($0.pFull - $0.pBaseline) }
            let sorted = gaps.map(abs).sorted(), deltas = mine.map { abs($0.pFull - $0.pBaseline) }.sorted()
            let untrusted = mine.filter { abs($0.attributionSum - ($0.pFull - $0.pBaseline)) > abs($0.pFull - $0.pBaseline) }.count
            return Gaps(granularity: g, gaps: gaps, median: quantile(sorted, 0.5), p95: quantile(sorted, 0.95), max: sorted.last!,
                        medianDelta: quantile(deltas, 0.5), untrusted: untrusted)
        }
    }

    /// The full model's confusion matrix on the test split: `counts[t][p]` = sequences of true
    /// class t predicted as p (classes in `classes` order), from table `predictions`; nil for a
    /// run evaluated before that table existed.
    /// - Throws: `StoreError` on read failures.
    static func confusion(db: RunDatabase, classes: [ClassRecord]) throws -> [[Int]]? {
        let predictions = try db.predictions()
        guard !predictions.isEmpty else { return nil }
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1.classIndex, $0) })
        var counts = [[Int]](repeating: [Int](repeating: 0, count: classes.count), count: classes.count)
        for p in predictions {
            guard let t = index[p.trueClass], let q = index[p.predictedClass] else { continue }
            counts[t][q] += 1
        }
        return counts
    }

    /// Rejected records per kind of reason (`IngestSummary.reasonKind`), most frequent first.
    /// - Throws: `StoreError` on read failures.
    static func rejectionReasons(db: RunDatabase) throws -> [(reason: String, count: Int)] {
        var counts: [String: Int] = [:]
        for r in try db.rejectedRecords() { counts[IngestSummary.reasonKind(r.reason), default: 0] += 1 }
        return counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { ($0.key, $0.value) }
    }

    /// Where the kept weights sit inside each matrix, as the paper draws it (arXiv 2312.10770,
    /// Figures 3-5: "scaled weight position", cells of 200 adjacent weights): for one
    /// selection, per (layer, module) block, the kept share of each run of `cellSize` weights in
    /// canonical (PyTorch (out, in), row-major) order; the last cell of a block may be shorter.
    struct Positions {
        /// The selection's ranking (for random: one seed, the lowest).
        var ranking: RankingID
        var retentionFraction: Double
        /// Per block in layout order: layer, module and the cells' (kept, size).
        var blocks: [(layer: Int, module: String, cells: [(kept: Int, size: Int)])]
        /// Input features (row length) of each module's weight matrix.
        var rowLength: [String: Int]
    }

    /// The weight-granularity true-class selections' `Positions`, attributed methods first and
    /// one random seed last, fractions descending; [] when the run has no weight rankings.
    /// Random scores are regenerated from their seed (`Baseline.randomScores`), as select drew them.
    /// - Throws: `StoreError` on read failures or a score set that does not match its selection.
    static func positions(db: RunDatabase, cellSize: Int = 200) throws -> [Positions] {
        let g = Granularity.weight.rawValue
        let selections = try db.selections().filter { $0.granularity == g && $0.targetClass == -1 }
        let randomSeed = selections.filter { $0.method == Baseline.random }.map(\.seed).min()
        let chosen = AttributionMethod.allCases.map(\.rawValue).flatMap { m in selections.filter { $0.method == m && $0.seed == 0 } }
            + selections.filter { $0.method == Baseline.random && $0.seed == randomSeed }
        let anySet = try db.scoreSets().first { $0.granularity == g && $0.method != Baseline.random }
        guard let layoutSet = chosen.first(where: { $0.method != Baseline.random }).map(\.ranking) ?? anySet,
              let layout = try db.scoreLayout(RankingID(method: layoutSet.method, granularity: g)) else { return [] }
        var scoreCache: [RankingID: [Float]] = [:]
        return try chosen.map { s in
            let id = s.ranking
            if scoreCache[id] == nil {
                scoreCache[id] = s.method == Baseline.random ? Baseline.randomScores(count: layout.count, seed: s.seed) : try db.scores(id)
            }
            let scores = scoreCache[id]!
            guard scores.count == layout.count else {
                throw StoreError.corrupt("the scores of \(id) number \(scores.count), the weight layout \(layout.count); run with --force attribute")
            }
            var kept = [Bool](repeating: false, count: scores.count)
            for i in ScoreRanking.top(scores, count: s.nKept) { kept[Int(i)] = true }
            let blocks = layout.blocks.map { b -> (Int, String, [(Int, Int)]) in
                let n = b.rows * b.cols
                let cells = stride(from: 0, to: n, by: cellSize).map { start -> (Int, Int) in
                    let end = min(start + cellSize, n)
                    return (kept[(b.offset + start) ..< (b.offset + end)].lazy.filter { $0 }.count, end - start)
                }
                return (b.layer, b.module, cells)
            }
            return Positions(ranking: id, retentionFraction: s.retentionFraction, blocks: blocks.map { ($0.0, $0.1, $0.2.map { ($0.0, $0.1) }) },
                             rowLength: Dictionary(layout.blocks.map { ($0.module, $0.cols) }) { a, _ in a })
        }
    }

    /// `method,seed,retention_fraction,layer,module,cell,first,n_weights,n_kept,share`: every cell
    /// of `positions` (first = the cell's first weight's index inside its matrix, row-major).
    static func positionsCSV(_ positions: [Positions], cellSize: Int = 200) -> String {
        var csv = "method,seed,retention_fraction,layer,module,cell,first,n_weights,n_kept,share\n"
        for p in positions {
            for b in p.blocks {
                for (i, c) in b.cells.enumerated() {
                    csv += "\(p.ranking.method),\(p.ranking.seed),\(p.retentionFraction),\(b.layer),\(Self.csv(b.module)),\(i),\(i * cellSize),\(c.size),\(c.kept),\(Double(c.kept) / Double(c.size))\n"
                }
            }
        }
        return csv
    }

    /// `epoch,train_loss,train_accuracy,select_loss,select_accuracy,seconds` (table `training_epochs`).
    /// - Throws: `StoreError` on read failures.
    static func trainingCSV(db: RunDatabase) throws -> String {
        try db.epochs().reduce(into: "epoch,train_loss,train_accuracy,select_loss,select_accuracy,seconds\n") {
            $0 += "\($1.epoch),\($1.trainLoss),\($1.trainAccuracy),\($1.selectLoss),\($1.selectAccuracy),\($1.seconds)\n"
        }
    }

    /// `sequence_id,granularity,layer,module,target_class,p_input,p_baseline,attribution_sum,gap` per
    /// integrated-gradients path (table `ig_completeness`; gap = sum - (p_input - p_baseline)).
    /// - Throws: `StoreError` on read failures.
    static func completenessCSV(db: RunDatabase) throws -> String {
        try db.completeness().reduce(into: "sequence_id,granularity,layer,module,target_class,p_input,p_baseline,attribution_sum,gap\n") {
            $0 += "\(csv($1.sequenceID)),\($1.granularity),\($1.layer),\(csv($1.module)),\($1.targetClass),\($1.pFull),\($1.pBaseline),\($1.attributionSum),"
                + "\($1.attributionSum - ($1.pFull - $1.pBaseline))\n"
        }
    }

    /// A CSV field (RFC 4180): quoted, with inner quotes doubled, when it holds a comma, a quote or a line break.
    static func csv(_ field: String) -> String {
        field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
            ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
    }
}
