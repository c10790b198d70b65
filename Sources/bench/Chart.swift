import Foundation

/// Draws a report as one SVG: grouped bars of time and peak RSS (each
/// relative to jemalloc, since workloads differ by orders of magnitude in
/// ns/op) per workload and allocator, and the reuse phases as lines.
enum Chart {
    static let colors: [String: String] = [
        "SpanAlloc": "#d62728", "jemalloc": "#1f77b4", "glibc": "#7f7f7f",
        "mimalloc": "#2ca02c", "tcmalloc": "#ff7f0e", "jemalloc-bg": "#6baed6",
    ]
    /// Colours of the other rows (custom libraries, SpanAlloc variants), chosen by name so a row keeps its
    /// colour from one chart to the next.
    static let palette = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#ff9896"]
    static func color(_ name: String) -> String {
        colors[name] ?? palette[name.unicodeScalars.reduce(0) { ($0 &* 31 &+ Int($1.value)) & 0xFFFF } % palette.count]
    }

    static let width = 1100.0
    static let left = 70.0
    static let right = 20.0

    static func svg(_ report: Report) -> String {
        var body: [String] = []
        var y = 20.0
        var names = report.allocators.map(\.name).filter { n in
            report.workloads.contains { $0.rows.contains { $0.name == n } }
                || report.reuse?.runs.contains { $0.allocator == n } == true
        }
        // Rows of the reuse experiment only (jemalloc-bg).
        for run in report.reuse?.runs ?? [] where !names.contains(run.allocator) { names.append(run.allocator) }
        body.append(text(left, y + 12, "SpanAlloc bench — \(report.environment.cpuModel), "
                         + "\(report.environment.cores) cores, \(report.environment.kernel)", size: 14, weight: "bold"))
        y += 24
        body.append(legend(names, x: left, y: y))
        y += 48
        let tables = report.workloads.filter { !$0.rows.isEmpty }
        let base = report.settings.baseline ?? AllocatorID.defaultBaseline.rawValue
        if !tables.isEmpty {
            body.append(contentsOf: bars(tables, names: names, top: y, height: 260,
                                         title: "time relative to \(base) (lower is better; "
                                             + "error bars: 95% CI of the paired ratio)",
                                         value: { $0.ratio }, interval: { ($0.ratioLow, $0.ratioHigh) }))
            y += 260 + 90
            body.append(contentsOf: bars(tables, names: names, top: y, height: 200,
                                         title: "peak RSS relative to \(base) (lower is better)",
                                         value: { $0.rssRatio }))
            y += 200 + 90
        }
        if let reuse = report.reuse, !reuse.runs.isEmpty {
            body.append(contentsOf: lines(reuse, top: y, height: 240,
                                          title: "reuse experiment: resident memory (MiB above baseline) after each phase",
                                          value: { Double($0.residentBytes) / 1_048_576 }))
            y += 240 + 70
        }
        let height = y + 10
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
            <rect width="100%" height="100%" fill="white"/>
            \(body.joined(separator: "\n"))
            </svg>

            """
    }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func text(_ x: Double, _ y: Double, _ s: String, size: Int = 11, anchor: String = "start",
                     weight: String = "normal", rotate: Double? = nil) -> String {
        let transform = rotate.map { " transform=\"rotate(\(f($0)) \(f(x)) \(f(y)))\"" } ?? ""
        return "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(size)\" text-anchor=\"\(anchor)\" "
            + "font-weight=\"\(weight)\"\(transform)>\(esc(s))</text>"
    }

    static func legend(_ names: [String], x: Double, y: Double) -> String {
        var out: [String] = []
        var cx = x
        for n in names {
            out.append("<rect x=\"\(f(cx))\" y=\"\(f(y))\" width=\"14\" height=\"14\" fill=\"\(color(n))\"/>")
            out.append(text(cx + 20, y + 12, n, size: 12))
            cx += 44 + Double(n.count) * 8
        }
        return out.joined(separator: "\n")
    }

    /// A y axis with gridlines from 0 to `maxValue`; returns the elements and the value→y mapping.
    static func axis(top: Double, height: Double, maxValue: Double, step: Double, label: (Double) -> String)
        -> [String] {
        var out: [String] = []
        var v = 0.0
        while v <= maxValue + 1e-9 {
            let yy = top + height - v / maxValue * height
            out.append("<line x1=\"\(f(left))\" y1=\"\(f(yy))\" x2=\"\(f(width - right))\" y2=\"\(f(yy))\" "
                       + "stroke=\"#e0e0e0\" stroke-width=\"1\"/>")
            out.append(text(left - 6, yy + 4, label(v), size: 10, anchor: "end"))
            v += step
        }
        out.append("<line x1=\"\(f(left))\" y1=\"\(f(top + height))\" x2=\"\(f(width - right))\" "
                   + "y2=\"\(f(top + height))\" stroke=\"#333\"/>")
        return out
    }

    static func niceStep(_ maxValue: Double) -> Double {
        let raw = maxValue / 5
        let mag = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 2.5, 5, 10] where raw <= m * mag { return m * mag }
        return 10 * mag
    }

    static func bars(_ tables: [WorkloadTable], names: [String], top: Double, height: Double, title: String,
                     value: (Row) -> Double?, interval: (Row) -> (Double?, Double?) = { _ in (nil, nil) }) -> [String] {
        let values = tables.flatMap { $0.rows.compactMap(value) }.filter(\.isFinite)
        let cap = 4.0
        let cut = values.contains { $0 > cap } ? "  (bars above \(Format.fixed(cap, 0))x are cut; the value is printed)" : ""
        var out = [text(left, top - 6, title + cut, size: 13, weight: "bold")]
        let maxValue = min(cap, max(1.2, (values.max() ?? 1) * 1.1))
        let step = niceStep(maxValue)
        let top2 = top + 8
        out += axis(top: top2, height: height, maxValue: maxValue, step: step) { Format.fixed($0, step < 0.5 ? 2 : 1) + "x" }
        let plotW = width - left - right
        let groupW = plotW / Double(tables.count)
        let barW = min(18, (groupW - 8) / Double(max(1, names.count)))
        for (gi, t) in tables.enumerated() {
            let gx = left + Double(gi) * groupW + (groupW - barW * Double(names.count)) / 2
            for (ni, n) in names.enumerated() {
                guard let row = t.rows.first(where: { $0.name == n }), let v = value(row), v.isFinite else { continue }
                let shown = min(v, maxValue)
                let h = shown / maxValue * height
                let x = gx + Double(ni) * barW
                out.append("<rect x=\"\(f(x))\" y=\"\(f(top2 + height - h))\" width=\"\(f(barW - 1))\" "
                           + "height=\"\(f(h))\" fill=\"\(color(n))\"><title>\(esc(t.id)) \(esc(n)): "
                           + "\(Format.ratio(v))</title></rect>")
                let (lo, hi) = interval(row)
                var labelY = top2 + height - h - 3
                if let lo, let hi, lo.isFinite, hi.isFinite {
                    // Error bar: a vertical line from the lower to the upper bound (clipped to the axis), with caps.
                    let yLo = top2 + height - min(lo, maxValue) / maxValue * height
                    let yHi = top2 + height - min(hi, maxValue) / maxValue * height
                    let cx = x + (barW - 1) / 2
                    out.append("<g class=\"ci\" stroke=\"#222\" stroke-width=\"1\"><title>\(esc(t.id)) \(esc(n)): "
                               + "\(esc(Format.ratioCI(v, lo, hi)))</title>"
                               + "<line x1=\"\(f(cx))\" y1=\"\(f(yLo))\" x2=\"\(f(cx))\" y2=\"\(f(yHi))\"/>"
                               + "<line x1=\"\(f(cx - 2.5))\" y1=\"\(f(yLo))\" x2=\"\(f(cx + 2.5))\" y2=\"\(f(yLo))\"/>"
                               + "<line x1=\"\(f(cx - 2.5))\" y1=\"\(f(yHi))\" x2=\"\(f(cx + 2.5))\" y2=\"\(f(yHi))\"/></g>")
                    labelY = Swift.min(labelY, yHi - 3)
                }
                out.append(text(x + barW / 2 + 3, labelY, Format.fixed(v, 2), size: 8, rotate: -90))
            }
            out.append(text(left + (Double(gi) + 0.5) * groupW, top2 + height + 14, t.id, size: 10, anchor: "end",
                            rotate: -30))
        }
        // baseline = 1.0
        let y1 = top2 + height - 1 / maxValue * height
        out.append("<line x1=\"\(f(left))\" y1=\"\(f(y1))\" x2=\"\(f(width - right))\" y2=\"\(f(y1))\" "
                   + "stroke=\"#1f77b4\" stroke-dasharray=\"4 3\"/>")
        return out
    }

    static func lines(_ reuse: ReuseReport, top: Double, height: Double, title: String,
                      value: (ReusePhase) -> Double) -> [String] {
        var out = [text(left, top - 6, title, size: 13, weight: "bold")]
        let values = reuse.runs.flatMap { $0.phases.map(value) }
        let maxValue = max(1, (values.max() ?? 1) * 1.1)
        let step = niceStep(maxValue)
        let top2 = top + 8
        out += axis(top: top2, height: height, maxValue: maxValue, step: step) { Format.fixed($0, 0) }
        let n = reuse.phases.count
        let plotW = width - left - right - 40
        func px(_ i: Int) -> Double { left + 20 + (n > 1 ? Double(i) / Double(n - 1) * plotW : 0) }
        for (i, phase) in reuse.phases.enumerated() {
            out.append(text(px(i), top2 + height + 16, phase, size: 10,
                            anchor: i == 0 ? "start" : i == n - 1 ? "end" : "middle"))
        }
        for run in reuse.runs {
            let pts = run.phases.enumerated().map { i, p in
                "\(f(px(i))),\(f(top2 + height - min(value(p), maxValue) / maxValue * height))"
            }
            out.append("<polyline points=\"\(pts.joined(separator: " "))\" fill=\"none\" "
                       + "stroke=\"\(color(run.allocator))\" stroke-width=\"2.5\"/>")
            for (i, p) in run.phases.enumerated() {
                let yy = top2 + height - min(value(p), maxValue) / maxValue * height
                out.append("<circle cx=\"\(f(px(i)))\" cy=\"\(f(yy))\" r=\"3.5\" fill=\"\(color(run.allocator))\">"
                           + "<title>\(esc(run.allocator)) \(esc(p.name)): \(Format.fixed(value(p), 1)) MiB</title></circle>")
            }
        }
        return out
    }
}
