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
        for (title, tables) in [("summary: median time vs jemalloc", r.workloads), ("summary: LD_PRELOAD wall time vs jemalloc", r.preload)]
        where tables.count > 1 {
            heading(title)
            table(summary(tables, value: \.ratio))
            if title.contains("median time") {
                para("peak RSS vs jemalloc:")
                table(summary(tables, value: \.rssRatio))
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
            "date: \(e.date); repetitions: \(r.settings.repetitions) (median shown) after \(r.settings.warmup) warm-up; "
                + "quick: \(r.settings.quick); scale: \(Format.fixed(r.settings.scale, 2))"
                + (r.settings.interleaved == true ? "; allocators interleaved, one child per repetition" : ""),
            "command: \(r.settings.command)",
        ]
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
        var headers = ["allocator", "median \(t.unit)", "min-max", "vs \(base)", "peak RSS", "RSS vs \(base)"]
        var align: [TextTable.Align] = [.left, .right, .right, .right, .right, .right]
        if idleRSS != nil { headers.append("RSS above idle"); align.append(.right) }
        if t.throughput { headers.append("Mops/s"); align.append(.right) }
        let inner = t.rows.contains { $0.innerNsPerOp != nil }
        if inner { headers.append("in-process ns/op"); align.append(.right) }
        var tt = TextTable(headers: headers, align: align)
        for row in t.rows {
            var cells = [row.name, Format.time(row.median), Format.time(row.min) + "-" + Format.time(row.max),
                         Format.ratio(row.ratio), Format.bytes(row.peakRSSBytes), Format.ratio(row.rssRatio)]
            if let idleRSS { cells.append(row.peakRSSBytes.map { Format.bytes(Swift.max(0, $0 - idleRSS)) } ?? "-") }
            if t.throughput { cells.append(row.mopsPerSecond.map { Format.fixed($0, 1) } ?? "-") }
            if inner { cells.append(row.innerNsPerOp.map(Format.time) ?? "-") }
            tt.rows.append(cells)
        }
        return tt
    }

    /// Workloads × allocators, one ratio per cell: the whole run at a glance.
    static func summary(_ tables: [WorkloadTable], value: (Row) -> Double?) -> TextTable {
        var names: [String] = []
        for t in tables { for row in t.rows where !names.contains(row.name) { names.append(row.name) } }
        var tt = TextTable(headers: ["workload"] + names, align: [.left] + names.map { _ in .right })
        for t in tables {
            tt.rows.append([t.id] + names.map { n in Format.ratio(t.rows.first { $0.name == n }.flatMap(value)) })
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
                t.rows.append([p.name, "\(c.spansFresh)", "\(c.spansReused)", "\(c.spansReturned)", "\(c.spansInUse)",
                               Format.mib(c.heapInuse), Format.mib(c.heapIdle), Format.mib(c.heapReleased)])
            }
            result.append(("SpanAlloc MemStats (cumulative span counters)", t))
        }
        if let je = reuse.runs.first(where: { $0.allocator == AllocatorID.jemalloc.rawValue }) {
            var t = TextTable(
                headers: ["phase", "slabs created (nslabs)", "slabs reused (nreslabs)", "slabs now (curslabs)",
                          "active MiB", "resident MiB", "mapped MiB", "retained MiB"],
                align: [.left] + Array(repeating: .right, count: 7))
            for p in je.phases {
                guard let c = p.jemalloc else { continue }
                t.rows.append([p.name, "\(c.nslabs)", "\(c.nreslabs)", "\(c.curslabs)", Format.mib(c.active),
                               Format.mib(c.resident), Format.mib(c.mapped), Format.mib(c.retained)])
            }
            result.append(("jemalloc stats (bins summed over size classes, all arenas)", t))
        }
        return result
    }

    // MARK: CSV

    static func csvField(_ s: String) -> String {
        s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    static func csv(_ r: Report) -> String {
        func num(_ d: Double?) -> String { d.map { $0.isFinite ? String($0) : "" } ?? "" }
        var lines = ["section,workload,name,unit,median,min,max,ratio,peak_rss_bytes,rss_ratio,samples"]
        let sections: [(String, [WorkloadTable])] = [("workload", r.workloads), ("group", r.groups), ("preload", r.preload)]
        for (section, tables) in sections {
            for t in tables {
                for row in t.rows {
                    lines.append([section, t.id, row.name, t.unit, num(row.median), num(row.min), num(row.max),
                                  num(row.ratio), row.peakRSSBytes.map(String.init) ?? "", num(row.rssRatio),
                                  row.samples.map { String($0) }.joined(separator: ";")].map(csvField).joined(separator: ","))
                }
            }
        }
        if let reuse = r.reuse {
            lines.append("")
            lines.append("section,allocator,phase,seconds,live_bytes,live_objects,resident_bytes,efficiency,"
                         + "spans_fresh,spans_reused,spans_returned,heap_inuse,heap_idle,heap_released,"
                         + "je_nslabs,je_nreslabs,je_curslabs,je_active,je_resident,je_mapped,je_retained")
            for run in reuse.runs {
                for p in run.phases {
                    let s = p.spanAlloc, j = p.jemalloc
                    let cells: [String] = [
                        "reuse", run.allocator, p.name, String(p.seconds), String(p.liveBytes), String(p.liveObjects),
                        String(p.residentBytes), num(p.efficiency),
                        s.map { String($0.spansFresh) } ?? "", s.map { String($0.spansReused) } ?? "",
                        s.map { String($0.spansReturned) } ?? "", s.map { String($0.heapInuse) } ?? "",
                        s.map { String($0.heapIdle) } ?? "", s.map { String($0.heapReleased) } ?? "",
                        j.map { String($0.nslabs) } ?? "", j.map { String($0.nreslabs) } ?? "",
                        j.map { String($0.curslabs) } ?? "", j.map { String($0.active) } ?? "",
                        j.map { String($0.resident) } ?? "", j.map { String($0.mapped) } ?? "",
                        j.map { String($0.retained) } ?? "",
                    ]
                    lines.append(cells.map(csvField).joined(separator: ","))
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
