import Attribution
import ESM
import Foundation
import Store

/// The report sections that both formats carry as text (issue 13: "the Markdown report gains the
/// same facts"): how far to trust the run, the top elements and the methods' agreement, the
/// completeness gaps, the training, and the full model's confusion matrix. `HTMLReport` draws
/// figures beside them and renders these tables with `MarkdownTables.html`.
extension RunReport {
    /// Plain-text sentences on how far the numbers can be trusted: the full model's test
    /// accuracy with its binomial standard error sqrt(a(1 - a)/n) against chance and the majority
    /// class; the evidence tests passed and how many would pass by chance; the sanity verdicts;
    /// whether the model was trained here from random weights; what the run did not attribute.
    /// - Throws: `StoreError` on read failures.
    /// - Parameter accuracy: whether to include the full model's sentence (the Markdown report
    ///   states it in a paragraph of its own).
    static func trust(db: RunDatabase, spec: PipelineSpec?, classes: [ClassRecord], full: EvaluationRecord?, accuracy: Bool = true) throws -> [String] {
        var out: [String] = []
        if accuracy, let full {
            let se = (full.accuracy * (1 - full.accuracy) / Double(max(full.nTest, 1))).squareRoot()
            let majority = full.perClass.map(\.n).max() ?? 0
            out.append("Full model: test accuracy \(fmt(full.accuracy, 3)) (\(full.nCorrect)/\(full.nTest), standard error \(fmt(se, 3))) against chance "
                + "\(fmt(1 / Double(max(classes.count, 1)), 3)) and the majority class \(fmt(Double(majority) / Double(max(full.nTest, 1)), 3)); differences between "
                + "submodels below about \(fmt(2 * se, 2)) are within the test set's noise.")
        }
        let significance = try db.significance()
        if !significance.isEmpty {
            let n = significance.map(\.nRandom).max() ?? 0
            let areas = try db.curveAreas().filter { $0.pValue != nil }
            let tests = significance.count + areas.count
            let pass = significance.filter { $0.pValue < 0.05 }.count + areas.filter { $0.pValue! < 0.05 }.count
            out.append("Against \(n) random rankings: \(pass) of \(tests) tests (\(significance.count) points, \(areas.count) curve areas) at p < 0.05, uncorrected; about "
                + "\(fmt(EvidenceStatistics.expectedFalsePositives(tests: tests, alpha: 0.05, nullCount: n), 1)) would pass by chance"
                + (1.0 / Double(n + 1) > 0.05 / Double(tests)
                    ? ", and with \(n) random rankings the smallest attainable p-value is 1/\(n + 1), so none can pass a Bonferroni correction over \(tests) tests."
                    : "; a Bonferroni correction over \(tests) tests needs p ≤ \(String(format: "%.2g", 0.05 / Double(tests)))."))
        }
        // Tables kept from a stage the ledger no longer records as done (a migration or a spec change asked to redo it).
        let stale = [("evidence", !significance.isEmpty), ("sanity", try !db.sanityChecks().isEmpty)].filter { $0.1 }.map(\.0)
            .filter { (try? db.stage($0)) == nil }
        if !stale.isEmpty {
            out.append("The \(stale.joined(separator: " and ")) tables below are from an earlier run of \(stale.count == 1 ? "that stage" : "those stages"), "
                + "which is recorded as left: `kneuron run SPEC` redoes it.")
        }
        let verdicts = try db.sanityVerdicts()
        if !verdicts.isEmpty {
            let failing = Set(verdicts.filter { !$0.passed }.map(\.ranking)), all = Set(verdicts.map(\.ranking))
            out.append(failing.isEmpty ? "Sanity checks: every ranking changes when the model is randomised (all \(all.count) pass)."
                : "Sanity checks: \(failing.count) of \(all.count) rankings barely change when the model is randomised (they fail).")
        }
        if let spec, spec.model.checkpoint == nil {
            // "Weak" only when it is: a planted benchmark's model trained here can be accurate.
            let weak = (full?.accuracy ?? 0) < 0.8
            out.append("The model was trained here from random weights" + (weak ? ": it is weak, and its" : " (no pretrained ESM-2): its")
                + " knowledge neurons need not resemble a pretrained ESM-2's.")
        }
        if let spec, spec.attribution.modules.sorted() == LinearModule.attention, spec.attribution.granularity == [.weight] {
            out.append("This run scores the query, key and value weights only (the paper's setting); FFN neurons and per-class rankings "
                + "need attribution.modules, granularity and targets (as in pipelines/engine-quickstart.yaml).")
        }
        return out
    }

