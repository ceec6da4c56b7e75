import ESM
import Foundation
import XCTest
@testable import Attribution

/// The neuron-card statistics against scipy / numpy (scripts/reference/make_card_fixtures.py
/// writes Fixtures/card-reference.json), and a neuron built by hand to fire on a motif: its
/// peaks sit on the motif, its top windows show it, and its enrichment names the motif's residue.
final class CardStatisticsTests: XCTestCase {
    struct Reference: Decodable {
        struct Binomial: Decodable { let k: Int; let n: Int; let p: Double; let pvalue: Double }
        struct BH: Decodable { let p: [Double]; let q: [Double] }
        struct Entropy: Decodable { let counts: [Int]; let bits: Double }
        struct Quantile: Decodable { let values: [Float]; let q: Double; let index: Int }
        struct Row: Decodable {
            let offset: Int; let residue: String; let count: Int; let n: Int
            let background: Double; let log_odds: Double; let p: Double; let q: Double
        }
        struct Enrichment: Decodable { let sequences: [String]; let peaks: [Int]; let background_text: String; let rows: [Row] }
        let binomial: [Binomial]
        let bh: BH
        let entropy: [Entropy]
        let quantile: [Quantile]
        let enrichment: Enrichment
    }

    lazy var reference: Reference = {
        let url = IGReference.directory.appendingPathComponent("card-reference.json")
        return try! JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
    }()

    /// The exact two-sided binomial p-value equals scipy.stats.binomtest's to 1e-9 relative
    /// (k = 0, k = n, k = n p, tails of 1e-15, n = 500).
    func testBinomialTestMatchesScipy() {
        for r in reference.binomial {
            let p = NeuronCards.binomialTwoSided(k: r.k, n: r.n, p: r.p)
            XCTAssertEqual(p, r.pvalue, accuracy: 1e-9 * max(r.pvalue, 1e-300), "binomtest(\(r.k), \(r.n), \(r.p))")
        }
    }

    /// Benjamini-Hochberg q-values equal scipy.stats.false_discovery_control(method='bh') to 1e-12, with ties.
    func testBenjaminiHochbergMatchesScipy() {
        let q = NeuronCards.benjaminiHochberg(reference.bh.p)
        for (a, b) in zip(q, reference.bh.q) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        XCTAssertEqual(NeuronCards.benjaminiHochberg([]), [])
    }

    /// Entropy in bits equals scipy.stats.entropy(base=2); the quantile example is the sequence
    /// numpy.quantile(method='nearest') picks (q = 0.125 of 37 values rounds 4.5 to even).
    func testEntropyAndQuantileIndexMatchScipyAndNumpy() {
        for r in reference.entropy { XCTAssertEqual(NeuronCards.entropyBits(r.counts), r.bits, accuracy: 1e-12, "\(r.counts)") }
        XCTAssertEqual(NeuronCards.entropyBits([0, 0]), 0)
        for r in reference.quantile {
            let peaks = r.values.map { NeuronPeak(activation: $0, residue: 0) }
            XCTAssertEqual(NeuronCards.quantileIndex(peaks, r.q), r.index, "q \(r.q)")
        }
    }

    /// Every (offset, amino acid) row of the enrichment table equals the brute-force count of the
    /// reference script, its log-odds to 1e-12, p (binomtest) and q (BH over the 140 tests) to 1e-9
    /// relative; non-standard letters (X, B, U) and positions outside a sequence are not counted.
    func testEnrichmentMatchesABruteForceCount() {
        let e = reference.enrichment
        let background = NeuronCards.background(Array(e.background_text.utf8))
        let rows = NeuronCards.enrichment(contexts: e.sequences.map { Array($0.utf8) }, peaks: e.peaks, background: background)
        XCTAssertEqual(rows.count, e.rows.count)
        for (a, b) in zip(rows, e.rows) {
            XCTAssertEqual(a.offset, b.offset)
            XCTAssertEqual(String(a.residue), b.residue)
            XCTAssertEqual(a.count, b.count, "offset \(b.offset) \(b.residue)")
            XCTAssertEqual(a.n, b.n)
            XCTAssertEqual(a.background, b.background, accuracy: 1e-12)
            XCTAssertEqual(a.logOdds, b.log_odds, accuracy: 1e-12)
            XCTAssertEqual(a.pValue, b.p, accuracy: 1e-9 * max(b.p, 1e-300))
            XCTAssertEqual(a.qValue, b.q, accuracy: 1e-9 * max(b.q, 1e-300))
        }
        // The planted pair (C at the peak, W after it) is what the table finds.
        let significant = rows.filter { $0.qValue < 0.05 && $0.logOdds > 0 }.map { "\($0.offset)\($0.residue)" }
        XCTAssertEqual(Set(significant), ["0C", "1W"])
    }

