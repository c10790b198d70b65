import CBenchKit
import Foundation

/// Everything one `bench` invocation measured: the machine, the allocators,
/// one table per workload, the reuse phases and the LD_PRELOAD runs.
/// This is the JSON `--format json` prints; the other formats render it.
struct Report: Codable, Sendable {
    /// Fixed identification of the format.
    var tool = "spanalloc-bench"
    /// Format version; bumped when fields change meaning. 2: `ratio` is the geometric mean of the
    /// per-round paired ratios (was median / baseline median), with `ratioLow`/`ratioHigh`, `usage`, `probes`.
    var schemaVersion = 2
    var environment: EnvironmentInfo
    var allocators: [AllocatorInfo]
    var settings: Settings
    /// Allocator workloads: rows are allocators, the baseline is jemalloc.
    var workloads: [WorkloadTable] = []
    /// Workload groups of the Swift API (GoSlice, GoChan): rows are variants.
    var groups: [WorkloadTable] = []
    /// The span-reuse experiment, when it ran.
    var reuse: ReuseReport?
    /// Whole programs run under each allocator with LD_PRELOAD.
    var preload: [WorkloadTable] = []
    /// Things the reader must know (allocators skipped, stub in use, ...).
    var notes: [String] = []

    struct Settings: Codable, Sendable {
        var repetitions: Int
        var warmup: Int
        var quick: Bool
        var scale: Double
        var filter: [String]
        var command: String
        /// Repetitions ran round-robin across allocators, one child process per repetition.
        var interleaved: Bool?
        /// The allocator every ratio is relative to.
        var baseline: String?
        /// Thread counts of the scaling rows.
        var threads: [Int]?
        /// Rounds of the slow idle workloads (idle-threads, idle-gaps).
        var idleRounds: Int?
        /// Timed repetitions per child of a round (the round's sample is their minimum).
        var inner: Int?
        /// How the intervals were computed.
        var statistics: String?
        /// The SPANALLOC setting the children ran with (nil: unset).
        var spanallocSetting: String?
        /// BENCH_TEST_INFLATE: the factor SpanAlloc's samples were multiplied by (tests only).
        var testInflate: Double?
    }
}

/// The machine and software a report was measured on.
struct EnvironmentInfo: Codable, Sendable {
    var date: String
    var cpuModel: String
    var cores: Int
    var kernel: String
    var os: String
    var glibc: String
    var hostname: String
    /// Peak RSS of a bench child that does nothing: included in every row's peak RSS.
    var idleChildRSSBytes: Int?
    /// wait4 usage of a bench child that does nothing (median of a few): subtracted from every row's usage.
    var idleChildUsage: Usage?
}

/// One allocator as the report knows it.
struct AllocatorInfo: Codable, Sendable {
    var name: String
    var available: Bool
    var version: String
    /// Why it is missing, or what to keep in mind (e.g. "stub over glibc").
    var note: String?
    /// jemalloc's configuration (opt.* / config.*), for the others nil.
    var config: String?
    /// The shared library of a custom allocator (`--allocator NAME=/path/lib.so`).
    var library: String?
    /// A SpanAlloc variant's settings (`--spanalloc-variant NAME=SETTINGS`): its children ran with
    /// SPANALLOC=SETTINGS. nil for every other allocator.
    var spanallocSetting: String?
}

/// One workload: its rows (allocators or variants) and the baseline row name.
struct WorkloadTable: Codable, Sendable {
    var id: String
    var title: String
    /// Unit of every sample: "ns/op" (lower is better) or "ms" for whole programs.
    var unit: String
    /// Name of the row that ratios are relative to; nil when it did not run.
    var baseline: String?
    /// Extra explanation printed under the table.
    var note: String?
    /// True when ns/op is aggregate time over all threads (Mops/s = 1000 / ns/op).
    var throughput: Bool = false
    var rows: [Row]
}

/// One allocator (or variant) on one workload.
struct Row: Codable, Sendable {
    var name: String
    /// One value per repetition after warm-up, in the table's unit; samples[r] ran in round r.
    var samples: [Double]
    var median: Double
    var min: Double
    var max: Double
    /// exp(Hodges–Lehmann estimate of ln(samples[r] / baseline.samples[r])) over the rounds r: a
    /// robust centre of the per-round paired ratios; nil when the baseline is missing.
    var ratio: Double?
    /// The 95% interval of `ratio` (Wilcoxon signed-rank, or t with 2-5 rounds: see Statistics); nil with < 2 rounds.
    var ratioLow: Double?
    var ratioHigh: Double?
    /// samples[r] / baseline.samples[r], round by round.
    var pairedRatios: [Double]?
    /// CPU time of the child's process during each timed region / ops (all threads), in the table's
    /// unit; cpuSamples[r] ran in round r. Unlike wall time it leaves out the time the process
    /// waited for a CPU, which on a shared machine is most of the noise.
    var cpuSamples: [Double]?
    var cpuMedian: Double?
    /// The CPU-time ratio to the baseline and its interval, computed as `ratio` is.
    var cpuRatio: Double?
    var cpuRatioLow: Double?
    var cpuRatioHigh: Double?
    /// CPU time and page faults of this row's children (wait4), minus an idle child's.
    var usage: RowUsage?
    /// Workload-specific readings (e.g. resident memory at chosen moments), one sample per repetition.
    var probes: [Probe]?
    /// Peak resident memory of the child process that ran this row.
    var peakRSSBytes: Int?
    /// peakRSSBytes / baseline's peakRSSBytes.
    var rssRatio: Double?
    /// Millions of operations per second (throughput workloads only).
    var mopsPerSecond: Double?
    /// For LD_PRELOAD runs of bench's own workloads: the ns/op the program measured itself.
    var innerNsPerOp: Double?
    /// For LD_PRELOAD rows whose samples are the program's own ns/op (the C driver): the median wall
    /// time of a whole launch, ms.
    var programMs: Double?