    /// The top elements of each true-class ranking and the Jaccard overlap of the methods' kept
    /// sets (`ReportFacts.topElements`, `ReportFacts.overlaps`); "" when nothing was attributed.
    /// - Throws: `StoreError` on read failures.
    static func agreement(db: RunDatabase, label: (String) -> String) throws -> String {
        let top = try ReportFacts.topElements(db: db)
        guard !top.isEmpty else { return "" }
        let overlaps = try ReportFacts.overlaps(db: db)
        var md = "## Top elements and how much the methods agree\n\n"
        let methods = Set(top.map(\.method)), granularities = Set(top.map(\.granularity))
        var scales: [String] = []
        if methods.contains(AttributionMethod.activation.rawValue) {
            let forms = [granularities.contains(Granularity.weight.rawValue) ? "mean |w x| for a weight" : nil,
                         granularities.contains(Granularity.neuron.rawValue) ? "mean |y| for a neuron" : nil].compactMap { $0 }
            scales.append("activation: " + forms.joined(separator: ", "))
        }
        let gradients = [AttributionMethod.integratedGradients, .gradientXActivation].filter { methods.contains($0.rawValue) }.map { label($0.rawValue) }
        if !gradients.isEmpty { scales.append(gradients.joined(separator: " and ") + ": attribution to P(true class), probability units") }
        md += "Scores are on each method's own scale (" + scales.joined(separator: "; ") + ")"
        md += methods.count > 1 ? ", so compare ranks, not values, across methods.\n\n" : ".\n\n"
        for g in Granularity.allCases.map(\.rawValue) where top.contains(where: { $0.granularity == g }) {
            let weight = g == Granularity.weight.rawValue
            md += "### \(g)s: top 10 of each method (true class)\n\n"
            md += weight ? "row = output unit, col = input feature of the module's PyTorch (out, in) weight.\n\n"
                : "unit = output unit of the module (for intermediate, the FFN neuron after GELU).\n\n"
            for m in AttributionMethod.allCases.map(\.rawValue) where top.contains(where: { $0.granularity == g && $0.method == m }) {
                md += "#### \(label(m))\n\n| rank | layer | module | \(weight ? "row, col" : "unit") | score |\n|---|---|---|---|---|\n"
                for e in top where e.granularity == g && e.method == m {
                    md += "| \(e.rank) | \(e.layer) | \(e.module) | \(e.row)\(weight ? ", \(e.col)" : "") | \(String(format: "%.4g", e.score)) |\n"
                }
                md += "\n"
            }
            let mine = overlaps.filter { $0.granularity == g }
            guard let first = mine.first else { continue }
            md += "Jaccard overlap |A ∩ B| / |A ∪ B| of the kept \(g)s (1 = the same set; random: two random sets of that size share f / (2 - f)).\n\n"
            md += "| methods | " + first.jaccard.map { "\(pct($0.fraction)) |" }.joined(separator: " ") + "\n|---|" + first.jaccard.map { _ in "---|" }.joined() + "\n"
            for o in mine {
                md += "| \(label(o.methods.0)) vs \(label(o.methods.1)) | " + o.jaccard.map { "\(fmt($0.value, 3)) |" }.joined(separator: " ") + "\n"
            }
            md += "| random (expected) | " + first.jaccard.map { "\(fmt($0.fraction / (2 - $0.fraction), 3)) |" }.joined(separator: " ") + "\n\n"
        }
        return md
    }

