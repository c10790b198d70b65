import ArgumentParser
import CBenchKit
import Foundation
import SpanAlloc

extension OutputFormat: ExpressibleByArgument {}

/// `bench`: SpanAlloc against jemalloc, glibc, mimalloc and tcmalloc.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Compares SpanAlloc with jemalloc, glibc, mimalloc and tcmalloc: time, peak RSS and span reuse.",
        discussion: """
            Every allocator runs the same C workloads through one table of function pointers; each \
            (workload, allocator) pair runs in a child process of its own so its peak RSS is its own. \
            Ratios are relative to the baseline (jemalloc unless --baseline) measured in the same round, \
            with 95% confidence intervals. `bench help compare` (or `bench --help`) lists the run options.
            """,
        subcommands: [Compare.self, DiffCommand.self, ReuseCommand.self, PreloadCommand.self, RunOne.self, ReuseOne.self,
                      WorkloadMain.self, RenderCommand.self, IdleChild.self, ExplainCommand.self],
        defaultSubcommand: Compare.self)
}

/// Options every reporting command shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Output format: text, json, csv or markdown.")
    var format: OutputFormat = .text
    @Option(help: ArgumentHelp("Also write the report to this file (csv: extra tables go to FILE-reuse.csv, FILE-samples.csv).",
                               valueName: "file"))
    var output: String?
    @Option(help: ArgumentHelp("Draw the results as an SVG chart into this file.", valueName: "file.svg"))
    var chart: String?
    @Option(help: ArgumentHelp("Timed rounds per workload and allocator (default 10, 6 with --quick); "
                               + "round r of every allocator is paired with round r of the baseline.", valueName: "n"))
    var repetitions: Int?
    @Option(help: ArgumentHelp("Untimed warm-up runs before the repetitions (default 0 for interleaved runs, whose "
                               + "minimum over --inner repetitions leaves the cold one out; 1 otherwise).", valueName: "n"))
    var warmup: Int?
    @Option(help: ArgumentHelp("Timed repetitions inside each child of a round; the round's sample is their minimum, "
                               + "the repetition least disturbed by the rest of the machine (idle workloads do 1).",
                               valueName: "n"))
    var inner = 3
    @Flag(help: "Smoke run with fewer operations per repetition (under two minutes).")
    var quick = false
    @Option(help: ArgumentHelp("Multiply every workload's operation count (e.g. 0.05 for tests).", visibility: .hidden))
    var scale = 1.0
    @Option(help: ArgumentHelp("Only allocators in this comma-separated list.", valueName: "names"))
    var allocators: String?
    @Option(help: ArgumentHelp("The allocator every ratio is relative to.", valueName: "name"))
    var baseline = AllocatorID.defaultBaseline.rawValue
    @Option(name: .customLong("allocator"),
            help: ArgumentHelp("Add a library that exports malloc/free/realloc under a name (repeatable), e.g. "
                               + "tcx=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.", valueName: "name=path"))
    var customAllocators: [String] = []
    @Option(name: .customLong("spanalloc-variant"),
            help: ArgumentHelp("Run SpanAlloc again as its own allocator row NAME with SPANALLOC=SETTINGS in its "
                               + "children's environment, in the same rounds as the others (repeatable), e.g. "
                               + "scav-on=scavenge=on. SETTINGS is passed through as it is.", valueName: "name=settings"))
    var spanallocVariants: [String] = []

    /// Repetitions after defaults.
    var rounds: Int { repetitions ?? (quick ? 6 : 10) }

    /// Warm-up runs after defaults, for interleaved children (`interleaved`) or others.
    func warmups(interleaved: Bool) -> Int { warmup ?? (interleaved ? 0 : 1) }

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--repetitions must be at least 1") }
        guard (warmup ?? 0) >= 0 else { throw ValidationError("--warmup must be 0 or more") }
        guard inner >= 1 else { throw ValidationError("--inner must be at least 1") }
        guard scale > 0, scale.isFinite else { throw ValidationError("--scale must be positive") }
        let custom = try customSpecs(), variants = try variantSpecs()
        let known = AllocatorID.allCases.map(\.rawValue) + custom.map(\.name) + variants.map(\.name)
        for name in allocatorList + [baseline] where !known.contains(where: { $0.lowercased() == name.lowercased() }) {
            throw ValidationError("unknown allocator \(name); known: " + known.joined(separator: ", "))
        }
        let added = (custom + variants).map { $0.name.lowercased() }
        if Set(added).count != added.count {
            throw ValidationError("--allocator / --spanalloc-variant: a name is given twice")
        }
    }

    func customSpecs() throws -> [AllocatorSpec] { try customAllocators.map(AllocatorSpec.parseCustom) }

    func variantSpecs() throws -> [AllocatorSpec] { try spanallocVariants.map(AllocatorSpec.parseVariant) }

    var allocatorList: [String] {
        (allocators ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The baseline's name as the report spells it.
    var baselineName: String {
        let added = ((try? customSpecs()) ?? []) + ((try? variantSpecs()) ?? [])
        return AllocatorID.named(baseline)?.rawValue
            ?? added.first { $0.name.lowercased() == baseline.lowercased() }?.name ?? baseline
    }

    /// Probes the allocators and returns their info and the usable ones in report order.
    func selectAllocators(notes: inout [String]) -> ([AllocatorInfo], [AllocatorSpec]) {
        let custom = (try? customSpecs()) ?? [], variants = (try? variantSpecs()) ?? []
        let infos = Allocators.probe(custom: custom, variants: variants)
        let wanted = Set(allocatorList.map { $0.lowercased() })
        var usable: [AllocatorSpec] = []
        for info in infos {
            let spec = AllocatorID.named(info.name).map(AllocatorSpec.init)
                ?? (variants + custom).first { $0.name == info.name }
            guard let spec else { continue }
            if !wanted.isEmpty, !wanted.contains(info.name.lowercased()) { continue }
            if info.available { usable.append(spec) } else if let n = info.note { notes.append("\(info.name) \(n)") }
            if spec.builtin == .spanAlloc, spec.variantSetting == nil, let n = info.note { notes.append("SpanAlloc: \(n)") }
        }
        if !usable.contains(where: { $0.name == baselineName }) {
            notes.append("baseline \(baselineName) did not run: no ratios")
        }
        return (infos, usable)
    }

    func newReport(allocators: [AllocatorInfo], filter: [String]) -> Report {
        var env = Environment.current()
        if let idle = Environment.idleChild() {
            env.idleChildRSSBytes = idle.rss
            env.idleChildUsage = idle.usage
        }
        var settings = Report.Settings(
            repetitions: rounds, warmup: warmups(interleaved: false), quick: quick, scale: scale, filter: filter,
            command: CommandLine.arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " "))
        settings.baseline = baselineName
        settings.statistics = Statistics.method
        settings.spanallocSetting = ProcessInfo.processInfo.environment["SPANALLOC"]
        settings.testInflate = TestInflate.factor
        var report = Report(environment: env, allocators: allocators, settings: settings)
        if let f = TestInflate.factor {
            report.notes.append("TEST ONLY: \(TestInflate.variable)=\(f) multiplied SpanAlloc's samples by \(f)")
        }
        if let sa = settings.spanallocSetting {
            report.notes.append("SPANALLOC=\(sa) was in the environment of every child (native SpanAlloc rows and the preload library read it)"
                                + (spanallocVariants.isEmpty ? "" : ", except the SpanAlloc variants', which had their own"))
        }
        for v in (try? variantSpecs()) ?? [] {
            report.notes.append("\(v.name): SpanAlloc with SPANALLOC=\(v.variantSetting ?? "") in its children's environment "
                                + "(--spanalloc-variant), run in the same rounds as the other allocators")
        }
        return report
    }

    /// Prints the report, and writes the file and chart when asked.
    func emit(_ report: Report) throws {
        let text = Render.render(report, as: format)
        print(text, terminator: "")
        if let output {
            try text.write(toFile: output, atomically: true, encoding: .utf8)
            if format == .csv {
                for (suffix, table) in Render.csvExtraTables(report) {
                    let path = Render.csvSidePath(output, suffix)
                    try table.write(toFile: path, atomically: true, encoding: .utf8)
                    Progress.say("csv: \(suffix) table written to \(path)")
                }
            }
        } else if format == .csv, report.reuse != nil {
            Progress.say("csv: only the rows table is printed; pass --output FILE.csv for the reuse and samples tables")
        }
        if let chart {
            try Chart.svg(report).write(toFile: chart, atomically: true, encoding: .utf8)
            Progress.say("chart written to \(chart)")
        }
    }
}

