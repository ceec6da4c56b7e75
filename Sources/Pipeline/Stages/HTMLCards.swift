import Attribution
import Foundation
import Store

extension SVG {
    /// WebLogo's "chemistry" colours of the amino acids (Crooks et al. 2004, Genome Res.
    /// 14:1188): polar G S T Y C green, N Q purple, basic K R H blue, acidic D E red, hydrophobic
    /// A V L I P W F M black.
    static func aminoAcidColour(_ a: Character) -> String {
        switch a {
        case "G", "S", "T", "Y", "C": "#109648"
        case "N", "Q": "#7B3294"
        case "K", "R", "H": "#0072B2"
        case "D", "E": "#D62728"
        default: "#222222"
        }
    }

    /// A sequence logo (Schneider & Stephens 1990) of the residues at offsets -3 ... +3 from a
    /// card neuron's peak: per offset the information in bits (`NeuronCards.logoColumn`) as a
    /// stack of letters, each as tall as its share of it, the largest on top; the y axis runs to
    /// log2 20 = 4.32 bits, the most a column can hold.
    /// - Parameter columns: per offset, the 20 standard amino acids' counts (`NeuronCards.aminoAcids` order).
    /// Letters shorter than this (px) are left out of a logo: smaller ones render as a smudge.
    static let logoMinimumLetter = 3.0

    static func logo(title: String, columns: [(offset: Int, counts: [Int])], width: Double = 230, height: Double = 170) -> String {
        let left = 40.0, right = 8.0, top = 28.0, bottom = 36.0
        let pw = width - left - right, ph = height - top - bottom
        let maxBits = log2(Double(NeuronCards.aminoAcids.count))
        var s = frame(title: title, width: width, height: height, left: left, top: top, pw: pw, ph: ph, xLabel: "offset from the peak", yLabel: "bits")
        for bits in [0.0, 1, 2, 3, 4] {
            let y = top + ph - bits / maxBits * ph
            s += "<text x=\"\(Int(left - 5))\" y=\"\(num(y + 4, 1))\" text-anchor=\"end\" class=\"k\">\(Int(bits))</text>"
        }
        let cw = pw / Double(max(1, columns.count))
        for (i, c) in columns.enumerated() {
            let x = left + cw * (Double(i) + 0.5)
            s += "<text x=\"\(num(x, 1))\" y=\"\(num(top + ph + 14, 1))\" text-anchor=\"middle\" class=\"k\">\(c.offset > 0 ? "+" : "")\(c.offset)</text>"
            let column = NeuronCards.logoColumn(c.counts)
            var y = top + ph
            // Smallest at the bottom, the largest on top; letters under `logoMinimumLetter` px are not drawn (their
            // share of the column stays as empty space at the bottom, so the drawn letters keep their true heights).
            for (a, h) in zip(NeuronCards.aminoAcids, column.heights).sorted(by: { ($0.1, $0.0) < ($1.1, $1.0) }) {
                guard h / maxBits * ph >= logoMinimumLetter else { y -= h / maxBits * ph; continue }
                let hp = h / maxBits * ph
                let letter = Character(UnicodeScalar(a))
                // A capital of a 100 px monospace font is about 72 px tall and 60 px wide.
                s += "<text transform=\"translate(\(num(x, 1)) \(num(y, 2))) scale(\(num(cw * 0.9 / 60, 4)) \(num(hp / 72, 4)))\" text-anchor=\"middle\" "
                    + "font-family=\"DejaVu Sans Mono,monospace\" font-size=\"100\" font-weight=\"bold\" fill=\"\(aminoAcidColour(letter))\">\(letter)"
                    + "<title>offset \(c.offset): \(letter) \(c.counts[NeuronCards.aminoAcids.firstIndex(of: a)!]) of \(c.counts.reduce(0, +)), \(num(h, 2)) bits</title></text>"
                y -= hp
            }
        }
        return s + "</svg>"
    }

