import Foundation

/// `bench preload --programs driver`: the workloads newer than the core set (churn, cache-scratch,
/// cache-thrash, idle-threads, idle-gaps) run by bench/programs/workload_driver.c, a plain C program
/// (libc and pthreads only) that allocates through the process malloc, so LD_PRELOAD picks the
/// allocator and no Swift runtime sits under it. bench compiles it with the system `cc` once per
/// run, before the first launch, and passes every parameter on its command line from the same
/// `WorkloadSpec` as the native rows; the driver prints what `bench run-one` prints (ChildResult
/// JSON: samples, cpuSamples, ops, checksum, peakRSSBytes, probes).
enum WorkloadDriver {
    /// The driver's source file in bench/programs.
    static let sourceName = "workload_driver.c"

    /// `cc` and its flags (plain C11, optimized as bench's own C workloads are).
    static let flags = ["-std=c11", "-O2", "-pthread"]

    /// The workloads the driver runs, in report order.
    static var specs: [WorkloadSpec] { Workloads.all.filter(\.driver) }

    /// The compiler: /usr/bin/cc, else `cc` on PATH.
    static func compiler() -> String? {
        RealPrograms.executable(explicit: nil, preferred: ["/usr/bin/cc"], name: "cc")
    }

    /// Compiles bench/programs/workload_driver.c into `workDir`; returns the executable's path, or nil
    /// with a note saying why not.
    static func compile(directory: String, workDir: String, notes: inout [String]) -> String? {
        let source = directory + "/" + sourceName
        guard FileManager.default.fileExists(atPath: source) else {
            notes.append("preload: driver skipped, no \(source)")
            return nil
        }
        guard let cc = compiler() else {
            notes.append("preload: driver skipped, no cc found (apt-get install gcc)")
            return nil
        }
        let binary = workDir + "/workload_driver"
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = nil
        let run = try? Spawn.run(cc, [cc] + flags + [source, "-o", binary], env: env)
        guard let run, run.status == 0, access(binary, X_OK) == 0 else {
            notes.append("preload: driver skipped, \(cc) \(flags.joined(separator: " ")) \(source) failed "
                         + "(status \(run.map { String($0.status) } ?? "not started"))")
            return nil
        }
        return binary
    }

    /// One preload program per driver workload that passes `filter`. Idle workloads run `idleRounds`
    /// rounds without a warm-up round, as their native rows do.
    static func programs(binary: String, quick: Bool, scale: Double, inner: Int, idleRounds: Int,
                         filter: [String]) -> [PreloadRunner.Program] {
        specs.filter { Workloads.matches("preload:\($0.id)", filter: filter) }.map { spec in
            let args = spec.driverArguments(quick: quick, scale: scale, inner: inner)
            let runs = spec.driverRuns(inner: inner)
            let perLaunch = (runs.warmup > 0 ? "\(runs.warmup) warm-up + " : "") + "\(runs.repetitions) timed run(s)"
                + (runs.repetitions > 1 ? " (the round's sample is their minimum)" : "")
            return PreloadRunner.Program(
                id: "preload:\(spec.id)", title: spec.title + " [C driver]", argv: [binary] + Array(args),
                detail: "bench/programs/\(sourceName) (cc \(flags.joined(separator: " "))) with the native row's "
                    + "parameters (which it must echo), \(perLaunch) per launch; every launch must report the same ops and checksum",
                rounds: spec.idle ? idleRounds : nil, warmupRounds: spec.idle ? 0 : nil, inProcess: true,
                throughput: spec.throughput, probeNames: spec.probeNames,
                expectedParams: spec.driverParams(quick: quick, scale: scale, inner: inner))
        }
    }
}
