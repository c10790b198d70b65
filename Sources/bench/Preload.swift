import Foundation

/// Runs whole programs under each allocator with LD_PRELOAD and times them.
enum PreloadRunner {
    /// A program to run: an id for the table, a title and its argv (argv[0] = path or PATH name).
    struct Program {
        var id: String
        var title: String
        var argv: [String]
    }

    /// The default programs: bench's own core workloads through plain malloc/free.
    static func defaultPrograms(quick: Bool, scale: Double) -> [Program] {
        Workloads.all.filter(\.core).map { spec in
            var argv = [Spawn.selfExe, "workload-main", "--workload", spec.id, "--scale", String(scale)]
            if quick { argv.append("--quick") }
            return Program(id: "preload:\(spec.id)", title: spec.title, argv: argv)
        }
    }

    /// Finds an executable by PATH when `name` has no slash.
    static func resolve(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// What LD_PRELOAD holds for each allocator (nil = nothing preloaded, i.e. glibc).
    static func preloadValues(
        allocators: [AllocatorInfo], spanAllocSO: String, notes: inout [String]
    ) -> [(AllocatorID, String?)] {
        var result: [(AllocatorID, String?)] = []
        for id in AllocatorID.allCases {
            switch id {
            case .glibc:
                result.append((id, nil))
            case .spanAlloc:
                if FileManager.default.fileExists(atPath: spanAllocSO) {
                    result.append((id, URL(fileURLWithPath: spanAllocSO).standardizedFileURL.path))
                } else {
                    notes.append("preload: SpanAlloc skipped, no preload library at \(spanAllocSO) (build it, or pass --spanalloc-so PATH)")
                }
            default:
                if allocators.first(where: { $0.name == id.rawValue })?.available == true, let so = id.soname {
                    result.append((id, so))
                } else {
                    notes.append("preload: \(id.rawValue) skipped (not installed)")
                }
            }
        }
        return result
    }

    static func run(
        programs: [Program], preloads: [(AllocatorID, String?)], repetitions: Int, warmup: Int,
        notes: inout [String]
    ) -> [WorkloadTable] {
        var base = ProcessInfo.processInfo.environment
        base["LD_PRELOAD"] = nil
        var tables: [WorkloadTable] = []
        for program in programs {
            guard let path = resolve(program.argv[0]) else {
                notes.append("preload: cannot find program \(program.argv[0])")
                continue
            }
            var table = WorkloadTable(
                id: program.id, title: program.title, unit: "ms", baseline: nil,
                note: "wall time of the whole process (ms) and its peak RSS, LD_PRELOAD = the allocator's library",
                rows: [])
            for (id, preload) in preloads {
                var env = base
                if let preload { env["LD_PRELOAD"] = preload }
                var wall: [Double] = []
                var inner: [Double] = []
                var peak = 0
                var failed = false
                var upperBound = false
                for i in 0..<(warmup + repetitions) {
                    guard let run = try? Spawn.run(path, program.argv, env: env), run.status == 0 else {
                        failed = true
                        break
                    }
                    if i < warmup { continue }
                    wall.append(run.wallNs / 1e6)
                    var rss = run.peakRSSBytes
                    upperBound = upperBound || run.rssUpperBound
                    if let r = try? JSONDecoder().decode(ChildResult.self, from: Data(run.stdout.utf8)) {
                        inner += r.samples
                        rss = r.peakRSSBytes ?? rss
                    }
                    peak = Swift.max(peak, rss)
                }
                if failed {
                    notes.append("preload: \(program.id) under \(id.rawValue) failed; row left out")
                    Progress.say("preload \(program.id) \(id.rawValue): FAILED")
                    continue
                }
                var row = Row(name: id.rawValue, samples: wall, peakRSSBytes: peak)
                if !inner.isEmpty { row.innerNsPerOp = Stats.median(inner.sorted()) }
                if upperBound {
                    notes.append("preload: \(program.id) under \(id.rawValue) ended within 2 ms; its peak RSS is "
                                 + "wait4's ru_maxrss, an upper bound (not below bench's own RSS)")
                }
                Progress.say("preload \(program.id) \(id.rawValue): \(Format.fixed(row.median, 1)) ms, "
                             + "peak RSS \(Format.bytes(peak))")
                table.rows.append(row)
            }
            if table.rows.contains(where: { $0.name == AllocatorID.baseline.rawValue }) {
                table.baseline = AllocatorID.baseline.rawValue
            }
            table.computeRatios()
            tables.append(table)
        }
        return tables
    }
}
