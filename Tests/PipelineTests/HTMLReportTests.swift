import Foundation
import XCTest
@testable import Pipeline
import Store

/// The HTML report (issue 13) of the end-to-end run: self-contained (no script, no
/// network reference), every figure an inline SVG with its title, numbers equal to the database's,
/// and, where Debian's `chromium` is installed (`.ci/run` installs it), rendered headless at 1280
/// and 800 px without console errors or horizontal overflow, its DOM holding every figure; the
/// confusion matrix and the scaled-weight-position cells recounted from other tables; the
/// Markdown report holding the same sections as text.
extension EndToEndTests {
    func testHTMLReportIsSelfContainedAndRendersInChromium() throws {
        let spec = try writeSpec()
        let path = dir.appendingPathComponent("html.sqlite").path
        _ = try runInProcess(spec: spec, db: path)
        let db = try RunDatabase(path: path, readOnly: true)
        let file = dir.appendingPathComponent("html.artifacts/report.html")
        let html = try String(contentsOf: file, encoding: .utf8)
        for forbidden in ["http:", "https:", "<script", "<link", "@import", "url("] {
            XCTAssertFalse(html.contains(forbidden), "report.html must not reference \(forbidden)")
        }
        let titles = ["retain: test accuracy, weights", "delete: test accuracy, weights", "retain: test macro-F1, weights",
                      "cross-entropy per epoch", "accuracy per epoch", "activation", "integrated gradients", "random (3 seeds)"]
        for t in titles { XCTAssertTrue(html.contains("<title>\(t)</title>"), t) }
        XCTAssertTrue(html.contains("<title>completeness gap, weight paths (24)</title>"))
        XCTAssertTrue(html.contains("<h2>Sanity checks (Adebayo et al. 2018)</h2>"))
        // Numbers equal the database's: the full model's accuracy, and every retain point of activation.
        let full = try db.evaluations().first { $0.method == "full" }!
        XCTAssertTrue(html.contains("test accuracy \(String(format: "%.3f", full.accuracy)) (\(full.nCorrect)/\(full.nTest)"))
        for p in try db.curvePoints() where p.ranking.method == "activation" && p.direction == "retain" {
            XCTAssertTrue(html.contains("<tr><td>activation</td><td>retain</td><td>\(RunReport.pct(p.fraction))</td><td>\(String(format: "%.3f", p.accuracy))</td>"), "\(p)")
        }
        // The top elements are the database's rank 1 ... 10, and the overlap is |A ∩ B| / |A ∪ B| of the kept sets.
        let best = try db.query("SELECT layer, module, row, col FROM neuron_scores WHERE method = 'activation' AND seed = 0 AND rank = 1").rows[0]
        XCTAssertTrue(html.contains("<tr><td>1</td><td>\(best[0]!)</td><td>\(best[1]!)</td><td>\(best[2]!), \(best[3]!)</td>"), "\(best)")
        let a = try db.ranks(method: "activation"), b = try db.ranks(method: "integrated_gradients")
        let k = SelectStage.keptCount(0.1, total: a.count)
        let inter = a.indices.filter { a[$0] <= k && b[$0] <= k }.count
        XCTAssertTrue(html.contains("<tr><td>activation vs integrated gradients</td><td>\(String(format: "%.3f", Double(inter) / Double(2 * k - inter)))</td>"))
        // The confusion matrix: its diagonal is evaluation_classes' n_correct and its row sums their n
        // (two tables the evaluate stage computes separately).
        let confusion = try db.query("SELECT true_class, predicted_class, n FROM confusion").rows.map { $0.map { Int($0!)! } }
        XCTAssertEqual(confusion.reduce(0) { $0 + $1[2] }, full.nTest)
        for c in full.perClass {
            XCTAssertEqual(confusion.filter { $0[0] == c.classIndex }.reduce(0) { $0 + $1[2] }, c.n, "class \(c.classIndex)")
            XCTAssertEqual(confusion.first { $0[0] == c.classIndex && $0[1] == c.classIndex }?[2] ?? 0, c.nCorrect, "class \(c.classIndex)")
        }
        XCTAssertTrue(html.contains("<title>true (rows) x predicted</title>"))
        // Figure 2: every cell of positions.csv is the kept share of 200 adjacent weights, recounted
        // here from the stored ranks (rank <= n_kept) and the stored block layout.
        let csv = try String(contentsOf: dir.appendingPathComponent("html.artifacts/positions.csv"), encoding: .utf8)
            .split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let layout = try db.scoreLayout(RankingID(method: "integrated_gradients", granularity: "weight"))!
        let igRanks = try db.ranks(method: "integrated_gradients")
        for f in try db.selections() where f.method == "integrated_gradients" && f.granularity == "weight" {
            for b in layout.blocks {
                let rows = csv.filter { $0[0] == "integrated_gradients" && Double($0[2]) == f.retentionFraction && $0[3] == "\(b.layer)" && $0[4] == b.module }
                XCTAssertEqual(rows.count, (b.rows * b.cols + 199) / 200)
                for r in rows {
                    let first = b.offset + Int(r[6])!, n = Int(r[7])!
                    XCTAssertEqual(Int(r[8])!, (first ..< first + n).filter { igRanks[$0] <= f.nKept }.count, "\(r)")
                }
            }
            XCTAssertTrue(html.contains("<title>integrated gradients, top \(RunReport.pct(f.retentionFraction))</title>"))
        }
        XCTAssertTrue(html.contains("<title>random (seed 1), top 10%</title>"))
        // The cards as figures: one panel per shown card (each true-class ranking's first 3); the first card's
        // logo letter for its most frequent residue at the peak is as tall as Schneider & Stephens' formula,
        // recomputed here from the stored enrichment counts; its top window shows the peak residue in bold.
        let shown = try db.cardNeurons().filter { $0.ranking.targetClass < 0 && $0.cardRank <= 3 }
        XCTAssertFalse(shown.isEmpty)
        XCTAssertEqual(html.components(separatedBy: "<div class=\"card\">").count - 1, shown.count)
        let firstCard = try XCTUnwrap(try db.neuronCard(shown[0].neuron))
        let atPeak = firstCard.enrichment.filter { $0.offset == 0 }
        let total = atPeak.reduce(0) { $0 + $1.count }
        let entropy = atPeak.filter { $0.count > 0 }.reduce(0.0) { $0 - Double($1.count) / Double(total) * log2(Double($1.count) / Double(total)) }
        let information = max(0, log2(20.0) - entropy - 19 / (2 * log(2.0) * Double(total)))
        let mode = atPeak.max { ($0.count, $1.residue) < ($1.count, $0.residue) }!
        if Double(mode.count) / Double(total) * information / log2(20.0) * 106 >= SVG.logoMinimumLetter {   // 106 px: the plot height
            XCTAssertTrue(html.contains("<title>offset 0: \(mode.residue) \(mode.count) of \(total), \(String(format: "%.2f", Double(mode.count) / Double(total) * information)) bits</title>"),
                          "\(mode) of \(total), R = \(information)")
        }
        let window = firstCard.examples.first { $0.kind == "top" }!
        let peakResidue = Array(window.window)[window.peakPosition - window.windowStart]
        XCTAssertTrue(html.contains("<b>\(peakResidue)</b>") && html.contains(window.sequenceID))
        XCTAssertTrue(html.contains("<title>class AUROC of the peak</title>") && html.contains("<title>where the peak falls</title>"))

        // The Markdown report carries the same facts as text.
        let md = try String(contentsOf: dir.appendingPathComponent("html.artifacts/report.md"), encoding: .utf8)
        for heading in ["## Top elements and how much the methods agree", "## How far to trust the integrated-gradients sums", "## Training",
                        "## Full model on test: confusion matrix", "#### activation", "| activation vs integrated gradients |"] {
            XCTAssertTrue(md.contains(heading), heading)
        }
        XCTAssertTrue(md.contains("| 1 | \(best[0]!) | \(best[1]!) | \(best[2]!), \(best[3]!) |"), "\(best)")
        XCTAssertTrue(md.contains("The model was trained here from random weights"))
        let svgs = html.components(separatedBy: "<svg ").count - 1
        XCTAssertGreaterThanOrEqual(svgs, 4 + 2 + 1 + 2 * 3 + 2 * 4 + 1)   // curves, training, gaps, grids, strips, confusion

        // `kneuron report --db RUN --format md|html|csv` renders from the database alone, read-only.
        if let exe = Self.executable() {
            let out = dir.appendingPathComponent("cli-report.md").path
            let r = try runProcess(exe, ["report", "--db", path, "--format", "md", "--out", out])
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), md, "the same Markdown as the report stage's")
            let h = try runProcess(exe, ["report", "--db", path])
            XCTAssertEqual(h.status, 0, h.err)
            XCTAssertTrue(try String(contentsOfFile: dir.appendingPathComponent("html.report.html").path, encoding: .utf8).contains("<td>report</td>"))
            let c = try runProcess(exe, ["report", "--db", path, "--format", "csv", "--out", dir.appendingPathComponent("csv").path])
            XCTAssertEqual(c.status, 0, c.err)
            XCTAssertEqual(try String(contentsOfFile: dir.appendingPathComponent("csv/positions.csv").path, encoding: .utf8),
                           try String(contentsOf: dir.appendingPathComponent("html.artifacts/positions.csv"), encoding: .utf8))
            // An output path that is the database (here through a symbolic link) is refused and the database kept.
            let link = dir.appendingPathComponent("link.html").path
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
            let before = try Data(contentsOf: URL(fileURLWithPath: path))
            let o = try runProcess(exe, ["report", "--db", path, "--out", link])
            XCTAssertNotEqual(o.status, 0)
            XCTAssertTrue(o.err.contains("is the run's database"), o.err)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
            let empty = dir.appendingPathComponent("empty.sqlite").path
            _ = try RunDatabase(path: empty)
            let e = try runProcess(exe, ["report", "--db", empty])
            XCTAssertNotEqual(e.status, 0)
            XCTAssertTrue(e.err.contains("has no finished evaluate stage"), e.err)
        }

        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("chromium is not installed (apt-get install chromium; .ci/run installs it): the browser half of this test did not run")
        }
        func chromiumRun(_ args: [String]) throws -> (out: String, err: String) {
            let r = try runProcess(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
                                              "--user-data-dir=\(dir.appendingPathComponent("chromium-profile").path)"] + args + [file.absoluteString])
            XCTAssertEqual(r.status, 0, r.err)
            return (r.out, r.err)
        }
        let dom = try chromiumRun(["--dump-dom"])
        XCTAssertEqual(dom.out.components(separatedBy: "<svg ").count - 1, svgs, "the browser's DOM holds every figure")
        XCTAssertFalse(dom.err.contains("CONSOLE"), "console messages: \(dom.err)")
        for width in [1280, 800] {
            let shot = dir.appendingPathComponent("report-\(width).png").path
            let r = try chromiumRun(["--window-size=\(width),2000", "--screenshot=\(shot)"])
            XCTAssertFalse(r.err.contains("CONSOLE"), r.err)
            let size = (try FileManager.default.attributesOfItem(atPath: shot)[.size] as? Int) ?? 0
            XCTAssertGreaterThan(size, 20_000, "a \(width) px screenshot with content")
            // No horizontal overflow: a copy of the page with a measuring script (the report itself has
            // none) records the document's scroll width against the window's width.
            let probe = dir.appendingPathComponent("probe-\(width).html")
            try html.replacingOccurrences(of: "</body>", with: "<script>document.body.setAttribute('data-overflow', "
                + "String(document.documentElement.scrollWidth - window.innerWidth))</script></body>").write(to: probe, atomically: true, encoding: .utf8)
            let measured = try runProcess(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=\(width),2000",
                                                     "--user-data-dir=\(dir.appendingPathComponent("chromium-profile").path)", "--dump-dom", probe.absoluteString])
            XCTAssertTrue(measured.out.contains("data-overflow=\"0\""), "at \(width) px the page is wider than the window: "
                + (measured.out.range(of: "data-overflow=\"[^\"]*\"", options: .regularExpression).map { String(measured.out[$0]) } ?? measured.err))
        }
    }
}
