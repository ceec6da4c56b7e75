import Foundation
import Store

/// A neuron card as people read it: in the terminal (`kneuron neuron`), as JSON, and the pieces
/// the report shows. Built from the cards stage's tables (`RunDatabase.neuronCard`).
public struct NeuronCardView: Sendable {
    /// The card's data.
    public var card: NeuronCardRecord
    /// The rankings that chose this neuron, with its card rank and best rank there.
    public var rankings: [CardNeuronRecord]
    /// The run's classes (names of class indices).
    public var classes: [ClassRecord]

    /// A view of `card`, chosen by `rankings`, in a run with `classes`.
    public init(card: NeuronCardRecord, rankings: [CardNeuronRecord], classes: [ClassRecord]) {
        self.card = card; self.rankings = rankings; self.classes = classes
    }

    /// Q-value below which an enrichment row is called significant.
    public static let alpha = 0.05

    /// Reads the card of `neuron` from `db`, or nil when it has none.
    /// - Throws: `StoreError` when the database cannot be read.
    public static func load(db: RunDatabase, neuron: NeuronKey) throws -> NeuronCardView? {
        guard let card = try db.neuronCard(neuron) else { return nil }
        return NeuronCardView(card: card, rankings: try db.cardNeurons().filter { $0.neuron == neuron }, classes: try db.classes())
    }

    /// `3.-.-.- Hydrolases` for class index c.
    func className(_ c: Int) -> String {
        guard let k = classes.first(where: { $0.classIndex == c }) else { return "class \(c)" }
        return k.ecLabel + (k.name.map { " " + $0 } ?? "")
    }

    /// `integrated_gradients weights (true class)` or `activation (class 3.-.-.- Hydrolases)`.
    public func rankingName(_ r: RankingID) -> String {
        r.method + (r.granularity == "weight" ? " weights" : "") + (r.targetClass < 0 ? " (true class)" : " (class \(className(r.targetClass)))")
    }

    /// The window with the peak residue in brackets: `ABC[D]EF`.
    public static func marked(_ e: NeuronCardRecord.Example) -> String {
        let chars = Array(e.window)
        let i = e.peakPosition - e.windowStart
        guard i >= 0 && i < chars.count else { return e.window }
        return String(chars[..<i]) + "[" + String(chars[i]) + "]" + String(chars[(i + 1)...])
    }

    /// The significant enrichment rows (q < `alpha`, more frequent than background), strongest first.
    public var enriched: [NeuronCardRecord.Enrichment] {
        card.enrichment.filter { $0.qValue < Self.alpha && $0.logOdds > 0 }.sorted { ($0.qValue, -$0.logOdds) < ($1.qValue, -$1.logOdds) }
    }

    /// Whether every top example has the largest peak (many sequences tie at the top: the examples
    /// and the top-sequence statistics are a pseudo-random sample of the tied sequences).
    public var topTied: Bool {
        let tops = card.examples.filter { $0.kind == "top" }
        return tops.count > 1 && tops.allSatisfy { $0.activation == card.peakMax }
    }

    /// One line: the best class and its AUROC, the peak residue's most enriched amino acids.
    public var summary: String {
        var parts: [String] = []
        if let c = card.bestClass, let a = card.bestAUROC { parts.append(String(format: "best class %@ (AUROC %.2f)", className(c), a)) }
        let atPeak = enriched.filter { $0.offset == 0 }.prefix(3).map { String(format: "%@ %d/%d", $0.residue, $0.count, $0.n) }
        parts.append(atPeak.isEmpty ? "no amino acid enriched at the peak (q < 0.05)" : "peak residue " + atPeak.joined(separator: ", "))
        return parts.joined(separator: "; ")
    }