    init(name: String, samples: [Double], peakRSSBytes: Int?) {
        self.name = name
        self.samples = samples
        let s = samples.sorted()
        self.median = Stats.median(s)
        self.min = s.first ?? .nan
        self.max = s.last ?? .nan
        self.peakRSSBytes = peakRSSBytes
    }
}

/// CPU time and page faults of a child process as wait4 reports them (or per-round samples of them).
struct Usage: Codable, Sendable {
    var userMs: Double
    var sysMs: Double
    var minorFaults: Double
    var majorFaults: Double

    init(userMs: Double, sysMs: Double, minorFaults: Double, majorFaults: Double) {
        self.userMs = userMs
        self.sysMs = sysMs
        self.minorFaults = minorFaults
        self.majorFaults = majorFaults
    }

    init(_ ru: bk_rusage) {
        self.init(userMs: ru.user_ns / 1e6, sysMs: ru.sys_ns / 1e6, minorFaults: Double(ru.minflt),
                  majorFaults: Double(ru.majflt))
    }

    /// Field-wise medians.
    static func median(_ us: [Usage]) -> Usage {
        Usage(userMs: Statistics.median(us.map(\.userMs)), sysMs: Statistics.median(us.map(\.sysMs)),
              minorFaults: Statistics.median(us.map(\.minorFaults)), majorFaults: Statistics.median(us.map(\.majorFaults)))
    }

    /// This usage minus `idle`'s, clamped at zero.
    func minus(_ idle: Usage?) -> Usage {
        guard let idle else { return self }
        return Usage(userMs: Swift.max(0, userMs - idle.userMs), sysMs: Swift.max(0, sysMs - idle.sysMs),
                     minorFaults: Swift.max(0, minorFaults - idle.minorFaults),
                     majorFaults: Swift.max(0, majorFaults - idle.majorFaults))
    }
}

/// A row's wait4 usage: one value per child (per round when interleaved) and the medians shown in tables.
struct RowUsage: Codable, Sendable {
    /// Per child, minus the idle child's usage.
    var samples: [Usage]
    /// Field-wise medians of `samples`.
    var median: Usage
    /// What one child did: "warm-up + 1 repetition", etc.
    var perChild: String
}

/// One workload-specific reading of a row, e.g. "RSS after 5 s idle".
struct Probe: Codable, Sendable {
    var name: String
    var unit: String
    var samples: [Double]
    var median: Double
}

enum Stats {
    /// Median of sorted values (mean of the middle two for an even count).
    static func median(_ sorted: [Double]) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

extension WorkloadTable {
    /// Fills every row's ratios against the baseline row (and Mops/s when throughput):
    /// the per-round paired ratios, their geometric mean and its 95% interval.
    mutating func computeRatios() {
        let base = rows.first { $0.name == baseline }
        for i in rows.indices {
            rows[i].ratio = nil
            rows[i].ratioLow = nil
            rows[i].ratioHigh = nil
            rows[i].pairedRatios = nil
            rows[i].cpuRatio = nil
            rows[i].cpuRatioLow = nil
            rows[i].cpuRatioHigh = nil
            if let base, let bc = base.cpuSamples, let c = rows[i].cpuSamples {
                if let ci = Statistics.pairedRatio(c, bc) {
                    rows[i].cpuRatio = ci.estimate
                    rows[i].cpuRatioLow = ci.low
                    rows[i].cpuRatioHigh = ci.high
                } else if c.count == 1, bc.count == 1, bc[0] > 0 {
                    rows[i].cpuRatio = c[0] / bc[0]
                }
            }
            if let base, base.median > 0 {
                let pairs = zip(rows[i].samples, base.samples).map { $0 / $1 }
                rows[i].pairedRatios = pairs
                if let ci = Statistics.pairedRatio(rows[i].samples, base.samples) {
                    rows[i].ratio = ci.estimate
                    rows[i].ratioLow = ci.low
                    rows[i].ratioHigh = ci.high
                } else if let first = pairs.first, pairs.count == 1 {
                    rows[i].ratio = first
                }
            }
            if let b = base?.peakRSSBytes, b > 0, let r = rows[i].peakRSSBytes {
                rows[i].rssRatio = Double(r) / Double(b)
            } else {
                rows[i].rssRatio = nil
            }
            if throughput, rows[i].median > 0 { rows[i].mopsPerSecond = 1000 / rows[i].median }
        }
    }
}
