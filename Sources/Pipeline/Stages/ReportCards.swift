import Attribution
import Foundation
import Store

extension RunReport {
    /// Cards shown in the report per true-class ranking.
    static let cardsShown = 3

    /// What the top neurons respond to (the cards stage's tables): a summary over every card,
    /// each true-class ranking's first `cardsShown` cards (best class, enriched residues at the
    /// peak, position, top windows), and on a planted run the share of the card neurons' top
    /// windows that peak inside a planted motif against the share of residues there; "" when the
    /// run has no cards.
    /// - Throws: `StoreError` on read failures.
    static func cards(db: RunDatabase, classes: [ClassRecord], label: (String) -> String) throws -> String {
        let list = try db.cardNeurons()
        guard !list.isEmpty else {
            guard try db.stage(Stage.cards.rawValue) != nil else { return "" }
            return "## What the top neurons respond to (neuron cards)\n\nNo cards were made: `cards.top` is 0, or the run has no ranking.\n\n"
        }
        let neurons = Array(Set(list.map(\.neuron))).sorted()
        var views: [NeuronKey: NeuronCardView] = [:]
        for k in neurons {
            if let c = try db.neuronCard(k) { views[k] = NeuronCardView(card: c, rankings: list.filter { $0.neuron == k }, classes: classes) }
        }
        guard let any = views.values.first?.card else { return "" }
        func ranking(_ r: RankingID) -> String {
            label(r.method) + (r.granularity == "weight" ? " (weights)" : "")
                + (r.targetClass < 0 ? "" : ", class " + (classes.first { $0.classIndex == r.targetClass }?.ecLabel ?? "\(r.targetClass)"))
        }
        var md = "## What the top neurons respond to (neuron cards)\n\n"
        md += "A card for each of the top \(Set(list.map(\.cardRank)).count) neurons of every ranking (\(neurons.count) neurons; for a weight ranking, "
        md += "the output units of its best-ranked weights), over the \(any.nSequences) \(any.split) sequences. A neuron's peak on a sequence is its "
        md += "largest activation over the residues; the card lists the sequences with the highest peaks (the window is +-7 residues, the peak in "
        md += "[brackets], residues cropped away by `model.max_length` in lower case: the model did not see them), and over the top \(any.nTop): the amino acids enriched at offsets -3 ... +3 from the peak against the split's composition "
        md += "(exact binomial test, Benjamini-Hochberg q over the 140 tests of a card), where in the sequence the peak falls, and how well the peak "
        md += "tells each class from the rest (AUROC over all sequences). Every card: `kneuron neuron --db RUN --layer L --module M --unit U`; "
        md += "tables `neuron_profiles`, `neuron_examples`, `neuron_enrichment`, `neuron_classes`, `neuron_positions`, `neuron_subclasses`.\n\n"
        let all = neurons.compactMap { views[$0] }
        let withResidue = all.filter { v in v.enriched.contains { $0.offset == 0 } }.count
        let aurocs = all.compactMap(\.card.bestAUROC).sorted()
        if !aurocs.isEmpty {
            md += "\(withResidue) of \(all.count) card neurons have an amino acid enriched at the peak (q < \(String(format: "%g", NeuronCardView.alpha))). "
            md += "Best one-vs-rest class AUROC of a neuron's peak (0.5 = the peak says nothing about the class): all \(all.count) "
                + medianRange(aurocs)
            var seen: [RankingID] = []
            for r in list where r.ranking.targetClass < 0 && !seen.contains(r.ranking) { seen.append(r.ranking) }
            for id in seen {
                let mine = list.filter { $0.ranking == id }.compactMap { views[$0.neuron]?.card.bestAUROC }.sorted()
                if !mine.isEmpty { md += "; \(ranking(id)) (\(mine.count)) " + medianRange(mine) }
            }
            md += ".\n\n"
            let tied = all.filter(\.topTied).count
            if tied > 0 {
                md += "\(tied) card neurons have their largest peak on more sequences than their examples show (a residue detector fires equally "
                md += "on every sequence with its residue): their examples and top-sequence counts are a pseudo-random sample of the tied sequences.\n\n"
            }
        }
        md += "| ranking | # | neuron | best class (AUROC) | enriched at the peak | peak in N / C tenth | top windows |\n|---|---|---|---|---|---|---|\n"
        for r in list where r.ranking.targetClass < 0 && r.cardRank <= cardsShown {
            guard let v = views[r.neuron] else { continue }
            let c = v.card
            let best = c.bestClass.map { b in "\(v.className(b)) (\(fmt(c.bestAUROC ?? .nan, 2)))" } ?? ""
            let atPeak = v.enriched.filter { $0.offset == 0 }.prefix(3).map { "\($0.residue) \($0.count)/\($0.n)" }.joined(separator: ", ")
            let windows = c.examples.filter { $0.kind == "top" }.prefix(3).map { "`\(NeuronCardView.marked($0))`" }.joined(separator: " ")
            md += "| \(ranking(r.ranking)) | \(r.cardRank) | layer \(r.neuron.layer) \(r.neuron.module) \(r.neuron.unit) | \(best) | \(atPeak.isEmpty ? "none" : atPeak) | "
                + "\(fmt(100 * c.nTerminalShare, 0))% / \(fmt(100 * c.cTerminalShare, 0))% | \(windows) |\n"
        }
        md += "\n"
        md += try cardMotifOverlap(db: db, split: any.split, list: list, views: views, classes: classes, ranking: ranking)
        return md
    }

