import Attribution
import ESM
import Foundation
import Store

/// Inline-SVG charts for the HTML report: no JavaScript, no external resources. Colours are the
/// Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), safe for the common forms of
/// colour blindness; heat cells use viridis (van der Walt & Smith 2015, matplotlib's `viridis`).
enum SVG {
    /// A method's line colour (by `AttributionMethod` order), grey for random.
    static func colour(_ method: String) -> String {
        switch method {
        case AttributionMethod.activation.rawValue: "#0072B2"
        case AttributionMethod.integratedGradients.rawValue: "#D55E00"
        case AttributionMethod.gradientXActivation.rawValue: "#009E73"
        case "train": "#0072B2"
        case "select", "test": "#D55E00"
        default: "#7f7f7f"
        }
    }

    /// viridis at t in [0, 1] (9 stops of matplotlib's table, linearly interpolated).
    static func viridis(_ t: Double) -> String {
        let stops: [(Double, Double, Double)] = [(68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
                                                 (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)]
        let x = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1)
        let i = min(Int(x), stops.count - 2), f = x - Double(i)
        func c(_ a: Double, _ b: Double) -> Int { Int((a + (b - a) * f).rounded()) }
        return String(format: "#%02x%02x%02x", c(stops[i].0, stops[i + 1].0), c(stops[i].1, stops[i + 1].1), c(stops[i].2, stops[i + 1].2))
    }

    /// Text safe inside SVG and HTML.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func num(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }

    /// A line series: points (x, y), its name and colour, and a hover text per point.
    struct Series {
        var name: String
        var colour: String
        var points: [(x: Double, y: Double)]
        var dashed = false
        /// An error bar per x (e.g. a bootstrap 95% interval), drawn as a vertical line with caps.
        var intervals: [Double: (low: Double, high: Double)] = [:]
    }

    /// A shaded band (e.g. random mean ± sd) between `low` and `high` at each x.
    struct Band {
        var name: String
        var points: [(x: Double, low: Double, high: Double)]
    }

    /// A horizontal reference line (chance, majority class).
    struct Rule {
        var name: String
        var y: Double
        /// SVG dash pattern.
        var dash = "2 3"
    }

