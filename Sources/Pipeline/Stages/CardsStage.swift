import Attribution
import ESM
import Foundation
import ProteinData
import Store

/// Stage 11: neuron cards, what each top neuron responds to (issue 12; the examples follow
/// Neuroscope's max-activating examples and InterProt's quantile examples for ESM-2 features).
///
/// The neurons: for every stored ranking (seed 0, not random) its `cards.top` best neurons, or
/// for a weight ranking the output units (rows) of its best-ranked weights, the first
/// `cards.top` distinct rows in rank order (table `card_neurons`). Their union is measured on
/// every sequence of `cards.split` (default train), in shards of `cards.shard_size` sequences
/// committed one by one (a killed run resumes at the first missing shard; memory is the
/// neurons x sequences peaks, not the activations). A neuron's summary of a sequence is its
/// peak (`NeuronPeak`: the largest activation over the residues and where). Peaks within
/// `NeuronCards.tieTolerance` are ties (`snapTies`), ordered by the FNV-1a hash of the sequence
/// ID, so a card does not change with the batch shape and tied top sequences are a fixed sample.
///
/// Each card (migration 0013 documents every column): the `cards.examples` top sequences by
/// peak with the window of +-7 residues around the peak, one sequence at each peak quantile
/// 0.9 ... 0.1; over the `cards.top_sequences` top sequences, residue enrichment at offsets
/// -3 ... 3 from the peak against the split's residue composition (exact binomial test,
/// Benjamini-Hochberg q), the relative position of the peak (ten bins), the classes and the EC
/// numbers at level 2 and 3; over all sequences, per class the mean peak and the one-vs-rest
/// AUROC of the peak. On a planted run each example says which planted motif holds its peak,
/// and random control neurons of every linear map, measured in the same shards, test whether a
/// ranking's card windows peak in the planted motifs more often than random neurons' do
/// (`CardControls`; tables `card_controls`, `card_control_classes`, `card_motif_tests`).
enum CardsStage: StageImplementation {
    /// Peak quantiles of the quantile examples.
    static let quantiles = [0.9, 0.75, 0.5, 0.25, 0.1]
    /// Residues each side of the peak in an example window.
    static let halfWindow = 7

    static func parameters(_ ctx: RunContext) throws -> [(name: String, value: String)] {
        let c = ctx.spec.cards
        // cards.control only acts on a planted run: elsewhere it is not part of the key.
        return [("cards.split", c.split.rawValue), ("cards.top", "\(c.top)"), ("cards.examples", "\(c.examples)"),
                ("cards.top_sequences", "\(c.topSequences)"), ("cards.shard_size", "\(c.shardSize)")]
            + (ctx.spec.inputs.plantedMotifs == nil ? [] : [("cards.control", "\(c.control)")])
            + [("cards.batch_size", "\(ctx.spec.train.batchSize)")]   // the batch shape changes the activations' last bits
    }

