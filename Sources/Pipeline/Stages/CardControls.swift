import Attribution
import ESM
import Foundation
import Store

/// Where a card's top window peaks, for the motif-overlap test (table `card_motif_tests.motif`).
enum CardMotif: String, CaseIterable {
    /// Inside any planted class motif.
    case classMotif = "class"
    /// Inside the motif of the ranking's own class (per-class rankings only).
    case ownClass = "own_class"
    /// Inside a decoy motif (planted in every class, tied to none).
    case decoy
}

/// The random-neuron control of the cards' motif overlap on a planted run (issue 12): is the
/// share of a ranking's card windows that peak inside a planted motif larger than random
/// neurons of the same modules give? The observed statistic is the mean over the ranking's card
/// neurons of the share of their `cards.examples` top windows peaking in the motif; the null is
/// the same mean over `randomSets` random sets of control neurons drawn module by module in the
/// ranking's numbers, without replacement within a module (as the planted recovery table draws
/// random neurons), with the one-sided permutation p-value (1 + #{null >= observed}) / (1 + N)
/// (Phipson & Smyth 2010). The control neurons are a seeded sample of each linear map's neurons
/// over all layers (every neuron of the map when it has fewer), measured in the same shards as
/// the cards, so their top windows are ordered exactly as a card's.
enum CardControls {
    /// Random sets per ranking and motif kind.
    static let randomSets = 1000
    /// Seed of the control sample (fixed: the control does not change with the spec's seeds).
    static let seed: UInt64 = 12
    /// Each map's control pool holds at least this many times `cards.top` neurons (or all of the
    /// map's): random sets of up to `top` drawn without replacement from a pool of N neurons have
    /// a spread sqrt((N - n) / (N - 1)) of the whole map's, at least 0.89 for N >= 5n, so the
    /// null is not made narrower than it is by a small pool. A pool that is the whole map is exact.
    static let poolFactor = 5

    /// `perModule` neurons of each of the six linear maps, drawn uniformly without replacement
    /// from the module's neurons of every layer (all of them when there are fewer), canonical order.
    static func sample(config: ESMConfig, perModule: Int) -> [NeuronUnit] {
        var rng = SplitMix64(seed: seed)
        var out: [NeuronUnit] = []
        for module in LinearModule.allCases {
            var pool = (0 ..< config.numHiddenLayers).flatMap { l in (0 ..< module.outFeatures(config)).map { NeuronUnit(layer: l, module: module, unit: $0) } }
            let n = min(perModule, pool.count)
            for j in 0 ..< n { pool.swapAt(j, j + rng.nextIndex(below: pool.count - j)) }   // partial Fisher-Yates
            out += pool.prefix(n)
        }
        return out.sorted()
    }

    /// Per neuron, the share of its top windows peaking in `kind`'s motif (`ownClass`: class
    /// `target`'s motif), from the planted motif at each window's peak (nil: none) and the
    /// class index of each class label.
    static func share(_ motifs: [PlantedMotifRecord?], kind: CardMotif, target: Int, classOf: [String: Int]) -> Double {
        guard !motifs.isEmpty else { return 0 }
        let hits = motifs.filter { m in
            guard let m else { return false }
            switch kind {
            case .classMotif: return m.ecLabel != nil
            case .ownClass: return m.ecLabel.flatMap { classOf[$0] } == target
            case .decoy: return m.ecLabel == nil
            }
        }.count
        return Double(hits) / Double(motifs.count)
    }

    /// The tests of every ranking with cards (see the type's documentation).
    /// - Parameters:
    ///   - list: the card list (`card_neurons`), in ranking order.
    ///   - motifs: per neuron (card and control), the planted motif at each top window's peak.
    ///   - controls: the control neurons.
    ///   - classOf: class label -> class index.
    /// - Precondition: every card neuron and control neuron has an entry in `motifs`, and each
    ///   module's control pool holds at least as many neurons as any ranking has cards in it.
    static func tests(list: [CardNeuronRecord], motifs: [NeuronUnit: [PlantedMotifRecord?]], controls: [NeuronUnit],
                      classOf: [String: Int]) -> [CardMotifTestRecord] {
        var pools: [LinearModule: [NeuronUnit]] = [:]
        for c in controls { pools[c.module, default: []].append(c) }
        var rankings: [RankingID] = []
        for r in list where !rankings.contains(r.ranking) { rankings.append(r.ranking) }
        var out: [CardMotifTestRecord] = []
        for (n, id) in rankings.enumerated() {
            let neurons = list.filter { $0.ranking == id }.map { NeuronUnit(layer: $0.neuron.layer, module: LinearModule(rawValue: $0.neuron.module)!, unit: $0.neuron.unit) }
            var counts: [LinearModule: Int] = [:]
            for u in neurons { counts[u.module, default: 0] += 1 }
            for kind in CardMotif.allCases where kind != .ownClass || id.targetClass >= 0 {
                let shares = motifs.mapValues { share($0, kind: kind, target: id.targetClass, classOf: classOf) }
                func mean(_ set: [NeuronUnit]) -> Double { set.reduce(0) { $0 + shares[$1]! } / Double(set.count) }
                let observed = mean(neurons)
                var rng = SplitMix64(seed: 1 + UInt64(n))
                var null: [Double] = []
                null.reserveCapacity(randomSets)
                for _ in 0 ..< randomSets {
                    var set: [NeuronUnit] = []
                    for (m, c) in counts.sorted(by: { $0.key < $1.key }) {
                        var pool = pools[m]!
                        precondition(pool.count >= c, "the control pool of \(m) has \(pool.count) neurons, the ranking \(c) cards there")
                        for j in 0 ..< c { pool.swapAt(j, j + rng.nextIndex(below: pool.count - j)); set.append(pool[j]) }
                    }
                    null.append(mean(set))
                }
                let (m, sd) = EvidenceStatistics.meanAndSD(null)
                out.append(CardMotifTestRecord(ranking: id, motif: kind.rawValue, nNeurons: neurons.count, share: observed, randomMean: m, randomSD: sd ?? 0,
                                               nRandom: randomSets, pValue: EvidenceStatistics.permutationPValue(observed: observed, null: null)))
            }
        }
        return out
    }
}