    /// The card as terminal text.
    public var text: String {
        let c = card
        let k = c.neuron
        var out = "layer \(k.layer) \(k.module) unit \(k.unit): card over \(c.nSequences) \(c.split) sequences\n"
        out += String(format: "peak activation (largest over a sequence's residues): max %.4g, mean %.4g, sd %.4g\n", c.peakMax, c.peakMean, c.peakSD)
        if !rankings.isEmpty {
            out += "chosen by: " + rankings.map { "\(rankingName($0.ranking)) #\($0.cardRank) (rank \($0.bestRank))" }.joined(separator: "; ") + "\n"
        }
        out += "\ntop-activating sequences (peak residue in [brackets]; lower case: cropped away, not seen by the model):\n"
        if topTied {
            out += "  (every one of them has the largest peak, as many sequences do: they are a pseudo-random sample of the tied sequences, by a hash of the ID)\n"
        }
        for e in c.examples where e.kind == "top" { out += exampleLine(e, label: String(format: "%3d", e.rank)) }
        out += "\nsequences at peak quantiles:\n"
        for e in c.examples where e.kind == "quantile" { out += exampleLine(e, label: String(format: "q%.2f", e.quantile ?? 0)) }
        out += "\nresidue enrichment around the peak of the top \(c.nTop) sequences (offset: residue count/n, log-odds, q; q < 0.05 and enriched):\n"
        let rows = enriched
        if rows.isEmpty { out += "  none\n" }
        for o in -3 ... 3 {
            let at = rows.filter { $0.offset == o }.prefix(5)
            if at.isEmpty { continue }
            out += String(format: "  %+d: ", o) + at.map { String(format: "%@ %d/%d (background %.1f%%, log-odds %+.2f, q %.2g)", $0.residue, $0.count, $0.n, 100 * $0.background, $0.logOdds, $0.qValue) }
                .joined(separator: "; ") + "\n"
        }
        out += "\nposition of the peak (tenths of the sequence, N -> C): " + c.positionBins.map(String.init).joined(separator: " ")
            + String(format: "; N-terminal tenth %.0f%%, C-terminal tenth %.0f%% (10%% each if position did not matter)\n", 100 * c.nTerminalShare, 100 * c.cTerminalShare)
        out += "\nclasses (peak over all \(c.nSequences) sequences; AUROC one class against the rest):\n"
        for x in c.classes {
            out += String(format: "  %@  n %d  mean peak %.4g (sd %.3g)  AUROC %@  %d of the top %d\n", className(x.classIndex), x.nSequences, x.peakMean, x.peakSD,
                          x.auroc.map { String(format: "%.3f", $0) } ?? "-", x.topCount, c.nTop)
        }
        out += String(format: "entropy of the top sequences' classes %.2f of %.2f bits\n", c.topClassEntropy, c.topClassEntropyMax)
        for level in [2, 3] {
            let s = c.subclasses.filter { $0.level == level }.prefix(5)
            if s.isEmpty { continue }
            out += "EC numbers at level \(level) among the top \(c.nTop): " + s.map { "\($0.ecNumber) \($0.topCount) (\($0.splitCount) in the split)" }.joined(separator: ", ") + "\n"
        }
        return out
    }

    private func exampleLine(_ e: NeuronCardRecord.Example, label: String) -> String {
        var line = String(format: "  %@  %9.4g  %@  %@  residue %d  ", label, e.activation, e.sequenceID, e.ecLabel, e.peakPosition) + Self.marked(e)
        if let m = e.motifPattern { line += "  planted \(e.motifIsDecoy == true ? "decoy" : "class motif") \(m)" }
        return line + "\n"
    }

    /// The card as JSON (snake_case keys as in the database; a field without a value, e.g. the
    /// AUROC of a class, is left out; `rankings` lists who chose it, `classes` names the class indices).
    /// - Throws: `EncodingError` (not expected: every field is finite or null).
    public func json() throws -> String {
        struct Out: Encodable {
            var card: NeuronCardRecord
            var rankings: [Ranking]
            var classes: [Class]
            struct Ranking: Encodable { var method: String, granularity: String, targetClass: Int, cardRank: Int, bestRank: Int }
            struct Class: Encodable { var classIndex: Int, ecLabel: String, name: String? }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let out = Out(card: card, rankings: rankings.map { .init(method: $0.ranking.method, granularity: $0.ranking.granularity, targetClass: $0.ranking.targetClass,
                                                                cardRank: $0.cardRank, bestRank: $0.bestRank) },
                      classes: classes.map { .init(classIndex: $0.classIndex, ecLabel: $0.ecLabel, name: $0.name) })
        return String(decoding: try encoder.encode(out), as: UTF8.self) + "\n"
    }
}