/// The default command: every workload, every allocator, then the reuse experiment.
struct Compare: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Run the allocator comparison (the default command).")

    @OptionGroup var common: CommonOptions
    @Option(help: ArgumentHelp("Only workloads whose id contains one of these comma-separated strings.",
                               valueName: "ids"))
    var filter: String?
    @Flag(help: "List the workloads and exit.")
    var list = false
    @Flag(help: "Skip the reuse experiment.")
    var noReuse = false
    @Flag(inversion: .prefixedNo,
          help: "Run repetition r of every allocator before repetition r+1 of any (one child per repetition).")
    var interleave = true
    @Option(help: "Live bytes the reuse experiment fills (default 256 MiB).")
    var reuseBytes = 256 << 20
    @Option(help: ArgumentHelp("Length of the reuse experiment's idle phase in seconds (tests).", visibility: .hidden))
    var reuseIdleSeconds = ReuseExperiment.defaultIdleSeconds
    @Option(help: ArgumentHelp("Thread counts of the scaling rows (comma-separated).", valueName: "list"))
    var threads = Workloads.defaultThreads.map(String.init).joined(separator: ",")
    @Option(help: ArgumentHelp("Rounds of the slow idle workloads (idle-threads ~6 s and idle-gaps ~21 s per child), "
                               + "which run without warm-up.", valueName: "n"))
    var idleRounds = 3

    var threadList: [Int] { threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        let parts = threads.split(separator: ",")
        guard !parts.isEmpty, threadList.count == parts.count, threadList.allSatisfy({ $0 >= 1 && $0 <= 256 }) else {
            throw ValidationError("--threads takes a comma-separated list of thread counts 1...256, e.g. 1,2,4,8")
        }
        guard idleRounds >= 1 else { throw ValidationError("--idle-rounds must be at least 1") }
        guard reuseIdleSeconds >= 0, reuseIdleSeconds.isFinite else {
            throw ValidationError("--reuse-idle-seconds must be 0 or more")
        }
    }

    var filterTokens: [String] {
        (filter ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func run() async throws {
        let catalog = Workloads.catalog(threads: threadList)
        if list {
            for w in catalog { print(w.id.padding(toLength: 16, withPad: " ", startingAt: 0) + w.title) }
            print("reuse".padding(toLength: 16, withPad: " ", startingAt: 0)
                  + "span reuse phases: fill 256 MiB, free 90%, refill with other sizes, free all, purge")
            print("slice.*".padding(toLength: 16, withPad: " ", startingAt: 0) + "GoSlice vs Array (in process)")
            print("chan.*".padding(toLength: 16, withPad: " ", startingAt: 0)
                  + "GoChan vs AsyncChannel vs a mutex queue (in process)")
            return
        }
        let tokens = filterTokens
        var notes: [String] = []
        let (infos, usable) = common.selectAllocators(notes: &notes)
        var report = common.newReport(allocators: infos, filter: tokens)
        report.settings.interleaved = interleave
        report.settings.warmup = common.warmups(interleaved: interleave)
        report.settings.threads = threadList
        report.settings.idleRounds = idleRounds
        report.settings.inner = common.inner
        let specs = catalog.filter { Workloads.matches($0.id, filter: tokens) }
        if !specs.isEmpty {
            Progress.say("\(specs.count) workloads × \(usable.count) allocators, \(common.rounds) rounds each "
                         + "(\(idleRounds) for the idle workloads)" + (common.quick ? " (quick)" : ""))
            let plan = RunPlan(
                allocators: usable, baseline: common.baselineName, repetitions: common.rounds,
                warmup: common.warmups(interleaved: interleave),
                idleRounds: idleRounds, quick: common.quick, scale: common.scale, interleave: interleave,
                inner: common.inner, idleUsage: report.environment.idleChildUsage)
            report.workloads = WorkloadRunner.runAll(specs: specs, plan: plan, notes: &notes)
        }
        // The in-process groups are not paired across processes and are slow: at most 6 repetitions.
        report.groups = await Groups.run(filter: tokens, repetitions: Swift.min(common.rounds, 6), quick: common.quick)
        if !noReuse, Workloads.matches(Workloads.reuseID, filter: tokens) {
            Progress.say("reuse experiment: \(Format.bytes(reuseBytes)) per allocator")
            report.reuse = ReuseExperiment.run(allocators: usable, targetBytes: reuseBytes, idleSeconds: reuseIdleSeconds,
                                               notes: &notes)
        }
        report.notes += notes
        try common.emit(report)
    }
}

/// The GoSlice and GoChan workload groups, measured in this process.
enum Groups {
    static func wants(_ prefix: String, filter: [String]) -> Bool {
        filter.isEmpty || filter.contains { prefix.contains($0) || $0.hasPrefix(prefix) }
    }

    static func run(filter: [String], repetitions: Int, quick: Bool) async -> [WorkloadTable] {
        var measurements: [Measurement] = []
        if wants("slice.", filter: filter) {
            Progress.say("GoSlice group")
            measurements += GoSliceBench.run(repetitions: repetitions, quick: quick)
        }
        var lineProbe: (before: Double, after: Double)?
        if wants("chan.", filter: filter) {
            Progress.say("GoChan group")
            let before = bk_line_round_trip_ns(200_000)
            measurements += await GoChanBench.run(repetitions: repetitions, quick: quick, filter: filter)
            lineProbe = (before, bk_line_round_trip_ns(200_000))
        }
        var out = tables(measurements.filter { Workloads.matches($0.workload, filter: filter) })
        if let (before, after) = lineProbe {
            // Thread hand-offs cost a few cache-line transfers each: say what
            // a transfer cost while the group ran (it moves with the host's
            // placement of the vCPUs).
            for i in out.indices where out[i].id.hasPrefix("chan.") {
                out[i].note = (out[i].note ?? "") + String(format: "; core-to-core cache-line round trip %.0f ns before the group, %.0f ns after",
                                      before, after)
            }
        }
        return out
    }

    /// Groups measurements by workload (first-seen order); the first variant is the baseline.
    static func tables(_ ms: [Measurement]) -> [WorkloadTable] {
        var order: [String] = []
        var byID: [String: [Measurement]] = [:]
        for m in ms {
            if byID[m.workload] == nil { order.append(m.workload) }
            byID[m.workload, default: []].append(m)
        }
        return order.map { id in
            let group = byID[id]!
            var t = WorkloadTable(
                id: id, title: id, unit: group[0].unit, baseline: group[0].variant,
                note: "ratios relative to \(group[0].variant), measured in this process",
                rows: group.map { Row(name: $0.variant, samples: $0.samples, peakRSSBytes: $0.peakRSSBytes) })
            t.computeRatios()
            return t
        }
    }
}

/// `bench reuse`: only the span-reuse experiment.
struct ReuseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reuse",
        abstract: "Span reuse, phase by phase: SpanAlloc's MemStats next to jemalloc's slab statistics.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Live bytes to fill (default 256 MiB).")
    var bytes = 256 << 20
    @Option(help: ArgumentHelp("Length of the idle phase after everything is freed, in seconds.", valueName: "s"))
    var idleSeconds = ReuseExperiment.defaultIdleSeconds

    func run() async throws {
        var notes: [String] = []
        let (infos, usable) = common.selectAllocators(notes: &notes)
        var report = common.newReport(allocators: infos, filter: ["reuse"])
        report.reuse = ReuseExperiment.run(allocators: usable, targetBytes: bytes, idleSeconds: idleSeconds, notes: &notes)
        report.notes += notes
        try common.emit(report)
    }
}