    /// One chart panel: axes with ticks and labels, the band under the series, rules, a legend.
    /// `logX` plots log10(x) (fractions); ticks are the distinct x values given.
    static func chart(title: String, xLabel: String, yLabel: String, logX: Bool, xTicks: [Double], series: [Series],
                      bands: [Band] = [], rules: [Rule] = [], yRange: (Double, Double)? = nil, width: Double = 440, height: Double = 300) -> String {
        let left = 56.0, right = 14.0, top = 48.0, bottom = 46.0
        let tx: (Double) -> Double = { logX ? log10($0) : $0 }
        let xs = (series.flatMap { $0.points.map(\.x) } + bands.flatMap { $0.points.map(\.x) } + xTicks).map(tx)
        let series = series.map { sr in var sr = sr; sr.points = sr.points.filter { $0.y.isFinite }; return sr }
        let rules = rules.filter { $0.y.isFinite }
        let seriesYs: [Double] = series.flatMap { sr -> [Double] in sr.points.map(\.y) + sr.intervals.values.flatMap { [$0.low, $0.high] } }
        let bandYs: [Double] = bands.flatMap { b -> [Double] in b.points.flatMap { [$0.low, $0.high] } }
        let ys = (seriesYs + bandYs + rules.map(\.y)).filter(\.isFinite)
        guard let x0 = xs.min(), let x1 = xs.max(), var y0 = ys.min(), var y1 = ys.max() else { return "" }
        if let r = yRange { y0 = r.0; y1 = r.1 } else {
            let pad = max((y1 - y0) * 0.08, 0.01)
            y0 = max(0, y0 - pad); y1 += pad
        }
        let pw = width - left - right, ph = height - top - bottom
        func px(_ v: Double) -> Double { left + (x1 > x0 ? (tx(v) - x0) / (x1 - x0) : 0.5) * pw }
        func py(_ v: Double) -> Double { top + (1 - (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5)) * ph }
        var s = frame(title: title, width: width, height: height, left: left, top: top, pw: pw, ph: ph, xLabel: xLabel, yLabel: yLabel)
        for v in xTicks {
            let x = px(v)
            s += "<line x1=\"\(num(x, 1))\" y1=\"\(top + ph)\" x2=\"\(num(x, 1))\" y2=\"\(top + ph + 4)\" class=\"ax\"/>"
            let label = logX ? (v * 100 == (v * 100).rounded() ? "\(Int(v * 100))%" : String(format: "%g%%", v * 100)) : String(format: "%g", v)
            s += "<text x=\"\(num(x, 1))\" y=\"\(top + ph + 16)\" text-anchor=\"middle\" class=\"k\">\(label)</text>"
        }
        let step = niceStep((y1 - y0) / 4)
        var v = (y0 / step).rounded(.up) * step
        while v <= y1 + step * 1e-9 {
            let y = py(v)
            s += "<line x1=\"\(left)\" y1=\"\(num(y, 1))\" x2=\"\(left + pw)\" y2=\"\(num(y, 1))\" class=\"g\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(num(y + 4, 1))\" text-anchor=\"end\" class=\"k\">\(String(format: "%g", (v / step).rounded() * step + 0))</text>"
            v += step
        }
        for b in bands where !b.points.isEmpty {
            let upper = b.points.map { "\(num(px($0.x), 1)),\(num(py($0.high), 1))" }, lower = b.points.reversed().map { "\(num(px($0.x), 1)),\(num(py($0.low), 1))" }
            s += "<polygon points=\"\((upper + lower).joined(separator: " "))\" fill=\"#7f7f7f\" fill-opacity=\"0.25\" stroke=\"none\"><title>\(escape(b.name))</title></polygon>"
        }
        for r in rules {
            s += "<line x1=\"\(left)\" y1=\"\(num(py(r.y), 1))\" x2=\"\(left + pw)\" y2=\"\(num(py(r.y), 1))\" stroke=\"#000\" stroke-dasharray=\"\(r.dash)\" stroke-width=\"1\"><title>\(escape(r.name)) \(num(r.y))</title></line>"
        }
        let withIntervals = series.filter { !$0.intervals.isEmpty }.map(\.name)
        for sr in series where !sr.points.isEmpty {
            let pts = sr.points.sorted { $0.x < $1.x }
            // Error bars of different series at one x are dodged sideways by 5 px so that they do not hide each other.
            let dodge = withIntervals.firstIndex(of: sr.name).map { (Double($0) - Double(withIntervals.count - 1) / 2) * 5 } ?? 0
            s += "<polyline fill=\"none\" stroke=\"\(sr.colour)\" stroke-width=\"2\"\(sr.dashed ? " stroke-dasharray=\"5 3\"" : "") points=\"\(pts.map { "\(num(px($0.x), 1)),\(num(py($0.y), 1))" }.joined(separator: " "))\"/>"
            for p in pts {
                if let e = sr.intervals[p.x] {
                    let x = num(px(p.x) + dodge, 1), ya = num(py(e.low), 1), yb = num(py(e.high), 1)
                    s += "<path d=\"M\(x) \(ya)V\(yb)M\(num(px(p.x) + dodge - 3, 1)) \(ya)h6M\(num(px(p.x) + dodge - 3, 1)) \(yb)h6\" stroke=\"\(sr.colour)\" "
                        + "stroke-width=\"1\" stroke-opacity=\"0.7\" fill=\"none\"><title>\(escape(sr.name)): 95% interval \(num(e.low)) ... \(num(e.high))</title></path>"
                }
                s += "<circle cx=\"\(num(px(p.x), 1))\" cy=\"\(num(py(p.y), 1))\" r=\"3\" fill=\"\(sr.colour)\"><title>\(escape(sr.name)): \(num(p.y))</title></circle>"
            }
        }
        // Legend: one row between the title and the plot (wraps to a second row when long).
        var lx = left, ly = 34.0
        let items = series.map { ($0.name, $0.colour, "line") } + bands.map { ($0.name, "#7f7f7f", "band") } + rules.map { ($0.name, $0.dash, "rule") }
        for (name, colour, kind) in items {
            let itemWidth = 30 + Double(name.count) * 5.6
            if lx + itemWidth > left + pw { lx = left; ly += 12 }
            defer { lx += itemWidth }
            switch kind {
            case "band": s += "<rect x=\"\(num(lx, 1))\" y=\"\(num(ly - 6, 1))\" width=\"18\" height=\"8\" fill=\"#7f7f7f\" fill-opacity=\"0.35\"/>"
            case "rule": s += "<line x1=\"\(num(lx, 1))\" y1=\"\(num(ly - 2, 1))\" x2=\"\(num(lx + 18, 1))\" y2=\"\(num(ly - 2, 1))\" stroke=\"#000\" stroke-dasharray=\"\(colour)\"/>"
            default: s += "<line x1=\"\(num(lx, 1))\" y1=\"\(num(ly - 2, 1))\" x2=\"\(num(lx + 18, 1))\" y2=\"\(num(ly - 2, 1))\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
            }
            s += "<text x=\"\(num(lx + 22, 1))\" y=\"\(num(ly + 2, 1))\" class=\"k\">\(escape(name))</text>"
        }
        return s + "</svg>"
    }

    /// An inline `<svg>` of `width` x `height` px with its accessible title.
    static func open(title: String, width: Double, height: Double) -> String {
        "<svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" "
            + "aria-label=\"\(escape(title))\"><title>\(escape(title))</title>"
    }

    /// `open` plus a panel's centred title, its x and y axis lines (plot area `pw` x `ph` at
    /// (`left`, `top`)) and the axis labels.
    static func frame(title: String, width: Double, height: Double, left: Double, top: Double, pw: Double, ph: Double,
                      xLabel: String, yLabel: String) -> String {
        open(title: title, width: width, height: height)
            + "<text x=\"\(Int(width / 2))\" y=\"18\" text-anchor=\"middle\" class=\"t\">\(escape(title))</text>"
            + "<line x1=\"\(left)\" y1=\"\(top + ph)\" x2=\"\(left + pw)\" y2=\"\(top + ph)\" class=\"ax\"/>"
            + "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(top + ph)\" class=\"ax\"/>"
            + "<text x=\"\(num(left + pw / 2, 1))\" y=\"\(Int(height - 8))\" text-anchor=\"middle\" class=\"l\">\(escape(xLabel))</text>"
            + "<text transform=\"translate(14 \(num(top + ph / 2, 1))) rotate(-90)\" text-anchor=\"middle\" class=\"l\">\(escape(yLabel))</text>"
    }

    /// A tick step of 1, 2, 2.5 or 5 times a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let p = pow(10, floor(log10(raw)))
        return [1, 2, 2.5, 5, 10].map { $0 * p }.first { $0 >= raw } ?? 10 * p
    }

    /// A horizontal viridis colour bar from 0 to `scale`, labelled at both ends.
    static func colourBar(scale: Double, label: String) -> String {
        var s = open(title: "colour scale 0 ... \(num(scale, 2))", width: 220, height: 40)
        for i in 0 ..< 20 { s += "<rect x=\"\(10 + i * 10)\" y=\"4\" width=\"10\" height=\"12\" fill=\"\(viridis(Double(i) / 19))\"/>" }
        s += "<text x=\"10\" y=\"30\" class=\"k\">0</text><text x=\"210\" y=\"30\" text-anchor=\"end\" class=\"k\">\(num(scale, 2))</text>"
        s += "<text x=\"110\" y=\"30\" text-anchor=\"middle\" class=\"k\">\(escape(label))</text>"
        return s + "</svg>"
    }

    /// One cell of a heat matrix: its colour value, the text drawn in it and its hover text.
    struct Cell {
        var value: Double
        var text: String
        var tip: String
    }

    /// A matrix of viridis cells on a 0 ... `scale` colour scale, each with its text, columns and
    /// rows labelled; `footer` adds one row of plain text under it (a label and one entry per column).
    static func heatMatrix(title: String, rows: [String], columns: [String], cells: [[Cell]], scale: Double, cell: Double = 46,
                           left: Double = 34, footer: (label: String, texts: [(text: String, tip: String)])? = nil) -> String {
        let top = 40.0
        let width = max(left + cell * Double(columns.count) + 8, 8 + 7 * Double(title.count)), height = top + cell * Double(rows.count) + (footer == nil ? 8 : 34)
        var s = open(title: title, width: width, height: height) + "<text x=\"4\" y=\"14\" class=\"t\">\(escape(title))</text>"
        for (j, c) in columns.enumerated() {
            s += "<text x=\"\(num(left + cell * (Double(j) + 0.5), 1))\" y=\"\(Int(top - 6))\" text-anchor=\"middle\" class=\"k\">\(escape(c))</text>"
        }
        for (i, r) in rows.enumerated() {
            s += "<text x=\"\(Int(left - 4))\" y=\"\(num(top + cell * (Double(i) + 0.6), 1))\" text-anchor=\"end\" class=\"k\">\(escape(r))</text>"
            for (j, c) in cells[i].enumerated() {
                let t = scale > 0 ? c.value / scale : 0
                s += "<rect x=\"\(num(left + cell * Double(j), 1))\" y=\"\(num(top + cell * Double(i), 1))\" width=\"\(cell - 2)\" height=\"\(cell - 2)\" fill=\"\(viridis(t))\"><title>\(escape(c.tip))</title></rect>"
                s += "<text x=\"\(num(left + cell * (Double(j) + 0.5) - 1, 1))\" y=\"\(num(top + cell * (Double(i) + 0.6), 1))\" text-anchor=\"middle\" class=\"c\" fill=\"\(t > 0.6 ? "#000" : "#fff")\">\(escape(c.text))</text>"
            }
        }
        if let footer {
            let sy = top + cell * Double(rows.count) + 18
            s += "<text x=\"\(Int(left - 4))\" y=\"\(num(sy, 1))\" text-anchor=\"end\" class=\"k\">\(escape(footer.label))</text>"
            for (j, f) in footer.texts.enumerated() {
                s += "<text x=\"\(num(left + cell * (Double(j) + 0.5), 1))\" y=\"\(num(sy, 1))\" text-anchor=\"middle\" class=\"k\"><title>\(escape(f.tip))</title>\(escape(f.text))</text>"
            }
        }
        return s + "</svg>"
    }

    /// A layer x module grid of densities (kept / total) on a 0 ... `scale` colour scale; the
    /// last row is each module's share of everything kept.
    static func grid(title: String, layers: Int, modules: [String], density: [String: Double], share: [String: Double], scale: Double) -> String {
        let cells = (0 ..< layers).map { l in
            modules.map { m in
                let d = density["\(l)/\(m)"] ?? 0
                return Cell(value: d, text: num(d, 2), tip: "layer \(l) \(m): \(num(d)) kept")
            }
        }
        return heatMatrix(title: title, rows: (0 ..< layers).map { "L\($0)" }, columns: modules.map(short), cells: cells, scale: scale,
                          footer: ("share", modules.map { (num(share[$0] ?? 0, 2), "share of all kept in \($0)") }))
    }

    /// Small multiples of density strips (arXiv 2312.10770, Figures 3-5): one row per layer, one
    /// column per module, each matrix a strip over its scaled weight position 0 ... 1 whose cells
    /// are coloured by the share kept (0 ... `scale`, viridis). A block of more than `maxBins`
    /// cells is drawn in `maxBins` bins, each the pooled share of the whole cells it covers; colours
    /// are rounded to 64 levels of the scale (the exact shares are in each rectangle's title and the CSV).
    static func strips(title: String, blocks: [(layer: Int, module: String, cells: [(kept: Int, size: Int)])], scale: Double,
                       stripWidth: Double = 170, maxBins: Int = 340) -> String {
        let layers = Array(Set(blocks.map(\.layer))).sorted()
        let modules = blocks.map(\.module).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        let left = 34.0, top = 40.0, rowHeight = 18.0, gap = 12.0
        let width = left + (stripWidth + gap) * Double(modules.count), height = top + rowHeight * Double(layers.count) + 30
        var s = open(title: title, width: width, height: height) + "<text x=\"4\" y=\"14\" class=\"t\">\(escape(title))</text>"
        for (j, m) in modules.enumerated() {
            let x0 = left + (stripWidth + gap) * Double(j)
            s += "<text x=\"\(num(x0 + stripWidth / 2, 1))\" y=\"\(Int(top - 6))\" text-anchor=\"middle\" class=\"k\">\(escape(m))</text>"
            let by = top + rowHeight * Double(layers.count) + 12
            s += "<text x=\"\(num(x0, 1))\" y=\"\(num(by, 1))\" class=\"k\">0</text><text x=\"\(num(x0 + stripWidth, 1))\" y=\"\(num(by, 1))\" text-anchor=\"end\" class=\"k\">1</text>"
        }
        s += "<text x=\"\(num(width / 2, 1))\" y=\"\(Int(height - 4))\" text-anchor=\"middle\" class=\"l\">scaled weight position (row-major, (out, in))</text>"
        for (i, l) in layers.enumerated() {
            let y = top + rowHeight * Double(i)
            s += "<text x=\"\(Int(left - 4))\" y=\"\(num(y + 12, 1))\" text-anchor=\"end\" class=\"k\">L\(l)</text>"
            for (j, m) in modules.enumerated() {
                guard let b = blocks.first(where: { $0.layer == l && $0.module == m }), !b.cells.isEmpty else { continue }
                let x0 = left + (stripWidth + gap) * Double(j)
                let total = Double(b.cells.reduce(0) { $0 + $1.size })
                let bins = min(b.cells.count, maxBins)
                // Bin k pools cells [k * n / bins, (k + 1) * n / bins) and is drawn over the weights it covers (a short
                // last cell is as narrow as its weights); neighbours of one colour are drawn as one rectangle.
                var runStart = 0.0, runColour = "", runKept = 0, runSize = 0, done = 0
                func flush() {
                    guard runSize > 0 else { return }
                    let xa = x0 + stripWidth * runStart / total, xb = x0 + stripWidth * Double(done) / total
                    s += "<rect x=\"\(num(xa, 2))\" y=\"\(num(y, 1))\" width=\"\(num(xb - xa, 2))\" height=\"\(rowHeight - 3)\" fill=\"\(runColour)\"><title>layer \(l) \(escape(m)), "
                        + "position \(num(runStart / total, 3)) ... \(num(Double(done) / total, 3)): \(runKept) of \(runSize) kept</title></rect>"
                }
                for k in 0 ..< bins {
                    let cells = b.cells[(k * b.cells.count / bins) ..< ((k + 1) * b.cells.count / bins)]
                    let kept = cells.reduce(0) { $0 + $1.kept }, size = cells.reduce(0) { $0 + $1.size }
                    // 64 colour levels, so that neighbours of nearly equal share merge into one rectangle.
                    let colour = viridis(((scale > 0 ? Double(kept) / Double(max(size, 1)) / scale : 0) * 64).rounded() / 64)
                    if colour != runColour { flush(); runStart = Double(done); runColour = colour; runKept = 0; runSize = 0 }
                    runKept += kept; runSize += size; done += size
                }
                flush()
            }
        }
        return s + "</svg>"
    }

    /// A histogram of `values` in `bins` equal bins (counts), with its axis labels.
    static func histogram(title: String, xLabel: String, values all: [Double], bins: Int = 20, width: Double = 440, height: Double = 240) -> String {
        // Non-finite values (only a damaged database holds them) are left out and said so in the title.
        let values = all.filter(\.isFinite)
        let title = values.count == all.count ? title : title + " (\(all.count - values.count) non-finite left out)"
        guard let lo = values.min(), let hi = values.max() else { return "" }
        let left = 56.0, right = 14.0, top = 30.0, bottom = 46.0
        let pw = width - left - right, ph = height - top - bottom
        let span = hi > lo ? hi - lo : 1
        var counts = [Int](repeating: 0, count: bins)
        for v in values { counts[min(bins - 1, Int((v - lo) / span * Double(bins)))] += 1 }
        // The y axis ends at the first tick at or above the tallest bar.
        let ystep = niceStep(Double(counts.max() ?? 1) / 4)
        let top1 = max(1, (Double(counts.max() ?? 1) / ystep).rounded(.up) * ystep)
        var s = frame(title: title, width: width, height: height, left: left, top: top, pw: pw, ph: ph, xLabel: xLabel, yLabel: "sequences")
        let bw = pw / Double(bins)
        for (i, c) in counts.enumerated() {
            let h = Double(c) / top1 * ph
            s += "<rect x=\"\(num(left + bw * Double(i) + 1, 1))\" y=\"\(num(top + ph - h, 1))\" width=\"\(num(bw - 2, 1))\" height=\"\(num(h, 1))\" fill=\"#0072B2\"><title>\(String(format: "%.3g", lo + span * Double(i) / Double(bins))) ... \(String(format: "%.3g", lo + span * Double(i + 1) / Double(bins))): \(c)</title></rect>"
        }
        let xstep = niceStep(span / 5)
        var xv = (lo / xstep).rounded(.up) * xstep
        while xv <= hi + xstep * 1e-9 {
            let x = left + (xv - lo) / span * pw
            s += "<line x1=\"\(num(x, 1))\" y1=\"\(top + ph)\" x2=\"\(num(x, 1))\" y2=\"\(top + ph + 4)\" class=\"ax\"/>"
            s += "<text x=\"\(num(x, 1))\" y=\"\(top + ph + 16)\" text-anchor=\"middle\" class=\"k\">\(String(format: "%g", (xv / xstep).rounded() * xstep + 0))</text>"
            xv += xstep
        }
        var yv = ystep
        while yv <= top1 + 1e-9 {
            let y = top + ph - yv / top1 * ph
            s += "<line x1=\"\(left)\" y1=\"\(num(y, 1))\" x2=\"\(left + pw)\" y2=\"\(num(y, 1))\" class=\"g\"/>"
            s += "<text x=\"\(Int(left - 6))\" y=\"\(num(y + 4, 1))\" text-anchor=\"end\" class=\"k\">\(String(format: "%g", yv))</text>"
            yv += ystep
        }
        return s + "</svg>"
    }

    /// Short module names for grid columns.
    static func short(_ m: String) -> String {
        switch m {
        case "attention_output": "attn out"
        case "intermediate": "interm."
        default: m
        }
    }
}

