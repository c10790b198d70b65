import CBenchKit
import Foundation
import SpanAlloc

/// The span-reuse experiment: the same phases under every allocator, with
/// SpanAlloc's MemStats and jemalloc's slab statistics side by side.
struct ReuseReport: Codable, Sendable {
    /// Bytes of live objects after the fill and refill phases.
    var targetBytes: Int
    var phases: [String]
    var runs: [ReuseRun]
    var note: String
}

/// One allocator through every phase (measured in a child process of its own).
struct ReuseRun: Codable, Sendable {
    var allocator: String
    /// Resident memory of the child before the first phase (subtracted from every phase).
    var baselineRSSBytes: Int
    var phases: [ReusePhase]
    /// Peak RSS of the whole child (ru_maxrss).
    var peakRSSBytes: Int?
}

struct ReusePhase: Codable, Sendable {
    var name: String
    var seconds: Double
    var liveBytes: Int
    var liveObjects: Int
    /// Resident memory attributable to the allocator: RSS now − baseline RSS.
    var residentBytes: Int
    /// liveBytes / residentBytes (nil when nothing is resident).
    var efficiency: Double?
    var spanAlloc: SpanAllocCounters?
    var jemalloc: JemallocCounters?
}

/// SpanAlloc's MemStats fields the experiment follows.
struct SpanAllocCounters: Codable, Sendable {
    var spansFresh: UInt64
    var spansReused: UInt64
    var spansReturned: UInt64
    var spansInUse: UInt64
    var heapInuse: UInt64
    var heapIdle: UInt64
    var heapReleased: UInt64
    var heapSys: UInt64

    init(_ s: MemStats) {
        spansFresh = s.spansFresh
        spansReused = s.spansReused
        spansReturned = s.spansReturned
        spansInUse = s.spansInUse
        heapInuse = s.heapInuse
        heapIdle = s.heapIdle
        heapReleased = s.heapReleased
        heapSys = s.heapSys
    }
}

/// jemalloc's statistics (bins summed over all size classes and arenas).
struct JemallocCounters: Codable, Sendable {
    var nslabs: UInt64
    var nreslabs: UInt64
    var curslabs: UInt64
    var allocated: UInt64
    var active: UInt64
    var resident: UInt64
    var mapped: UInt64
    var retained: UInt64

    init(_ s: bk_jemalloc_stats) {
        nslabs = s.nslabs
        nreslabs = s.nreslabs
        curslabs = s.curslabs
        allocated = s.allocated
        active = s.active
        resident = s.resident
        mapped = s.mapped
        retained = s.retained
    }
}

enum ReuseExperiment {
    static let phaseNames = [
        "fill (16-512 B mix)", "free 90% at random", "refill (640 B-24 KiB + large mix)",
        "free everything", "scavenge / purge",
    ]

    static let note = """
        Phases run in order in one child process per allocator. resident = RSS − RSS before phase 1 \
        (harness arrays are mmap'ed and touched before the baseline). efficiency = live bytes / resident. \
        SpanAlloc purges with sa_scavenge(SIZE_MAX), jemalloc with arena.<all>.purge, glibc malloc_trim(0), \
        mimalloc mi_collect(true), tcmalloc MallocExtension_ReleaseFreeMemory().
        """

    /// In the child: runs every phase under one allocator.
    static func runInProcess(spec: AllocatorSpec, allocator: bk_allocator, targetBytes: Int) throws -> ReuseRun {
        let id = spec.builtin
        var table = allocator
        // Room for the smallest-average mix (mix 0 averages ~264 B per object).
        guard let live = bk_reuse_new(targetBytes / 128 + 1024, 0x5EED_2EE5) else {
            throw Spawn.SpawnError(message: "reuse: cannot map the bookkeeping arrays")
        }
        defer { bk_reuse_destroy(live) }
        let baseline = bk_current_rss()
        var phases: [ReusePhase] = []
        func record(_ name: String, _ seconds: Double) {
            let rss = bk_current_rss()
            let resident = rss > baseline ? Int(rss - baseline) : 0
            let liveBytes = Int(bk_reuse_live_bytes(live))
            var phase = ReusePhase(
                name: name, seconds: seconds, liveBytes: liveBytes, liveObjects: Int(bk_reuse_live_objects(live)),
                residentBytes: resident, efficiency: resident > 0 ? Double(liveBytes) / Double(resident) : nil)
            if id == .spanAlloc { phase.spanAlloc = SpanAllocCounters(SpanHeap.default.memStats) }
            if id == .jemalloc {
                var s = bk_jemalloc_stats()
                if bk_jemalloc_read_stats(&table, &s) { phase.jemalloc = JemallocCounters(s) }
            }
            phases.append(phase)
        }
        func timed(_ body: () throws -> Void) rethrows -> Double {
            let t0 = bk_now_ns()
            try body()
            return (bk_now_ns() - t0) / 1e9
        }
        let fillFailed = Spawn.SpawnError(message: "reuse: allocation returned NULL")
        var t = try timed { if bk_reuse_fill(live, &table, 0, targetBytes) < 0 { throw fillFailed } }
        record(phaseNames[0], t)
        t = timed { _ = bk_reuse_free_fraction(live, &table, 0.9) }
        record(phaseNames[1], t)
        let missing = targetBytes - Int(bk_reuse_live_bytes(live))
        t = try timed { if bk_reuse_fill(live, &table, 1, Swift.max(0, missing)) < 0 { throw fillFailed } }
        record(phaseNames[2], t)
        t = timed { _ = bk_reuse_free_fraction(live, &table, 1.0) }
        record(phaseNames[3], t)
        t = timed { table.release?() }
        record(phaseNames[4], t)
        return ReuseRun(allocator: spec.name, baselineRSSBytes: Int(baseline), phases: phases,
                        peakRSSBytes: Int(bk_peak_rss()))
    }

    /// In the parent: one child per allocator.
    static func run(allocators: [AllocatorSpec], targetBytes: Int, notes: inout [String]) -> ReuseReport {
        let env = ProcessInfo.processInfo.environment
        var runs: [ReuseRun] = []
        for (i, id) in allocators.enumerated() {
            let args = ["bench", "reuse-one"] + id.childArguments + ["--bytes", String(targetBytes)]
            do {
                let child = try Spawn.run(Spawn.selfExe, args, env: env)
                guard child.status == 0,
                      var run = try? JSONDecoder().decode(ReuseRun.self, from: Data(child.stdout.utf8))
                else {
                    notes.append("reuse / \(id.name): child exited with status \(child.status)")
                    continue
                }
                if run.peakRSSBytes == nil { run.peakRSSBytes = child.peakRSSBytes }
                let last = run.phases.last
                Progress.say("[reuse \(i + 1)/\(allocators.count)] \(id.name): peak RSS "
                             + "\(Format.bytes(child.peakRSSBytes)), resident after purge "
                             + "\(Format.bytes(last?.residentBytes ?? 0)) (\(Format.fixed(child.wallNs / 1e9, 1)) s)")
                runs.append(run)
            } catch {
                notes.append("reuse / \(id.name): \(error)")
            }
        }
        return ReuseReport(targetBytes: targetBytes, phases: phaseNames, runs: runs, note: note)
    }
}
