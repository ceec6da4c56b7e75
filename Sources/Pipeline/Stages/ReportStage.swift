import Attribution
import ESM
import Foundation
import Store

/// The report of a run: this run's version of the paper's Table 1 and where the kept
/// weights live. Built from the database only.
public struct RunReport: Sendable {
    /// Markdown text (also printed).
    public var markdown: String
    /// `method,granularity,target_class,retention_fraction,n_seeds,accuracy_mean,accuracy_sd,macro_f1_mean`.
    public var accuracyCSV: String
    /// `method,granularity,target_class,retention_fraction,seed,layer,module,n_kept,n_total,density`.
    public var densityCSV: String
    /// Every curve point of the evidence stage (`curves`), one row each; header only when it has not run.
    public var curvesCSV: String

    static func fmt(_ x: Double, _ digits: Int = 4) -> String { String(format: "%.\(digits)f", x) }

    /// Builds the report from a database whose evaluate stage is done: for every granularity
    /// the accuracy table (methods x retention fractions, random as mean ± sd), the per-class
    /// rankings' own-class accuracy when the run has per_class targets, the share of kept
    /// elements per module and the density per layer x module.
    /// - Throws: `StoreError` on read failures.
    public static func build(db: RunDatabase) throws -> RunReport {
        let evals = try db.evaluations()
        let densities = try db.densities()
        let classes = try db.classes()
        let name = try db.run()?.name ?? "run"
        let full = evals.first { $0.method == Baseline.full }
        let fractions = Array(Set(evals.filter { $0.method != Baseline.full }.map(\.retentionFraction))).sorted(by: >)
        let granularities = Granularity.allCases.map(\.rawValue).filter { g in evals.contains { $0.granularity == g } }
        /// Rankings of a granularity: random first, then the methods in their canonical order.
        func methods(_ g: String) -> [String] {
            [Baseline.random] + AttributionMethod.allCases.map(\.rawValue).filter { m in evals.contains { $0.method == m && $0.granularity == g } }
        }
        /// Rankings of a granularity with a true-class ranking (random always has one).
        func trueClassMethods(_ g: String) -> [String] {
            methods(g).filter { m in m == Baseline.random || evals.contains { $0.method == m && $0.granularity == g && $0.targetClass == -1 } }
        }
        func label(_ method: String) -> String { method.replacingOccurrences(of: "_", with: " ") }
        func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(xs.count) }
        func sd(_ xs: [Double]) -> Double? {
            guard xs.count > 1 else { return nil }
            let m = mean(xs)
            return (xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(xs.count - 1)).squareRoot()
        }
        func rows(_ method: String, _ g: String, target: Int, _ f: Double) -> [EvaluationRecord] {
            // The random baseline has no target: its rows serve every target's comparison.
            evals.filter { $0.method == method && $0.granularity == g && $0.retentionFraction == f
                && ($0.targetClass == target || method == Baseline.random) }
        }

