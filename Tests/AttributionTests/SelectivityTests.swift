import ESM
import XCTest
@testable import Attribution

/// Motif selectivity (issue 12): the AUROC against brute-force pair counting, the per-neuron
/// values against an AUROC of activations captured independently, and a neuron built by hand to
/// fire on a motif's residue gets selectivity exactly 1.
final class SelectivityTests: XCTestCase {
    /// P(X_pos > X_neg) + 0.5 P(X_pos = X_neg) over every (positive, negative) pair.
    func bruteForce(_ v: [Float], _ positive: [Bool]) -> Double {
        var wins = 0.0, pairs = 0.0
        for i in v.indices where positive[i] {
            for j in v.indices where !positive[j] {
                pairs += 1
                wins += v[i] > v[j] ? 1 : v[i] == v[j] ? 0.5 : 0
            }
        }
        return wins / pairs
    }

    func testAUROCEqualsPairCountingWithTies() {
        var rng = SplitMix64(seed: 3)
        for trial in 0 ..< 50 {
            let n = 5 + trial * 3
            // Values on a coarse grid, so that ties are common.
            let v = (0 ..< n).map { _ in Float(rng.nextIndex(below: 7)) / 2 }
            var positive = (0 ..< n).map { _ in rng.nextIndex(below: 3) == 0 }
            positive[0] = true; positive[1] = false
            XCTAssertEqual(MotifSelectivity.auroc(v, positive: positive)!, bruteForce(v, positive), accuracy: 1e-12, "trial \(trial)")
        }
        XCTAssertNil(MotifSelectivity.auroc([1, 2], positive: [true, true]))
        XCTAssertEqual(MotifSelectivity.auroc([1, 2, 3], positive: [false, false, true]), 1)
        XCTAssertEqual(MotifSelectivity.auroc([3, 2, 1], positive: [false, false, true]), 0)
        // Several groups from one sort equal one group at a time.
        let v: [Float] = [0.1, 0.5, 0.5, 0.9, 0.2, 0.7], labels = [0, 1, -1, 0, 1, 2]
        let all = MotifSelectivity.aurocs(v, labels: labels, groups: 4)
        for g in 0 ..< 3 { XCTAssertEqual(all[g]!, bruteForce(v, labels.map { $0 == g }), accuracy: 1e-12) }
        XCTAssertNil(all[3])
    }

    /// A tiny random model (seed 11) whose layer-0 query units 0 and 1 are set to the LayerNorm
    /// outputs at a W and at a C position (read from the model itself), so unit 0 fires most on W
    /// and unit 1 on C; and the token ids of W (22) and of the residues other than W and C.
    static func handBuiltModel() throws -> (model: ESMClassifier, w: Int32, others: [Int32]) {
        let config = try ESMConfig.preset("tiny", numLabels: 3, pooling: .mean)
        let model = ESMClassifier(config: config, seed: 11)
        let w: Int32 = 22, c: Int32 = 23, others: [Int32] = Array(4 ... 21)   // HF ids: W = 22, C = 23; L ... H
        _ = model.forward(TokenBatch(sequences: [[0, w, c, 2]], padTokenId: 1))
        let ln = model.input(at: ModuleSite(layer: 0, module: .query))   // (1, 4, H)
        let h = config.hiddenSize
        var p = model.parameters
        let qw = p.layout.spec(layer: 0, .queryWeight), qb = p.layout.spec(layer: 0, .queryBias)
        for unit in 0 ..< 2 {
            for j in 0 ..< h { p.values[qw.offset + unit * h + j] = ln[(unit + 1) * h + j] }
            p.values[qb.offset + unit] = 0
        }
        model.parameters = p
        return (model, w, others)
    }

    /// A tiny random model whose layer-0 query unit 0 is set to the LayerNorm output of residue W
    /// (its input at every position depends on that position's token only, and every LayerNorm
    /// output has the same norm, so W positions give the largest dot product): with W only inside
    /// the motifs, its selectivity for them is 1; every neuron's value equals the AUROC of its
    /// activations captured by a separate forward pass.
    func testANeuronBuiltToFireOnTheMotifHasSelectivityOne() throws {
        let (model, w, others) = try Self.handBuiltModel()
        let config = model.config, c: Int32 = 23

        var rng = SplitMix64(seed: 5)
        var sequences: [MotifSelectivity.Sequence] = []
        for s in 0 ..< 12 {
            let n = 20 + s
            var residues = (0 ..< n).map { _ in others[rng.nextIndex(below: others.count)] }
            var group = [Int](repeating: -1, count: n)
            let start = rng.nextIndex(below: n - 4)
            for r in start ..< start + 4 { residues[r] = s % 2 == 0 ? w : c; group[r] = s % 2 }   // group 0: WWWW, group 1: CCCC
            sequences.append(MotifSelectivity.Sequence(tokens: [0] + residues + [2], group: group))
        }
        let layout = try ScoreLayout(config: config, modules: [.query, .intermediate], granularity: .neuron)
        let sel = MotifSelectivity.compute(model: model, sequences: sequences, layout: layout, groups: 2, batchSize: 5)
        XCTAssertEqual(sel.count, layout.count)
        XCTAssertEqual(sel[0][0], 1)
        XCTAssertEqual(sel[1][1], 1)
        XCTAssertLessThan(sel[0][1]!, 1, "the W neuron is not perfectly selective for the C motif")
        let others1 = sel.dropFirst(2).compactMap { $0[0] }
        XCTAssertLessThan(others1.reduce(0, +) / Double(others1.count), 0.9, "the other neurons are not all selective")
        // Independent: the same batches of 5, activations read back one sequence at a time from
        // the padded (B, T, rows) outputs, AUROC by pair counting.
        var acts = [[Float]](repeating: [], count: layout.count), labels: [Int] = []
        for chunkStart in stride(from: 0, to: sequences.count, by: 5) {
            let chunk = Array(sequences[chunkStart ..< min(chunkStart + 5, sequences.count)])
            let batch = TokenBatch(sequences: chunk.map(\.tokens), padTokenId: 1)
            _ = model.forward(batch, hooks: ForwardHooks(capture: Set(layout.sites)))
            for (b, s) in chunk.enumerated() {
                for block in layout.blocks {
                    let y = model.output(at: block.site), t = batch.length
                    for r in 0 ..< s.group.count { for i in 0 ..< block.rows { acts[block.offset + i].append(y[(b * t + r + 1) * block.rows + i]) } }
                }
                labels += s.group
            }
        }
        for k in stride(from: 0, to: layout.count, by: 7) {
            for g in 0 ..< 2 {
                XCTAssertEqual(sel[k][g]!, bruteForce(acts[k], labels.map { $0 == g }), accuracy: 1e-9, "neuron \(k) group \(g)")
            }
        }
    }
}
