import CBenchKit

/// One allocator workload of the catalog: which C workload runs and with
/// what parameters, in full and in `--quick` mode.
struct WorkloadSpec: Sendable {
    var id: String
    var title: String
    var kind: bk_workload_kind
    /// Operations per repetition in a full run and in a quick run.
    var ops: (full: UInt64, quick: UInt64)
    var size = 0
    var sizeRange = (min: 0, max: 0)
    var batch = 0
    var threads = 1
    /// Reported as throughput (aggregate ns/op and Mops/s).
    var throughput = false
    /// Part of the core set (also what `bench preload` runs by default).
    var core = false
    /// Also run under `bench preload --programs driver` by bench/programs/workload_driver.c, a plain C
    /// program that takes the parameters below on its command line (`driverArguments`).
    var driver = false
    /// A slow workload that mostly waits (idle time): runs `--idle-rounds` rounds without warm-up.
    var idle = false
    /// A repetition lasts long enough (~0.5-2 s) that a child does one, whatever `--inner` says.
    var long = false
    /// Rounds per thread (idle-threads) or bursts (idle-gaps), full and quick.
    var rounds = (full: 0, quick: 0)
    /// Writes of every byte of each object (cache-scratch, cache-thrash).
    var writes: UInt64 = 0
    /// Idle seconds (idle-threads: after the frees; idle-gaps: each gap), full and quick.
    var idleSeconds = (full: 0.0, quick: 0.0)
    /// Names of the readings the workload leaves in bk_result.probes (all resident bytes).
    var probeNames: [String] = []

    func params(quick: Bool, scale: Double) -> bk_params {
        let base = quick ? ops.quick : ops.full
        let n = Swift.max(1, UInt64((Double(base) * scale).rounded()))
        return bk_params(
            ops: n, size: size, size_min: sizeRange.min, size_max: sizeRange.max,
            batch: batch, threads: Int32(threads), seed: 0x5EED_0000 &+ UInt64(id.utf8.count),
            rounds: Int32(quick ? rounds.quick : rounds.full), writes: writes,
            idle_seconds: quick ? idleSeconds.quick : idleSeconds.full)
    }

    /// The runs a native interleaved child does, and so a launch of the C driver: a long workload one
    /// warm-up and one timed run, an idle one a single run, the others `inner` timed runs.
    func driverRuns(inner: Int) -> (warmup: Int, repetitions: Int) {
        idle ? (0, 1) : long ? (1, 1) : (0, Swift.max(1, inner))
    }

    /// The parameters the C driver echoes (its "params" object) for `driverArguments`.
    func driverParams(quick: Bool, scale: Double, inner: Int) -> [String: Double] {
        let p = params(quick: quick, scale: scale)
        let (warmup, repetitions) = driverRuns(inner: inner)
        return ["ops": Double(p.ops), "sizeMin": Double(p.size_min), "sizeMax": Double(p.size_max),
                "batch": Double(p.batch), "threads": Double(p.threads), "seed": Double(p.seed),
                "rounds": Double(p.rounds), "writes": Double(p.writes), "idleSeconds": p.idle_seconds,
                "warmup": Double(warmup), "repetitions": Double(repetitions)]
    }

    /// The C driver's command line for this workload: every parameter of `params` and `driverRuns`.
    func driverArguments(quick: Bool, scale: Double, inner: Int) -> [String] {
        let p = params(quick: quick, scale: scale)
        let (warmup, repetitions) = driverRuns(inner: inner)
        return [id, "--ops", String(p.ops), "--size-min", String(p.size_min), "--size-max", String(p.size_max),
                "--batch", String(p.batch), "--threads", String(p.threads), "--seed", String(p.seed),
                "--rounds", String(p.rounds), "--writes", String(p.writes), "--idle-seconds", String(p.idle_seconds),
                "--warmup", String(warmup), "--repetitions", String(repetitions)]
    }
}

enum Workloads {
    /// Thread counts of the scaling rows unless `--threads` says otherwise.
    static let defaultThreads = [1, 2, 4]

    /// Every allocator workload with the default scaling rows, in report order.
    static let all: [WorkloadSpec] = catalog(threads: defaultThreads)