        var md = "# kneuron report: \(name)\n\n"
        let spec = try db.run().flatMap { try? PipelineSpec.parse(yaml: $0.specYAML) }
        if let spec {
            md += "Model: " + (spec.model.checkpoint.map { "checkpoint `\($0)`, fine-tuned" }
                ?? "preset `\(spec.model.preset ?? "small")` trained here from random weights (no pretrained ESM-2)")
            md += " for \(spec.train.epochs) epoch\(spec.train.epochs == 1 ? "" : "s"), `\(spec.model.pooling.rawValue)` pooling, at most \(spec.model.maxLength) tokens. "
            if let head = try db.modelHead(), head.decision != "preset" { md += "Classifier head: \(head.detail). " }
            md += "Spec `\(name)`, kneuron \(try db.run()?.kneuronVersion ?? "?"). Methods: "
                + spec.attribution.methods.map { label($0.rawValue) }.joined(separator: ", ")
                + " (docs/attribution.md), over \(spec.attribution.modules.map(\.rawValue).joined(separator: ", ")) at "
                + spec.attribution.granularity.map(\.rawValue).joined(separator: " and ") + " granularity. "
            md += "Rankings computed on the \(spec.split.selectOn.split.rawValue) split, submodels evaluated on test"
            md += spec.split.selectOn == .test ? " (the paper's protocol: selection sees the test set). " : ". "
            md += "Integrated gradients: \(spec.attribution.steps) steps."
            if let final = try db.checkpoint(named: "final") { md += " Final checkpoint `\(final.directory)` (model.safetensors SHA-256 `\(final.sha256)`)." }
            md += "\n\n"
        }
        if let full {
            // Binomial standard error of an accuracy on n test sequences.
            let se = (full.accuracy * (1 - full.accuracy) / Double(max(full.nTest, 1))).squareRoot()
            md += "Full model: test accuracy \(fmt(full.accuracy)) (\(full.nCorrect)/\(full.nTest); standard error \(fmt(se, 3)), so differences "
            md += "between submodels below about \(fmt(2 * se, 2)) are within noise), macro-F1 \(fmt(full.macroF1)); "
            // Two baselines: uniform guessing, and always answering the test set's most common
            // class (the one to beat when the classes are unbalanced).
            let majority = full.perClass.map(\.n).max() ?? 0
            md += "\(classes.count) classes, chance \(fmt(1 / Double(max(classes.count, 1)))), "
            md += "majority-class baseline \(fmt(Double(majority) / Double(max(full.nTest, 1)))) (\(majority)/\(full.nTest)).\n\n"
        }
        let trust = try trust(db: db, spec: spec, classes: classes, full: full, accuracy: false)
        if !trust.isEmpty { md += trust.joined(separator: " ") + "\n\n" }
        // What the numbers rest on: the sequences used and those left out.
        let splitSizes = try SplitRole.allCases.map { try db.sequenceIDs(split: $0.rawValue).count }
        let rejected = try db.rejectedRecords().count, excluded = try db.excludedSequences().count
        md += "Data: \(splitSizes.reduce(0, +)) sequences (train \(splitSizes[0]), select \(splitSizes[1]), test \(splitSizes[2])); "
        md += "\(rejected) records rejected" + (excluded > 0 ? ", \(excluded) of them proteins kept in `sequences` but excluded from training" : "")
        let reasons = try ReportFacts.rejectionReasons(db: db)
        md += reasons.isEmpty ? "" : "; by kind: " + reasons.map { "\($0.count) \($0.reason)" }.joined(separator: ", ")
        md += " (reasons in `rejected_records`)."
        if let counts = try db.query("SELECT COUNT(*), SUM(cropped) FROM tokens").rows.first, let n = counts[0].flatMap({ Int($0) }), n > 0,
           let maxLength = spec?.model.maxLength {
            md += " \(counts[1].flatMap { Int($0) } ?? 0) of the \(n) tokenized sequences were cropped to \(maxLength) tokens (`tokens.cropped`)."
        }
        md += "\n\n"
        var csv = "method,granularity,target_class,retention_fraction,n_seeds,accuracy_mean,accuracy_sd,macro_f1_mean\n"
        if let full { csv += "\(Baseline.full),\(Baseline.noGranularity),-1,1.0,1,\(full.accuracy),,\(full.macroF1)\n" }