    /// Vertical bars of `values` (labels under them) from 0 to `maxValue`, an optional dashed
    /// reference line (e.g. the uniform share, or AUROC 0.5), y ticks at `ticks`.
    static func bars(title: String, xLabel: String, yLabel: String, labels: [String], values: [Double?], maxValue: Double, ticks: [Double],
                     reference: Double? = nil, tooltips: [String], width: Double = 230, height: Double = 170) -> String {
        let left = 44.0, right = 8.0, top = 28.0, bottom = 36.0
        let pw = width - left - right, ph = height - top - bottom
        var s = frame(title: title, width: width, height: height, left: left, top: top, pw: pw, ph: ph, xLabel: xLabel, yLabel: yLabel)
        func py(_ v: Double) -> Double { top + ph - min(max(v, 0), maxValue) / maxValue * ph }
        for t in ticks {
            s += "<line x1=\"\(left)\" y1=\"\(num(py(t), 1))\" x2=\"\(left + pw)\" y2=\"\(num(py(t), 1))\" class=\"g\"/>"
            s += "<text x=\"\(Int(left - 5))\" y=\"\(num(py(t) + 4, 1))\" text-anchor=\"end\" class=\"k\">\(String(format: "%g", t))</text>"
        }
        let bw = pw / Double(max(1, values.count))
        for (i, v) in values.enumerated() {
            let x = left + bw * Double(i)
            if let v {
                s += "<rect x=\"\(num(x + 1.5, 1))\" y=\"\(num(py(v), 1))\" width=\"\(num(bw - 3, 1))\" height=\"\(num(top + ph - py(v), 1))\" fill=\"#0072B2\">"
                    + "<title>\(escape(tooltips[i]))</title></rect>"
            }
            s += "<text x=\"\(num(x + bw / 2, 1))\" y=\"\(num(top + ph + 14, 1))\" text-anchor=\"middle\" class=\"k\">\(escape(labels[i]))</text>"
        }
        if let r = reference {
            s += "<line x1=\"\(left)\" y1=\"\(num(py(r), 1))\" x2=\"\(left + pw)\" y2=\"\(num(py(r), 1))\" stroke=\"#D55E00\" stroke-dasharray=\"4 3\"/>"
        }
        return s + "</svg>"
    }
}