/// `bench preload`: whole programs under each allocator through LD_PRELOAD.
struct PreloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preload",
        abstract: "Run a program under each allocator with LD_PRELOAD; report median wall time and peak RSS.",
        discussion: """
            Without --programs or --program, runs bench's own core workloads (bench workload-main, plain \
            malloc/free). --programs driver runs the newer workloads (churn-1t, churn-2t, cache-scratch, \
            cache-thrash, idle-threads, idle-gaps) through bench/programs/workload_driver.c, a plain C program \
            compiled with cc at the start of the run, with the native rows' parameters; its rows are the \
            driver's own ns/op, CPU ns/op and RSS readings (~9 minutes on 2 cores, the idle workloads \
            --idle-rounds rounds). --programs real runs two real programs: an allocation-heavy python3 script \
            (PYTHONMALLOC=malloc) and gcc -O2 on a generated C file, from bench/programs/. glibc runs with \
            nothing preloaded; a --spanalloc-variant runs SpanAlloc's library with its SPANALLOC.
            """)

    @OptionGroup var common: CommonOptions
    @Option(help: ArgumentHelp("SpanAlloc's preload library.", valueName: "path"))
    var spanallocSo = ".build/spanalloc-preload/libspanalloc.so"
    @Option(help: ArgumentHelp("Only workloads (of the workloads and driver groups) whose id contains one of these "
                               + "strings.", valueName: "ids"))
    var filter: String?
    @Option(help: ArgumentHelp("What to run, comma-separated: workloads (bench's core workloads through bench "
                               + "workload-main), driver (churn, cache-scratch/thrash, idle-threads, idle-gaps through "
                               + "the C program bench/programs/workload_driver.c, compiled with cc), python, gcc, "
                               + "real (= python,gcc). Default: workloads, or only --program when it is given.",
                               valueName: "names"))
    var programs: String?
    @Option(help: ArgumentHelp("Rounds of the driver's idle workloads (idle-threads ~6 s and idle-gaps ~21 s a "
                               + "launch), which run without a warm-up round.", valueName: "n"))
    var idleRounds = 3
    @Option(help: ArgumentHelp("Where alloc_heavy.py and gen_compile_input.py are (default: bench/programs under "
                               + "the current directory or an ancestor of this executable).", valueName: "dir"))
    var programsDir: String?
    @Option(help: ArgumentHelp("The python3 of the python program and of the C generator (default /usr/bin/python3, "
                               + "else python3 on PATH).", valueName: "path"))
    var python: String?
    @Option(help: ArgumentHelp("The compiler of the gcc program (default /usr/bin/gcc, else gcc on PATH).",
                               valueName: "path"))
    var cc: String?
    @Option(parsing: .remaining, help: ArgumentHelp("The program and its arguments (everything after --program).",
                                                   valueName: "command"))
    var program: [String] = []

    func validate() throws {
        if let programs {
            do { _ = try RealPrograms.parse(programs) } catch { throw ValidationError("\(error)") }
        }
        guard idleRounds >= 1 else { throw ValidationError("--idle-rounds must be at least 1") }
    }

    func run() async throws {
        var notes: [String] = []
        let (infos, _) = common.selectAllocators(notes: &notes)
        let tokens = (filter ?? "").split(separator: ",").map(String.init)
        var report = common.newReport(allocators: infos, filter: tokens)
        var preloads = PreloadRunner.preloadTargets(
            allocators: infos, custom: (try? common.customSpecs()) ?? [], variants: (try? common.variantSpecs()) ?? [],
            spanAllocSO: spanallocSo, notes: &notes)
        let wanted = Set(common.allocatorList.map { $0.lowercased() })
        if !wanted.isEmpty { preloads = preloads.filter { wanted.contains($0.name.lowercased()) } }
        let selection = try programs.map(RealPrograms.parse) ?? RealPrograms.Selection(workloads: program.isEmpty)
        var list: [PreloadRunner.Program] = []
        if selection.workloads {
            list += PreloadRunner.defaultPrograms(quick: common.quick, scale: common.scale)
                .filter { Workloads.matches($0.id, filter: tokens) }
        }
        var workDir: String?
        defer { if let workDir { try? FileManager.default.removeItem(atPath: workDir) } }
        if !selection.real.isEmpty || selection.driver {
            guard let dir = RealPrograms.directory(explicit: programsDir) else {
                throw ValidationError("cannot find bench/programs/alloc_heavy.py (run from the repository, or pass --programs-dir)")
            }
            var template = Array("/tmp/bench-preload-XXXXXX".utf8CString)
            guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
                throw ValidationError("cannot create a directory under /tmp")
            }
            workDir = String(cString: made)
            if selection.driver {
                report.settings.idleRounds = idleRounds
                report.settings.inner = common.inner
                Progress.say("compiling bench/programs/\(WorkloadDriver.sourceName)")
                if let binary = WorkloadDriver.compile(directory: dir, workDir: workDir!, notes: &notes) {
                    list += WorkloadDriver.programs(
                        binary: binary, quick: common.quick, scale: common.scale, inner: common.inner,
                        idleRounds: idleRounds, filter: tokens)
                }
            }
            let setup = RealPrograms.Setup(
                directory: dir,
                python: RealPrograms.executable(explicit: python, preferred: ["/usr/bin/python3"], name: "python3"),
                cc: RealPrograms.executable(explicit: cc, preferred: ["/usr/bin/gcc"], name: "gcc"),
                quick: common.quick, scale: common.scale, workDir: workDir!)
            for name in selection.real {
                let p = name == "python" ? RealPrograms.python(setup, notes: &notes) : RealPrograms.gcc(setup, notes: &notes)
                if let p { list.append(p) }
            }
        }
        if !program.isEmpty {
            list.append(PreloadRunner.Program(id: "program", title: program.joined(separator: " "), argv: program))
        }
        report.preload = PreloadRunner.run(
            programs: list, preloads: preloads, baseline: common.baselineName, repetitions: common.rounds,
            warmup: common.warmups(interleaved: false), idleUsage: report.environment.idleChildUsage, notes: &notes)
        report.notes += notes
        try common.emit(report)
    }
}