        for g in granularities {
            let what = g == Granularity.weight.rawValue ? "weights" : "neurons (output units)"
            let modules = densities.filter { $0.granularity == g }.reduce(into: [String]()) { if !$0.contains($1.module) { $0.append($1.module) } }
            let layers = Array(Set(densities.filter { $0.granularity == g }.map(\.layer))).sorted()
            md += "## Test accuracy of submodels keeping the top \(what) of \(modules.joined(separator: ", "))"
            md += g == Granularity.weight.rawValue && modules == LinearModule.attention.map(\.rawValue) ? " (Table 1 of arXiv 2312.10770)\n\n" : "\n\n"
            if trueClassMethods(g).count == 1 {
                md += "This run has only per_class rankings at this granularity (their results follow); the table holds the random baseline.\n\n"
            }
            md += "| method | 100% | " + fractions.map { "\(pct($0)) |" }.joined(separator: " ") + "\n"
            md += "|---|---|" + fractions.map { _ in "---|" }.joined() + "\n"
            for m in trueClassMethods(g) {
                var row = "| \(label(m)) | \(full.map { fmt($0.accuracy) } ?? "") |"
                for f in fractions {
                    let xs = rows(m, g, target: -1, f)
                    if xs.isEmpty { row += " |"; continue }
                    let accs = xs.map(\.accuracy), s = sd(accs)
                    row += " \(fmt(mean(accs)))" + (s.map { " ± \(fmt($0))" } ?? "") + " |"
                    csv += "\(m),\(g),-1,\(f),\(xs.count),\(mean(accs)),\(s.map { String($0) } ?? ""),\(mean(xs.map(\.macroF1)))\n"
                }
                md += row + "\n"
            }
            md += "\nRandom: mean ± sd over \(Set(evals.filter { $0.method == Baseline.random && $0.granularity == g }.map(\.seed)).count) seeds. Submodels " + (g == Granularity.weight.rawValue
                ? "zero every scored weight not kept (and the bias of a fully dropped row)"
                : "zero every scored neuron not kept (its weight row and bias, so its activation is 0 at every position)")
            md += "; no retraining.\n\n"

            // Per-class rankings: the accuracy on class c of the submodel keeping the top of class c's ranking.
            let perClass = evals.filter { $0.granularity == g && $0.targetClass >= 0 }
            if !perClass.isEmpty {
                md += "### Per-class rankings (target per_class): test F1 on class c of the submodel kept from class c's ranking\n\n"
                md += "F1 = 2TP / (2TP + FP + FN) on class c. `always c` is the F1 of a model that answers c for every sequence "
                md += "(2 n_c / (n_c + n)); a submodel near it has collapsed onto class c rather than kept what tells c apart. "
                md += "In brackets: the random submodels' F1 on class c at the same fraction (mean over seeds; they keep a random "
                md += "subset of the same size and were not chosen for c). `full`: the full model's F1 on class c.\n\n"
                md += "| method | class | full | always c | " + fractions.map { "\(pct($0)) |" }.joined(separator: " ") + "\n"
                md += "|---|---|---|---|" + fractions.map { _ in "---|" }.joined() + "\n"
                func classF1(_ e: EvaluationRecord, _ c: Int) -> Double? { e.perClass.first { $0.classIndex == c }?.f1 }
                for m in methods(g) where m != Baseline.random {
                    for c in Array(Set(perClass.filter { $0.method == m }.map(\.targetClass))).sorted() {
                        let cls = classes.first { $0.classIndex == c }
                        let nc = full?.perClass.first { $0.classIndex == c }?.n ?? 0, n = full?.nTest ?? 0
                        let always = n + nc > 0 ? fmt(2 * Double(nc) / Double(nc + n), 3) : ""
                        var row = "| \(label(m)) | \(cls?.ecLabel ?? String(c)) | \(full.flatMap { classF1($0, c) }.map { fmt($0, 3) } ?? "") | \(always) |"
                        for f in fractions {
                            let own = rows(m, g, target: c, f).compactMap { classF1($0, c) }
                            let random = rows(Baseline.random, g, target: c, f).compactMap { classF1($0, c) }
                            row += own.isEmpty ? " |" : " \(fmt(mean(own), 3))" + (random.isEmpty ? "" : " (\(fmt(mean(random), 3)))") + " |"
                        }
                        md += row + "\n"
                    }
                }
                md += "\n"
                for m in methods(g) where m != Baseline.random {
                    for f in fractions {
                        for c in Array(Set(perClass.filter { $0.method == m }.map(\.targetClass))).sorted() {
                            let xs = rows(m, g, target: c, f)
                            if xs.isEmpty { continue }
                            csv += "\(m),\(g),\(c),\(f),\(xs.count),\(mean(xs.map(\.accuracy))),,\(mean(xs.map(\.macroF1)))\n"
                        }
                    }
                }
            }

            // Where the kept elements live: share of each module among the kept ones.
            md += "### Where the kept \(what) are: share per module\n\n"
            md += "Share of the kept \(what) in each module; random's rows are a random subset's shares, i.e. the modules' sizes up to sampling noise (large when few are kept), the baseline to read the others against.\n\n"
            md += "| method | kept | " + modules.joined(separator: " | ") + " |\n|---|---|" + modules.map { _ in "---|" }.joined() + "\n"
            for m in trueClassMethods(g) {
                for f in fractions {
                    let rs = densities.filter { $0.method == m && $0.granularity == g && $0.targetClass == -1 && $0.retentionFraction == f }
                    let total = Double(rs.reduce(0) { $0 + $1.nKept })
                    guard total > 0 else { continue }
                    let share = { (mod: String) in fmt(Double(rs.filter { $0.module == mod }.reduce(0) { $0 + $1.nKept }) / total, 3) }
                    md += "| \(label(m)) | \(pct(f)) | " + modules.map(share).joined(separator: " | ") + " |\n"
                }
            }
            md += "\n### Kept \(what): density per layer x module (fraction of the block kept)\n\n"
            for m in trueClassMethods(g) where m != Baseline.random {
                md += "#### \(label(m))\n\n| kept | " + layers.map { l in modules.map { "L\(l) \($0)" }.joined(separator: " | ") }.joined(separator: " | ") + " |\n"
                md += "|---|" + layers.map { _ in modules.map { _ in "---|" }.joined() }.joined() + "\n"
                for f in fractions {
                    var row = "| \(pct(f)) |"
                    for l in layers {
                        for mod in modules {
                            let d = densities.first { $0.method == m && $0.granularity == g && $0.targetClass == -1 && $0.retentionFraction == f
                                && $0.layer == l && $0.module == mod && $0.seed == 0 }
                            row += " \(d.map { fmt(Double($0.nKept) / Double($0.nTotal), 3) } ?? "") |"
                        }
                    }
                    md += row + "\n"
                }
                md += "\n"
            }
        }
        md += try planted(db: db, classes: classes)
        md += try recovery(db: db, classes: classes, label: label)
        md += try cards(db: db, classes: classes, label: label)
        md += try agreement(db: db, label: label)
        md += try completeness(db: db)
        md += try training(db: db, split: spec?.split.selectOn.split.rawValue ?? "select")
        md += try confusion(db: db, classes: classes, full: full)
        let (evidenceMarkdown, curvesCSV) = try evidence(db: db, classes: classes, label: label)
        md += evidenceMarkdown
        md += try knowledgeEdits(db: db, classes: classes, label: label)
        md += try sanity(db: db, classes: classes, label: label)
        var dcsv = "method,granularity,target_class,retention_fraction,seed,layer,module,n_kept,n_total,density\n"
        for d in densities {
            dcsv += "\(d.method),\(d.granularity),\(d.targetClass),\(d.retentionFraction),\(d.seed),\(d.layer),\(d.module),\(d.nKept),\(d.nTotal),\(Double(d.nKept) / Double(d.nTotal))\n"
        }
        return RunReport(markdown: md, accuracyCSV: csv, densityCSV: dcsv, curvesCSV: curvesCSV)
    }

    /// The evidence section (issue 11): per granularity and direction, every attributed
    /// ranking's accuracy with its bootstrap 95% interval and permutation p-value against the
    /// random rankings at each fraction, and the curve areas; plus every curve point as CSV.
    /// Empty when the evidence stage has not run.
    static func evidence(db: RunDatabase, classes: [ClassRecord], label: (String) -> String) throws -> (markdown: String, csv: String) {
        let significance = try db.significance(), areas = try db.curveAreas(), points = try db.curvePoints()
        var csv = "method,granularity,target_class,seed,direction,fraction,modules,n_ablated,n_total,n_test,n_correct,accuracy,accuracy_low,accuracy_high,macro_f1,p_true\n"
        for p in points {
            csv += "\(p.ranking.method),\(p.ranking.granularity),\(p.ranking.targetClass),\(p.ranking.seed),\(p.direction),\(p.fraction),\"\(p.modules)\","
                + "\(p.nAblated),\(p.nTotal),\(p.nTest),\(p.nCorrect),\(p.accuracy),\(p.accuracyLow),\(p.accuracyHigh),\(p.macroF1),\(p.pTrue)\n"
        }
        guard !significance.isEmpty else { return ("", csv) }
        func name(_ r: RankingID) -> String {
            label(r.method) + (r.targetClass >= 0 ? " (\(classes.first { $0.classIndex == r.targetClass }?.ecLabel ?? String(r.targetClass)))" : "")
        }
        func p(_ x: Double) -> String { x < 0.001 ? String(format: "%.1e", x) : String(format: "%.2g", x) }
        var md = "## Evidence against random rankings\n\n"
        let nRandom = significance.map(\.nRandom).max() ?? 0
        md += "Each attributed ranking against \(nRandom) random rankings of the same granularity and modules, at the same fraction. "
        md += "`retain` keeps the top fraction and ablates the rest (higher accuracy is better); `delete` ablates the top fraction "
        md += "(lower is better). Cells: accuracy [bootstrap 95% interval over test sequences], one-sided permutation p-value "
        md += "(1 + #random at least as good) / (1 + \(nRandom)); random: mean ± sd. `area`: mean height of the accuracy curve over "
        let areaTests = areas.filter { $0.pValue != nil }.count
        let tests = significance.count + areaTests
        let minimum = EvidenceStatistics.minimumPValue(nullCount: nRandom), bonferroni = 0.05 / Double(tests)
        md += "log10(fraction), with its p-value against the random areas. This section holds \(significance.count) point tests and "
        md += "\(areaTests) area tests: uncorrected, about "
        md += String(format: "%.1f", EvidenceStatistics.expectedFalsePositives(tests: tests, alpha: 0.05, nullCount: nRandom))
        md += " would pass at p < 0.05 by chance alone; the Bonferroni threshold for all \(tests) is 0.05/\(tests) = \(p(bonferroni)). "
        md += "With \(nRandom) random rankings the smallest attainable p-value is 1/\(nRandom + 1) = \(p(minimum))"
        md += minimum > 0.05 ? ", above 0.05: no test can pass at p < 0.05; use more random rankings (`evidence.random_rankings`).\n\n"
            : minimum > bonferroni ? ", above the Bonferroni threshold: none can pass after that correction (more random rankings would allow it).\n\n" : ".\n\n"
        var passing: [String] = []
        for g in Granularity.allCases.map(\.rawValue) where significance.contains(where: { $0.ranking.granularity == g }) {
            for direction in CurveDirection.allCases.map(\.rawValue) {
                let rows = significance.filter { $0.ranking.granularity == g && $0.direction == direction }
                guard !rows.isEmpty else { continue }
                let fractions = Array(Set(rows.map(\.fraction))).sorted()
                md += "### \(g) granularity, \(direction)\n\n| ranking | " + fractions.map { "\(pct($0)) |" }.joined(separator: " ") + " area |\n"
                md += "|---|" + fractions.map { _ in "---|" }.joined() + "---|\n"
                let randomAreas = areas.filter { $0.ranking.method == Baseline.random && $0.ranking.granularity == g && $0.direction == direction }.map(\.accuracy)
                var randomRow = "| random (\(nRandom)) |"
                for f in fractions {
                    let r = rows.first { $0.fraction == f }!
                    randomRow += " \(fmt(r.randomMean, 3)) ± \(fmt(r.randomSD ?? 0, 3)) |"
                }
                let (ma, sa) = EvidenceStatistics.meanAndSD(randomAreas)
                md += randomRow + " \(fmt(ma, 3)) ± \(fmt(sa ?? 0, 3)) |\n"
                let rankings = rows.map(\.ranking).reduce(into: [RankingID]()) { if !$0.contains($1) { $0.append($1) } }.sorted()
                for r in rankings {
                    var row = "| \(name(r)) |"
                    for f in fractions {
                        guard let s = rows.first(where: { $0.ranking == r && $0.fraction == f }) else { row += " |"; continue }
                        row += " \(fmt(s.accuracy, 3)) [\(fmt(s.accuracyLow, 3)), \(fmt(s.accuracyHigh, 3))] p=\(p(s.pValue)) |"
                        if s.pValue < 0.05 { passing.append("\(name(r)) \(g) \(direction) \(pct(f)) (p = \(p(s.pValue)))") }
                    }
                    let a = areas.first { $0.ranking == r && $0.direction == direction }
                    row += a.map { " \(fmt($0.accuracy, 3)) p=\($0.pValue.map(p) ?? "") |" } ?? " |"
                    if let a, let pa = a.pValue, pa < 0.05 { passing.append("\(name(r)) \(g) \(direction) area (p = \(p(pa)))") }
                    md += row + "\n"
                }
                md += "\n"
            }
        }
        md += passing.isEmpty ? "No ranking beats random at p < 0.05 at any point or area"
            + (minimum > 0.05 ? " (none could, with \(nRandom) random rankings).\n\n" : ".\n\n")
            : "At p < 0.05 (uncorrected): " + passing.joined(separator: "; ") + ".\n\n"
        return (md, csv)
    }

    /// The suppress/amplify section: per factor, one row per method and class with P(class)
    /// before -> after and the mean change of its log-odds on the class's test sequences
    /// (against the random sets, with the permutation p-value), the share of changed predictions
    /// there, and on the other classes' sequences the mean P(class) before -> after and the share
    /// of changed predictions (specificity). Empty without edits.
    static func knowledgeEdits(db: RunDatabase, classes: [ClassRecord], label: (String) -> String) throws -> String {
        let edits = try db.knowledgeEdits()
        guard !edits.isEmpty else {
            guard try db.stage("evidence") != nil else { return "" }
            return "## Suppressing and amplifying each class's knowledge neurons\n\nNot computed: the edits need per-class neuron rankings "
                + "(`attribution.granularity` with `neuron` and `attribution.targets` with `per_class`, as in `pipelines/engine-quickstart.yaml`), "
                + "and `evidence.edit_factors` not empty.\n\n"
        }
        func ec(_ c: Int) -> String { classes.first { $0.classIndex == c }?.ecLabel ?? String(c) }
        func nats(_ x: Double) -> String { String(format: "%+.2f", x) }
        // Three significant digits: 5/101 prints as 0.0495, not a rounded 0.050 that reads as failing p < 0.05.
        func p(_ x: Double) -> String { x < 0.001 ? String(format: "%.1e", x) : String(format: "%.3g", x) }
        let own = edits.filter { $0.sequences == EditedSequences.ownClass.rawValue }
        let n = own.first?.nNeurons ?? 0, nRandom = own.compactMap(\.nRandom).max() ?? 0
        var md = "## Suppressing and amplifying each class's knowledge neurons\n\n"
        md += "The activations of the top \(n) neurons of each per-class ranking (modules \(own.first?.modules ?? "")) multiplied by the factor "
        md += "(0 suppresses, 2 amplifies; Dai et al. 2021). `P(class)`: mean probability of the class on its own test sequences, before -> after; "
        md += "`log-odds`: the mean change of the class's log-odds log(p / (1 - p)) there, in nats (-2.3 divides the odds by 10, +2.3 multiplies them by 10)"
        md += nRandom > 0 ? ", against \(nRandom) random sets of \(n) neurons (mean ± sd, one-sided permutation p-value: a larger decrease for "
            + "suppress, a larger increase for amplify; the smallest attainable is 1/\(nRandom + 1)); "
            : " (no random sets to compare with: `evidence.edit_random_sets` is 0); "
        md += "`predictions changed`: share of those sequences whose predicted class changed; `other classes`: on the other test sequences, "
        md += "the mean P(class) before -> after and the share whose predicted class changed (near 0 = specific). The mean relative change of P(class) (Dai et al.'s measure) is in "
        md += "`knowledge_edits.relative_change`; it is left out here because sequences with a tiny P(class) before the edit dominate it.\n\n"
        for factor in Array(Set(own.map(\.factor))).sorted() {
            md += "### x\(String(format: "%g", factor))\n\n| method | class | n | P(class) | log-odds | random | p | predictions changed | other classes |\n"
            md += "|---|---|---|---|---|---|---|---|---|\n"
            for e in own.filter({ $0.factor == factor }) {
                let other = edits.first { $0.ranking == e.ranking && $0.factor == factor && $0.sequences == EditedSequences.otherClasses.rawValue }
                md += "| \(label(e.ranking.method)) | \(ec(e.ranking.targetClass)) | \(e.nSequences) | \(fmt(e.pBefore, 3)) -> \(fmt(e.pAfter, 3)) | "
                    + "\(nats(e.logOddsChange)) | " + (e.randomMean.map { nats($0) + (e.randomSD.map { String(format: " ± %.2f", $0) } ?? "") } ?? "") + " | "
                    + (e.pValue.map(p) ?? "") + " | \(String(format: "%.0f%%", 100 * e.predictionChanged)) | "
                    + (other.map { "\(fmt($0.pBefore, 3)) -> \(fmt($0.pAfter, 3)), \(String(format: "%.0f%%", 100 * $0.predictionChanged))" } ?? "") + " |\n"
            }
            md += "\n"
        }
        return md
    }

    /// The sanity-check section: per ranking, Spearman's rho between its scores on the real and
    /// on each randomised model (cascading k = 1 ... L, label-randomised), and the verdicts.
    /// Empty when the sanity stage wrote nothing.
    static func sanity(db: RunDatabase, classes: [ClassRecord], label: (String) -> String) throws -> String {
        let checks = try db.sanityChecks(), verdicts = try db.sanityVerdicts()
        guard !checks.isEmpty else { return "" }
        let cascade = Array(Set(checks.filter { $0.check == SanityCheck.modelRandomization.rawValue }.map(\.layersRandomized))).sorted()
        let labels = checks.contains { $0.check == SanityCheck.labelRandomization.rawValue }
        let threshold = verdicts.first?.maxSpearman ?? .nan
        var md = "## Sanity checks (Adebayo et al. 2018)\n\n"
        md += "Spearman correlation between each ranking's scores on the trained model and on a randomised one, over the same "
        md += "\(checks.first!.nSequences) attributed sequences (taken class by class): "
        var parts: [String] = []
        if let deepest = cascade.last { parts.append("`top k` re-initialises the classification head and the top k blocks (cascading; the verdict uses top \(deepest), every block)") }
        if labels { parts.append("`labels` is a model trained the same way on shuffled labels") }
        md += parts.joined(separator: "; ") + ". A ranking passes when its correlation with "
        md += (cascade.isEmpty ? "" : "the fully randomised model") + (cascade.isEmpty || !labels ? "" : " and with ") + (labels ? "the label-randomised one" : "")
        md += " is below \(String(format: "%g", threshold)): its scores depend on what the model learned.\n\n"
        md += "| ranking | " + cascade.map { "top \($0) |" }.joined(separator: " ") + (labels ? " labels |" : "") + " verdict |\n"
        md += "|---|" + cascade.map { _ in "---|" }.joined() + (labels ? "---|" : "") + "---|\n"
        let rankings = checks.map(\.ranking).reduce(into: [RankingID]()) { if !$0.contains($1) { $0.append($1) } }.sorted()
        for r in rankings {
            func rho(_ check: SanityCheck, _ k: Int) -> String {
                checks.first { $0.ranking == r && $0.check == check.rawValue && $0.layersRandomized == k }.map { c in
                    // Four decimals near the threshold, so a value that passes never prints as the threshold itself.
                    c.spearman.map { abs($0 - threshold) < 0.0005 ? fmt($0, 4) : fmt($0, 3) } ?? "undefined"
                } ?? ""
            }
            let mine = verdicts.filter { $0.ranking == r }
            let verdict = mine.isEmpty ? "" : mine.allSatisfy(\.passed) ? "passes" : "fails " + mine.filter { !$0.passed }.map(\.check).joined(separator: ", ")
            md += "| \(label(r.method)) \(r.granularity)" + (r.targetClass >= 0 ? " (\(classes.first { $0.classIndex == r.targetClass }?.ecLabel ?? String(r.targetClass)))" : "") + " |"
                + cascade.map { " \(rho(.modelRandomization, $0)) |" }.joined() + (labels ? " \(rho(.labelRandomization, 0)) |" : "") + " \(verdict) |\n"
        }
        let failing = rankings.filter { r in verdicts.contains { $0.ranking == r && !$0.passed } }
        md += "\n" + (failing.isEmpty ? "Every checked ranking passes." : "\(failing.count) of \(rankings.count) checked rankings fail: their scores barely change when the model does.")
        let unchecked = try db.scoreSets().filter { $0.method != Baseline.random && !rankings.contains($0) }
        func ec(_ c: Int) -> String { classes.first { $0.classIndex == c }?.ecLabel ?? String(c) }
        let names: [String] = unchecked.map { r in "\(label(r.method)) \(r.granularity) (\(ec(r.targetClass)))" }
        md += unchecked.isEmpty ? "\n\n" : " Not checked, no sequence of their class among the \(checks.first!.nSequences): "
            + names.joined(separator: ", ") + " (raise `sanity.max_sequences`).\n\n"
        return md
    }

    static func pct(_ f: Double) -> String {
        let p = f * 100
        return p == p.rounded() ? "\(Int(p))%" : String(format: "%g%%", p)
    }
}

