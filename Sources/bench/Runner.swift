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
    /// The child's peak RSS (VmHWM sampled while it ran), bytes.
    var peakRSSBytes: Int
    /// True when the child ended before the first sample and peakRSSBytes is wait4's ru_maxrss,
    /// an upper bound that cannot be below the parent's own RSS.
    var rssUpperBound: Bool
    var wallNs: Double
    /// Exit status; negative = killed by that signal.
    var status: Int32
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
        let rc = cArgs.withUnsafeBufferPointer { a in
            cEnv.withUnsafeBufferPointer { e in
                bk_spawn(path, a.baseAddress!, e.baseAddress!, &out, &rss, &upper, &wall, &status)
            }
        }
        if rc != 0 { throw SpawnError(message: "cannot start \(path): \(String(cString: strerror(errno)))") }
        defer { free(out) }
        return ChildRun(stdout: out.map { String(cString: $0) } ?? "", peakRSSBytes: rss, rssUpperBound: upper,
                        wallNs: wall, status: status)
    }

    struct SpawnError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}

/// The JSON a `run-one` child prints.
struct ChildResult: Codable {
    var samples: [Double]
    var ops: UInt64
    var checksum: UInt64
    /// The child's own VmHWM at the end (exact, unlike a parent's view).
    var peakRSSBytes: Int?
}

enum WorkloadRunner {
    /// In the child: loads one allocator, runs warm-up and repetitions of one workload.
    static func runInProcess(
        spec: WorkloadSpec, allocator: bk_allocator, repetitions: Int, warmup: Int, quick: Bool, scale: Double
    ) throws -> ChildResult {
        var table = allocator
        var params = spec.params(quick: quick, scale: scale)
        var samples: [Double] = []
        var ops: UInt64 = 0
        var checksum: UInt64 = 0
        for i in 0..<(warmup + repetitions) {
            var r = bk_result()
            if bk_run(spec.kind, &table, &params, &r) != 0 || r.failed != 0 || r.ops == 0 {
                throw Spawn.SpawnError(message: "\(spec.id): the workload failed (allocation returned NULL or setup failed)")
            }
            if i >= warmup {
                samples.append(r.elapsed_ns / Double(r.ops))
                ops = r.ops
                checksum &+= r.checksum
            }
        }
        return ChildResult(samples: samples, ops: ops, checksum: checksum, peakRSSBytes: Int(bk_peak_rss()))
    }

    /// In the parent: every workload × allocator, each in its own child for a clean peak RSS.
    ///
    /// With `interleave`, repetition r of every allocator runs before repetition r + 1 of any
    /// (one child per repetition, allocator order rotated each round), so a slow spell of a
    /// shared machine lands on all allocators alike instead of on whichever ran then.
    static func runAll(
        specs: [WorkloadSpec], allocators: [AllocatorID], repetitions: Int, warmup: Int, quick: Bool, scale: Double,
        interleave: Bool, notes: inout [String]
    ) -> [WorkloadTable] {
        let env = ProcessInfo.processInfo.environment
        let rounds = interleave ? repetitions : 1
        let repsPerChild = interleave ? 1 : repetitions
        var tables: [WorkloadTable] = []
        for (si, spec) in specs.enumerated() {
            var samples: [AllocatorID: [Double]] = [:]
            var peak: [AllocatorID: Int] = [:]
            var failed: Set<AllocatorID> = []
            let t0 = bk_now_ns()
            for round in 0..<rounds {
                for k in allocators.indices {
                    let id = allocators[(k + round) % allocators.count]
                    if failed.contains(id) { continue }
                    var args = ["bench", "run-one", "--allocator", id.rawValue, "--workload", spec.id,
                                "--repetitions", String(repsPerChild), "--warmup", String(warmup),
                                "--scale", String(scale)]
                    if quick { args.append("--quick") }
                    let run = try? Spawn.run(Spawn.selfExe, args, env: env)
                    guard let run, run.status == 0,
                          let result = try? JSONDecoder().decode(ChildResult.self, from: Data(run.stdout.utf8))
                    else {
                        failed.insert(id)
                        let why = run.map { "child exited with status \($0.status)" } ?? "child could not start"
                        notes.append("\(spec.id) / \(id.rawValue): \(why); row left out")
                        Progress.say("\(spec.id) \(id.rawValue): FAILED (\(why))")
                        continue
                    }
                    samples[id, default: []] += result.samples
                    peak[id] = Swift.max(peak[id] ?? 0, result.peakRSSBytes ?? run.peakRSSBytes)
                }
            }
            var table = WorkloadTable(
                id: spec.id, title: spec.title, unit: "ns/op", baseline: nil,
                note: spec.throughput ? "ns/op is wall time / operations of all threads together; Mops/s = 1000 / ns/op" : nil,
                throughput: spec.throughput, rows: [])
            for id in allocators where !failed.contains(id) {
                guard let s = samples[id] else { continue }
                table.rows.append(Row(name: id.rawValue, samples: s, peakRSSBytes: peak[id]))
            }
            if table.rows.contains(where: { $0.name == AllocatorID.baseline.rawValue }) {
                table.baseline = AllocatorID.baseline.rawValue
            }
            table.computeRatios()
            let summary = table.rows.map { "\($0.name) \(Format.time($0.median))" }.joined(separator: ", ")
            Progress.say("[\(si + 1)/\(specs.count)] \(spec.id) (ns/op): \(summary) "
                         + "(\(Format.fixed((bk_now_ns() - t0) / 1e9, 1)) s)")
            tables.append(table)
        }
        return tables
    }
}
