/// The result of one `bench explain` experiment: a question about Go's
/// allocator, what a widely shared article claims, what Go 1.27 does (with
/// the Go source files that say so), what SpanAlloc did when the experiment
/// ran, and a verdict computed by comparing the two.
///
/// Only ``question``, ``articleClaim``, ``goAnswer`` and ``goSources`` are
/// constants; every observation, table, check and the verdict are computed
/// from the live allocator each time the experiment runs.
public struct Explanation: Codable, Sendable {
    /// Experiment number, 1...12 (the order of docs/explain.md).
    public var number: Int
    /// A short title.
    public var title: String
    /// The question, as a newcomer would ask it.
    public var question: String
    /// What the article claims (translated and condensed).
    public var articleClaim: String
    /// What Go 1.27 does.
    public var goAnswer: String
    /// The Go source files that back ``goAnswer`` (paths in the Go tree).
    public var goSources: [String]
    /// Sentences built from the values measured in this run.
    public var observations: [String]
    /// Tables of measured values (span ids, spanClasses, addresses, counters).
    public var tables: [ExplainTable]
    /// The claims tested in this run, each with what it expects and what was observed.
    public var checks: [ExplainCheck]
    /// Where SpanAlloc deliberately differs from Go, as it bears on this experiment.
    public var differences: [String]
    /// The verdict, computed from ``checks``.
    public var verdict: ExplainVerdict

    /// Makes an explanation; the verdict is computed from `checks`.
    public init(
        number: Int, title: String, question: String, articleClaim: String,
        goAnswer: String, goSources: [String], observations: [String],
        tables: [ExplainTable], checks: [ExplainCheck], differences: [String]
    ) {
        self.number = number
        self.title = title
        self.question = question
        self.articleClaim = articleClaim
        self.goAnswer = goAnswer
        self.goSources = goSources
        self.observations = observations
        self.tables = tables
        self.checks = checks
        self.differences = differences
        self.verdict = ExplainVerdict(checks: checks)
    }

    /// The check whose statement starts with `prefix`, if any (for tests and tools).
    public func check(_ prefix: String) -> ExplainCheck? {
        checks.first { $0.statement.hasPrefix(prefix) }
    }
}

/// A table of strings; the first row of ``rows`` is data, not the header.
public struct ExplainTable: Codable, Sendable {
    /// What the table shows.
    public var title: String
    /// Column headers.
    public var columns: [String]
    /// Cells, row by row, rendered as measured.
    public var rows: [[String]]

    /// Makes a table.
    public init(title: String, columns: [String], rows: [[String]] = []) {
        self.title = title
        self.columns = columns
        self.rows = rows
    }
}

/// One claim tested against the allocator in this run.
public struct ExplainCheck: Codable, Sendable {
    /// Whose claim it is.
    public enum Source: String, Codable, Sendable {
        /// A claim of the article.
        case article
        /// What Go 1.27 does, which SpanAlloc is meant to reproduce.
        case go
    }

    /// Whose claim it is.
    public var source: Source
    /// The claim, in one sentence.
    public var statement: String
    /// The value the claim predicts.
    public var expected: String
    /// The value measured in this run.
    public var observed: String
    /// Whether the observation agrees with the claim.
    public var holds: Bool

    /// A check that holds when `observed == expected`.
    public static func equal<T: Equatable & CustomStringConvertible>(
        _ source: Source, _ statement: String, expected: T, observed: T
    ) -> ExplainCheck {
        ExplainCheck(source: source, statement: statement, expected: expected.description,
                     observed: observed.description, holds: expected == observed)
    }

    /// Makes a check.
    public init(source: Source, statement: String, expected: String, observed: String, holds: Bool) {
        self.source = source
        self.statement = statement
        self.expected = expected
        self.observed = observed
        self.holds = holds
    }
}

/// The verdict on one experiment, computed from its checks.
public struct ExplainVerdict: Codable, Sendable {
    /// How the article fares.
    public enum Article: String, Codable, Sendable {
        /// Every claim of the article that was tested holds.
        case right
        /// Some hold, some do not.
        case partlyRight = "partly right"
        /// None holds.
        case wrong
        /// The experiment tested no claim of the article.
        case untested
    }

    /// How the article fares.
    public var article: Article
    /// Article claims that held / were tested.
    public var articleClaimsHolding: Int
    /// Article claims tested.
    public var articleClaimsTested: Int
    /// Go facts SpanAlloc reproduced / were tested.
    public var goFactsHolding: Int
    /// Go facts tested.
    public var goFactsTested: Int
    /// One line for people.
    public var summary: String

    /// Whether SpanAlloc behaved as Go does on every tested point.
    public var matchesGo: Bool { goFactsHolding == goFactsTested }

    /// Computes the verdict from the checks.
    public init(checks: [ExplainCheck]) {
        let article = checks.filter { $0.source == .article }
        let go = checks.filter { $0.source == .go }
        articleClaimsTested = article.count
        articleClaimsHolding = article.filter(\.holds).count
        goFactsTested = go.count
        goFactsHolding = go.filter(\.holds).count
        if articleClaimsTested == 0 {
            self.article = .untested
        } else if articleClaimsHolding == articleClaimsTested {
            self.article = .right
        } else if articleClaimsHolding == 0 {
            self.article = .wrong
        } else {
            self.article = .partlyRight
        }
        summary = "The article is \(self.article.rawValue) (\(articleClaimsHolding) of \(articleClaimsTested) "
            + "claims hold); SpanAlloc "
            + (goFactsHolding == goFactsTested ? "behaves as Go does" : "DIFFERS from Go")
            + " (\(goFactsHolding) of \(goFactsTested) points)."
    }
}