    static func run(_ ctx: RunContext, key: String) throws -> Int {
        let start = Date()
        let spec = ctx.spec.cards
        func ledger(_ rows: Int) -> StageRecord {
            StageRecord(stage: Stage.cards.rawValue, contentKey: key, rowsWritten: rows, seconds: Date().timeIntervalSince(start))
        }
        let model = try ModelStore.finalModel(ctx, stage: Stage.cards.rawValue)
        let (list, cardUnits) = try cardList(ctx, config: model.config)
        let ids = try ctx.db.sequenceIDs(split: spec.split.rawValue)
        // On a planted run, random control neurons of every linear map, measured with the card neurons.
        let planted = !(try ctx.db.plantedMotifs()).isEmpty
        let perModule = max(spec.control, CardControls.poolFactor * spec.top)
        let controls = planted && spec.control > 0 && !cardUnits.isEmpty ? CardControls.sample(config: model.config, perModule: perModule) : []
        let units = Array(Set(cardUnits + controls)).sorted()
        guard !cardUnits.isEmpty, !ids.isEmpty else {
            ctx.log(cardUnits.isEmpty ? "  no ranking to make cards for (cards.top \(spec.top))" : "  the \(spec.split.rawValue) split is empty: no cards")
            try ctx.db.commitCards(neurons: [], cards: [], ledger: ledger(0))
            return 0
        }
        let tokens = try ctx.db.tokens()
        let sequences = try ids.map { id -> [Int32] in
            guard let t = tokens[id] else { throw StoreError.corrupt("sequence \(id) of the \(spec.split.rawValue) split has no tokens") }
            return t.ids
        }
        // The activation pass, shard by shard.
        let shardCount = (ids.count + spec.shardSize - 1) / spec.shardSize
        let stale = try ctx.db.discardCardShards(otherThan: key)
        if stale > 0 { ctx.log("  discarded \(stale) card shards computed with another model or other parameters") }
        let done = try ctx.db.cardShardIndices()
        ctx.log("  cards for \(cardUnits.count) neurons of \(Set(list.map(\.ranking)).count) rankings"
            + (controls.isEmpty ? "" : " (and \(units.count - cardUnits.count) more control neurons: \(perModule) per linear map or all its neurons, \(controls.count) in all)") + " on \(ids.count) \(spec.split.rawValue) sequences "
            + "(\(shardCount) shards, \(done.count) done)")
        for shard in 0 ..< shardCount where !done.contains(shard) {
            let t0 = Date()
            let range = shard * spec.shardSize ..< min(ids.count, (shard + 1) * spec.shardSize)
            let peaks = NeuronCards.peaks(model: model, sequences: Array(sequences[range]), neurons: units, batchSize: ctx.spec.train.batchSize)
            try ctx.db.commitCardShard(CardShardRecord(shardIndex: shard, contentKey: key, nSequences: range.count,
                                                      activations: peaks.flatMap { $0.map(\.activation) }, residues: peaks.flatMap { $0.map(\.residue) },
                                                      seconds: Date().timeIntervalSince(t0)))
            DebugHooks.pause(ctx.debug.shardDelayMilliseconds)
        }
        // Gather the peaks neuron by neuron.
        var peaks = [[NeuronPeak]](repeating: [], count: units.count)
        let shards = try ctx.db.cardShards()
        guard shards.map(\.shardIndex) == Array(0 ..< shardCount) else {
            throw StoreError.corrupt("card shards \(shards.map(\.shardIndex)) are not 0..<\(shardCount); run with --force cards")
        }
        for s in shards {
            let expected = min(spec.shardSize, ids.count - s.shardIndex * spec.shardSize)
            guard s.nSequences == expected, s.activations.count == expected * units.count else {
                throw StoreError.corrupt("card shard \(s.shardIndex) holds \(s.activations.count) peaks, expected \(expected) x \(units.count); run with --force cards")
            }
            for n in units.indices {
                for j in 0 ..< expected { peaks[n].append(NeuronPeak(activation: s.activations[n * expected + j], residue: s.residues[n * expected + j])) }
            }
        }
        let builder = try CardBuilder(ctx, ids: ids, tokens: tokens)
        let isCard = Set(cardUnits)
        let cards = units.enumerated().filter { isCard.contains($0.element) }.map { builder.card(for: $0.element, index: $0.offset, peaks: peaks[$0.offset]) }
        var rows = list.count + cards.reduce(0) { $0 + 1 + $1.examples.count + $1.enrichment.count + $1.positionBins.count + $1.classes.count + $1.subclasses.count }
        // The control: where every card and control neuron's top windows peak, and the tests.
        var controlRecords: [CardControlRecord] = [], tests: [CardMotifTestRecord] = []
        if !controls.isEmpty {
            let classOf = Dictionary(uniqueKeysWithValues: try ctx.db.classes().map { ($0.ecLabel, $0.classIndex) })
            var motifs: [NeuronUnit: [PlantedMotifRecord?]] = [:]
            for (i, u) in units.enumerated() { motifs[u] = builder.topMotifs(peaks: peaks[i]) }
            let index = Dictionary(uniqueKeysWithValues: units.enumerated().map { ($1, $0) })
            controlRecords = controls.map { u in
                let m = motifs[u]!
                var byClass: [Int: Int] = [:]
                for label in m.compactMap({ $0?.ecLabel }) { if let c = classOf[label] { byClass[c, default: 0] += 1 } }
                return CardControlRecord(neuron: NeuronKey(layer: u.layer, module: u.module.rawValue, unit: u.unit), cardIndex: index[u]!, windows: m.count,
                                         classMotifWindows: m.filter { $0 != nil && $0!.ecLabel != nil }.count,
                                         decoyWindows: m.filter { $0 != nil && $0!.ecLabel == nil }.count, classWindows: byClass)
            }
            tests = CardControls.tests(list: list, motifs: motifs, controls: controls, classOf: classOf)
            rows += controlRecords.count + tests.count
            for t in tests where t.motif == CardMotif.classMotif.rawValue && t.ranking.targetClass < 0 {
                ctx.log(String(format: "  %@/%@: %.0f%% of card windows peak in a class motif, random neurons %.0f%% ± %.0f%% (p = %.3g)", t.ranking.method,
                               t.ranking.granularity, 100 * t.share, 100 * t.randomMean, 100 * t.randomSD, t.pValue))
            }
        }
        try ctx.db.commitCards(neurons: list, cards: cards, controls: controlRecords, motifTests: tests, ledger: ledger(rows))
        return rows
    }