extension HTMLReport {
    /// The report's cards as figures (issue 12): for each true-class ranking's first
    /// `RunReport.cardsShown` cards, a panel with the sequence logo of the residues around the
    /// peak of its top sequences, where in the sequence the peak falls (ten bins; the dashed line
    /// is the uniform 10%), the one-vs-rest AUROC of the peak per class (dashed: 0.5, chance) and
    /// its top windows with the peak residue in bold. "" without cards. The numbers are in the
    /// card table above it and in `kneuron neuron`.
    /// - Throws: `StoreError` on read failures.
    static func cardFigures(db: RunDatabase, classes: [ClassRecord], label: (String) -> String) throws -> String {
        let list = try db.cardNeurons().filter { $0.ranking.targetClass < 0 && $0.cardRank <= RunReport.cardsShown }
        guard !list.isEmpty else { return "" }
        let esc = SVG.escape
        var h = "<h3>The cards shown, as figures</h3>\n<p>Per card: the sequence logo of the residues at offsets -3 ... +3 from the peak of its top "
            + "sequences (letter height = share x information in bits, Schneider &amp; Stephens 1990; WebLogo colours; letters under "
            + "\(Int(SVG.logoMinimumLetter)) px left out), where the peak falls along the residues the model saw (dashed: the uniform 10%), how well "
            + "the peak tells each class from the rest (AUROC; dashed: 0.5), and its top windows with the peak residue highlighted. A card whose "
            + "top sequences are those of a card drawn before it (detectors of the same residue, tied on the same sequences) is named, not drawn again.</p>\n"
        var drawn: [[String]: String] = [:]   // top sequence IDs -> the card that drew them
        for r in list {
            guard let card = try db.neuronCard(r.neuron) else { continue }
            let k = r.neuron
            let name = "\(label(r.ranking.method))\(r.ranking.granularity == "weight" ? " (weights)" : "") #\(r.cardRank): layer \(k.layer) \(k.module) \(k.unit)"
            let tops = card.examples.filter { $0.kind == "top" }.map(\.sequenceID)
            if let earlier = drawn[tops] {
                h += "<div class=\"card\"><p><b>\(esc(name))</b>: the same top sequences as \(esc(earlier)) (residues at the peak: "
                    + card.enrichment.filter { $0.offset == 0 && $0.count > 0 }.sorted { $0.count > $1.count }.prefix(2).map { "\(esc($0.residue)) \($0.count)/\($0.n)" }.joined(separator: ", ")
                    + "); not drawn again.</p></div>\n"
                continue
            }
            drawn[tops] = name
            var columns: [(offset: Int, counts: [Int])] = []
            for o in -3 ... 3 {
                var counts = [Int](repeating: 0, count: NeuronCards.aminoAcids.count)
                for e in card.enrichment where e.offset == o {
                    if let b = e.residue.utf8.first, let i = NeuronCards.aminoAcids.firstIndex(of: b) { counts[i] = e.count }
                }
                columns.append((o, counts))
            }
            let bins = card.positionBins, top = max(1, bins.reduce(0, +))
            let shares = bins.map { Double($0) / Double(top) }
            let maxShare = max(0.2, (shares.max() ?? 0) * 1.1)
            let positions = SVG.bars(title: "where the peak falls", xLabel: "tenth of the sequence", yLabel: "share of top sequences",
                                     labels: bins.indices.map { $0 == 0 ? "N" : $0 == bins.count - 1 ? "C" : "" }, values: shares,
                                     maxValue: maxShare, ticks: stride(from: 0.0, through: maxShare + 1e-9, by: maxShare <= 0.4 ? 0.1 : 0.2).map { $0 },
                                     reference: 0.1, tooltips: bins.enumerated().map { "tenth \($0 + 1): \($1) of \(top)" })
            let present = card.classes.sorted { $0.classIndex < $1.classIndex }
            let names = present.map { c in classes.first { $0.classIndex == c.classIndex }?.ecLabel ?? "\(c.classIndex)" }
            let aurocs = SVG.bars(title: "class AUROC of the peak", xLabel: "class", yLabel: "AUROC", labels: names.map { String($0.prefix { $0 != "." }) },
                                  values: present.map(\.auroc), maxValue: 1, ticks: [0, 0.25, 0.5, 0.75, 1], reference: 0.5,
                                  tooltips: zip(names, present).map { "\($0): AUROC \($1.auroc.map { SVG.num($0, 3) } ?? "none"), \($1.nSequences) sequences" })
            h += "<div class=\"card\"><p><b>\(esc(name))</b></p><div class=\"figs\">"
                + SVG.logo(title: "residues around the peak", columns: columns) + positions + aurocs + "</div>\n<div class=\"win\">"
            for e in card.examples.filter({ $0.kind == "top" }).prefix(5) {
                let chars = Array(e.window), i = e.peakPosition - e.windowStart
                let text = chars.indices.contains(i)
                    ? esc(String(chars[..<i])) + "<b>" + esc(String(chars[i])) + "</b>" + esc(String(chars[(i + 1)...])) : esc(e.window)
                h += "<div><code>\(text)</code> \(esc(e.sequenceID)) \(esc(e.ecLabel)) position \(e.peakPosition), activation \(SVG.num(e.activation, 3))"
                    + (e.motifIsDecoy.map { $0 ? ", in a decoy" : ", in a class motif" } ?? "") + "</div>"
            }
            h += "</div></div>\n"
        }
        return h
    }
}
