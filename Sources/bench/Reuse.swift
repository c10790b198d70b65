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
    /// jemalloc's configuration as the child's jemalloc reported it (opt.* through mallctl): shows
    /// whether jemalloc-bg's MALLOC_CONF took effect. nil for the other allocators.
    var allocatorConfig: String?
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
    var spansInuse: UInt64
    var heapInuse: UInt64
    var heapIdle: UInt64
    var heapReleased: UInt64
    var heapSys: UInt64

    init(_ s: MemStats) {
        spansFresh = s.spansFresh
        spansReused = s.spansReused
        spansReturned = s.spansReturned
        spansInuse = s.spansInuse
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
    /// Background threads running (stats.background_thread.num_threads); nil in reports made before
    /// the field existed.
    var backgroundThreads: UInt64?

    init(_ s: bk_jemalloc_stats) {
        nslabs = s.nslabs
        nreslabs = s.nreslabs
        curslabs = s.curslabs
        allocated = s.allocated
        active = s.active
        resident = s.resident
        mapped = s.mapped
        retained = s.retained
        backgroundThreads = s.background_threads
    }
}

enum ReuseExperiment {
    /// The idle phase's length unless `--reuse-idle-seconds` says otherwise.
    static let defaultIdleSeconds = 5.0

    /// The phases in order; the idle phase's name carries its length.
    static func phaseNames(idleSeconds: Double = defaultIdleSeconds) -> [String] {
        ["fill (16-512 B mix)", "free 90% at random", "refill (640 B-24 KiB + large mix)",
         "free everything", "idle \(Format.fixed(idleSeconds, idleSeconds.rounded() == idleSeconds ? 0 : 1)) s (no allocator call)",
         "scavenge / purge"]
    }

    /// The extra jemalloc row: jemalloc again, with its background purging thread.
    static let jemallocBackground = AllocatorSpec(
        name: "jemalloc-bg", builtin: .jemalloc, environment: ["MALLOC_CONF": "background_thread:true"])

    static func note(idleSeconds: Double) -> String {
        """
        Phases run in order in one child process per allocator. resident = RSS − RSS before phase 1 \
        (harness arrays are mmap'ed and touched before the baseline). efficiency = live bytes / resident. \
        The idle phase sleeps \(Format.fixed(idleSeconds, 1)) s without calling the allocator: what it returns \
        on its own (background threads, decay, a scavenger). jemalloc-bg is jemalloc with \
        MALLOC_CONF=background_thread:true in its child's environment only (read when the child loads it). \
        SpanAlloc purges with sa_scavenge(SIZE_MAX), jemalloc with arena.<all>.purge, glibc malloc_trim(0), \
        mimalloc mi_collect(true), tcmalloc MallocExtension_ReleaseFreeMemory().
        """
    }

    /// In the child: runs every phase under one allocator.
    static func runInProcess(spec: AllocatorSpec, allocator: bk_allocator, targetBytes: Int,
                             idleSeconds: Double = defaultIdleSeconds) throws -> ReuseRun {
        let phaseNames = phaseNames(idleSeconds: idleSeconds)
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
        t = timed { sleepWithoutAllocating(idleSeconds) }
        record(phaseNames[4], t)
        t = timed { table.release?() }
        record(phaseNames[5], t)
        var run = ReuseRun(allocator: spec.name, baselineRSSBytes: Int(baseline), phases: phases,
                           peakRSSBytes: Int(bk_peak_rss()))
        if id == .jemalloc {
            var buf = [CChar](repeating: 0, count: 1024)
            bk_jemalloc_config(&table, &buf, buf.count)
            run.allocatorConfig = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return run
    }

    /// nanosleep until `seconds` have passed: no allocation, no allocator call.
    static func sleepWithoutAllocating(_ seconds: Double) {
        guard seconds > 0 else { return }
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
        var rest = timespec()
        while nanosleep(&ts, &rest) != 0, errno == EINTR { ts = rest }
    }

    /// The allocators of the experiment: `allocators`, with jemalloc-bg right after jemalloc.
    static func allocatorList(_ allocators: [AllocatorSpec]) -> [AllocatorSpec] {
        allocators.flatMap { a in
            a.name == AllocatorID.jemalloc.rawValue && !allocators.contains(jemallocBackground) ? [a, jemallocBackground] : [a]
        }
    }

    /// In the parent: one child per allocator (and jemalloc-bg after jemalloc).
    static func run(allocators: [AllocatorSpec], targetBytes: Int, idleSeconds: Double = defaultIdleSeconds,
                    notes: inout [String]) -> ReuseReport {
        let env = ProcessInfo.processInfo.environment
        let list = allocatorList(allocators)
        var runs: [ReuseRun] = []
        for (i, id) in list.enumerated() {
            let args = ["bench", "reuse-one"] + id.childArguments
                + ["--bytes", String(targetBytes), "--idle-seconds", String(idleSeconds)]
            do {
                let child = try Spawn.run(Spawn.selfExe, args, env: id.childEnvironment(env))
                guard child.status == 0,
                      var run = try? JSONDecoder().decode(ReuseRun.self, from: Data(child.stdout.utf8))
                else {
                    notes.append("reuse / \(id.name): child exited with status \(child.status)")
                    continue
                }
                // The child knows the allocator it loaded (jemalloc, SpanAlloc), not the row's name.
                run.allocator = id.name
                if run.peakRSSBytes == nil { run.peakRSSBytes = child.peakRSSBytes }
                if id == jemallocBackground, run.allocatorConfig?.contains("opt.background_thread=true") != true {
                    notes.append("reuse / jemalloc-bg: its jemalloc did not report opt.background_thread=true "
                                 + "(\(run.allocatorConfig ?? "no configuration")): MALLOC_CONF was not honoured")
                }
                let last = run.phases.last
                Progress.say("[reuse \(i + 1)/\(list.count)] \(id.name): peak RSS "
                             + "\(Format.bytes(child.peakRSSBytes)), resident after purge "
                             + "\(Format.bytes(last?.residentBytes ?? 0)) (\(Format.fixed(child.wallNs / 1e9, 1)) s)")
                runs.append(run)
            } catch {
                notes.append("reuse / \(id.name): \(error)")
            }
        }
        return ReuseReport(targetBytes: targetBytes, phases: phaseNames(idleSeconds: idleSeconds), runs: runs,
                           note: note(idleSeconds: idleSeconds))
    }
}