/// Child: one workload under one allocator; prints a ChildResult as JSON.
struct RunOne: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-one", abstract: "(internal) Run one workload under one allocator.",
        shouldDisplay: false)

    @Option var allocator: String
    @Option(help: "The shared library of a custom allocator (named by --allocator).")
    var library: String?
    @Option var workload: String
    @Option var repetitions = 5
    @Option var warmup = 1
    @Flag var quick = false
    @Option var scale = 1.0
    @Flag(help: "After the run, print SpanAlloc's MemStats as JSON on stderr (for diagnosing a row).")
    var stats = false

    func run() throws {
        let spec0: AllocatorSpec
        if let library { spec0 = AllocatorSpec(name: allocator, library: library) }
        else if let id = AllocatorID.named(allocator) { spec0 = AllocatorSpec(id) }
        else { throw ValidationError("unknown allocator \(allocator)") }
        let id = spec0.builtin
        guard let spec = Workloads.named(workload) else { throw ValidationError("unknown workload \(workload)") }
        let table = try Allocators.load(spec0).get()
        let result = try WorkloadRunner.runInProcess(
            spec: spec, allocator: table, repetitions: repetitions, warmup: warmup, quick: quick, scale: scale)
        print(String(decoding: try JSONEncoder().encode(result), as: UTF8.self))
        if stats, id == .spanAlloc {
            FileHandle.standardError.write(Data((SpanHeap.default.memStatsJSON + "\n").utf8))
        }
    }
}