    /// Integrated gradients' completeness gaps per granularity (`ReportFacts.completeness`):
    /// paths, median, 95th percentile and max |gap|, beside the median |P(input) - P(baseline)|.
    /// - Throws: `StoreError` on read failures.
    static func completeness(db: RunDatabase) throws -> String {
        let gaps = try ReportFacts.completeness(db: db)
        guard !gaps.isEmpty else { return "" }
        var md = "## How far to trust the integrated-gradients sums\n\n"
        let kinds = gaps.map { $0.granularity == Granularity.weight.rawValue ? "one path per sequence scaling every chosen weight matrix"
            : "one path per sequence and layer x module, scaling that module's outputs" }
        md += "Completeness (Sundararajan et al. 2017): the attributions of a path should add up to P(target) at the input minus at the zero "
        md += "baseline; the gap is the Riemann sum's error (" + kinds.joined(separator: "; ") + "). Probability units. Where |gap| exceeds "
        md += "|P(input) − P(baseline)|, the sum is not to be trusted for that path (more `attribution.steps` shrink the gap).\n\n"
        md += "| paths | n | median \\|gap\\| | 95th percentile | max | median \\|P(input) − P(baseline)\\| | paths with \\|gap\\| > \\|P(input) − P(baseline)\\| |\n"
        md += "|---|---|---|---|---|---|---|\n"
        for g in gaps {
            md += "| \(g.granularity) | \(g.gaps.count) | \(String(format: "%.3g", g.median)) | \(String(format: "%.3g", g.p95)) | "
                + "\(String(format: "%.3g", g.max)) | \(String(format: "%.3g", g.medianDelta)) | \(g.untrusted) (\(String(format: "%.0f%%", 100 * Double(g.untrusted) / Double(g.gaps.count)))) |\n"
        }
        let worst = gaps.map { Double($0.untrusted) / Double($0.gaps.count) }.max() ?? 0
        md += "\n" + (worst > 0.05 ? "Verdict: for more than 5% of paths the sum misses by more than the change it explains; treat single-sequence "
            + "attributions as rough and prefer rankings averaged over many sequences, or raise `attribution.steps`.\n\n"
            : "Verdict: for at most 5% of paths the sum misses by more than the change it explains.\n\n")
        return md
    }

    /// The training in numbers: the first and last epoch's loss and accuracy on train and on
    /// `split` (the split neurons are selected on: `select`, or `test` with `select_on: test`),
    /// and the epoch with the best accuracy there (the model evaluated is the last one).
    /// - Throws: `StoreError` on read failures.
    static func training(db: RunDatabase, split: String = "select") throws -> String {
        let epochs = try db.epochs()
        guard let first = epochs.first, let last = epochs.last else { return "" }
        var md = "## Training\n\n| epoch | train loss | train accuracy | \(split) loss | \(split) accuracy |\n|---|---|---|---|---|\n"
        func row(_ e: EpochRecord, _ note: String = "") -> String {
            "| \(e.epoch)\(note) | \(fmt(e.trainLoss, 3)) | \(fmt(e.trainAccuracy, 3)) | \(fmt(e.selectLoss, 3)) | \(fmt(e.selectAccuracy, 3)) |\n"
        }
        md += row(first)
        if let best = epochs.filter({ $0.selectAccuracy.isFinite }).max(by: { ($0.selectAccuracy, -$0.epoch) < ($1.selectAccuracy, -$1.epoch) }),
           best.epoch != first.epoch, best.epoch != last.epoch {
            md += row(best, " (best \(split) accuracy)")
        }
        if last.epoch != first.epoch { md += row(last, " (last: the model evaluated)") }
        md += "\nLoss: mean cross-entropy, nats. No early stopping: every later stage uses the model after the last epoch.\n\n"
        return md
    }