    /// The first `count` distinct output units of a ranking in rank order, with the rank of each
    /// one's best element: for a neuron ranking its top `count` neurons; for a weight ranking the
    /// rows of its best-ranked weights (fewer when the ranking has fewer units).
    /// - Precondition: `layout` is the one `scores` were stored with.
    static func topUnits(scores: [Float], layout: ScoreSetLayout, count: Int) -> [(neuron: NeuronKey, bestRank: Int)] {
        let weights = (layout.blocks.first?.cols ?? 1) > 1
        var fetch = min(scores.count, weights ? count * 8 : count)
        var found: [NeuronKey: Int] = [:], order: [NeuronKey] = []
        // Walk the ranking from the top, fetching more until `count` distinct units are found.
        while true {
            found = [:]; order = []
            for (r, i) in ScoreRanking.top(scores, count: fetch).enumerated() {
                let b = layout.blocks.last { $0.offset <= Int(i) }!
                let k = NeuronKey(layer: b.layer, module: b.module, unit: (Int(i) - b.offset) / b.cols)
                if found[k] == nil { found[k] = r + 1; order.append(k) }
                if order.count == count { break }
            }
            if order.count == count || fetch >= scores.count { break }
            fetch = min(scores.count, fetch * 4)
        }
        return order.map { ($0, found[$0]!) }
    }

    /// Which neurons get cards (see the type's documentation): the rows of `card_neurons` and
    /// the distinct neurons among them in canonical order (their card index).
    /// - Throws: `StoreError.corrupt` for a stored layout that names an unknown module or does
    ///   not match its scores.
    static func cardList(_ ctx: RunContext, config: ESMConfig) throws -> ([CardNeuronRecord], [NeuronUnit]) {
        let top = ctx.spec.cards.top
        guard top > 0 else { return ([], []) }
        var list: [CardNeuronRecord] = []
        for id in try ctx.db.scoreSets().filter({ $0.method != Baseline.random && $0.seed == 0 }).sorted() {
            guard let layout = try ctx.db.scoreLayout(id) else { continue }
            let scores = try ctx.db.scores(id)
            guard let last = layout.blocks.last, last.offset + last.rows * last.cols == scores.count else {
                throw StoreError.corrupt("the scores of \(id) do not match its layout; run with --force attribute")
            }
            for b in layout.blocks where LinearModule(rawValue: b.module) == nil || b.layer >= config.numHiddenLayers {
                throw StoreError.corrupt("the layout of \(id) names layer \(b.layer) \(b.module), which the model does not have")
            }
            for (c, u) in topUnits(scores: scores, layout: layout, count: top).enumerated() {
                list.append(CardNeuronRecord(ranking: id, cardRank: c + 1, neuron: u.neuron, bestRank: u.bestRank))
            }
        }
        let units = Set(list.map(\.neuron)).map { NeuronUnit(layer: $0.layer, module: LinearModule(rawValue: $0.module)!, unit: $0.unit) }.sorted()
        return (list, units)
    }
}

/// Builds cards from peaks: everything a card needs from the database, read once.
struct CardBuilder {
    let split: SplitRole
    let examples: Int, topSequences: Int
    let ids: [String]
    /// Per sequence of the split: its residues (original, uncropped), the residues the model saw
    /// (`model.max_length`'s crop), the first of them, class, EC numbers.
    let residues: [[UInt8]], kept: [[UInt8]], residueStart: [Int], classIndex: [Int], ecLabel: [String], ecNumbers: [[ECNumber]]
    /// Classes with at least one sequence in the split.
    let presentClasses: [Int]
    /// Per sequence, the FNV-1a hash of its ID: how tied peaks are ordered.
    let tieKeys: [UInt64]
    let classCount: Int
    let background: [Double]
    /// Level (2, 3) -> EC number -> sequences of the split carrying it.
    let splitCounts: [Int: [String: Int]]
    /// Sequence -> its planted motifs.
    let motifs: [String: [PlantedMotifRecord]]

