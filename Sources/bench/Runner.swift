import CBenchKit
import Foundation

/// Progress lines on stderr (stdout carries the report).
enum Progress {
    static func say(_ text: String) {
        FileHandle.standardError.write(Data(("bench: " + text + "\n").utf8))
    }
}

/// What a child process left behind.
struct ChildRun {
    var stdout: String
    /// The largest peak RSS of the child and its descendants (VmHWM sampled while they ran), bytes.
    var peakRSSBytes: Int
    /// True when the child ended before the first sample and peakRSSBytes is wait4's ru_maxrss,
    /// an upper bound that cannot be below the parent's own RSS.
    var rssUpperBound: Bool
    var wallNs: Double
    /// Exit status; negative = killed by that signal.
    var status: Int32
    /// wait4's CPU time and page faults of the whole child.
    var usage: bk_rusage
}

enum Spawn {
    /// This very executable, as the kernel knows it.
    static let selfExe = "/proc/self/exe"

    /// Runs `path` with `args` (args[0] is the program name) in `env`, collecting stdout, peak RSS and wall time.
    static func run(_ path: String, _ args: [String], env: [String: String]) throws -> ChildRun {
        let cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var out: UnsafeMutablePointer<CChar>? = nil
        var rss = 0
        var upper = false
        var wall = 0.0
        var status: Int32 = 0
        var usage = bk_rusage()
        let rc = cArgs.withUnsafeBufferPointer { a in
            cEnv.withUnsafeBufferPointer { e in
                bk_spawn(path, a.baseAddress!, e.baseAddress!, &out, &rss, &upper, &wall, &status, &usage)
            }
        }
        if rc != 0 { throw SpawnError(message: "cannot start \(path): \(String(cString: strerror(errno)))") }
        defer { free(out) }
        return ChildRun(stdout: out.map { String(cString: $0) } ?? "", peakRSSBytes: rss, rssUpperBound: upper,
                        wallNs: wall, status: status, usage: usage)
    }

    struct SpawnError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}

/// The JSON a `run-one` child prints.
struct ChildResult: Codable {
    var samples: [Double]
    /// CPU time of the process during each timed region / ops (all threads), ns.
    var cpuSamples: [Double]?
    var ops: UInt64
    var checksum: UInt64
    /// The child's own VmHWM at the end (exact, unlike a parent's view).
    var peakRSSBytes: Int?
    /// The workload's probes (bk_result.probes), one array per repetition.
    var probes: [[Double]]?
    /// The parameters the program ran with, as the C driver echoes them (nil from bench's own children).
    var params: [String: Double]?
}

/// How a full run is set up: what `runAll` needs beyond the workload list.
struct RunPlan {
    var allocators: [AllocatorSpec]
    var baseline: String?
    var repetitions: Int
    var warmup: Int
    /// Rounds (and so children) of the idle workloads; they run without warm-up.
    var idleRounds: Int
    var quick: Bool
    var scale: Double
    var interleave: Bool
    /// Timed repetitions in each interleaved child; the round's sample is their minimum (the
    /// repetition least disturbed by the rest of the machine). 1 = the child's only repetition.
    var inner: Int = 1
    /// wait4 usage of an idle child, subtracted from every row's.
    var idleUsage: Usage?
}

/// BENCH_TEST_INFLATE (tests only): the factor SpanAlloc's samples are multiplied by, so a
/// test can check that `bench diff` sees a 10% slowdown. nil when unset or not a positive number.
enum TestInflate {
    static let variable = "BENCH_TEST_INFLATE"
    static var factor: Double? {
        guard let s = ProcessInfo.processInfo.environment[variable], let f = Double(s), f > 0, f.isFinite, f != 1
        else { return nil }
        return f
    }
}