    /// The full model's confusion matrix on test (rows = true class, columns = predicted) with
    /// each class's n, accuracy (recall) and F1 = 2TP / (2TP + FP + FN); "" before migration 0010's
    /// `predictions` were written.
    /// - Throws: `StoreError` on read failures.
    static func confusion(db: RunDatabase, classes: [ClassRecord], full: EvaluationRecord?) throws -> String {
        guard let counts = try ReportFacts.confusion(db: db, classes: classes) else {
            return full == nil ? "" : "## Full model on test: confusion matrix\n\nNot stored for this run (evaluated before kneuron recorded `predictions`); "
                + "`kneuron run SPEC` after upgrading redoes evaluate (seconds) and writes it.\n\n"
        }
        var md = "## Full model on test: confusion matrix\n\nRows: true class; columns: predicted class; cells: test sequences (table `predictions`, view `confusion`).\n\n"
        md += "| true \\ predicted | " + classes.map { "\($0.ecLabel) |" }.joined(separator: " ") + " n | accuracy | F1 |\n"
        md += "|---|" + classes.map { _ in "---|" }.joined() + "---|---|---|\n"
        for (t, c) in classes.enumerated() {
            let n = counts[t].reduce(0, +)
            let f1 = full?.perClass.first { $0.classIndex == c.classIndex }?.f1
            md += "| \(c.ecLabel)\(c.name.map { " \($0)" } ?? "") | " + counts[t].map { "\($0) |" }.joined(separator: " ")
                + " \(n) | \(n > 0 ? fmt(Double(counts[t][t]) / Double(n), 3) : "") | \(f1.map { fmt($0, 3) } ?? "") |\n"
        }
        return md + "\n"
    }

    /// The planted-knowledge benchmark's ground truth when the run ingested one
    /// (`inputs.planted_motifs`): each class's motif and how many sequences carry it, and the
    /// decoys; "" otherwise.
    /// - Throws: `StoreError` on read failures.
    static func planted(db: RunDatabase, classes: [ClassRecord]) throws -> String {
        let motifs = try db.plantedMotifs()
        guard !motifs.isEmpty else { return "" }
        var md = "## The planted benchmark: where the knowledge is known to be\n\n"
        md += "Every sequence is a window of a real protein into which `kneuron plant` wrote its class's motif at a random place, and decoy "
        md += "motifs that every class carries; the class is a function of the motif alone (table `planted_motifs`, 1-based positions). "
        md += "A method that finds the knowledge should rank highest the neurons that fire on the class motifs, not on the decoys.\n\n"
        md += "| class | motif (PROSITE) | sequences | test sequences | full model's F1 |\n|---|---|---|---|---|\n"
        let full = try db.evaluations().first { $0.method == Baseline.full }
        for c in classes {
            let mine = motifs.filter { $0.ecLabel == c.ecLabel }
            let pattern = mine.first?.pattern ?? ""
            let perClass = full?.perClass.first { $0.classIndex == c.classIndex }
            md += "| \(c.ecLabel) | `\(pattern)` | \(mine.count) | \(perClass.map { String($0.n) } ?? "") | \(perClass.map { fmt($0.f1, 3) } ?? "") |\n"
        }
        let decoys = Dictionary(grouping: motifs.filter { $0.ecLabel == nil }, by: \.pattern).mapValues(\.count)
        md += "\nDecoys: " + decoys.sorted { $0.key < $1.key }.map { "`\($0.key)` (\($0.value))" }.joined(separator: ", ") + ".\n\n"
        return md
    }

