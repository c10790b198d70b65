import Foundation

/// Output formats of a report.
enum OutputFormat: String, CaseIterable, Sendable {
    case text, json, csv, markdown
}

enum Render {
    static func render(_ report: Report, as format: OutputFormat) -> String {
        switch format {
        case .json: json(report)
        case .csv: csv(report)
        case .text: document(report, markdown: false)
        case .markdown: document(report, markdown: true)
        }
    }

    static func json(_ report: Report) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return (try? String(decoding: enc.encode(report), as: UTF8.self)) ?? "{}"
    }

    // MARK: text and Markdown

    static func document(_ r: Report, markdown md: Bool) -> String {
        var out: [String] = []
        func heading(_ s: String, level: Int = 2) {
            out.append(md ? String(repeating: "#", count: level) + " " + s : s + "\n" + String(repeating: level == 1 ? "=" : "-", count: s.count))
        }
        func table(_ t: TextTable) { out.append(md ? t.markdown() : t.text()) }
        func para(_ s: String) { out.append(s) }

        heading("SpanAlloc bench", level: 1)
        para(environmentLines(r).map { md ? "- " + $0 : "  " + $0 }.joined(separator: "\n"))
        let idle = r.environment.idleChildRSSBytes
        for t in r.workloads {
            heading("\(t.id): \(t.title)"); table(workloadTable(t, idleRSS: idle)); if let n = t.note { para(n) }
        }
        for t in r.groups { heading("\(t.id)"); table(workloadTable(t)); if let n = t.note { para(n) } }
        if let reuse = r.reuse {
            heading("reuse: \(Format.bytes(reuse.targetBytes)) filled, 90% freed, refilled with other sizes, freed, purged")
            for t in reuseTables(reuse) {
                if md { para("**\(t.0)**") } else { para(t.0 + ":") }
                table(t.1)
            }
            para(reuse.note)
        }
        for t in r.preload { heading("\(t.id): \(t.title)"); table(workloadTable(t)); if let n = t.note { para(n) } }
        let base = r.settings.baseline ?? AllocatorID.defaultBaseline.rawValue
        for (title, tables) in [("summary: time vs \(base) [95% CI]", r.workloads),
                                ("summary: LD_PRELOAD time vs \(base) [95% CI] (program wall time; the C driver's "
                                    + "rows: its own ns/op)", r.preload)]
        where tables.count > 1 {
            heading(title)
            table(summary(tables) { Format.ratioCI($0.ratio, $0.ratioLow, $0.ratioHigh) })
            if title.hasPrefix("summary: time") {
                para("peak RSS vs \(base):")
                table(summary(tables) { Format.ratio($0.rssRatio) })
            }
        }
        if !r.notes.isEmpty {
            heading("notes")
            para(r.notes.map { "- " + $0 }.joined(separator: "\n"))
        }
        return out.joined(separator: "\n\n") + "\n"
    }

    static func environmentLines(_ r: Report) -> [String] {
        let e = r.environment
        var lines = [
            "machine: \(e.cpuModel), \(e.cores) cores, \(e.kernel), \(e.os), glibc \(e.glibc)",
            "date: \(e.date); rounds: \(r.settings.repetitions) (median shown)"
                + (r.workloads.isEmpty && !r.preload.isEmpty
                    ? ", one launch per program and allocator per round, order rotated, after \(r.settings.warmup) "
                        + "warm-up round(s)"
                    : r.settings.interleaved == true
                    ? ", one child per allocator per round, order rotated; a round's sample is the minimum of "
                        + "\(r.settings.inner ?? 1) repetition(s) after \(r.settings.warmup) warm-up"
                    : ", one child per allocator running all repetitions after \(r.settings.warmup) warm-up")
                + "; quick: \(r.settings.quick); scale: \(Format.fixed(r.settings.scale, 2))"
                + (r.settings.idleRounds.map { "; idle workloads: \($0) rounds, no warm-up" } ?? ""),
            "command: \(r.settings.command)",
        ]
        if let m = r.settings.statistics { lines.append("statistics: \(m)") }
        if let sa = r.settings.spanallocSetting { lines.append("SPANALLOC=\(sa) (in every child's environment)") }
        if let u = e.idleChildUsage {
            lines.append("an idle bench child (subtracted from every row's CPU time and faults): user "
                         + "\(Format.fixed(u.userMs, 1)) ms, sys \(Format.fixed(u.sysMs, 1)) ms, "
                         + "\(Format.count(u.minorFaults)) minor / \(Format.count(u.majorFaults)) major faults")
        }
        if let idle = e.idleChildRSSBytes {
            lines.append("peak RSS of an idle bench child (included in every peak RSS below): \(Format.bytes(idle))")
        }
        for a in r.allocators {
            var s = "\(a.name): " + (a.available ? (a.version.isEmpty ? "loaded" : a.version) : "not available")
            if let n = a.note { s += " — \(n)" }
            lines.append(s)
            if let c = a.config, !c.isEmpty { lines.append("jemalloc config: \(c)") }
        }
        return lines
    }

    /// A workload's table; with `idleRSS`, a column shows peak RSS above an idle bench child's.
    static func workloadTable(_ t: WorkloadTable, idleRSS: Int? = nil) -> TextTable {
        let base = t.baseline ?? "baseline"
        var headers = ["allocator", "median \(t.unit)", "min-max", "vs \(base) [95% CI]", "peak RSS", "RSS vs \(base)"]
        var align: [TextTable.Align] = [.left, .right, .right, .right, .right, .right]
        if idleRSS != nil { headers.append("RSS above idle"); align.append(.right) }
        if t.throughput { headers.append("Mops/s"); align.append(.right) }
        let inner = t.rows.contains { $0.innerNsPerOp != nil }
        if inner { headers.append("in-process ns/op"); align.append(.right) }
        let program = t.rows.contains { $0.programMs != nil }
        if program { headers.append("program ms"); align.append(.right) }
        let cpu = t.rows.contains { $0.cpuMedian != nil }
        if cpu {
            headers += ["CPU ns/op", "CPU vs \(base) [95% CI]"]
            align += [.right, .right]
        }
        let probeNames = t.rows.first { $0.probes != nil }?.probes?.map(\.name) ?? []
        headers += probeNames
        align += probeNames.map { _ in .right }
        let usage = t.rows.contains { $0.usage != nil }
        if usage {
            headers += ["user ms", "sys ms", "minor faults", "major faults"]
            align += [.right, .right, .right, .right]
        }
        var tt = TextTable(headers: headers, align: align)
        for row in t.rows {
            var cells = [row.name, Format.time(row.median), Format.time(row.min) + "-" + Format.time(row.max),
                         Format.ratioCI(row.ratio, row.ratioLow, row.ratioHigh), Format.bytes(row.peakRSSBytes),
                         Format.ratio(row.rssRatio)]
            if let idleRSS { cells.append(row.peakRSSBytes.map { Format.bytes(Swift.max(0, $0 - idleRSS)) } ?? "-") }
            if t.throughput { cells.append(row.mopsPerSecond.map { Format.fixed($0, 1) } ?? "-") }
            if inner { cells.append(row.innerNsPerOp.map(Format.time) ?? "-") }
            if program { cells.append(row.programMs.map { Format.fixed($0, 0) } ?? "-") }
            if cpu {
                cells += [row.cpuMedian.map(Format.time) ?? "-", Format.ratioCI(row.cpuRatio, row.cpuRatioLow, row.cpuRatioHigh)]
            }
            for name in probeNames {
                cells.append((row.probes?.first { $0.name == name }).map { Format.bytes(Int($0.median)) } ?? "-")
            }
            if usage {
                let u = row.usage?.median
                cells += [u.map { Format.fixed($0.userMs, 1) } ?? "-", u.map { Format.fixed($0.sysMs, 1) } ?? "-",
                          Format.count(u?.minorFaults), Format.count(u?.majorFaults)]
            }
            tt.rows.append(cells)
        }
        return tt
    }

    /// Workloads × allocators, one cell per row: the whole run at a glance.
    static func summary(_ tables: [WorkloadTable], cell: (Row) -> String) -> TextTable {
        var names: [String] = []
        for t in tables { for row in t.rows where !names.contains(row.name) { names.append(row.name) } }
        var tt = TextTable(headers: ["workload"] + names, align: [.left] + names.map { _ in .right })
        for t in tables {
            tt.rows.append([t.id] + names.map { n in t.rows.first { $0.name == n }.map(cell) ?? "-" })
        }
        return tt
    }

    static func reuseTables(_ reuse: ReuseReport) -> [(String, TextTable)] {
        var memory = TextTable(
            headers: ["phase", "allocator", "time s", "live MiB", "resident MiB", "efficiency"],
            align: [.left, .left, .right, .right, .right, .right])
        for (pi, phase) in reuse.phases.enumerated() {
            for (ri, run) in reuse.runs.enumerated() where pi < run.phases.count {
                let p = run.phases[pi]
                memory.rows.append([ri == 0 ? phase : "", run.allocator, Format.fixed(p.seconds, 3), Format.mib(p.liveBytes),
                                    Format.mib(p.residentBytes), p.efficiency.map { Format.fixed($0, 2) } ?? "-"])
            }
        }
        var result = [("resident memory (RSS above the pre-fill baseline) and efficiency = live / resident", memory)]
        if let sa = reuse.runs.first(where: { $0.allocator == AllocatorID.spanAlloc.rawValue }) {
            var t = TextTable(
                headers: ["phase", "spans fresh", "spans reused", "spans returned", "spans in use",
                          "HeapInuse MiB", "HeapIdle MiB", "HeapReleased MiB"],
                align: [.left] + Array(repeating: .right, count: 7))
            for p in sa.phases {
                guard let c = p.spanAlloc else { continue }
                t.rows.append([p.name, "\(c.spansFresh)", "\(c.spansReused)", "\(c.spansReturned)", "\(c.spansInuse)",
                               Format.mib(c.heapInuse), Format.mib(c.heapIdle), Format.mib(c.heapReleased)])
            }
            result.append(("SpanAlloc MemStats (cumulative span counters)", t))
        }
        // jemalloc and jemalloc-bg: one block of phases per run.
        let jemallocRuns = reuse.runs.filter { $0.phases.contains { $0.jemalloc != nil } }
        if !jemallocRuns.isEmpty {
            let bg = jemallocRuns.contains { $0.phases.contains { $0.jemalloc?.backgroundThreads != nil } }
            var t = TextTable(
                headers: ["phase", "allocator", "slabs created (nslabs)", "slabs reused (nreslabs)", "slabs now (curslabs)",
                          "active MiB", "resident MiB", "mapped MiB", "retained MiB"] + (bg ? ["background threads"] : []),
                align: [.left, .left] + Array(repeating: .right, count: bg ? 8 : 7))
            for (pi, phase) in reuse.phases.enumerated() {
                for (ri, run) in jemallocRuns.enumerated() where pi < run.phases.count {
                    guard let c = run.phases[pi].jemalloc else { continue }
                    t.rows.append([ri == 0 ? phase : "", run.allocator, "\(c.nslabs)", "\(c.nreslabs)", "\(c.curslabs)",
                                   Format.mib(c.active), Format.mib(c.resident), Format.mib(c.mapped), Format.mib(c.retained)]
                                  + (bg ? [c.backgroundThreads.map { "\($0)" } ?? "-"] : []))
                }
            }
            result.append(("jemalloc stats (bins summed over size classes, all arenas)", t))
        }
        return result
    }

    // MARK: CSV

    /// One RFC 4180 field: text is always quoted (quotes doubled), numbers and empty fields are not.
    static func csvField(_ s: String) -> String {
        if s.isEmpty || Double(s) != nil { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func csvLine(_ cells: [String]) -> String { cells.map(csvField).joined(separator: ",") }

    static func num(_ d: Double?) -> String { d.map { $0.isFinite ? String($0) : "" } ?? "" }

    /// `base.csv` + "reuse" → `base-reuse.csv`.
    static func csvSidePath(_ output: String, _ suffix: String) -> String {
        let url = URL(fileURLWithPath: output)
        let ext = url.pathExtension.isEmpty ? "csv" : url.pathExtension
        return url.deletingPathExtension().path + "-\(suffix).\(ext)"
    }

    /// The rows table: one line per (section, workload, allocator or variant).
    static func csv(_ r: Report) -> String {
        var lines = [csvLine(["section", "workload", "name", "unit", "rounds", "median", "min", "max", "ratio",
                              "ratio_low", "ratio_high", "peak_rss_bytes", "rss_ratio", "user_ms", "sys_ms",
                              "minor_faults", "major_faults"])]
        let sections: [(String, [WorkloadTable])] = [("workload", r.workloads), ("group", r.groups), ("preload", r.preload)]
        for (section, tables) in sections {
            for t in tables {
                for row in t.rows {
                    let u = row.usage?.median
                    lines.append(csvLine([section, t.id, row.name, t.unit, String(row.samples.count), num(row.median),
                                          num(row.min), num(row.max), num(row.ratio), num(row.ratioLow),
                                          num(row.ratioHigh), row.peakRSSBytes.map(String.init) ?? "",
                                          num(row.rssRatio), num(u?.userMs), num(u?.sysMs), num(u?.minorFaults),
                                          num(u?.majorFaults)]))
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The other tidy tables, each for a file of its own: per-round samples, probes, reuse phases.
    static func csvExtraTables(_ r: Report) -> [(String, String)] {
        var out: [(String, String)] = []
        var samples = [csvLine(["section", "workload", "name", "round", "value", "unit", "paired_ratio", "user_ms",
                                "sys_ms", "minor_faults", "major_faults"])]
        for (section, tables) in [("workload", r.workloads), ("group", r.groups), ("preload", r.preload)] {
            for t in tables {
                for row in t.rows {
                    for (i, x) in row.samples.enumerated() {
                        let u = row.usage.flatMap { i < $0.samples.count ? $0.samples[i] : nil }
                        let pr = row.pairedRatios.flatMap { i < $0.count ? $0[i] : nil }
                        samples.append(csvLine([section, t.id, row.name, String(i), num(x), t.unit, num(pr),
                                                num(u?.userMs), num(u?.sysMs), num(u?.minorFaults), num(u?.majorFaults)]))
                    }
                }
            }
        }
        out.append(("samples", samples.joined(separator: "\n") + "\n"))
        var probes = [csvLine(["workload", "name", "probe", "round", "value", "unit"])]
        for t in r.workloads + r.preload {
            for row in t.rows {
                for p in row.probes ?? [] {
                    for (i, x) in p.samples.enumerated() {
                        probes.append(csvLine([t.id, row.name, p.name, String(i), num(x), p.unit]))
                    }
                }
            }
        }
        if probes.count > 1 { out.append(("probes", probes.joined(separator: "\n") + "\n")) }
        if let reuse = r.reuse {
            var lines = [csvLine(["allocator", "phase", "seconds", "live_bytes", "live_objects", "resident_bytes",
                                  "efficiency", "spans_fresh", "spans_reused", "spans_returned", "heap_inuse",
                                  "heap_idle", "heap_released", "je_nslabs", "je_nreslabs", "je_curslabs",
                                  "je_active", "je_resident", "je_mapped", "je_retained", "je_background_threads"])]
            for run in reuse.runs {
                for p in run.phases {
                    let s = p.spanAlloc, j = p.jemalloc
                    let cells: [String] = [
                        run.allocator, p.name, String(p.seconds), String(p.liveBytes), String(p.liveObjects),
                        String(p.residentBytes), num(p.efficiency),
                        s.map { String($0.spansFresh) } ?? "", s.map { String($0.spansReused) } ?? "",
                        s.map { String($0.spansReturned) } ?? "", s.map { String($0.heapInuse) } ?? "",
                        s.map { String($0.heapIdle) } ?? "", s.map { String($0.heapReleased) } ?? "",
                        j.map { String($0.nslabs) } ?? "", j.map { String($0.nreslabs) } ?? "",
                        j.map { String($0.curslabs) } ?? "", j.map { String($0.active) } ?? "",
                        j.map { String($0.resident) } ?? "", j.map { String($0.mapped) } ?? "",
                        j.map { String($0.retained) } ?? "", j?.backgroundThreads.map { String($0) } ?? "",
                    ]
                    lines.append(csvLine(cells))
                }
            }
            out.append(("reuse", lines.joined(separator: "\n") + "\n"))
        }
        return out
    }
}
