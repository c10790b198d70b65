import ArgumentParser
import Foundation

/// One row of `bench diff`: a workload and an allocator in both reports.
struct DiffRow: Codable, Sendable {
    var workload: String
    var allocator: String
    var baseline: String
    var oldRatio: Double?
    var oldRatioLow: Double?
    var oldRatioHigh: Double?
    var newRatio: Double?
    var newRatioLow: Double?
    var newRatioHigh: Double?
    /// Relative change of the ratio to the baseline (new / old − 1) with its 95% interval.
    var ratioChange: Statistics.Interval?
    /// Relative change of the allocator's own time (its samples), with its interval: the machine's
    /// speed moves this one too, so it is reported but not judged.
    var timeChange: Statistics.Interval?
    /// The ratio's interval excludes zero change.
    var significant: Bool
    /// Significant and the estimate is beyond ±threshold: a change worth a flag.
    var changed: Bool
    /// Changed, for the worse (slower relative to the baseline).
    var worse: Bool
    /// Rows of the judged allocator decide the exit status.
    var judged: Bool
}

struct DiffReport: Codable, Sendable {
    var old: String
    var new: String
    var threshold: Double
    var allocator: String
    var method: String
    var rows: [DiffRow]
    var significantRows: Int
    var changedRows: Int
    var worseJudgedRows: Int
    var notes: [String]
}

enum Diff {
    static let method = "per row: Welch's 95% t-interval on mean(new log ratios) − mean(old log ratios), "
        + "where a log ratio is ln(allocator / baseline) of one round; shown as a relative change exp(Δ) − 1. "
        + "A row is significant when the interval excludes 0, changed when it is also beyond ±threshold."

    /// Per-round log ratios of `row` to the table's baseline row.
    static func logRatios(_ table: WorkloadTable, _ row: Row) -> [Double]? {
        guard let b = table.baseline, let base = table.rows.first(where: { $0.name == b }) else { return nil }
        return Statistics.logRatios(row.samples, base.samples)
    }

    static func compare(old: Report, new: Report, oldName: String, newName: String, threshold: Double,
                        allocator: String) -> DiffReport {
        var rows: [DiffRow] = []
        var notes: [String] = []
        let oldBase = old.settings.baseline ?? AllocatorID.defaultBaseline.rawValue
        let newBase = new.settings.baseline ?? AllocatorID.defaultBaseline.rawValue
        if oldBase != newBase { notes.append("the reports use different baselines (\(oldBase) vs \(newBase))") }
        for sectionPair in [(old.workloads, new.workloads), (old.preload, new.preload)] {
            for nt in sectionPair.1 {
                guard let ot = sectionPair.0.first(where: { $0.id == nt.id }) else {
                    notes.append("\(nt.id): only in the new report")
                    continue
                }
                guard let base = nt.baseline, ot.baseline == base else {
                    notes.append("\(nt.id): no common baseline row")
                    continue
                }
                for nr in nt.rows where nr.name != base {
                    guard let or = ot.rows.first(where: { $0.name == nr.name }),
                          let x = logRatios(ot, or), let y = logRatios(nt, nr) else { continue }
                    let change = Statistics.relativeChange(old: x, new: y)
                    let timeChange = Statistics.relativeChange(
                        old: or.samples.filter { $0 > 0 }.map { log($0) }, new: nr.samples.filter { $0 > 0 }.map { log($0) })
                    let significant = change.map { $0.low > 0 || $0.high < 0 } ?? false
                    let changed = significant && abs(change!.estimate) > threshold
                    rows.append(DiffRow(
                        workload: nt.id, allocator: nr.name, baseline: base,
                        oldRatio: or.ratio, oldRatioLow: or.ratioLow, oldRatioHigh: or.ratioHigh,
                        newRatio: nr.ratio, newRatioLow: nr.ratioLow, newRatioHigh: nr.ratioHigh,
                        ratioChange: change, timeChange: timeChange, significant: significant, changed: changed,
                        worse: changed && change!.estimate > 0, judged: nr.name.lowercased() == allocator.lowercased()))
                }
            }
            for ot in sectionPair.0 where !sectionPair.1.contains(where: { $0.id == ot.id }) {
                notes.append("\(ot.id): only in the old report")
            }
        }
        if old.settings.testInflate != nil || new.settings.testInflate != nil {
            notes.append("a report was made with BENCH_TEST_INFLATE (test only): its SpanAlloc samples are inflated")
        }
        return DiffReport(
            old: oldName, new: newName, threshold: threshold, allocator: allocator, method: method, rows: rows,
            significantRows: rows.filter(\.significant).count, changedRows: rows.filter(\.changed).count,
            worseJudgedRows: rows.filter { $0.judged && $0.worse }.count, notes: notes)
    }

