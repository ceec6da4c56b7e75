import Foundation
import Store

/// The report of a run: this run's version of the paper's Table 1 and where the kept
/// weights live. Built from the database only.
public struct RunReport: Sendable {
    /// Markdown text (also printed).
    public var markdown: String
    /// `method,retention_fraction,n_seeds,accuracy_mean,accuracy_sd,macro_f1_mean`.
    public var accuracyCSV: String
    /// `method,retention_fraction,seed,layer,module,n_kept,n_total,density`.
    public var densityCSV: String

    static func fmt(_ x: Double, _ digits: Int = 4) -> String { String(format: "%.\(digits)f", x) }

    /// Builds the report from a database whose evaluate stage is done.
    /// - Throws: `StoreError` on read failures.
    public static func build(db: RunDatabase) throws -> RunReport {
        let evals = try db.evaluations()
        let densities = try db.densities()
        let classes = try db.classes()
        let name = try db.run()?.name ?? "run"
        let full = evals.first { $0.method == "full" }
        let fractions = Array(Set(evals.filter { $0.method != "full" }.map(\.retentionFraction))).sorted(by: >)
        let methods = ["random", "activation", "integrated_gradients"].filter { m in evals.contains { $0.method == m } }

        func stats(_ method: String, _ f: Double) -> (mean: Double, sd: Double?, f1: Double, n: Int)? {
            let xs = evals.filter { $0.method == method && $0.retentionFraction == f }
            guard !xs.isEmpty else { return nil }
            let accs = xs.map(\.accuracy)
            let mean = accs.reduce(0, +) / Double(accs.count)
            let sd = accs.count > 1 ? (accs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(accs.count - 1)).squareRoot() : nil
            return (mean, sd, xs.map(\.macroF1).reduce(0, +) / Double(xs.count), xs.count)
        }

        var md = "# kneuron report: \(name)\n\n"
        if let full {
            md += "Full model: test accuracy \(fmt(full.accuracy)) (\(full.nCorrect)/\(full.nTest)), macro-F1 \(fmt(full.macroF1)); "
            // Two baselines: uniform guessing, and always answering the test set's most common
            // class (the one to beat when the classes are unbalanced).
            let majority = full.perClass.map(\.n).max() ?? 0
            md += "\(classes.count) classes, chance \(fmt(1 / Double(max(classes.count, 1)))), "
            md += "majority-class baseline \(fmt(Double(majority) / Double(max(full.nTest, 1)))) (\(majority)/\(full.nTest)).\n\n"
        }
        // What the numbers rest on: the sequences used and those left out.
        let splitSizes = try ["train", "select", "test"].map { try db.sequenceIDs(split: $0).count }
        let rejected = try db.rejectedRecords().count, excluded = try db.excludedSequences().count
        md += "Data: \(splitSizes.reduce(0, +)) sequences (train \(splitSizes[0]), select \(splitSizes[1]), test \(splitSizes[2])); "
        md += "\(rejected) records rejected" + (excluded > 0 ? ", \(excluded) of them proteins kept in `sequences` but excluded from training" : "")
        md += " (reasons in `rejected_records`).\n\n"
        md += "## Test accuracy of submodels (Table 1 of arXiv 2312.10770)\n\n"
        md += "| method | 100% | " + fractions.map { "\(pct($0)) |" }.joined(separator: " ") + "\n"
        md += "|---|---|" + fractions.map { _ in "---|" }.joined() + "\n"
        var csv = "method,retention_fraction,n_seeds,accuracy_mean,accuracy_sd,macro_f1_mean\n"
        if let full { csv += "full,1.0,1,\(full.accuracy),,\(full.macroF1)\n" }
        for m in methods {
            var row = "| \(m.replacingOccurrences(of: "_", with: " ")) | \(full.map { fmt($0.accuracy) } ?? "") |"
            for f in fractions {
                if let s = stats(m, f) {
                    row += " \(fmt(s.mean))" + (s.sd.map { " ± \(fmt($0))" } ?? "") + " |"
                    csv += "\(m),\(f),\(s.n),\(s.mean),\(s.sd.map { String($0) } ?? ""),\(s.f1)\n"
                } else { row += " |" }
            }
            md += row + "\n"
        }
        md += "\nRandom: mean ± sd over seeds. Submodels zero every q/k/v weight not kept (and the bias of a fully dropped row); no retraining.\n\n"

        // Where the kept weights live: share of each module among kept weights.
        md += "## Where the kept weights are: share of kept weights per module\n\n"
        md += "| method | kept | query | key | value |\n|---|---|---|---|---|\n"
        for m in methods {
            for f in fractions {
                let rows = densities.filter { $0.method == m && $0.retentionFraction == f }
                let total = Double(rows.reduce(0) { $0 + $1.nKept })
                guard total > 0 else { continue }
                let share = { (mod: String) in fmt(Double(rows.filter { $0.module == mod }.reduce(0) { $0 + $1.nKept }) / total, 3) }
                md += "| \(m) | \(pct(f)) | \(share("query")) | \(share("key")) | \(share("value")) |\n"
            }
        }
        md += "\n## Kept-weight density per layer x module (fraction of the matrix kept)\n\n"
        let layers = Array(Set(densities.map(\.layer))).sorted()
        for m in methods where m != "random" {
            md += "### \(m)\n\n| kept | " + layers.map { "L\($0) q | L\($0) k | L\($0) v |" }.joined(separator: " ") + "\n"
            md += "|---|" + layers.map { _ in "---|---|---|" }.joined() + "\n"
            for f in fractions {
                var row = "| \(pct(f)) |"
                for l in layers {
                    for mod in ["query", "key", "value"] {
                        let d = densities.first { $0.method == m && $0.retentionFraction == f && $0.layer == l && $0.module == mod && $0.seed == 0 }
                        row += " \(d.map { fmt(Double($0.nKept) / Double($0.nTotal), 3) } ?? "") |"
                    }
                }
                md += row + "\n"
            }
            md += "\n"
        }
        var dcsv = "method,retention_fraction,seed,layer,module,n_kept,n_total,density\n"
        for d in densities {
            dcsv += "\(d.method),\(d.retentionFraction),\(d.seed),\(d.layer),\(d.module),\(d.nKept),\(d.nTotal),\(Double(d.nKept) / Double(d.nTotal))\n"
        }
        return RunReport(markdown: md, accuracyCSV: csv, densityCSV: dcsv)
    }

    static func pct(_ f: Double) -> String {
        let p = f * 100
        return p == p.rounded() ? "\(Int(p))%" : String(format: "%g%%", p)
    }
}

/// Stage 8: prints the report and writes `report.md`, `accuracy.csv` and `density.csv`
/// into the run's artifacts directory.
enum ReportStage {
    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let report = try RunReport.build(db: ctx.db)
        let dir = ctx.artifactsDirectory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, text) in [("report.md", report.markdown), ("accuracy.csv", report.accuracyCSV), ("density.csv", report.densityCSV)] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent(name)), options: .atomic)
        }
        print(report.markdown)
        ctx.log("  wrote \(dir)/report.md, accuracy.csv, density.csv")
        try ctx.db.commitLedger(StageRecord(stage: "report", contentKey: key, rowsWritten: 0, seconds: Date().timeIntervalSince(start)))
        return 0
    }
}