enum WorkloadRunner {
    /// In the child: loads one allocator, runs warm-up and repetitions of one workload.
    static func runInProcess(
        spec: WorkloadSpec, allocator: bk_allocator, repetitions: Int, warmup: Int, quick: Bool, scale: Double
    ) throws -> ChildResult {
        var table = allocator
        var params = spec.params(quick: quick, scale: scale)
        var samples: [Double] = []
        var cpu: [Double] = []
        var probes: [[Double]] = []
        var ops: UInt64 = 0
        var checksum: UInt64 = 0
        for i in 0..<(warmup + repetitions) {
            var r = bk_result()
            if bk_run(spec.kind, &table, &params, &r) != 0 || r.failed != 0 || r.ops == 0 {
                throw Spawn.SpawnError(message: "\(spec.id): the workload failed (allocation returned NULL or setup failed)")
            }
            if i >= warmup {
                samples.append(r.elapsed_ns / Double(r.ops))
                cpu.append(r.cpu_ns / Double(r.ops))
                let all = withUnsafeBytes(of: r.probes) { Array($0.bindMemory(to: Double.self)) }
                probes.append(Array(all.prefix(Int(r.nprobes))))
                ops = r.ops
                checksum &+= r.checksum
            }
        }
        return ChildResult(samples: samples, cpuSamples: cpu, ops: ops, checksum: checksum, peakRSSBytes: Int(bk_peak_rss()),
                           probes: probes.contains { !$0.isEmpty } ? probes : nil)
    }

    /// One workload's plan and what its children left, while a run is in progress.
    private struct Pending {
        var spec: WorkloadSpec
        var rounds: Int
        var warmup: Int
        var inner: Int
        var repsPerChild: Int
        var samples: [String: [Double]] = [:]
        var cpuSamples: [String: [Double]] = [:]
        var usages: [String: [Usage]] = [:]
        var probes: [String: [[Double]]] = [:]
        var peak: [String: Int] = [:]
        var failed: Set<String> = []
    }

    /// The pass (0..<passes) in which round `j` of a workload with `rounds` rounds runs: its rounds
    /// spread evenly over the passes, so a workload with fewer rounds (the idle ones) samples the
    /// whole run too.
    static func pass(ofRound j: Int, rounds: Int, passes: Int) -> Int {
        rounds >= passes ? j : (j * passes) / rounds
    }

    /// In the parent: every workload × allocator, each in its own child for a clean peak RSS.
    ///
    /// With `interleave`, the run is a sequence of passes, each running one round of every workload,
    /// and a round runs one child per allocator back to back (allocator order rotated each round):
    /// a slow spell of a shared machine lands on all allocators of a round alike (samples[r] of every
    /// row belong to round r: the pairs behind the ratios' intervals), and a workload's rounds are
    /// spread over the whole run instead of one stretch of it, so its intervals include the host's
    /// drift over the run and two runs of the same binary agree within them.
    static func runAll(specs: [WorkloadSpec], plan: RunPlan, notes: inout [String]) -> [WorkloadTable] {
        let env = ProcessInfo.processInfo.environment
        let allocators = plan.allocators
        let inflate = TestInflate.factor
        var pending: [Pending] = specs.map { spec in
            let repetitions = spec.idle ? plan.idleRounds : plan.repetitions
            // A long workload's single repetition is its sample, so it keeps one warm-up (its first run
            // pays the heap's first-touch page faults: large-mixed's 64 MiB objects, churn's live set).
            let warmup = spec.idle ? 0 : spec.long ? Swift.max(1, plan.warmup) : plan.warmup
            let inner = spec.idle || spec.long ? 1 : plan.inner
            return Pending(spec: spec, rounds: plan.interleave ? repetitions : 1, warmup: warmup, inner: inner,
                           repsPerChild: plan.interleave ? inner : repetitions)
        }
        let passes = pending.map(\.rounds).max() ?? 0
        let t0 = bk_now_ns()
        for p in 0..<passes {
            for si in pending.indices {
                let rounds = pending[si].rounds
                for round in 0..<rounds where pass(ofRound: round, rounds: rounds, passes: passes) == p {
                    runRound(&pending[si], round: round, plan: plan, allocators: allocators, env: env,
                             inflate: inflate, notes: &notes)
                }
            }
            if passes > 1 {
                Progress.say("pass \(p + 1)/\(passes) done "
                             + "(\(Format.fixed((bk_now_ns() - t0) / 1e9, 1)) s)")
            }
        }
        var tables: [WorkloadTable] = []
        for (si, w) in pending.enumerated() {
            let table = makeTable(w, plan: plan, allocators: allocators)
            let summary = table.rows.map { "\($0.name) \(Format.time($0.median))" }.joined(separator: ", ")
            Progress.say("[\(si + 1)/\(specs.count)] \(w.spec.id) (ns/op): \(summary)")
            tables.append(table)
        }
        return tables
    }