    /// Which ranking recovers the planted knowledge (`planted_recovery`, `motif_selectivity`):
    /// the most selective neurons, and per ranking and k the mean selectivity of its top k
    /// against random neurons of the same modules, with the precision at k; "" without them.
    /// - Throws: `StoreError` on read failures.
    static func recovery(db: RunDatabase, classes: [ClassRecord], label: (String) -> String) throws -> String {
        let rows = try db.plantedRecovery()
        let selectivity = try db.motifSelectivity()
        guard !selectivity.isEmpty else { return "" }
        // Shards commit their rows before the stage is recorded: a killed neurons stage leaves part of them.
        guard try db.stage(Stage.neurons.rawValue) != nil else {
            let done = try db.selectivityShards().map(\.count).reduce(0, +)
            return "## Does a ranking find the planted knowledge?\n\nNot finished: the neurons stage has the selectivity of \(done) neurons so far "
                + "and no recovery table. Run the spec again (`kneuron run SPEC`) to complete it.\n\n"
        }
        func ec(_ c: Int) -> String { classes.first { $0.classIndex == c }?.ecLabel ?? String(c) }
        func p(_ x: Double) -> String { String(format: "%.2g", x) }
        var md = "## Does a ranking find the planted knowledge?\n\n"
        md += "Motif selectivity of a neuron: the AUROC of its activation at the residues of a class's planted motifs against every other residue "
        md += "of the \(selectivity.first!.split) sequences (1 = it marks the motif perfectly, 0.5 = chance; table `motif_selectivity`). "
        let selective = Dictionary(grouping: selectivity.filter { ($0.auroc ?? 0) >= NeuronsStage.selective }, by: \.classIndex).mapValues(\.count)
        let neurons = Set(selectivity.map { "\($0.layer)/\($0.module)/\($0.unit)" }).count
        md += "Neurons with selectivity >= \(String(format: "%g", NeuronsStage.selective)) per class motif (of \(neurons)): "
            + classes.map { "\($0.ecLabel) \(selective[$0.classIndex] ?? 0)" }.joined(separator: ", ") + ".\n\n"
        md += "The most selective neurons:\n\n| rank | layer | module | unit | class motif | selectivity |\n|---|---|---|---|---|---|\n"
        for (i, r) in selectivity.filter({ $0.auroc != nil }).sorted(by: { ($0.auroc!, -$0.layer) > ($1.auroc!, -$1.layer) }).prefix(10).enumerated() {
            md += "| \(i + 1) | \(r.layer) | \(r.module) | \(r.unit) | \(ec(r.classIndex)) | \(fmt(r.auroc!, 3)) |\n"
        }
        guard !rows.isEmpty else { return md + "\nNo ranking to compare.\n\n" }
        let nRandom = rows.map(\.nRandom).max() ?? 0
        md += "\nEach ranking's top k neurons (for a weight ranking: the output units of its best-ranked weights, the first k distinct ones) against "
        md += "\(nRandom) random sets of k neurons drawn module by module in the same numbers (so preferring a module earns nothing): mean selectivity (true-class rankings: each neuron's best class motif; per-class rankings: their class's "
        md += "motif), one-sided permutation p-value, and the share of the top k with selectivity >= \(String(format: "%g", NeuronsStage.selective)) "
        md += "(precision at k) beside random's. Per-class rows are \(classes.count) tests per method and k: uncorrected, about 1 in 20 passes at p < 0.05 by chance.\n\n"
        md += "| ranking | target | k | mean selectivity | random (mean ± sd) | p | precision at k | random |\n|---|---|---|---|---|---|---|---|\n"
        for r in rows {
            md += "| \(label(r.ranking.method))\(r.ranking.granularity == Granularity.weight.rawValue ? " (weights)" : "") | \(r.ranking.targetClass < 0 ? "true class" : ec(r.ranking.targetClass)) | \(r.k) | \(fmt(r.meanSelectivity, 3)) | "
                + "\(fmt(r.randomMean, 3)) ± \(fmt(r.randomSD, 3)) | \(p(r.pValue)) | \(fmt(r.precisionAtK, 2)) | \(fmt(r.randomPrecision, 2)) |\n"
        }
        let passing = rows.filter { $0.pValue < 0.05 }
        md += "\n\(passing.count) of \(rows.count) rows beat random at p < 0.05" + (passing.isEmpty ? "." : ": "
            + passing.map { "\(label($0.ranking.method))\($0.ranking.granularity == Granularity.weight.rawValue ? " (weights)" : "") \($0.ranking.targetClass < 0 ? "true class" : ec($0.ranking.targetClass)) k = \($0.k)" }.joined(separator: "; ") + ".")
        return md + "\n\n"
    }
}
