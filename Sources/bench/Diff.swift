import ArgumentParser
import Foundation

extension Diff.Metric: ExpressibleByArgument {}

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
    /// "cpu" or "wall": which time the ratios are of.
    var metric: String
    var method: String
    var rows: [DiffRow]
    var significantRows: Int
    var changedRows: Int
    var worseJudgedRows: Int
    var notes: [String]
}

enum Diff {
    static let method = "per row: Hodges-Lehmann shift between the new and the old run's per-round log ratios "
        + "ln(allocator / baseline) with the Mann-Whitney 95% interval (Welch's t-interval below 4 rounds a side), "
        + "shown as a relative change exp(Δ) − 1. "
        + "A row is significant when the interval excludes 0, changed when it is also beyond ±threshold."

    /// What a row's time is: CPU time of the timed region (the default: it leaves out the time a
    /// process waited for a CPU on a shared machine) or wall time.
    enum Metric: String, CaseIterable, Codable, Sendable { case cpu, wall }

    /// The row's samples of `metric` (wall time when CPU samples are missing, as in LD_PRELOAD rows).
    static func samples(_ row: Row, _ metric: Metric) -> [Double] {
        metric == .cpu ? (row.cpuSamples ?? row.samples) : row.samples
    }

    /// Per-round log ratios of `row` to the table's baseline row.
    static func logRatios(_ table: WorkloadTable, _ row: Row, _ metric: Metric) -> [Double]? {
        guard let b = table.baseline, let base = table.rows.first(where: { $0.name == b }) else { return nil }
        if metric == .cpu, (row.cpuSamples == nil) != (base.cpuSamples == nil) { return nil }
        return Statistics.logRatios(samples(row, metric), samples(base, metric))
    }

    /// The ratio and interval of `metric` a report holds for a row.
    static func ratio(_ row: Row, _ metric: Metric) -> (Double?, Double?, Double?) {
        metric == .cpu && row.cpuSamples != nil ? (row.cpuRatio, row.cpuRatioLow, row.cpuRatioHigh)
            : (row.ratio, row.ratioLow, row.ratioHigh)
    }

    /// Two rows compared with each other: the `old` row of the old report against the `new` row of the
    /// new report, in every workload that has both (the reports may be one file: an A/B of two
    /// allocators or settings measured in the same run).
    struct RowPair: Sendable {
        var old: String
        var new: String
    }

    static func compare(old: Report, new: Report, oldName: String, newName: String, threshold: Double,
                        allocator: String, metric: Metric, pair: RowPair? = nil) -> DiffReport {
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
                for nr in nt.rows where nr.name != base && (pair == nil || nr.name == pair!.new) {
                    let oldRowName = pair?.old ?? nr.name
                    guard oldRowName != base, let or = ot.rows.first(where: { $0.name == oldRowName }),
                          let x = logRatios(ot, or, metric), let y = logRatios(nt, nr, metric) else { continue }
                    let change = Statistics.relativeChange(old: x, new: y)
                    let timeChange = Statistics.relativeChange(
                        old: samples(or, metric).filter { $0 > 0 }.map { log($0) },
                        new: samples(nr, metric).filter { $0 > 0 }.map { log($0) })
                    let (o, ol, oh) = ratio(or, metric), (n, nl, nh) = ratio(nr, metric)
                    let significant = change.map { $0.low > 0 || $0.high < 0 } ?? false
                    let changed = significant && abs(change!.estimate) > threshold
                    rows.append(DiffRow(
                        workload: nt.id, allocator: pair.map { "\($0.new) vs \($0.old)" } ?? nr.name, baseline: base,
                        oldRatio: o, oldRatioLow: ol, oldRatioHigh: oh, newRatio: n, newRatioLow: nl, newRatioHigh: nh,
                        ratioChange: change, timeChange: timeChange, significant: significant, changed: changed,
                        worse: changed && change!.estimate > 0,
                        judged: pair != nil || nr.name.lowercased() == allocator.lowercased()))
                }
            }
            for ot in sectionPair.0 where !sectionPair.1.contains(where: { $0.id == ot.id }) {
                notes.append("\(ot.id): only in the old report")
            }
        }
        if let p = pair, rows.isEmpty {
            notes.append("no workload has a \(p.old) row in the old report and a \(p.new) row in the new one")
        }
        if old.settings.testInflate != nil || new.settings.testInflate != nil {
            notes.append("a report was made with BENCH_TEST_INFLATE (test only): its SpanAlloc samples are inflated")
        }
        return DiffReport(
            old: oldName, new: newName, threshold: threshold, allocator: allocator, metric: metric.rawValue,
            method: method, rows: rows,
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
        var out = [markdown ? "# bench diff" : "bench diff",
                   "old: \(d.old)\nnew: \(d.new)\ntime: \(d.metric == "cpu" ? "CPU time of the timed region" : "wall time")",
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
            change of that ratio with a 95% interval (Hodges–Lehmann shift with the Mann–Whitney interval, on \
            the per-round log ratios of the two runs), and for the judged allocator (--allocator, default SpanAlloc) the change of its own time. \
            Exits 1 when a row of the judged allocator is slower relative to the baseline beyond --threshold \
            with an interval that excludes zero; 0 otherwise. With --compare OLDROW,NEWROW only the OLDROW rows \
            of OLD and the NEWROW rows of NEW are compared, and they are judged; OLD and NEW may be the same file \
            (two allocators or two SpanAlloc settings, e.g. a --spanalloc-variant, measured in one run).
            """)

    @Argument(help: "The older report (bench --format json).") var old: String
    @Argument(help: "The newer report.") var new: String
    @Option(help: ArgumentHelp("Smallest change that counts, e.g. 5% or 0.05.", valueName: "pct"))
    var threshold = "5%"
    @Option(help: ArgumentHelp("The allocator whose rows decide the exit status.", valueName: "name"))
    var allocator = AllocatorID.spanAlloc.rawValue
    @Option(help: "Output format: text, json or markdown.")
    var format: OutputFormat = .text
    @Option(help: ArgumentHelp("Which time to compare: cpu (CPU time of the timed region, the default) or wall.",
                               valueName: "cpu|wall"))
    var metric: Diff.Metric = .cpu
    @Option(help: ArgumentHelp("Compare the OLDROW rows of OLD with the NEWROW rows of NEW (both judged); "
                               + "OLD and NEW may be one report.", valueName: "OLDROW,NEWROW"))
    var compare: String?

    var rowPair: Diff.RowPair? {
        guard let c = compare else { return nil }
        let parts = c.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        return Diff.RowPair(old: parts[0], new: parts[1])
    }

    var thresholdValue: Double? {
        let t = threshold.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("%") { return Double(t.dropLast()).map { $0 / 100 } }
        return Double(t)
    }

    func validate() throws {
        guard let v = thresholdValue, v >= 0, v.isFinite else {
            throw ValidationError("--threshold takes a percentage such as 5% (or a fraction such as 0.05)")
        }
        if compare != nil, rowPair == nil {
            throw ValidationError("--compare takes two row names separated by a comma, e.g. scav-on,SpanAlloc")
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
                             threshold: thresholdValue!, allocator: allocator, metric: metric, pair: rowPair)
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