    /// Reads the split's sequences, classes and planted motifs.
    /// - Throws: `StoreError.corrupt` when a sequence of the split has no record or class.
    init(_ ctx: RunContext, ids: [String], tokens: [String: TokenRecord]) throws {
        split = ctx.spec.cards.split
        examples = ctx.spec.cards.examples; topSequences = ctx.spec.cards.topSequences
        self.ids = ids
        let records = Dictionary(uniqueKeysWithValues: try ctx.db.sequences().map { ($0.id, $0) })
        let classes = try ctx.db.classes()
        let index = Dictionary(uniqueKeysWithValues: classes.map { ($0.ecLabel, $0.classIndex) })
        classCount = classes.count
        var residues: [[UInt8]] = [], keptResidues: [[UInt8]] = [], starts: [Int] = [], labels: [Int] = [], ecLabels: [String] = [], ecs: [[ECNumber]] = []
        var counts: [Int: [String: Int]] = [2: [:], 3: [:]]
        for id in ids {
            guard let r = records[id], let t = tokens[id], let c = index[r.ecLabel] else {
                throw StoreError.corrupt("sequence \(id) of the \(ctx.spec.cards.split.rawValue) split has no record, tokens or class")
            }
            let bytes = Array(r.sequence.utf8)
            residues.append(bytes); starts.append(t.residueStart); labels.append(c); ecLabels.append(r.ecLabel)
            keptResidues.append(Array(bytes[min(bytes.count, t.residueStart) ..< min(bytes.count, t.residueEnd)]))
            let numbers = r.ecNumbers.compactMap { try? ECNumber($0) }
            ecs.append(numbers)
            for level in [2, 3] {
                for e in Self.prefixes(numbers, level: level) { counts[level]![e, default: 0] += 1 }
            }
        }
        self.residues = residues; kept = keptResidues; residueStart = starts; classIndex = labels; ecLabel = ecLabels; ecNumbers = ecs
        presentClasses = Array(Set(labels)).sorted()
        tieKeys = ids.map(NeuronCards.fnv1a)
        background = NeuronCards.background(keptResidues.joined())
        splitCounts = counts
        var byID: [String: [PlantedMotifRecord]] = [:]
        for m in try ctx.db.plantedMotifs() { byID[m.sequenceID, default: []].append(m) }
        motifs = byID
    }

    /// The distinct EC numbers at `level` of a sequence's numbers that are known to that depth.
    static func prefixes(_ numbers: [ECNumber], level: Int) -> [String] {
        Array(Set(numbers.filter { $0.knownDepth >= level }.map { $0.truncated(toLevel: level).description })).sorted()
    }

    /// The planted motif (class motif or decoy) holding 0-based residue `position` of sequence
    /// `s` of the split, or nil.
    func motif(sequence s: Int, position: Int) -> PlantedMotifRecord? {
        motifs[ids[s]]?.first { $0.start <= position + 1 && position + 1 <= $0.end }
    }

    /// The planted motif holding the peak of each of a neuron's `examples` top sequences (nil:
    /// none), in the order its card would list them (ties snapped and ordered as in `card`).
    func topMotifs(peaks raw: [NeuronPeak]) -> [PlantedMotifRecord?] {
        let (peaks, order) = ranked(raw)
        return order.prefix(examples).map { motif(sequence: $0, position: residueStart[$0] + Int(peaks[$0].residue)) }
    }

    /// A neuron's peaks with near-equal ones made equal (`NeuronCards.snapTies`) and the
    /// sequences in card order (highest peak first, ties by the FNV-1a hash of the ID).
    func ranked(_ raw: [NeuronPeak]) -> (peaks: [NeuronPeak], order: [Int]) {
        let snapped = NeuronCards.snapTies(raw.map(\.activation))
        let peaks = zip(raw, snapped).map { NeuronPeak(activation: $1, residue: $0.residue) }
        return (peaks, NeuronCards.order(peaks, tieKeys: tieKeys))
    }