    static func render(_ d: DiffReport, markdown: Bool) -> String {
        var tt = TextTable(
            headers: ["workload", "allocator", "old ratio [95% CI]", "new ratio [95% CI]", "ratio change [95% CI]",
                      "", "own time change [95% CI]"],
            align: [.left, .left, .right, .right, .right, .left, .right])
        for r in d.rows {
            let mark: String
            if r.changed { mark = r.worse ? "WORSE" : "better" }
            else if r.significant { mark = (r.ratioChange?.estimate ?? 0) > 0 ? "(worse)" : "(better)" }
            else { mark = "~" }
            tt.rows.append([r.workload, r.allocator, Format.ratioCI(r.oldRatio, r.oldRatioLow, r.oldRatioHigh),
                            Format.ratioCI(r.newRatio, r.newRatioLow, r.newRatioHigh), Format.change(r.ratioChange),
                            mark, r.judged ? Format.change(r.timeChange) : ""])
        }
        var out = [markdown ? "# bench diff" : "bench diff", "old: \(d.old)", "new: \(d.new)",
                   markdown ? tt.markdown() : tt.text()]
        out.append("""
            \(d.rows.count) rows; interval excludes 0 on \(d.significantRows); changed beyond \
            ±\(Format.fixed(d.threshold * 100, 1))% on \(d.changedRows); \(d.allocator) rows worse beyond the \
            threshold: \(d.worseJudgedRows).
            WORSE/better: interval excludes 0 and the change is beyond the threshold; (worse)/(better): interval \
            excludes 0, change within the threshold; ~: no change shown. Own time (\(d.allocator) rows): the \
            allocator's ns/op itself, which also moves with the machine's speed (not judged).
            Method: \(d.method)
            """)
        if !d.notes.isEmpty { out.append(d.notes.map { "- " + $0 }.joined(separator: "\n")) }
        return out.joined(separator: "\n\n") + "\n"
    }
}

/// `bench diff OLD.json NEW.json`: which rows changed between two reports, with intervals.
struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two JSON reports row by row; exit 1 when a row got worse beyond the threshold.",
        discussion: """
            For every workload and allocator in both reports: the ratio to the baseline in each, the relative \
            change of that ratio with a 95% interval (Welch's t-interval on the per-round log ratios of the two \
            runs), and for the judged allocator (--allocator, default SpanAlloc) the change of its own time. \
            Exits 1 when a row of the judged allocator is slower relative to the baseline beyond --threshold \
            with an interval that excludes zero; 0 otherwise.
            """)

    @Argument(help: "The older report (bench --format json).") var old: String
    @Argument(help: "The newer report.") var new: String
    @Option(help: ArgumentHelp("Smallest change that counts, e.g. 5% or 0.05.", valueName: "pct"))
    var threshold = "5%"
    @Option(help: ArgumentHelp("The allocator whose rows decide the exit status.", valueName: "name"))
    var allocator = AllocatorID.spanAlloc.rawValue
    @Option(help: "Output format: text, json or markdown.")
    var format: OutputFormat = .text

    var thresholdValue: Double? {
        let t = threshold.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("%") { return Double(t.dropLast()).map { $0 / 100 } }
        return Double(t)
    }

    func validate() throws {
        guard let v = thresholdValue, v >= 0, v.isFinite else {
            throw ValidationError("--threshold takes a percentage such as 5% (or a fraction such as 0.05)")
        }
    }

    static func load(_ path: String) throws -> Report {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try dec.decode(Report.self, from: data)
    }

    func run() throws {
        let d = Diff.compare(old: try Self.load(old), new: try Self.load(new), oldName: old, newName: new,
                             threshold: thresholdValue!, allocator: allocator)
        switch format {
        case .json:
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            enc.nonConformingFloatEncodingStrategy = .convertToString(
                positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            print(String(decoding: try enc.encode(d), as: UTF8.self))
        case .markdown: print(Diff.render(d, markdown: true), terminator: "")
        default: print(Diff.render(d, markdown: false), terminator: "")
        }
        if d.worseJudgedRows > 0 { throw ExitCode(1) }
    }
}