/// The report's output formats (`kneuron report --format`).
public enum ReportFormat: String, CaseIterable, Sendable {
    /// `report.html`: one self-contained file with figures (`HTMLReport`).
    case html
    /// `report.md`: the same facts as text and tables.
    case md
    /// `accuracy.csv`, `density.csv`, `curves.csv`, `positions.csv`, `training.csv`, `completeness.csv`:
    /// the numbers behind the figures.
    case csv
}

extension RunReport {
    /// The report files of `formats`, as (file name, text), built from the database alone.
    /// - Throws: `StoreError` on read failures.
    public static func files(db: RunDatabase, formats: [ReportFormat] = ReportFormat.allCases) throws -> [(name: String, text: String)] {
        let report = try build(db: db)
        // Read once for the heatmaps and positions.csv: it loads every weight ranking's scores.
        let positions = formats.contains(.html) || formats.contains(.csv) ? try ReportFacts.positions(db: db) : []
        var out: [(name: String, text: String)] = []
        for format in formats {
            switch format {
            case .html: out.append(("report.html", try HTMLReport.build(db: db, positions: positions)))
            case .md: out.append(("report.md", report.markdown))
            case .csv:
                out += [("accuracy.csv", report.accuracyCSV), ("density.csv", report.densityCSV), ("curves.csv", report.curvesCSV),
                        ("positions.csv", ReportFacts.positionsCSV(positions)),
                        ("training.csv", try ReportFacts.trainingCSV(db: db)), ("completeness.csv", try ReportFacts.completenessCSV(db: db))]
            }
        }
        return out
    }
}

/// Stage 10: prints the report and writes `report.html` (`HTMLReport`), `report.md`,
/// and the CSV files of `ReportFormat.csv` into the run's artifacts directory.
enum ReportStage: StageImplementation {
    /// None of its own.
    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] { [] }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let dir = ctx.artifactsDirectory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let files = try RunReport.files(db: ctx.db)
        for (name, text) in files {
            try Data(text.utf8).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent(name)), options: .atomic)
        }
        print(files.first { $0.name == "report.md" }?.text ?? "")
        ctx.log("  wrote \(dir)/" + files.map(\.name).joined(separator: ", "))
        try ctx.db.commitLedger(StageRecord(stage: Stage.report.rawValue, contentKey: key, rowsWritten: 0, seconds: Date().timeIntervalSince(start)))
        return 0
    }
}
