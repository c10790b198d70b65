import Foundation

/// Renders explanations as text for people, Markdown for the docs, or JSON for tools.
public enum ExplainRender {
    /// Plain text: short wrapped paragraphs and aligned tables.
    public static func text(_ list: [Explanation], width: Int = 96) -> String {
        list.map { text($0, width: width) }.joined(separator: "\n\n")
    }

    /// Markdown, for docs/explain.md.
    public static func markdown(_ list: [Explanation]) -> String {
        list.map(markdown).joined(separator: "\n\n")
    }

    /// Pretty-printed JSON array with sorted keys.
    public static func json(_ list: [Explanation]) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try enc.encode(list), as: UTF8.self)
    }

    static func text(_ e: Explanation, width: Int) -> String {
        var out: [String] = []
        let head = "\(e.number). \(e.title)"
        out.append(head)
        out.append(String(repeating: "=", count: head.count))
        out.append(labeled("Question", e.question, width))
        out.append(labeled("Article", e.articleClaim, width))
        out.append(labeled("Go 1.27", e.goAnswer, width))
        out.append(labeled("Source", e.goSources.joined(separator: "; "), width))
        out.append("")
        out.append("Observed (live, this run):")
        for o in e.observations { out.append(wrap(o, width, first: "  - ", rest: "    ")) }
        for t in e.tables {
            out.append("")
            out.append(wrap(t.title + ":", width, first: "  ", rest: "  "))
            out.append(table(t).split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n"))
        }
        out.append("")
        out.append("Checks:")
        let checkTable = ExplainTable(
            title: "", columns: ["", "whose", "claim", "expected", "observed"],
            rows: e.checks.map { [$0.holds ? "ok" : "NO", $0.source == .go ? "Go" : "article", $0.statement, $0.expected, $0.observed] })
        out.append(table(checkTable).split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n"))
        if !e.differences.isEmpty {
            out.append("")
            out.append("Where SpanAlloc differs from Go on purpose:")
            for d in e.differences { out.append(wrap(d, width, first: "  - ", rest: "    ")) }
        }
        out.append("")
        out.append(wrap(e.verdict.summary, width, first: "Verdict: ", rest: "         "))
        return out.joined(separator: "\n")
    }

    static func markdown(_ e: Explanation) -> String {
        var out: [String] = []
        out.append("## \(e.number). \(md(e.title))")
        out.append("")
        out.append("**Question.** \(md(e.question))")
        out.append("")
        out.append("**Article.** \(md(e.articleClaim))")
        out.append("")
        out.append("**Go 1.27.** \(md(e.goAnswer)) (" + e.goSources.map { "`\($0)`" }.joined(separator: "; ") + ")")
        out.append("")
        out.append("**Observed in this run.**")
        out.append("")
        for o in e.observations { out.append("- \(md(o))") }
        for t in e.tables {
            out.append("")
            out.append(md(t.title))
            out.append("")
            out.append(markdownTable(t))
        }
        out.append("")
        out.append("**Checks.**")
        out.append("")
        out.append(markdownTable(ExplainTable(
            title: "", columns: ["", "whose", "claim", "expected", "observed"],
            rows: e.checks.map { [$0.holds ? "✅" : "❌", $0.source == .go ? "Go" : "article", $0.statement, $0.expected, $0.observed] })))
        if !e.differences.isEmpty {
            out.append("")
            out.append("**Where SpanAlloc differs from Go on purpose.**")
            out.append("")
            for d in e.differences { out.append("- \(md(d))") }
        }
        out.append("")
        out.append("**Verdict.** \(e.verdict.summary)")
        return out.joined(separator: "\n")
    }

    /// Text escaped for Markdown (a `*` in `[]*T` must not start emphasis).
    static func md(_ text: String) -> String { text.replacingOccurrences(of: "*", with: "\\*") }

    /// `label: text`, wrapped, continuation lines indented under the text.
    static func labeled(_ label: String, _ text: String, _ width: Int) -> String {
        let first = (label + ":").padding(toLength: 10, withPad: " ", startingAt: 0)
        return wrap(text, width, first: first, rest: String(repeating: " ", count: first.count))
    }

    /// Greedy word wrap.
    static func wrap(_ text: String, _ width: Int, first: String, rest: String) -> String {
        var lines: [String] = []
        var line = first
        var empty = true
        for word in text.split(separator: " ") {
            if !empty && line.count + 1 + word.count > width {
                lines.append(line)
                line = rest + word
            } else {
                line += (empty ? "" : " ") + word
            }
            empty = false
        }
        lines.append(line)
        return lines.joined(separator: "\n")
    }

    /// An aligned text table; numeric-looking cells are right-aligned.
    static func table(_ t: ExplainTable) -> String {
        var widths = t.columns.map(\.count)
        for row in t.rows {
            for (i, c) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) }
        }
        let numeric = t.columns.indices.map { i in
            !t.rows.isEmpty && t.rows.allSatisfy { i < $0.count && isNumeric($0[i]) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
                return numeric[i] ? pad + c : c + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var lines = [line(t.columns), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")]
        lines += t.rows.map(line)
        return lines.joined(separator: "\n")
    }

    static func isNumeric(_ s: String) -> Bool {
        !s.isEmpty && s.allSatisfy { "0123456789.-%×".contains($0) || $0 == " " || $0 == "n" || $0 == "s" }
            && s.first.map { $0.isNumber || $0 == "-" } == true
    }

    static func markdownTable(_ t: ExplainTable) -> String {
        let esc = { (s: String) in md(s).replacingOccurrences(of: "|", with: "\\|") }
        var out = ["| " + t.columns.map(esc).joined(separator: " | ") + " |",
                   "|" + t.columns.map { _ in "---" }.joined(separator: "|") + "|"]
        out += t.rows.map { "| " + $0.map(esc).joined(separator: " | ") + " |" }
        return out.joined(separator: "\n")
    }
}
