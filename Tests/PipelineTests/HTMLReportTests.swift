import Foundation
import XCTest
@testable import Pipeline
import Store

/// The HTML report (issue 13, first part) of the end-to-end run: self-contained (no script, no
/// network reference), every figure an inline SVG with its title, numbers equal to the database's,
/// and, where Debian's `chromium` is installed (`.ci/run` installs it), rendered headless at 1280
/// and 800 px without console errors, its DOM holding every figure.
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
        XCTAssertTrue(html.contains("test accuracy <b>\(String(format: "%.3f", full.accuracy))</b> (\(full.nCorrect)/\(full.nTest)"))
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
        let svgs = html.components(separatedBy: "<svg ").count - 1
        XCTAssertGreaterThanOrEqual(svgs, 4 + 2 + 1 + 2 * 3)

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
        }
    }
}