    /// Round `round` of one workload: a child per allocator, in an order rotated by the round.
    private static func runRound(_ w: inout Pending, round: Int, plan: RunPlan, allocators: [AllocatorSpec],
                                 env: [String: String], inflate: Double?, notes: inout [String]) {
        let spec = w.spec
        for k in allocators.indices {
            let a = allocators[(k + round) % allocators.count]
            if w.failed.contains(a.name) { continue }
            var args = ["bench", "run-one"] + a.childArguments + ["--workload", spec.id,
                        "--repetitions", String(w.repsPerChild), "--warmup", String(w.warmup),
                        "--scale", String(plan.scale)]
            if plan.quick { args.append("--quick") }
            let run = try? Spawn.run(Spawn.selfExe, args, env: a.childEnvironment(env))
            guard let run, run.status == 0,
                  let result = try? JSONDecoder().decode(ChildResult.self, from: Data(run.stdout.utf8))
            else {
                w.failed.insert(a.name)
                let why = run.map { "child exited with status \($0.status)" } ?? "child could not start"
                notes.append("\(spec.id) / \(a.name): \(why); row left out")
                Progress.say("\(spec.id) \(a.name): FAILED (\(why))")
                continue
            }
            var s = result.samples
            var c = result.cpuSamples ?? []
            if plan.interleave, w.inner > 1 {
                s = s.min().map { [$0] } ?? []
                c = c.min().map { [$0] } ?? []
            }
            if let inflate, a.builtin == .spanAlloc {
                s = s.map { $0 * inflate }
                c = c.map { $0 * inflate }
            }
            w.samples[a.name, default: []] += s
            w.cpuSamples[a.name, default: []] += c
            w.usages[a.name, default: []].append(Usage(run.usage).minus(plan.idleUsage))
            if let p = result.probes { w.probes[a.name, default: []] += p }
            w.peak[a.name] = Swift.max(w.peak[a.name] ?? 0, result.peakRSSBytes ?? run.peakRSSBytes)
        }
    }

    /// One workload's table from its rounds.
    private static func makeTable(_ w: Pending, plan: RunPlan, allocators: [AllocatorSpec]) -> WorkloadTable {
        let spec = w.spec
        var note = spec.throughput ? "ns/op is wall time / operations of all threads together; Mops/s = 1000 / ns/op" : nil
        if spec.idle {
            note = (note.map { $0 + "; " } ?? "") + "\(w.rounds) rounds without warm-up (an idle workload: see --idle-rounds)"
        }
        var table = WorkloadTable(
            id: spec.id, title: spec.title, unit: "ns/op", baseline: nil, note: note,
            throughput: spec.throughput, rows: [])
        let timed = w.inner > 1 ? "\(w.inner) repetitions (the round's sample is their minimum)" : "1 repetition"
        let perChild = plan.interleave
            ? (w.warmup > 0 ? "\(w.warmup) warm-up + " + timed : timed)
            : (w.warmup > 0 ? "\(w.warmup) warm-up + \(w.repsPerChild) repetitions" : "\(w.repsPerChild) repetitions")
        for a in allocators where !w.failed.contains(a.name) {
            guard let s = w.samples[a.name] else { continue }
            var row = Row(name: a.name, samples: s, peakRSSBytes: w.peak[a.name])
            if let c = w.cpuSamples[a.name], c.count == s.count {
                row.cpuSamples = c
                row.cpuMedian = Statistics.median(c)
            }
            if let u = w.usages[a.name], !u.isEmpty {
                row.usage = RowUsage(samples: u, median: Usage.median(u), perChild: perChild)
            }
            if let p = w.probes[a.name], !p.isEmpty {
                row.probes = spec.probeNames.enumerated().map { i, name in
                    let xs = p.compactMap { i < $0.count ? $0[i] : nil }
                    return Probe(name: name, unit: "bytes", samples: xs, median: Statistics.median(xs))
                }
            }
            table.rows.append(row)
        }
        if let b = plan.baseline, table.rows.contains(where: { $0.name == b }) { table.baseline = b }
        table.computeRatios()
        return table
    }
}
