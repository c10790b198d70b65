import ArgumentParser
import Foundation
import SpanAllocExplain

/// `bench explain [N]`: the classic questions about Go's allocator, slices
/// and channels, answered by experiments on SpanAlloc (see docs/explain.md).
struct ExplainCommand: ParsableCommand {
    /// Output formats of `bench explain`.
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json, markdown
    }

    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Answer the classic Go allocator questions (slices, channels, spans) by live experiments.",
        discussion: """
            Each experiment prints the question, what a widely shared article claims, what Go 1.27 does \
            (with the Go source files), what SpanAlloc did in this run (span ids, spanClasses, counter deltas, \
            addresses), and a verdict computed by comparing them. Experiments: \
            \(Explain.numbers.map { "\($0) \(Explain.titles[$0]!)" }.joined(separator: "; ")).
            """)

    @Argument(help: "Run only this experiment (1...12); all of them when omitted.")
    var number: Int?

    @Option(help: "Output format: text, json or markdown.")
    var format: Format = .text

    func validate() throws {
        if let number, !Explain.numbers.contains(number) {
            throw ValidationError("no experiment \(number); they are numbered 1 to \(Explain.numbers.upperBound)")
        }
    }

    func run() throws {
        let list = number.map { [Explain.run($0)] } ?? Explain.runAll()
        switch format {
        case .text: print(ExplainRender.text(list))
        case .json: print(try ExplainRender.json(list))
        case .markdown: print(ExplainRender.markdown(list))
        }
    }
}
