import Foundation
import XCTest
@testable import Attribution

/// The evidence statistics against numpy / scipy (scripts/reference/make_statistics_fixtures.py
/// writes Fixtures/statistics-reference.json).
final class StatisticsTests: XCTestCase {
    struct Reference: Decodable {
        struct Permutation: Decodable { let observed: Double; let null: [Double]; let p: Double; let effect: Double }
        struct Area: Decodable { let x: [Double]; let y: [Double]; let area: Double }
        struct Spearman: Decodable { let a: [Float]; let b: [Float]; let rho: Double }
        struct RankData: Decodable { let values: [Float]; let ranks: [Double] }
        struct Binomial: Decodable { let n: Int; let k: Int; let low: Double; let high: Double }
        struct Bootstrap: Decodable { let values: [Double]; let low: Double; let high: Double; let standard_error: Double }
        struct LogOdds: Decodable { let logits: [Double]; let log_probabilities: [Double]; let log_odds: [Double] }
        let permutation: [Permutation]
        let area: [Area]
        let spearman: Spearman
        let rankdata: RankData
        let binomial: [Binomial]
        let bootstrap: Bootstrap
        let log_odds: [LogOdds]
    }

    lazy var reference: Reference = {
        let url = IGReference.directory.appendingPathComponent("statistics-reference.json")
        return try! JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }()

    /// The log-odds of every class of every logit row equal 60-digit mpmath's to 1e-12 (relative
    /// to max(1, |value|)), including a P(c) within 1e-17 of 1 (where 1 - p cancels in doubles),
    /// a tiny one and one below the smallest double (exp(-800)); the log-softmax rows the
    /// trainer computes, (z - m) - log sum exp(z - m), equal mpmath's to 1e-12 as well.
    func testLogOddsMatchHighPrecision() {
        XCTAssertEqual(reference.log_odds.count, 6)
        for r in reference.log_odds {
            let m = r.logits.max()!
            let z = r.logits.reduce(0) { $0 + exp($1 - m) }
            for (mine, ref) in zip(r.logits.map { ($0 - m) - log(z) }, r.log_probabilities) {
                XCTAssertEqual(mine, ref, accuracy: 1e-12 * max(1, abs(ref)), "\(r.logits)")
            }
            for c in r.logits.indices {
                let v = EvidenceStatistics.logOdds(logProbabilities: r.log_probabilities, class: c)
                XCTAssertEqual(v, r.log_odds[c], accuracy: 1e-12 * max(1, abs(r.log_odds[c])), "\(r.logits) class \(c)")
            }
        }
    }

    /// Empirical p-value and effect size equal numpy's to 1e-12 (ties with the observed value count as >=).
    func testPermutationPValueAndEffectSizeMatchNumpy() {
        for r in reference.permutation {
            XCTAssertEqual(EvidenceStatistics.permutationPValue(observed: r.observed, null: r.null), r.p, accuracy: 1e-12)
            XCTAssertEqual(EvidenceStatistics.effectSize(observed: r.observed, null: r.null)!, r.effect, accuracy: 1e-9 * max(1, abs(r.effect)))
        }
        XCTAssertEqual(EvidenceStatistics.permutationPValue(observed: 1, null: []), 1)
        XCTAssertNil(EvidenceStatistics.effectSize(observed: 1, null: [0.5, 0.5]), "no spread, no effect size")
    }

    /// Normalised trapezoid area equals numpy.trapezoid / x range to 1e-12, points in any order.
    func testAreaMatchesNumpyTrapezoid() {
        for r in reference.area {
            XCTAssertEqual(EvidenceStatistics.normalizedArea(x: r.x, y: r.y)!, r.area, accuracy: 1e-12)
        }
        XCTAssertEqual(EvidenceStatistics.normalizedArea(x: [0.1], y: [0.3]), 0.3)
        XCTAssertNil(EvidenceStatistics.normalizedArea(x: [], y: []))
    }

    /// Average ranks equal scipy.stats.rankdata; Spearman's rho with heavy ties equals
    /// scipy.stats.spearmanr to 1e-12; perfect and reversed orders give 1 and -1.
    func testSpearmanMatchesScipyWithTies() {
        XCTAssertEqual(EvidenceStatistics.averageRanks(reference.rankdata.values), reference.rankdata.ranks)
        XCTAssertEqual(EvidenceStatistics.spearman(reference.spearman.a, reference.spearman.b)!, reference.spearman.rho, accuracy: 1e-12)
        XCTAssertEqual(EvidenceStatistics.spearman([1, 2, 3, 4], [10, 20, 30, 40])!, 1, accuracy: 1e-15)
        XCTAssertEqual(EvidenceStatistics.spearman([1, 2, 3, 4], [4, 3, 2, 1])!, -1, accuracy: 1e-15)
        XCTAssertNil(EvidenceStatistics.spearman([1, 1, 1], [1, 2, 3]), "a constant side has no rank correlation")
    }