    /// Every allocator workload, with one scaling row per entry of `threads`, in report order.
    static func catalog(threads scalingThreads: [Int]) -> [WorkloadSpec] {
        var list: [WorkloadSpec] = []
        for size in [16, 64, 256, 1024] {
            list.append(WorkloadSpec(
                id: "lifo-\(size)", title: "LIFO malloc/free pairs of \(size) B (one op = one pair)",
                kind: BK_W_LIFO, ops: (10_000_000, 2_000_000), size: size, core: true))
        }
        list.append(WorkloadSpec(
            id: "random-batch",
            title: "random sizes 8-1024 B, batches of 100,000 allocated then freed in random order (op = alloc+free)",
            kind: BK_W_RANDOM_BATCH, ops: (2_000_000, 300_000), sizeRange: (8, 1024), batch: 100_000, core: true))
        list.append(WorkloadSpec(
            id: "prodcons",
            title: "2 threads: producer allocates 8-1024 B, consumer frees, through a lock-free SPSC ring (op = object)",
            kind: BK_W_PRODCONS, ops: (2_000_000, 500_000), sizeRange: (8, 1024), threads: 2, core: true))
        list.append(WorkloadSpec(
            id: "larson",
            title: "larson-style server: 2 threads replace random objects (16-1024 B) of 20,000 shared slots; frees cross threads",
            kind: BK_W_LARSON, ops: (4_000_000, 400_000), sizeRange: (16, 1024), batch: 10_000, threads: 2))
        list.append(WorkloadSpec(
            id: "realloc-growth",
            title: "16 buffers grown round-robin by realloc in 1-128 B steps from 16 B to 64 KiB (op = realloc)",
            kind: BK_W_REALLOC, ops: (2_000_000, 500_000), sizeRange: (16, 65_536)))
        list.append(WorkloadSpec(
            id: "large-mixed",
            title: "large objects 64 KiB-64 MiB (log-uniform), 4 alive, every page written (op = free+malloc)",
            kind: BK_W_LARGE, ops: (160, 24), sizeRange: (65_536, 64 << 20), long: true))
        for t in scalingThreads {
            list.append(WorkloadSpec(
                id: "scaling-\(t)t",
                title: "thread scaling, \(t) thread\(t == 1 ? "" : "s"): batches of 1,000 random 16-512 B objects per thread (aggregate)",
                kind: BK_W_SCALING, ops: (8_000_000, 2_000_000), sizeRange: (16, 512), batch: 1000, threads: t,
                throughput: true))
        }
        for t in [1, 2] {
            list.append(WorkloadSpec(
                id: "churn-\(t)t",
                title: "working-set churn, \(t) thread\(t == 1 ? "" : "s"): each keeps 10,000 live blocks of 16-2048 B "
                    + "and replaces a random one per op (10^7 ops in all)",
                kind: BK_W_CHURN, ops: (10_000_000, 1_000_000), sizeRange: (16, 2048), batch: 10_000, threads: t,
                throughput: t > 1, driver: true, long: true))
        }
        list.append(WorkloadSpec(
            id: "cache-scratch",
            title: "false sharing (passive): 2 threads first free 64 blocks each that another thread allocated "
                + "side by side, then malloc 8-64 B, write every byte 50 times, free (op = object)",
            kind: BK_W_CACHE_SCRATCH, ops: (400_000, 100_000), sizeRange: (8, 64), threads: 2, driver: true, writes: 50))
        list.append(WorkloadSpec(
            id: "cache-thrash",
            title: "false sharing (active): 2 threads each malloc 8-64 B, write every byte 50 times, free (op = object)",
            kind: BK_W_CACHE_THRASH, ops: (400_000, 100_000), sizeRange: (8, 64), threads: 2, driver: true, writes: 50))
        list.append(WorkloadSpec(
            id: "idle-threads",
            title: "64 threads each allocate 64 blocks of every size 16 B-32 KiB (steps of 1/8), write, free, "
                + "4 rounds, then stay blocked; resident memory above the pre-thread baseline (op = block)",
            kind: BK_W_IDLE_THREADS, ops: (1, 1), threads: 64, driver: true, idle: true, rounds: (4, 2),
            idleSeconds: (5, 0.5), probeNames: ["RSS after frees", "RSS after idle", "RSS after exit"]))
        list.append(WorkloadSpec(
            id: "idle-gaps",
            title: "14 bursts of random-batch (500,000 allocs 8-1024 B in batches of 100,000) with 1.5 s idle gaps "
                + "(>= 20 s); ns/op over the bursts",
            kind: BK_W_IDLE_GAPS, ops: (500_000, 100_000), sizeRange: (8, 1024), batch: 100_000, driver: true, idle: true,
            rounds: (14, 4), idleSeconds: (1.5, 0.2), probeNames: ["RSS after bursts", "RSS after gaps"]))
        return list
    }

    /// The pseudo-workload id of the reuse experiment (for `--filter` and `--list`).
    static let reuseID = "reuse"

    /// A workload by id; `scaling-Nt` exists for any N >= 1.
    static func named(_ id: String) -> WorkloadSpec? {
        if let w = all.first(where: { $0.id == id }) { return w }
        if id.hasPrefix("scaling-"), id.hasSuffix("t"), let t = Int(id.dropFirst(8).dropLast()), t >= 1 {
            return catalog(threads: [t]).first { $0.id == id }
        }
        return nil
    }

    /// True when `id` passes the filter: no filter, or any token is a substring of it.
    static func matches(_ id: String, filter: [String]) -> Bool {
        filter.isEmpty || filter.contains { id.contains($0) }
    }
}