/// Child: the reuse phases under one allocator; prints a ReuseRun as JSON.
struct ReuseOne: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reuse-one", abstract: "(internal) Run the reuse phases under one allocator.",
        shouldDisplay: false)

    @Option var allocator: String
    @Option(help: "The shared library of a custom allocator (named by --allocator).")
    var library: String?
    @Option var bytes = 256 << 20
    @Option var idleSeconds = ReuseExperiment.defaultIdleSeconds

    func run() throws {
        let spec: AllocatorSpec
        if let library { spec = AllocatorSpec(name: allocator, library: library) }
        else if let id = AllocatorID.named(allocator) { spec = AllocatorSpec(id) }
        else { throw ValidationError("unknown allocator \(allocator)") }
        let table = try Allocators.load(spec).get()
        let run = try ReuseExperiment.runInProcess(spec: spec, allocator: table, targetBytes: bytes, idleSeconds: idleSeconds)
        print(String(decoding: try JSONEncoder().encode(run), as: UTF8.self))
    }
}

/// A workload program for LD_PRELOAD runs: one repetition through the process malloc.
struct WorkloadMain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload-main",
        abstract: "Run one workload once through plain malloc/free (the program `bench preload` times).",
        shouldDisplay: false)

    @Option var workload: String
    @Flag var quick = false
    @Option var scale = 1.0
    @Option var repetitions = 1

    func run() throws {
        guard let spec = Workloads.named(workload) else { throw ValidationError("unknown workload \(workload)") }
        var table = bk_allocator()
        guard bk_allocator_load(BK_PROCESS, &table) else { throw ValidationError("cannot bind the process malloc") }
        let result = try WorkloadRunner.runInProcess(
            spec: spec, allocator: table, repetitions: repetitions, warmup: 0, quick: quick, scale: scale)
        print(String(decoding: try JSONEncoder().encode(result), as: UTF8.self))
    }
}

/// Child: does nothing and prints its own peak RSS, the floor under every row's peak RSS.
struct IdleChild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "idle-child", abstract: "(internal) Print the peak RSS of an idle bench process.",
        shouldDisplay: false)

    func run() throws {
        print(bk_peak_rss())
    }
}

/// `bench render`: re-renders a saved JSON report (tables, chart) without measuring again.
struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Render a report saved with --format json as text, csv, markdown or an SVG chart.")

    @Argument(help: "A JSON report written by `bench --format json`.")
    var input: String
    @Option(help: "Output format: text, json, csv or markdown.")
    var format: OutputFormat = .text
    @Option(help: ArgumentHelp("Draw the chart into this file.", valueName: "file.svg"))
    var chart: String?

    func run() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: input))
        let dec = JSONDecoder()
        dec.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let report = try dec.decode(Report.self, from: data)
        print(Render.render(report, as: format), terminator: "")
        if let chart { try Chart.svg(report).write(toFile: chart, atomically: true, encoding: .utf8) }
    }
}
