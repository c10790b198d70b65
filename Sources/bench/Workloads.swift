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
    /// Part of the core issue's set (also what `bench preload` runs by default).
    var core = false

    func params(quick: Bool, scale: Double) -> bk_params {
        let base = quick ? ops.quick : ops.full
        let n = Swift.max(1, UInt64((Double(base) * scale).rounded()))
        return bk_params(
            ops: n, size: size, size_min: sizeRange.min, size_max: sizeRange.max,
            batch: batch, threads: Int32(threads), seed: 0x5EED_0000 &+ UInt64(id.utf8.count))
    }
}

enum Workloads {
    /// Every allocator workload, in report order.
    static let all: [WorkloadSpec] = {
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
            kind: BK_W_LARGE, ops: (160, 24), sizeRange: (65_536, 64 << 20)))
        for t in [1, 2, 4] {
            list.append(WorkloadSpec(
                id: "scaling-\(t)t",
                title: "thread scaling, \(t) thread\(t == 1 ? "" : "s"): batches of 1,000 random 16-512 B objects per thread (aggregate)",
                kind: BK_W_SCALING, ops: (8_000_000, 2_000_000), sizeRange: (16, 512), batch: 1000, threads: t,
                throughput: true))
        }
        return list
    }()

    /// The pseudo-workload id of the reuse experiment (for `--filter` and `--list`).
    static let reuseID = "reuse"

    static func named(_ id: String) -> WorkloadSpec? { all.first { $0.id == id } }

    /// True when `id` passes the filter: no filter, or any token is a substring of it.
    static func matches(_ id: String, filter: [String]) -> Bool {
        filter.isEmpty || filter.contains { id.contains($0) }
    }
}