    /// `median 0.51, range 0.50 ... 0.73` of sorted values.
    static func medianRange(_ sorted: [Double]) -> String {
        let m = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        return "median \(fmt(m, 2)), range \(fmt(sorted.first!, 2)) ... \(fmt(sorted.last!, 2))"
    }

    /// On a planted run: per ranking, the share of its card neurons' top windows whose peak
    /// residue is inside a planted class motif (with a 95% bootstrap interval over its neurons,
    /// 1000 resamples: the windows of one neuron are not independent), inside the ranking's own
    /// class's motif (per-class rankings) and inside a decoy, beside the share of the card split's
    /// residues inside them (what a neuron peaking at random residues would get) and, for each,
    /// random control neurons' share and the permutation p-value (`card_motif_tests`); "" otherwise.
    static func cardMotifOverlap(db: RunDatabase, split: String, list: [CardNeuronRecord], views: [NeuronKey: NeuronCardView],
                                 classes: [ClassRecord], ranking: (RankingID) -> String) throws -> String {
        let motifs = try db.plantedMotifs()
        guard !motifs.isEmpty else { return "" }
        // Residues of the split inside class motifs and decoys (within the tokens the model saw).
        let tokens = try db.tokens()
        var residues = 0, inClass = 0, inDecoy = 0
        var byID: [String: [PlantedMotifRecord]] = [:]
        for m in motifs { byID[m.sequenceID, default: []].append(m) }
        for id in try db.sequenceIDs(split: split) {
            guard let t = tokens[id] else { continue }
            residues += t.residueEnd - t.residueStart
            for m in byID[id] ?? [] {
                let n = max(0, min(m.end, t.residueEnd) - max(m.start - 1, t.residueStart))
                if m.ecLabel == nil { inDecoy += n } else { inClass += n }
            }
        }
        guard residues > 0 else { return "" }
        let patternOf = Dictionary(motifs.compactMap { m in m.ecLabel.map { ($0, m.pattern) } }, uniquingKeysWith: { a, _ in a })
        func pct(_ x: Double) -> String { fmt(100 * x, 0) + "%" }
        var md = "Do the cards find the planted motifs? For each ranking, the share of its card neurons' top windows whose peak residue lies inside "
        md += "a planted class motif (95% bootstrap interval over the ranking's neurons), inside its own class's motif (per-class rankings), or "
        md += "inside a decoy. A neuron peaking at random residues would land in a class motif \(fmt(100 * Double(inClass) / Double(residues), 1))% "
        md += "and in a decoy \(fmt(100 * Double(inDecoy) / Double(residues), 1))% of the time (the share of the \(split) residues there); "
        md += "in its own class's motif about 1/\(classes.count) of the class-motif share. View `card_motif_overlap`.\n\n"
        let tests = try db.cardMotifTests()
        /// The control's columns for one motif kind: random mean ± sd and p (empty without a test).
        func test(_ id: RankingID, _ kind: CardMotif) -> String {
            guard let t = tests.first(where: { $0.ranking == id && $0.motif == kind.rawValue }) else { return " | " }
            // Four significant digits: 50/1001 prints as 0.04995, not a rounded 0.050 that reads as failing p < 0.05.
            return "\(fmt(100 * t.randomMean, 0))±\(fmt(100 * t.randomSD, 0))% | " + String(format: "%.4g", t.pValue)
        }
        if let t = tests.first {
            md += "`random`: the same share for \(t.nRandom) random sets of as many control neurons drawn module by module in the ranking's numbers "
                + "(`cards.control` per linear map, measured with the cards; mean ± sd); `p`: one-sided permutation p-value (the smallest attainable "
                + "is 1/\(t.nRandom + 1)); table `card_motif_tests`.\n\n"
        }
        md += "| ranking | card neurons | peak in a class motif | 95% interval | random | p | in its own class's motif | random | p | in a decoy | random | p |\n"
        md += "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        var order: [RankingID] = []
        for r in list where !order.contains(r.ranking) { order.append(r.ranking) }
        for id in order {
            let cards = list.filter { $0.ranking == id }.compactMap { views[$0.neuron]?.card }
            let windows = cards.map { $0.examples.filter { $0.kind == "top" } }.filter { !$0.isEmpty }
            guard !windows.isEmpty else { continue }
            func share(_ test: (NeuronCardRecord.Example) -> Bool) -> [Double] { windows.map { w in Double(w.filter(test).count) / Double(w.count) } }
            let inMotif = share { $0.motifIsDecoy == false }, decoy = share { $0.motifIsDecoy == true }
            let own = id.targetClass < 0 ? nil : classes.first { $0.classIndex == id.targetClass }.flatMap { patternOf[$0.ecLabel] }.map { p in share { $0.motifPattern == p } }
            let ci = EvidenceStatistics.bootstrapInterval(inMotif, resamples: 1000, seed: 1)
            func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(v.count) }
            md += "| \(ranking(id)) | \(windows.count) | \(pct(mean(inMotif))) | \(pct(ci.low)) ... \(pct(ci.high)) | \(test(id, .classMotif)) | "
                + "\(own.map { pct(mean($0)) } ?? "") | \(own == nil ? " | " : test(id, .ownClass)) | \(pct(mean(decoy))) | \(test(id, .decoy)) |\n"
        }
        return md + "\n"
    }
}