    /// The card of `neuron` (card index `index`) from its peak on every sequence of the split
    /// (near-equal peaks made equal first: `NeuronCards.snapTies`).
    func card(for neuron: NeuronUnit, index: Int, peaks raw: [NeuronPeak]) -> NeuronCardRecord {
        let (peaks, order) = ranked(raw)
        let n = peaks.count
        let nTop = min(topSequences, n)
        let top = Array(order.prefix(nTop))
        let values = peaks.map { Double($0.activation) }
        let (mean, sd) = EvidenceStatistics.meanAndSD(values)
        // Position of the peak in the original sequence, 0-based.
        func position(_ s: Int) -> Int { residueStart[s] + Int(peaks[s].residue) }
        // Where among the residues the model saw (the crop) the peak falls.
        var bins = [Int](repeating: 0, count: 10)
        for s in top { bins[NeuronCards.positionBin(position: Int(peaks[s].residue), length: kept[s].count)] += 1 }
        // Class specificity.
        let aurocs = MotifSelectivity.aurocs(peaks.map(\.activation), labels: classIndex, groups: classCount)
        var topCounts = [Int](repeating: 0, count: classCount)
        for s in top { topCounts[classIndex[s]] += 1 }
        let classes = presentClasses.map { c -> NeuronCardRecord.ClassProfile in
            let v = values.indices.filter { classIndex[$0] == c }.map { values[$0] }
            let (m, d) = EvidenceStatistics.meanAndSD(v)
            return .init(classIndex: c, nSequences: v.count, peakMean: m, peakSD: d ?? 0, auroc: aurocs[c], topCount: topCounts[c])
        }
        let best = classes.filter { $0.auroc != nil }.max { ($0.auroc!, -$0.classIndex) < ($1.auroc!, -$1.classIndex) }
        var card = NeuronCardRecord(neuron: NeuronKey(layer: neuron.layer, module: neuron.module.rawValue, unit: neuron.unit), cardIndex: index,
                                    split: split.rawValue, nSequences: n, nTop: nTop, peakMax: values[order[0]], peakMean: mean, peakSD: sd ?? 0,
                                    nTerminalShare: Double(bins[0]) / Double(nTop), cTerminalShare: Double(bins[9]) / Double(nTop),
                                    bestClass: best?.classIndex, bestAUROC: best?.auroc,
                                    topClassEntropy: NeuronCards.entropyBits(topCounts), topClassEntropyMax: log2(Double(max(1, presentClasses.count))))
        card.positionBins = bins
        card.classes = classes
        func example(_ s: Int, kind: String, rank: Int, quantile: Double?) -> NeuronCardRecord.Example {
            let p = position(s)
            let w = NeuronCards.window(residues[s], peak: p, half: CardsStage.halfWindow)
            // Residues the model did not see (cropped away) in lower case.
            let cropStart = residueStart[s], cropEnd = residueStart[s] + kept[s].count
            let text = String(w.text.enumerated().map { i, ch in (w.start + i < cropStart || w.start + i >= cropEnd) ? Character(ch.lowercased()) : ch })
            let motif = motif(sequence: s, position: p)
            return .init(kind: kind, rank: rank, quantile: quantile, sequenceID: ids[s], ecLabel: ecLabel[s], peakPosition: p + 1,
                         activation: values[s], window: text, windowStart: w.start + 1,
                         motifPattern: motif?.pattern, motifIsDecoy: motif.map { $0.ecLabel == nil })
        }
        card.examples = order.prefix(examples).enumerated().map { example($1, kind: "top", rank: $0 + 1, quantile: nil) }
            + CardsStage.quantiles.enumerated().map { example(NeuronCards.quantileIndex(peaks, $1, tieKeys: tieKeys), kind: "quantile", rank: $0 + 1, quantile: $1) }
        card.enrichment = NeuronCards.enrichment(contexts: top.map { kept[$0] }, peaks: top.map { Int(peaks[$0].residue) }, background: background).map {
            .init(offset: $0.offset, residue: String($0.residue), count: $0.count, n: $0.n, background: $0.background, logOdds: $0.logOdds,
                  pValue: $0.pValue, qValue: $0.qValue)
        }
        for level in [2, 3] {
            var counts: [String: Int] = [:]
            for s in top { for e in Self.prefixes(ecNumbers[s], level: level) { counts[e, default: 0] += 1 } }
            card.subclasses += counts.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map {
                .init(level: level, ecNumber: $0.key, topCount: $0.value, splitCount: splitCounts[level]![$0.key] ?? 0)
            }
        }
        return card
    }
}
