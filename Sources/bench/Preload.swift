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
        /// Rounds of this program (nil: the run's --repetitions) and warm-up rounds before them (nil:
        /// the run's); the idle workloads of the C driver run --idle-rounds rounds without warm-up.
        var rounds: Int?
        var warmupRounds: Int?
        /// The program prints a ChildResult (the C driver): the table's samples are its own ns/op of
        /// the timed region (the minimum over its repetitions), with CPU ns/op, probes and the launch's
        /// wall time beside them; every launch must report the same ops and checksum.
        var inProcess = false
        /// ns/op is aggregate time over all threads (Mops/s column).
        var throughput = false
        /// Names of the probes the program reports (ChildResult.probes), in order.
        var probeNames: [String] = []
        /// The parameters the program must say it ran with (ChildResult.params), when it echoes them.
        var expectedParams: [String: Double]?
    }

    /// One allocator of a preload run: its name, what LD_PRELOAD holds (nil: nothing, i.e. glibc)
    /// and variables set in its launches only (a SpanAlloc variant's SPANALLOC).
    struct Target: Equatable {
        var name: String
        var library: String?
        var environment: [String: String] = [:]
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

    /// What LD_PRELOAD holds for each allocator, by name: the built-ins, then the SpanAlloc variants
    /// (SpanAlloc's library with their SPANALLOC), then the custom libraries.
    static func preloadTargets(
        allocators: [AllocatorInfo], custom: [AllocatorSpec], variants: [AllocatorSpec] = [], spanAllocSO: String,
        notes: inout [String]
    ) -> [Target] {
        var result: [Target] = []
        let spanAllocLibrary = FileManager.default.fileExists(atPath: spanAllocSO)
            ? URL(fileURLWithPath: spanAllocSO).standardizedFileURL.path : nil
        for id in AllocatorID.allCases {
            switch id {
            case .glibc:
                result.append(Target(name: id.rawValue, library: nil))
            case .spanAlloc:
                if let spanAllocLibrary {
                    result.append(Target(name: id.rawValue, library: spanAllocLibrary))
                } else {
                    notes.append("preload: SpanAlloc skipped, no preload library at \(spanAllocSO) (build it, or pass --spanalloc-so PATH)")
                }
            default:
                if allocators.first(where: { $0.name == id.rawValue })?.available == true, let so = id.soname {
                    result.append(Target(name: id.rawValue, library: so))
                } else {
                    notes.append("preload: \(id.rawValue) skipped (not installed)")
                }
            }
        }
        for spec in variants {
            if let spanAllocLibrary {
                result.append(Target(name: spec.name, library: spanAllocLibrary, environment: spec.environment))
            } else {
                notes.append("preload: \(spec.name) skipped, no SpanAlloc preload library at \(spanAllocSO)")
            }
        }
        for spec in custom {
            if allocators.first(where: { $0.name == spec.name })?.available == true, let so = spec.library {
                result.append(Target(name: spec.name, library: so))
            } else {
                notes.append("preload: \(spec.name) skipped (its library did not load)")
            }
        }
        return result
    }

    /// Why the output of an in-process program's launch cannot be used, or nil: it must be a ChildResult
    /// with positive times and the program's probes, echo the parameters bench passed, and repeat the
    /// ops and checksum of the first launch (`firstCheck`, "ops/checksum"; nil for the first launch).
    static func inProcessProblem(_ result: ChildResult?, _ program: Program, firstCheck: String?) -> String? {
        guard let r = result, !r.samples.isEmpty, r.samples.allSatisfy({ $0 > 0 && $0.isFinite }), r.ops > 0,
              (r.probes?.first?.count ?? 0) >= program.probeNames.count
        else { return "printed no usable result" }
        if let expected = program.expectedParams {
            let echoed = r.params ?? [:]
            let wrong = expected.keys.sorted().filter { k in
                guard let v = echoed[k] else { return true }
                return abs(v - expected[k]!) > 1e-9 * Swift.max(1, abs(v))
            }
            if !wrong.isEmpty { return "ran with other parameters than bench passed (\(wrong.joined(separator: ", ")))" }
        }
        let check = "\(r.ops)/\(r.checksum)"
        if let firstCheck, check != firstCheck { return "reported ops/checksum \(check), the first launch \(firstCheck)" }
        return nil
    }

    /// Runs every program under every allocator: a warm-up launch each, then `repetitions`
    /// rounds with one launch per allocator per round (order rotated), so samples[r] of
    /// every row belong to round r.
    static func run(
        programs: [Program], preloads: [Target], baseline: String?, repetitions: Int, warmup: Int,
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
            let rounds = program.rounds ?? repetitions, warmup = program.warmupRounds ?? warmup
            let what = program.inProcess
                ? "ns/op and CPU ns/op of the timed region as the program measured it, its own peak RSS and "
                    + "the wall time of each launch (program ms)"
                : "wall time of the whole process (ms) and its peak RSS (the largest of the process and its descendants)"
            var table = WorkloadTable(
                id: program.id, title: program.title, unit: program.inProcess ? "ns/op" : "ms", baseline: nil,
                note: what + ", LD_PRELOAD = the allocator's library"
                    + (program.environment.isEmpty ? "" : "; the program's environment: "
                       + program.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                           .joined(separator: " "))
                    + (program.detail.map { "; " + $0 } ?? "")
                    + (program.rounds != nil || program.warmupRounds != nil
                       ? "; \(rounds) rounds after \(warmup) warm-up round(s)" : ""),
                throughput: program.inProcess && program.throughput, rows: [])
            var wall: [String: [Double]] = [:]
            var inner: [String: [Double]] = [:]
            var cpu: [String: [Double]] = [:]
            var probes: [String: [[Double]]] = [:]
            var usage: [String: [Usage]] = [:]
            var peak: [String: Int] = [:]
            var failed: Set<String> = []
            var upperBound: Set<String> = []
            // The output of each allocator's first launch, and the allocators whose launches disagreed.
            var firstOutput: [String: Data] = [:]
            var unstable: Set<String> = []
            // In-process programs: "ops/checksum" of the first launch, which every launch must repeat.
            var firstCheck: String?
            var env0 = base
            env0.merge(program.environment) { $1 }
            for round in 0..<(warmup + rounds) {
                for k in preloads.indices {
                    let target = preloads[(k + round) % preloads.count]
                    let name = target.name
                    if failed.contains(name) { continue }
                    var env = env0.merging(target.environment) { $1 }
                    if let preload = target.library { env["LD_PRELOAD"] = preload }
                    guard let run = try? Spawn.run(path, program.argv, env: env), run.status == 0 else {
                        failed.insert(name)
                        continue
                    }
                    var result: ChildResult?
                    if program.inProcess {
                        result = try? JSONDecoder().decode(ChildResult.self, from: Data(run.stdout.utf8))
                        if let problem = inProcessProblem(result, program, firstCheck: firstCheck) {
                            failed.insert(name)
                            notes.append("preload: \(program.id) under \(name) \(problem)")
                            continue
                        }
                        firstCheck = firstCheck ?? result.map { "\($0.ops)/\($0.checksum)" }
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
                    if result == nil { result = try? JSONDecoder().decode(ChildResult.self, from: Data(run.stdout.utf8)) }
                    if let r = result {
                        if program.inProcess {
                            // A launch is a round: its sample is the minimum of its repetitions, as a native child's.
                            inner[name, default: []].append(r.samples.min()!)
                            if let c = r.cpuSamples?.min() { cpu[name, default: []].append(c) }
                            if let p = r.probes { probes[name, default: []] += p }
                        } else {
                            inner[name, default: []] += r.samples
                        }
                        rss = r.peakRSSBytes ?? rss
                    }
                    peak[name] = Swift.max(peak[name] ?? 0, rss)
                }
            }
            if program.checkedOutputFile != nil {
                let reference = firstOutput["glibc"] ?? preloads.lazy.compactMap { firstOutput[$0.name] }.first
                for name in preloads.map(\.name) where !failed.contains(name) {
                    if unstable.contains(name) || firstOutput[name] != reference {
                        failed.insert(name)
                        notes.append("preload: \(program.id) under \(name) produced different output "
                                     + (unstable.contains(name) ? "from one launch to the next" : "from the reference launch"))
                    }
                }
            }
            for name in preloads.map(\.name) {
                if failed.contains(name) {
                    notes.append("preload: \(program.id) under \(name) failed; row left out")
                    Progress.say("preload \(program.id) \(name): FAILED")
                    continue
                }
                guard let w = wall[name] else { continue }
                var row: Row
                if program.inProcess {
                    guard let i = inner[name], i.count == w.count else { continue }
                    row = Row(name: name, samples: i, peakRSSBytes: peak[name])
                    row.programMs = Stats.median(w.sorted())
                    if let c = cpu[name], c.count == i.count {
                        row.cpuSamples = c
                        row.cpuMedian = Statistics.median(c)
                    }
                    if let p = probes[name], !p.isEmpty {
                        row.probes = program.probeNames.enumerated().map { k, probe in
                            let xs = p.compactMap { k < $0.count ? $0[k] : nil }
                            return Probe(name: probe, unit: "bytes", samples: xs, median: Statistics.median(xs))
                        }
                    }
                } else {
                    row = Row(name: name, samples: w, peakRSSBytes: peak[name])
                    if let i = inner[name], !i.isEmpty { row.innerNsPerOp = Stats.median(i.sorted()) }
                }
                if let u = usage[name], !u.isEmpty {
                    row.usage = RowUsage(samples: u, median: Usage.median(u), perChild: "the whole program")
                }
                if upperBound.contains(name) {
                    notes.append("preload: \(program.id) under \(name) ended within 2 ms; its peak RSS is "
                                 + "wait4's ru_maxrss, an upper bound (not below bench's own RSS)")
                }
                Progress.say("preload \(program.id) \(name): "
                             + (program.inProcess ? "\(Format.time(row.median)) ns/op, \(Format.fixed(row.programMs ?? .nan, 0)) ms a launch, "
                                : "\(Format.fixed(row.median, 1)) ms, ")
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
