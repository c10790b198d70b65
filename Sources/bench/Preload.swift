import Foundation

/// Runs whole programs under each allocator with LD_PRELOAD and times them.
enum PreloadRunner {
    /// A program to run: an id for the table, a title and its argv (argv[0] = path or PATH name).
    struct Program {
        var id: String
        var title: String
        var argv: [String]
        /// Variables set in this program's own environment only (on top of bench's, LD_PRELOAD aside).
        var environment: [String: String] = [:]
        /// When set, every launch must produce the same output as the reference launch (the glibc
        /// row's first, else the first launch): its stdout, and this file's bytes when the path is
        /// not empty. A row whose output differs is left out with a note.
        var checkedOutputFile: String?
        /// What the table's note says about the program (how it was made, its size).
        var detail: String?
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

    /// What LD_PRELOAD holds for each allocator (nil = nothing preloaded, i.e. glibc), by name.
    static func preloadValues(
        allocators: [AllocatorInfo], custom: [AllocatorSpec], spanAllocSO: String, notes: inout [String]
    ) -> [(String, String?)] {
        var result: [(String, String?)] = []
        for id in AllocatorID.allCases {
            switch id {
            case .glibc:
                result.append((id.rawValue, nil))
            case .spanAlloc:
                if FileManager.default.fileExists(atPath: spanAllocSO) {
                    result.append((id.rawValue, URL(fileURLWithPath: spanAllocSO).standardizedFileURL.path))
                } else {
                    notes.append("preload: SpanAlloc skipped, no preload library at \(spanAllocSO) (build it, or pass --spanalloc-so PATH)")
                }
            default:
                if allocators.first(where: { $0.name == id.rawValue })?.available == true, let so = id.soname {
                    result.append((id.rawValue, so))
                } else {
                    notes.append("preload: \(id.rawValue) skipped (not installed)")
                }
            }
        }
        for spec in custom {
            if allocators.first(where: { $0.name == spec.name })?.available == true, let so = spec.library {
                result.append((spec.name, so))
            } else {
                notes.append("preload: \(spec.name) skipped (its library did not load)")
            }
        }
        return result
    }

    /// Runs every program under every allocator: a warm-up launch each, then `repetitions`
    /// rounds with one launch per allocator per round (order rotated), so samples[r] of
    /// every row belong to round r.
    static func run(
        programs: [Program], preloads: [(String, String?)], baseline: String?, repetitions: Int, warmup: Int,
        idleUsage: Usage?, notes: inout [String]
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
                note: "wall time of the whole process (ms) and its peak RSS (the largest of the process and its "
                    + "descendants), LD_PRELOAD = the allocator's library"
                    + (program.environment.isEmpty ? "" : "; the program's environment: "
                       + program.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                           .joined(separator: " "))
                    + (program.detail.map { "; " + $0 } ?? ""),
                rows: [])
            var wall: [String: [Double]] = [:]
            var inner: [String: [Double]] = [:]
            var usage: [String: [Usage]] = [:]
            var peak: [String: Int] = [:]
            var failed: Set<String> = []
            var upperBound: Set<String> = []
            // The output of each allocator's first launch, and the allocators whose launches disagreed.
            var firstOutput: [String: Data] = [:]
            var unstable: Set<String> = []
            var env0 = base
            env0.merge(program.environment) { $1 }
            for round in 0..<(warmup + repetitions) {
                for k in preloads.indices {
                    let (name, preload) = preloads[(k + round) % preloads.count]
                    if failed.contains(name) { continue }
                    var env = env0
                    if let preload { env["LD_PRELOAD"] = preload }
                    guard let run = try? Spawn.run(path, program.argv, env: env), run.status == 0 else {
                        failed.insert(name)
                        continue
                    }
                    if let file = program.checkedOutputFile {
                        var output = Data(run.stdout.utf8)
                        if !file.isEmpty { output += (try? Data(contentsOf: URL(fileURLWithPath: file))) ?? Data() }
                        if let first = firstOutput[name] {
                            if first != output { unstable.insert(name) }
                        } else {
                            firstOutput[name] = output
                        }
                    }
                    if round < warmup { continue }
                    wall[name, default: []].append(run.wallNs / 1e6)
                    usage[name, default: []].append(Usage(run.usage).minus(nil))
                    var rss = run.peakRSSBytes
                    if run.rssUpperBound { upperBound.insert(name) }
                    if let r = try? JSONDecoder().decode(ChildResult.self, from: Data(run.stdout.utf8)) {
                        inner[name, default: []] += r.samples
                        rss = r.peakRSSBytes ?? rss
                    }
                    peak[name] = Swift.max(peak[name] ?? 0, rss)
                }
            }
            if program.checkedOutputFile != nil {
                let reference = firstOutput["glibc"] ?? preloads.lazy.compactMap { firstOutput[$0.0] }.first
                for (name, _) in preloads where !failed.contains(name) {
                    if unstable.contains(name) || firstOutput[name] != reference {
                        failed.insert(name)
                        notes.append("preload: \(program.id) under \(name) produced different output "
                                     + (unstable.contains(name) ? "from one launch to the next" : "from the reference launch"))
                    }
                }
            }
            for (name, _) in preloads {
                if failed.contains(name) {
                    notes.append("preload: \(program.id) under \(name) failed; row left out")
                    Progress.say("preload \(program.id) \(name): FAILED")
                    continue
                }
                guard let w = wall[name] else { continue }
                var row = Row(name: name, samples: w, peakRSSBytes: peak[name])
                if let i = inner[name], !i.isEmpty { row.innerNsPerOp = Stats.median(i.sorted()) }
                if let u = usage[name], !u.isEmpty {
                    row.usage = RowUsage(samples: u, median: Usage.median(u), perChild: "the whole program")
                }
                if upperBound.contains(name) {
                    notes.append("preload: \(program.id) under \(name) ended within 2 ms; its peak RSS is "
                                 + "wait4's ru_maxrss, an upper bound (not below bench's own RSS)")
                }
                Progress.say("preload \(program.id) \(name): \(Format.fixed(row.median, 1)) ms, "
                             + "peak RSS \(Format.bytes(peak[name]))")
                table.rows.append(row)
            }
            if let baseline, table.rows.contains(where: { $0.name == baseline }) { table.baseline = baseline }
            table.computeRatios()
            tables.append(table)
        }
        return tables
    }
}