    /// Values within the tie tolerance (1e-5 relative) of a run's smallest become the run's largest;
    /// values further apart keep their own.
    func testSnapTiesMergesOnlyNearEqualValues() {
        let v: [Float] = [1.0, 1.0000001, 2.0, 0.5, 1.00002, 2.0000002, -3, -3.00001]
        XCTAssertEqual(NeuronCards.snapTies(v), [1.0000001, 1.0000001, 2.0000002, 0.5, 1.00002, 2.0000002, -3, -3])
        XCTAssertEqual(NeuronCards.snapTies([]), [])
    }

    /// FNV-1a matches its published test vectors; tied peaks follow the tie keys, then the index.
    func testFNV1aAndTieOrder() {
        XCTAssertEqual(NeuronCards.fnv1a(""), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(NeuronCards.fnv1a("a"), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(NeuronCards.fnv1a("foobar"), 0x8594_4171_f739_67e8)
        let peaks = [1, 2, 2, 2, 0].map { NeuronPeak(activation: Float($0), residue: 0) }
        XCTAssertEqual(NeuronCards.order(peaks), [1, 2, 3, 0, 4])
        XCTAssertEqual(NeuronCards.order(peaks, tieKeys: [0, 9, 3, 3, 0]), [2, 3, 1, 0, 4])
    }

    /// Relative-position bins and windows at the sequence ends.
    func testPositionBinsAndWindows() {
        XCTAssertEqual(NeuronCards.positionBin(position: 0, length: 100), 0)
        XCTAssertEqual(NeuronCards.positionBin(position: 9, length: 100), 0)
        XCTAssertEqual(NeuronCards.positionBin(position: 10, length: 100), 1)
        XCTAssertEqual(NeuronCards.positionBin(position: 99, length: 100), 9)
        XCTAssertEqual(NeuronCards.positionBin(position: 0, length: 1), 5)
        let s = Array("ABCDEFGHIJ".utf8)
        XCTAssertEqual(NeuronCards.window(s, peak: 1, half: 3).text, "ABCDE")
        XCTAssertEqual(NeuronCards.window(s, peak: 1, half: 3).start, 0)
        XCTAssertEqual(NeuronCards.window(s, peak: 8, half: 2).text, "GHIJ")
        XCTAssertEqual(NeuronCards.window(s, peak: 5, half: 1).start, 4)
    }

    /// A tiny model whose layer-0 query unit 0 fires most on W (`SelectivityTests.handBuiltModel`):
    /// on sequences where W occurs only in a planted WWWW motif, the neuron's peak is a residue of
    /// the motif (the four W give the same activation up to rounding), the sequences with the motif are its top sequences, their windows show the
    /// motif, and enrichment at the peak finds W (q < 0.05) and nothing else. Peaks equal the
    /// maximum over the activations captured in a separate forward pass of each sequence alone.
    func testACardOfANeuronBuiltToFireOnAMotifShowsTheMotif() throws {
        let (model, w, others) = try SelectivityTests.handBuiltModel()
        var rng = SplitMix64(seed: 9)
        var sequences: [[Int32]] = [], motifStart: [Int?] = []
        for s in 0 ..< 16 {
            let n = 24 + s
            var residues = (0 ..< n).map { _ in others[rng.nextIndex(below: others.count)] }
            if s % 2 == 0 {
                let start = rng.nextIndex(below: n - 4)
                for r in start ..< start + 4 { residues[r] = w }
                motifStart.append(start)
            } else {
                motifStart.append(nil)
            }
            sequences.append([0] + residues + [2])
        }
        let neurons = [NeuronUnit(layer: 0, module: .query, unit: 0), NeuronUnit(layer: 0, module: .intermediate, unit: 3)]
        let peaks = NeuronCards.peaks(model: model, sequences: sequences, neurons: neurons, batchSize: 5)
        XCTAssertEqual(peaks.map(\.count), [16, 16])
        for (s, start) in motifStart.enumerated() {
            if let start { XCTAssertTrue((start ..< start + 4).contains(Int(peaks[0][s].residue)), "sequence \(s): the peak is a W of the motif") }
        }
        let top = Array(NeuronCards.order(peaks[0]).prefix(8))
        XCTAssertEqual(Set(top), Set(stride(from: 0, to: 16, by: 2)), "the motif sequences are the top sequences")
        // The card's pieces: windows and enrichment, with token ids as letters (HF vocabulary: W = 22).
        let letters = Array("<_>_LAGVSERTIDPKQNFYMHWC".utf8)
        let text = sequences.map { $0.dropFirst().dropLast().map { letters[Int($0)] } }
        for s in top { XCTAssertTrue(NeuronCards.window(text[s], peak: Int(peaks[0][s].residue), half: 7).text.contains("WWWW")) }
        let background = NeuronCards.background(text.joined())
        let rows = NeuronCards.enrichment(contexts: top.map { text[$0] }, peaks: top.map { Int(peaks[0][$0].residue) }, background: background)
        let significant = rows.filter { $0.qValue < 0.05 && $0.logOdds > 0 }
        XCTAssertEqual(significant.filter { $0.offset == 0 }.map(\.residue), ["W"], "W at the peak: \(significant)")
        XCTAssertTrue(significant.allSatisfy { $0.residue == "W" }, "only the motif's residue is enriched: \(significant)")
        XCTAssertEqual(significant.first { $0.offset == 0 }?.count, 8)
        // Independent: each sequence alone, the maximum over its residues.
        for (s, tokens) in sequences.enumerated() {
            _ = model.forward(TokenBatch(sequences: [tokens], padTokenId: 1), hooks: ForwardHooks(capture: [ModuleSite(layer: 0, module: .intermediate)]))
            let y = model.output(at: ModuleSite(layer: 0, module: .intermediate)), rows = model.config.intermediateSize
            let values = (1 ..< tokens.count - 1).map { y[$0 * rows + 3] }
            XCTAssertEqual(peaks[1][s].activation, values.max()!, accuracy: 1e-5 * max(1, abs(values.max()!)))
        }
    }

    /// Sequence-logo columns against Schneider & Stephens' formula worked by hand: one residue
    /// in all of n = 100 gives R = log2 20 - 19 / (200 ln 2) = 4.184872 bits, all of it on that
    /// letter; two residues half and half, one bit less, split equally; 5 of each of the 20, R
    /// below 0, clamped to 0; no counts, 0.
    func testSequenceLogoColumnsMatchSchneiderAndStephens() {
        func counts(_ pairs: [(Character, Int)]) -> [Int] {
            var c = [Int](repeating: 0, count: 20)
            for (a, k) in pairs { c[NeuronCards.aminoAcids.firstIndex(of: UInt8(a.asciiValue!))!] = k }
            return c
        }
        let e = 19 / (2 * log(2.0) * 100)
        let one = NeuronCards.logoColumn(counts([("W", 100)]))
        XCTAssertEqual(one.information, log2(20.0) - e, accuracy: 1e-12)
        XCTAssertEqual(one.information, 4.184872, accuracy: 1e-6)
        XCTAssertEqual(one.heights.filter { $0 > 0 }.count, 1)
        XCTAssertEqual(one.heights[NeuronCards.aminoAcids.firstIndex(of: UInt8(ascii: "W"))!], one.information, accuracy: 1e-12)
        let two = NeuronCards.logoColumn(counts([("C", 50), ("A", 50)]))
        XCTAssertEqual(two.information, log2(20.0) - 1 - e, accuracy: 1e-12)
        XCTAssertEqual(two.heights[0], two.information / 2, accuracy: 1e-12)
        XCTAssertEqual(two.heights[1], two.information / 2, accuracy: 1e-12)
        XCTAssertEqual(NeuronCards.logoColumn([Int](repeating: 5, count: 20)).information, 0)
        XCTAssertEqual(NeuronCards.logoColumn([Int](repeating: 0, count: 20)).information, 0)
    }
}
