import Foundation
import XCTest
@testable import Pipeline
import Store
import Attribution

/// The evidence stage (issue 11) on the end-to-end slice of real data: curves agree with the
/// evaluate stage where they evaluate the same submodel, and every test statistic equals a
/// brute-force recomputation from the stored points.
extension EndToEndTests {
    func testEvidenceCurvesAgreeWithEvaluateAndTheirTestsWithBruteForce() throws {
        let spec = try writeSpec()
        let path = dir.appendingPathComponent("evidence.sqlite").path
        _ = try runInProcess(spec: spec, db: path)
        let db = try RunDatabase(path: path, readOnly: true)
        let points = try db.curvePoints()
        // 2 rankings (activation, integrated gradients) + 4 random, x 2 directions x 2 fractions.
        XCTAssertEqual(points.count, (2 + 4) * 2 * 2)
        XCTAssertEqual(Set(points.filter { $0.ranking.method == "random" }.map(\.ranking.seed)), [1, 2, 3, 4])

        // retain at a selection fraction is exactly the evaluate stage's submodel (select keeps the
        // same top k, random seeds 1-3 are the same draws): the same correct count.
        let evaluations = try db.evaluations()
        var compared = 0
        for p in points where p.direction == "retain" {
            guard let e = evaluations.first(where: { $0.ranking == p.ranking && $0.retentionFraction == p.fraction }) else { continue }
            XCTAssertEqual(p.nCorrect, e.nCorrect, "\(p.ranking) \(p.fraction)")
            XCTAssertEqual(p.macroF1, e.macroF1, accuracy: 1e-12)
            compared += 1
        }
        XCTAssertEqual(compared, (2 + 3) * 2, "every retain point with an evaluation was compared")
        for p in points {
            let k = SelectStage.keptCount(p.fraction, total: p.nTotal)
            XCTAssertEqual(p.nAblated, p.direction == "retain" ? p.nTotal - k : k)
            XCTAssertEqual(p.accuracy, Double(p.nCorrect) / Double(p.nTest), accuracy: 1e-15)
            XCTAssertTrue(p.accuracyLow <= p.accuracy && p.accuracy <= p.accuracyHigh, "\(p)")
            XCTAssertTrue(p.pTrue > 0 && p.pTrue < 1)
        }

        // Significance: brute force from the points.
        let significance = try db.significance()
        XCTAssertEqual(significance.count, 2 * 2 * 2)
        for s in significance {
            let null = points.filter { $0.ranking.method == "random" && $0.ranking.granularity == s.ranking.granularity
                && $0.direction == s.direction && $0.fraction == s.fraction }.map(\.accuracy)
            XCTAssertEqual(null.count, 4)
            let asGood = null.filter { s.direction == "retain" ? $0 >= s.accuracy : $0 <= s.accuracy }.count
            XCTAssertEqual(s.pValue, Double(1 + asGood) / 5, accuracy: 1e-15)
            let mean = null.reduce(0, +) / 4
            XCTAssertEqual(s.randomMean, mean, accuracy: 1e-15)
            let sd = (null.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 3).squareRoot()
            if sd > 0 { XCTAssertEqual(s.effectSize!, (s.accuracy - mean) / sd, accuracy: 1e-12) } else { XCTAssertNil(s.effectSize) }
        }
        // Areas: trapezoid over log10(fraction) of two points = their mean; p against the random areas.
        let areas = try db.curveAreas()
        XCTAssertEqual(areas.count, (2 + 4) * 2)
        for a in areas {
            let ps = points.filter { $0.ranking == a.ranking && $0.direction == a.direction }
            XCTAssertEqual(a.accuracy, ps.map(\.accuracy).reduce(0, +) / 2, accuracy: 1e-12)
            if a.ranking.method == "random" { XCTAssertNil(a.pValue); continue }
            let null = areas.filter { $0.ranking.method == "random" && $0.direction == a.direction }.map(\.accuracy)
            let asGood = null.filter { a.direction == "retain" ? $0 >= a.accuracy : $0 <= a.accuracy }.count
            XCTAssertEqual(a.pValue!, Double(1 + asGood) / 5, accuracy: 1e-15)
        }
        // status counts the rankings' curves.
        XCTAssertTrue(try RunStatus.read(db: db).lines.first { $0.stage == .evidence }!.detail.hasPrefix("6 of 6 rankings' curves done"))
        // The report says it, and writes every point as CSV.
        let report = try String(contentsOfFile: dir.appendingPathComponent("evidence.artifacts/report.md").path, encoding: .utf8)
        XCTAssertTrue(report.contains("## Evidence against random rankings"), report)
        XCTAssertTrue(report.contains("| random (4) |"), report)
        let csv = try String(contentsOfFile: dir.appendingPathComponent("evidence.artifacts/curves.csv").path, encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 1 + points.count)
    }
}
