import Foundation

/// Number formatting shared by every renderer.
enum Format {
    /// `value` with `digits` decimals ("-" for NaN or infinity).
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "-" }
        return String(format: "%.\(digits)f", value)
    }

    /// Adaptive precision for times: 3 significant-ish digits.
    static func time(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        let a = abs(value)
        return fixed(value, a >= 100 ? 0 : a >= 10 ? 1 : 2)
    }

    static func ratio(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        return fixed(value, 2) + "×"
    }

    /// A ratio with its 95% interval: "0.86× [0.81, 0.92]" ("0.86×" without an interval).
    static func ratioCI(_ value: Double?, _ low: Double?, _ high: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        let v = fixed(value, 2) + "×"
        guard let low, let high, low.isFinite, high.isFinite else { return v }
        return v + " [" + fixed(low, 2) + ", " + fixed(high, 2) + "]"
    }

    /// A relative change with its interval: "+10.2% [+6.1%, +14.5%]".
    static func change(_ i: Statistics.Interval?) -> String {
        guard let i else { return "-" }
        func pct(_ x: Double) -> String { x.isFinite ? String(format: "%+.1f%%", x * 100) : "?" }
        return pct(i.estimate) + " [" + pct(i.low) + ", " + pct(i.high) + "]"
    }

    /// A count with thousands grouped by commas ("-" for NaN).
    static func count(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        let n = Int(value.rounded())
        var s = String(abs(n))
        var i = s.count - 3
        while i > 0 { s.insert(",", at: s.index(s.startIndex, offsetBy: i)); i -= 3 }
        return (n < 0 ? "-" : "") + s
    }

    /// Bytes in binary units: "12.3 MiB".
    static func bytes<T: BinaryInteger>(_ value: T?) -> String {
        guard let value else { return "-" }
        let v = Double(value)
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var x = v
        var u = 0
        while abs(x) >= 1024, u < units.count - 1 {
            x /= 1024
            u += 1
        }
        return u == 0 ? "\(value) B" : fixed(x, 1) + " " + units[u]
    }

    static func mib<T: BinaryInteger>(_ value: T) -> String { fixed(Double(value) / 1_048_576, 1) }
}

/// A table of strings rendered as aligned text or Markdown.
struct TextTable {
    enum Align { case left, right }
    var headers: [String]
    var align: [Align]
    var rows: [[String]] = []

    func text() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                return align[i] == .left ? cell + pad : pad + cell
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var out = [line(headers), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }

    func markdown() -> String {
        let esc = { (s: String) in s.replacingOccurrences(of: "|", with: "\\|") }
        var out = ["| " + headers.map(esc).joined(separator: " | ") + " |",
                   "|" + align.map { $0 == .left ? ":---" : "---:" }.joined(separator: "|") + "|"]
        out += rows.map { "| " + $0.map(esc).joined(separator: " | ") + " |" }
        return out.joined(separator: "\n")
    }
}