    /// The percentile bootstrap of an accuracy k/n: the resampled mean is Binomial(n, k/n)/n, so
    /// with 20,000 resamples its 2.5% / 97.5% quantiles are the binomial's (scipy.stats.binom.ppf)
    /// within one sequence (1/n). Seeded: the same seed gives the same interval.
    func testBootstrapOfAnAccuracyMatchesTheBinomialQuantiles() {
        for r in reference.binomial {
            let values = (0 ..< r.n).map { $0 < r.k ? 1.0 : 0.0 }
            let ci = EvidenceStatistics.bootstrapInterval(values, resamples: 20_000, seed: 7)
            XCTAssertEqual(ci.low, r.low, accuracy: 1.0 / Double(r.n) + 1e-12, "n \(r.n) k \(r.k)")
            XCTAssertEqual(ci.high, r.high, accuracy: 1.0 / Double(r.n) + 1e-12, "n \(r.n) k \(r.k)")
            XCTAssertTrue(ci.low <= Double(r.k) / Double(r.n) && Double(r.k) / Double(r.n) <= ci.high)
        }
        let v = (0 ..< 50).map { Double($0 % 3) }
        XCTAssertTrue(EvidenceStatistics.bootstrapInterval(v, resamples: 1000, seed: 3) == EvidenceStatistics.bootstrapInterval(v, resamples: 1000, seed: 3))
        XCTAssertFalse(EvidenceStatistics.bootstrapInterval(v, resamples: 1000, seed: 3) == EvidenceStatistics.bootstrapInterval(v, resamples: 1000, seed: 4))
    }

    /// On continuous values the interval agrees with scipy.stats.bootstrap (percentile, 200,000
    /// resamples) within a tenth of the bootstrap standard error (Monte-Carlo error of 20,000
    /// resamples at the 2.5% quantile is about 0.03 standard errors).
    func testBootstrapMatchesScipyOnContinuousValues() {
        let r = reference.bootstrap
        let ci = EvidenceStatistics.bootstrapInterval(r.values, resamples: 20_000, seed: 11)
        XCTAssertEqual(ci.low, r.low, accuracy: 0.1 * r.standard_error)
        XCTAssertEqual(ci.high, r.high, accuracy: 0.1 * r.standard_error)
    }

    /// numpy.quantile's linear interpolation.
    func testQuantileInterpolatesLikeNumpy() {
        let s: [Double] = [1, 2, 4, 8]
        XCTAssertEqual(EvidenceStatistics.quantile(sorted: s, 0), 1)
        XCTAssertEqual(EvidenceStatistics.quantile(sorted: s, 1), 8)
        XCTAssertEqual(EvidenceStatistics.quantile(sorted: s, 0.5), 3)       // numpy.quantile([1,2,4,8], 0.5) = 3.0
        XCTAssertEqual(EvidenceStatistics.quantile(sorted: s, 0.9), 6.8, accuracy: 1e-12)   // numpy: 6.8
    }

    /// Identical values have sd 0 (not the ~1e-17 a two-pass sum leaves), so no effect size;
    /// the smallest p and the expected false positives of discrete empirical p-values.
    func testConstantNullHasNoEffectSizeAndDiscretePValuesAreCounted() {
        let null = [Double](repeating: 1.0 / 7, count: 100)
        XCTAssertEqual(EvidenceStatistics.meanAndSD(null).sd, 0)
        XCTAssertNil(EvidenceStatistics.effectSize(observed: 2.0 / 7, null: null))
        XCTAssertEqual(EvidenceStatistics.meanAndSD([1, 2, 3, 4]).sd!, 1.2909944487358056, accuracy: 1e-15)   // numpy std(ddof=1)
        XCTAssertEqual(EvidenceStatistics.minimumPValue(nullCount: 100), 1.0 / 101)
        XCTAssertEqual(EvidenceStatistics.expectedFalsePositives(tests: 16, alpha: 0.05, nullCount: 100), 16.0 * 5 / 101, accuracy: 1e-15)
        XCTAssertEqual(EvidenceStatistics.expectedFalsePositives(tests: 8, alpha: 0.05, nullCount: 10), 0, "1/11 > 0.05: nothing can pass")
    }
}