/// The run's report as one self-contained HTML file (issue 13, first part): what produced it and
/// how far to trust it, the retain/delete curves against the random rankings, where the kept
/// weights or neurons sit (layer x module), the training curves, integrated gradients'
/// completeness gaps, and the evidence, knowledge-edit and sanity tables. Inline SVG and CSS only:
/// no script, no network resource. Built from the database alone; every figure is followed by
/// the numbers it draws. The Markdown report holds every table in full.
enum HTMLReport {
    /// The HTML text.
    /// - Parameter positions: `ReportFacts.positions(db:)`, read by the caller (it also writes them as CSV).
    /// - Throws: `StoreError` on read failures.
    static func build(db: RunDatabase, positions: [ReportFacts.Positions]) throws -> String {
        let esc = SVG.escape
        func num(_ x: Double, _ digits: Int = 3) -> String { SVG.num(x, digits) }
        let run = try db.run()
        let name = run?.name ?? "run"
        let spec = run.flatMap { try? PipelineSpec.parse(yaml: $0.specYAML) }
        let classes = try db.classes()
        let evals = try db.evaluations()
        let full = evals.first { $0.method == Baseline.full }
        func label(_ m: String) -> String { m.replacingOccurrences(of: "_", with: " ") }
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>kneuron report: \(esc(name))</title>
        <style>
        body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:0 auto;padding:12px 18px;color:#111;line-height:1.45}
        h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}h3{font-size:1.02em}
        .figs{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}svg{max-width:100%;height:auto;background:#fff}
        svg .t{font-size:13px;font-weight:600}svg .k{font-size:10.5px;fill:#333}svg .l{font-size:11.5px}svg .c{font-size:10.5px}
        svg .ax{stroke:#333;stroke-width:1}svg .g{stroke:#e3e3e3;stroke-width:1}
        table{border-collapse:collapse;font-size:.86em;margin:.4em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td code{word-break:break-all}th{background:#f3f3f3}
        td:first-child,th:first-child{text-align:left}.wrap{overflow-x:auto;max-width:100%}
        .card{border:1px solid #ddd;padding:4px 10px;margin:8px 0}.card p{margin:.2em 0}.win{font-size:.86em}.win code{white-space:pre;font-size:1.05em}.win b{background:#ffd966}
        .verdict{background:#f6f8fa;border-left:4px solid #0072B2;padding:6px 12px}details{margin:.3em 0 1em}summary{cursor:pointer;color:#0072B2}
        @media print{details{display:block}summary{display:none}.figs{display:block}.wrap{overflow:visible}}
        </style></head><body>
        <h1>kneuron report: \(esc(name))</h1>

        """
        // What produced it.
        if let spec {
            let model = spec.model.checkpoint.map { "checkpoint <code>\(esc($0))</code>, fine-tuned" }
                ?? "preset <code>\(esc(spec.model.preset ?? "small"))</code> trained here from random weights (no pretrained ESM-2)"
            h += "<p>Model: \(model), \(spec.train.epochs) epoch\(spec.train.epochs == 1 ? "" : "s"), \(esc(spec.model.pooling.rawValue)) pooling, at most \(spec.model.maxLength) tokens. "
            if let head = try db.modelHead(), head.decision != "preset" { h += "Classifier head: \(esc(head.detail)). " }
            h += "Methods: \(spec.attribution.methods.map { esc(label($0.rawValue)) }.joined(separator: ", ")) over \(spec.attribution.modules.map { esc($0.rawValue) }.joined(separator: ", ")) "
            h += "at \(spec.attribution.granularity.map(\.rawValue).joined(separator: " and ")) granularity, on the \(spec.split.selectOn.split.rawValue) split; "
            h += "integrated gradients with \(spec.attribution.steps) steps; submodels evaluated on test. kneuron \(esc(run?.kneuronVersion ?? "?")). "
            let size = try db.query("SELECT MAX(n_layers), MAX(n_scores) FROM score_sets WHERE granularity = 'weight'").rows.first
            if let layers = size?[0] ?? nil, let n = size?[1] ?? nil { h += "\(layers) layers; \(n) weights scored per ranking. " }
            if let final = try db.checkpoint(named: "final") {
                h += "Final checkpoint <code>\(esc(final.directory))</code>, model.safetensors SHA-256 <code>\(esc(final.sha256))</code>. "
            }
            h += "The model evaluated is the one after the last epoch (no early stopping). The splits are drawn from all input files together "
                + "(stratified by class, seed \(spec.split.seed)); the file names do not define them.</p>\n"
        }
        // How far to trust it.
        let verdict = try RunReport.trust(db: db, spec: spec, classes: classes, full: full).map(esc)
        h += "<div class=\"verdict\"><p>" + verdict.joined(separator: " ") + "</p></div>\n"

        h += MarkdownTables.html(try RunReport.planted(db: db, classes: classes))
        h += MarkdownTables.html(try RunReport.recovery(db: db, classes: classes, label: label))
        h += try curves(db: db, full: full, classes: classes, ablation: spec?.evaluation.ablation ?? .zero, label: label)
        h += try density(db: db, label: label)
        h += Self.positions(positions, label: label)
        h += MarkdownTables.html(try RunReport.cards(db: db, classes: classes, label: label))
        h += try cardFigures(db: db, classes: classes, label: label)
        h += try training(db: db, split: spec?.split.selectOn.split.rawValue ?? "select")
        h += try confusion(db: db, classes: classes, full: full)
        h += try completeness(db: db)
        h += try agreement(db: db, label: label)
        h += try tables(db: db, classes: classes, label: label)
        h += try data(db: db)
        return h + "</body></html>\n"
    }

    /// Figure 1: accuracy (and macro-F1) against the fraction kept (retain) or removed (delete), per
    /// granularity: the attributed true-class rankings as lines, the random rankings' mean ± sd as
    /// a band, chance and the majority class as rules.
    static func curves(db: RunDatabase, full: EvaluationRecord?, classes: [ClassRecord], ablation: Ablation, label: (String) -> String) throws -> String {
        let points = try db.curvePoints()
        guard !points.isEmpty else { return "" }
        let chance = 1 / Double(max(classes.count, 1))
        let majority = Double(full?.perClass.map(\.n).max() ?? 0) / Double(max(full?.nTest ?? 1, 1))
        var h = "<h2>Is a ranking better than random? Curves against \(Set(points.filter { $0.ranking.method == Baseline.random }.map(\.ranking.seed)).count) random rankings</h2>\n"
        h += "<p><code>retain</code> keeps the top fraction of a ranking and ablates the rest (the paper's test: higher is better); <code>delete</code> "
        h += "ablates the top fraction (lower is better). To ablate is to " + (ablation == .mean
            ? "replace a neuron's activation by its mean over the attribution split (evaluation.ablation: mean)"
            : "set a weight to zero (a neuron: its weight row and bias, so its activation is 0); no retraining") + ". "
        h += "The grey band is the random rankings' mean ± sd at each fraction; error bars are each ranking's bootstrap 95% interval over the "
        h += "\(full?.nTest ?? 0) test sequences; dashed and dotted lines are the full model, chance and the majority-class baseline. "
        h += "The permutation p-values hold the model and the test set fixed, so a ranking can beat random rankings (which vary little) while "
        h += "its interval still overlaps theirs: it is special for this model, not yet shown to hold on other sequences. "
        h += "p = 1/(random rankings + 1) is the smallest attainable value, not a measured strength. All numbers in <a href=\"curves.csv\">curves.csv</a>.</p>\n"
        for g in Granularity.allCases.map(\.rawValue) where points.contains(where: { $0.ranking.granularity == g }) {
            h += "<h3>\(g) granularity</h3><div class=\"figs\">\n"
            var numbers = "<table><tr><th>ranking</th><th>direction</th><th>fraction</th><th>accuracy</th><th>95% interval</th><th>macro-F1</th></tr>"
            for metric in ["accuracy", "macro-F1"] {
                for direction in CurveDirection.allCases.map(\.rawValue) {
                    let mine = points.filter { $0.ranking.granularity == g && $0.direction == direction && $0.ranking.targetClass < 0 }
                    guard !mine.isEmpty else { continue }
                    func value(_ p: CurvePointRecord) -> Double { metric == "accuracy" ? p.accuracy : p.macroF1 }
                    let fractions = Array(Set(mine.map(\.fraction))).sorted()
                    let random = mine.filter { $0.ranking.method == Baseline.random }
                    let band = fractions.map { f -> (x: Double, low: Double, high: Double) in
                        let (m, sd) = EvidenceStatistics.meanAndSD(random.filter { $0.fraction == f }.map(value))
                        return (f, m - (sd ?? 0), m + (sd ?? 0))
                    }
                    let methods = AttributionMethod.allCases.map(\.rawValue).filter { m in mine.contains { $0.ranking.method == m } }
                    // Accuracy points carry their bootstrap 95% interval over test sequences (the test set's own noise).
                    let series = methods.map { m in
                        let own = mine.filter { $0.ranking.method == m }
                        return SVG.Series(name: label(m), colour: SVG.colour(m), points: own.map { ($0.fraction, value($0)) },
                                          intervals: metric == "accuracy" ? Dictionary(own.map { ($0.fraction, ($0.accuracyLow, $0.accuracyHigh)) }) { a, _ in a } : [:])
                    }
                    var rules: [SVG.Rule] = []
                    if metric == "accuracy" {
                        rules.append(SVG.Rule(name: majority > chance + 1e-9 ? "chance" : "chance = majority class", y: chance))
                        if majority > chance + 1e-9 { rules.append(SVG.Rule(name: "majority class", y: majority)) }
                        if let full { rules.append(SVG.Rule(name: "full model", y: full.accuracy, dash: "7 3")) }
                    } else {
                        // Uniform guessing has expected recall 1/C and precision n_c/n per class: F1 = 1/C when balanced.
                        rules.append(SVG.Rule(name: "uniform guessing", y: chance))
                        if let full { rules.append(SVG.Rule(name: "full model", y: full.macroF1, dash: "7 3")) }
                    }
                    h += SVG.chart(title: "\(direction): test \(metric), \(g)s", xLabel: direction == "retain" ? "fraction kept (log scale)" : "fraction removed (log scale)",
                                   yLabel: "test \(metric)", logX: true, xTicks: fractions, series: series,
                                   bands: random.isEmpty ? [] : [SVG.Band(name: "random mean ± sd", points: band)], rules: rules) + "\n"
                    if metric == "accuracy" {
                        for m in methods {
                            for p in mine.filter({ $0.ranking.method == m }).sorted(by: { $0.fraction < $1.fraction }) {
                                numbers += "<tr><td>\(label(m))</td><td>\(direction)</td><td>\(RunReport.pct(p.fraction))</td><td>\(SVG.num(p.accuracy))</td>"
                                    + "<td>\(SVG.num(p.accuracyLow)) – \(SVG.num(p.accuracyHigh))</td><td>\(SVG.num(p.macroF1))</td></tr>"
                            }
                        }
                        for b in band { numbers += "<tr><td>random (mean ± sd)</td><td>\(direction)</td><td>\(RunReport.pct(b.x))</td><td>\(SVG.num((b.low + b.high) / 2))</td><td>± \(SVG.num((b.high - b.low) / 2))</td><td></td></tr>" }
                    }
                }
            }
            h += "</div><details><summary>numbers</summary><div class=\"wrap\">\(numbers)</table></div></details>\n"
        }
        return h
    }

    /// Figure 3: where the kept elements sit, per granularity, fraction and true-class method (and
    /// random, averaged over its seeds): the density kept / total per layer x module on one colour
    /// scale per granularity, with each module's share of everything kept.
    static func density(db: RunDatabase, label: (String) -> String) throws -> String {
        let densities = try db.densities().filter { $0.targetClass < 0 }
        guard !densities.isEmpty else { return "" }
        var h = "<h2>Where the knowledge sits: kept elements per layer and module</h2>\n"
        h += "<p>Each cell is the fraction of a block's weights (or neurons) that the submodel keeps; the colour scale runs from 0 to the largest "
        h += "density at that fraction (one scale for all grids of a fraction; its bar comes first). Random here is the select stage's baseline, a few random subsets averaged (their seeds listed); the curves above use the evidence stage's 100 random rankings instead, so the two can differ by their sampling noise. The bottom row is each module's share of everything kept (random keeps each module in proportion to its size). "
        h += "All numbers in <a href=\"density.csv\">density.csv</a>.</p>\n"
        for g in Granularity.allCases.map(\.rawValue) where densities.contains(where: { $0.granularity == g }) {
            let mine = densities.filter { $0.granularity == g }
            let layers = (mine.map(\.layer).max() ?? 0) + 1
            let modules = LinearModule.allCases.map(\.rawValue).filter { m in mine.contains { $0.module == m } }
            let methods = AttributionMethod.allCases.map(\.rawValue).filter { m in mine.contains { $0.method == m } } + [Baseline.random]
            for f in Array(Set(mine.map(\.retentionFraction))).sorted() {
                let scale = mine.filter { $0.retentionFraction == f }.map { Double($0.nKept) / Double(max($0.nTotal, 1)) }.max() ?? 1
                h += "<h3>\(g)s, top \(RunReport.pct(f)) kept (colour scale 0 ... \(SVG.num(scale, 2)))</h3>\n"
                h += "<p>" + SVG.escape(wherePlaced(mine.filter { $0.retentionFraction == f && $0.method != Baseline.random }, label: label)) + "</p><div class=\"figs\">\n"
                h += SVG.colourBar(scale: scale, label: "fraction kept") + "\n"
                for m in methods {
                    let rows = mine.filter { $0.method == m && $0.retentionFraction == f }
                    guard !rows.isEmpty else { continue }
                    let seeds = Double(Set(rows.map(\.seed)).count)
                    var density: [String: Double] = [:], kept: [String: Double] = [:]
                    for r in rows {
                        density["\(r.layer)/\(r.module)", default: 0] += Double(r.nKept) / Double(max(r.nTotal, 1)) / seeds
                        kept[r.module, default: 0] += Double(r.nKept)
                    }
                    let total = kept.values.reduce(0, +)
                    h += SVG.grid(title: m == Baseline.random ? "random (\(Int(seeds)) seeds)" : label(m), layers: layers, modules: modules, density: density,
                                  share: kept.mapValues { total > 0 ? $0 / total : 0 }, scale: scale) + "\n"
                }
                h += "</div>\n"
            }
        }
        return h
    }

    /// One sentence per method: the module holding the largest share of what it keeps, and the
    /// densest block, from `rows` (one method's density rows of one fraction each).
    static func wherePlaced(_ rows: [DensityRecord], label: (String) -> String) -> String {
        AttributionMethod.allCases.map(\.rawValue).compactMap { m -> String? in
            let mine = rows.filter { $0.method == m }
            guard !mine.isEmpty else { return nil }
            var kept: [String: Int] = [:], size: [String: Int] = [:]
            for r in mine { kept[r.module, default: 0] += r.nKept; size[r.module, default: 0] += r.nTotal }
            let total = max(kept.values.reduce(0, +), 1), all = max(size.values.reduce(0, +), 1)
            guard let top = kept.max(by: { ($0.value, $1.key) < ($1.value, $0.key) }),
                  let dense = mine.max(by: { Double($0.nKept) / Double(max($0.nTotal, 1)) < Double($1.nKept) / Double(max($1.nTotal, 1)) }) else { return nil }
            return "\(label(m)): \(SVG.num(100 * Double(top.value) / Double(total), 0))% of what it keeps is in \(top.key) "
                + "(\(SVG.num(100 * Double(size[top.key] ?? 0) / Double(all), 0))% of the elements); densest block layer \(dense.layer) \(dense.module) "
                + "(\(SVG.num(100 * Double(dense.nKept) / Double(max(dense.nTotal, 1)), 0))% kept)."
        }.joined(separator: " ")
    }

    /// Figure 2 (arXiv 2312.10770, Figures 3-5): for every retention fraction and method (and one
    /// random ranking), where the kept weights sit inside each matrix, over its scaled weight
    /// position in cells of 200 adjacent weights (`ReportFacts.positions`); one colour scale per
    /// fraction, 0 ... the densest cell of any method at it. The cells are in positions.csv.
    static func positions(_ all: [ReportFacts.Positions], label: (String) -> String) -> String {
        guard !all.isEmpty else { return "" }
        let cells = all[0].blocks.map(\.cells.count).max() ?? 0
        var h = "<h2>Inside each matrix: kept weights over scaled weight position</h2>\n"
        let modules = all[0].blocks.map(\.module).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
        h += "<p>The paper's heatmaps (arXiv 2312.10770, Figures 3-5): each strip is one weight matrix (\(SVG.escape(modules.joined(separator: ", ")))) in PyTorch's (out, in) "
        h += "row-major order from position 0 to 1, cut into cells of 200 adjacent weights (\(cells) cells per matrix"
        h += cells > 340 ? ", drawn as 340 bins pooling whole cells" : ""
        h += "); a cell's colour is the share of its weights the submodel keeps. An output row is one run of adjacent weights as long as the "
        h += "matrix's input features (" + SVG.escape(all[0].rowLength.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value) weights, so a cell spans \(SVG.num(200 / Double(max($0.value, 1)), 1)) rows" }.joined(separator: "; ")) + "), so whole rows kept or dropped show as bands. One colour scale per fraction, 0 ... the densest cell of any ranking "
        h += "at that fraction. Random is one random ranking (seed \(all.last!.ranking.seed)): what no structure looks like. Every cell in <a href=\"positions.csv\">positions.csv</a>.</p>\n"
        for f in Array(Set(all.map(\.retentionFraction))).sorted(by: <) {
            let mine = all.filter { $0.retentionFraction == f }
            // The scale's top is the densest whole cell (a short last cell of a few weights would set it by chance).
            let full = mine.flatMap { $0.blocks.flatMap { $0.cells.filter { $0.size == 200 }.map { Double($0.kept) / Double($0.size) } } }
            let scale = full.max() ?? mine.flatMap { $0.blocks.flatMap { $0.cells.map { Double($0.kept) / Double(max($0.size, 1)) } } }.max() ?? 1
            h += "<h3>top \(RunReport.pct(f)) of weights kept (colour scale 0 ... \(SVG.num(scale, 2)))</h3>"
            h += SVG.colourBar(scale: scale, label: "share of a cell kept") + "<div class=\"figs\">\n"
            for p in mine {
                let name = p.ranking.method == Baseline.random ? "random (seed \(p.ranking.seed))" : label(p.ranking.method)
                h += SVG.strips(title: "\(name), top \(RunReport.pct(f))", blocks: p.blocks, scale: scale) + "\n"
            }
            h += "</div>\n"
        }
        return h
    }

    /// Figure 4b: the full model's confusion matrix on test (cells coloured by the share of the
    /// true class's sequences, labelled with counts) and the table with per-class accuracy and F1.
    static func confusion(db: RunDatabase, classes: [ClassRecord], full: EvaluationRecord?) throws -> String {
        let md = try RunReport.confusion(db: db, classes: classes, full: full)
        guard !md.isEmpty else { return "" }
        guard let counts = try ReportFacts.confusion(db: db, classes: classes) else { return MarkdownTables.html(md) }
        let cells = counts.enumerated().map { t, row in
            let n = max(row.reduce(0, +), 1)
            return row.enumerated().map { p, c in
                SVG.Cell(value: Double(c) / Double(n), text: "\(c)", tip: "true \(classes[t].ecLabel), predicted \(classes[p].ecLabel): \(c) of \(n)")
            }
        }
        let short = classes.map { $0.ecLabel.replacingOccurrences(of: ".-", with: "") }
        let table = MarkdownTables.html(md)
        let heading = table.components(separatedBy: "</h2>").first.map { $0 + "</h2>" } ?? ""
        return heading + "<div class=\"figs\"><div>" + SVG.heatMatrix(title: "true (rows) x predicted", rows: short,
                                                                   columns: short, cells: cells, scale: 1, cell: 34, left: 30)
            + SVG.colourBar(scale: 1, label: "share of the row") + "<p>" + (classes.allSatisfy { $0.ecLabel.hasSuffix(".-.-.-") } ? "EC class k is written k.-.-.- (every sub-class of it)."
                : "Labels are EC numbers cut to the run's label level (- = every number below it).") + "</p></div><div>" + table.dropFirst(heading.count) + "</div></div>\n"
    }

    /// Figure 4: loss and accuracy per epoch on the train and select splits.
    static func training(db: RunDatabase, split: String = "select") throws -> String {
        let epochs = try db.epochs()
        guard !epochs.isEmpty else { return "" }
        let x = epochs.map { Double($0.epoch) }
        let ticks = Array(Set([1] + stride(from: 10, through: epochs.count, by: max(10, epochs.count / 6 / 10 * 10)).map { $0 } + [epochs.count])).sorted().map(Double.init)
        func series(_ name: String, _ ys: [Double]) -> SVG.Series { SVG.Series(name: name, colour: SVG.colour(name), points: Array(zip(x, ys)).filter { $0.1.isFinite }.map { ($0.0, $0.1) }) }
        var h = "<h2>Training</h2><p>Mean cross-entropy (nats) and accuracy per epoch on the train and \(split) splits. The train numbers are "
            + "averaged over the epoch's batches while the weights change (with dropout, if the model has any), the \(split) numbers measured "
            + "after the epoch, so \(split) can lie above train early on. Every epoch in <a href=\"training.csv\">training.csv</a>.</p><div class=\"figs\">\n"
        h += SVG.chart(title: "cross-entropy per epoch", xLabel: "epoch", yLabel: "mean cross-entropy", logX: false, xTicks: ticks,
                       series: [series("train", epochs.map(\.trainLoss)), series(split, epochs.map(\.selectLoss))]) + "\n"
        h += SVG.chart(title: "accuracy per epoch", xLabel: "epoch", yLabel: "accuracy", logX: false, xTicks: ticks,
                       series: [series("train", epochs.map(\.trainAccuracy)), series(split, epochs.map(\.selectAccuracy))]) + "\n"
        h += "</div>\n"
        return h
    }

    /// Figure 5: integrated gradients' completeness gap per path (`ReportFacts.completeness`),
    /// one histogram per granularity, with the summary table of `RunReport.completeness`.
    static func completeness(db: RunDatabase) throws -> String {
        let gaps = try ReportFacts.completeness(db: db)
        guard !gaps.isEmpty else { return "" }
        var h = MarkdownTables.html(try RunReport.completeness(db: db)) + "<p>Every path in <a href=\"completeness.csv\">completeness.csv</a>.</p><div class=\"figs\">\n"
        for g in gaps {
            h += SVG.histogram(title: "completeness gap, \(g.granularity) paths (\(g.gaps.count))", xLabel: "sum of attributions − (P(input) − P(baseline))", values: g.gaps) + "\n"
        }
        return h + "</div>\n"
    }

    /// The top 10 elements of every true-class ranking side by side, and the Jaccard overlap of
    /// the methods' kept sets (`ReportFacts`; the same tables as the Markdown report's).
    static func agreement(db: RunDatabase, label: (String) -> String) throws -> String {
        let md = try RunReport.agreement(db: db, label: label)
        guard !md.isEmpty else { return "" }
        // Each method's top table is a `#### method` heading and its table: put them side by side.
        var h = "", inFigs = false
        for part in MarkdownTables.html(md).components(separatedBy: "\n") where !part.isEmpty {
            let isTop = part.hasPrefix("<h4>") || (inFigs && part.hasPrefix("<div class=\"wrap\"><table><tr><th>rank</th>"))
            if isTop && !inFigs { h += "<div class=\"figs\">"; inFigs = true }
            if !isTop && inFigs { h += "</div>\n"; inFigs = false }
            h += part.hasPrefix("<h4>") ? "<div>" + part : part.hasPrefix("<div class=\"wrap\"><table><tr><th>rank</th>") ? part + "</div>" : part + "\n"
        }
        return h + (inFigs ? "</div>\n" : "")
    }

    /// The evidence, knowledge-edit and sanity tables, from the Markdown report's sections.
    static func tables(db: RunDatabase, classes: [ClassRecord], label: (String) -> String) throws -> String {
        var md = try RunReport.evidence(db: db, classes: classes, label: label).markdown
        md += try RunReport.knowledgeEdits(db: db, classes: classes, label: label)
        md += try RunReport.sanity(db: db, classes: classes, label: label)
        return MarkdownTables.html(md)
    }

    /// The data the run rests on: inputs with their SHA-256, rejected records by kind, split
    /// sizes, cropped sequences, time per stage, and the spec as recorded.
    static func data(db: RunDatabase) throws -> String {
        var h = "<h2>The data and the run</h2><div class=\"wrap\"><table><tr><th>input</th><th>role</th><th>bytes</th><th>SHA-256</th></tr>"
        for f in try db.inputFiles() {
            h += "<tr><td>\(SVG.escape(f.path))</td><td>\(SVG.escape(f.role))</td><td>\(f.sizeBytes)</td><td><code>\(SVG.escape(f.sha256))</code></td></tr>"
        }
        h += "</table></div><div class=\"figs\"><table><tr><th>split</th><th>sequences</th></tr>"
        for s in SplitRole.allCases { h += "<tr><td>\(s.rawValue)</td><td>\(try db.sequenceIDs(split: s.rawValue).count)</td></tr>" }
        if let counts = try db.query("SELECT COUNT(*), SUM(cropped) FROM tokens").rows.first, let n = counts[0].flatMap({ Int($0) }), n > 0 {
            h += "<tr><td>cropped (of \(n) tokenized)</td><td>\(counts[1].flatMap { Int($0) } ?? 0)</td></tr>"
        }
        h += "</table><table><tr><th>rejected records, by kind</th><th>n</th></tr>"
        let reasons = try ReportFacts.rejectionReasons(db: db)
        h += reasons.isEmpty ? "<tr><td>none</td><td>0</td></tr>" : reasons.map { "<tr><td>\(SVG.escape($0.reason))</td><td>\($0.count)</td></tr>" }.joined()
        h += "</table><table><tr><th>stage</th><th>rows</th><th>seconds</th></tr>"
        for s in try db.stages().sorted(by: { (Stage(rawValue: $0.stage) ?? .report) < (Stage(rawValue: $1.stage) ?? .report) }) { h += "<tr><td>\(SVG.escape(s.stage))</td><td>\(s.rowsWritten)</td><td>\(SVG.num(s.seconds, 1))</td></tr>" }
        h += "</table></div>\n"
        if let run = try db.run() {
            h += "<details><summary>The spec as recorded (kneuron \(SVG.escape(run.kneuronVersion)))</summary><pre>\(SVG.escape(run.specYAML))</pre></details>\n"
        }
        return h
    }
}

/// The report's Markdown subset as HTML: `## `, `### ` and `#### ` headings, pipe tables,
/// paragraphs, `code` spans and `**bold**`. Only what `RunReport` writes; escapes everything else.
enum MarkdownTables {
    static func html(_ md: String) -> String {
        var out = "", table: [[String]] = []
        func inline(_ s: String) -> String {
            var t = SVG.escape(s)
            while let a = t.range(of: "`"), let b = t.range(of: "`", range: a.upperBound ..< t.endIndex) {
                t = t.replacingCharacters(in: a.lowerBound ..< b.upperBound, with: "<code>" + t[a.upperBound ..< b.lowerBound] + "</code>")
            }
            while let a = t.range(of: "**"), let b = t.range(of: "**", range: a.upperBound ..< t.endIndex) {
                t = t.replacingCharacters(in: a.lowerBound ..< b.upperBound, with: "<b>" + t[a.upperBound ..< b.lowerBound] + "</b>")
            }
            return t
        }
        func flush() {
            guard !table.isEmpty else { return }
            out += "<div class=\"wrap\"><table>"
            for (i, row) in table.enumerated() {
                let tag = i == 0 ? "th" : "td"
                out += "<tr>" + row.map { "<\(tag)>\(inline($0))</\(tag)>" }.joined() + "</tr>"
            }
            out += "</table></div>\n"
            table = []
        }
        for raw in md.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.hasPrefix("|") {
                // Cells split at unescaped pipes; `\|` is a literal pipe inside a cell.
                let cells = line.replacingOccurrences(of: "\\|", with: "\u{1}").split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                    .map { $0.replacingOccurrences(of: "\u{1}", with: "|").trimmingCharacters(in: .whitespaces) }
                if cells.allSatisfy({ $0.allSatisfy { $0 == "-" } && !$0.isEmpty }) { continue }
                table.append(cells)
                continue
            }
            flush()
            if line.hasPrefix("#### ") { out += "<h4>\(inline(String(line.dropFirst(5))))</h4>\n" }
            else if line.hasPrefix("### ") { out += "<h3>\(inline(String(line.dropFirst(4))))</h3>\n" }
            else if line.hasPrefix("## ") { out += "<h2>\(inline(String(line.dropFirst(3))))</h2>\n" }
            else if !line.isEmpty { out += "<p>\(inline(line))</p>\n" }
        }
        flush()
        return out
    }
}
