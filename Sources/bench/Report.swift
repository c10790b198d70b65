import Foundation

/// Everything one `bench` invocation measured: the machine, the allocators,
/// one table per workload, the reuse phases and the LD_PRELOAD runs.
/// This is the JSON `--format json` prints; the other formats render it.
struct Report: Codable, Sendable {
    /// Fixed identification of the format.
    var tool = "spanalloc-bench"
    /// Format version; bumped when fields change meaning.
    var schemaVersion = 1
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
    /// One value per repetition after warm-up, in the table's unit.
    var samples: [Double]
    var median: Double
    var min: Double
    var max: Double
    /// median / baseline median; nil when the baseline is missing.
    var ratio: Double?
    /// Peak resident memory of the child process that ran this row.
    var peakRSSBytes: Int?
    /// peakRSSBytes / baseline's peakRSSBytes.
    var rssRatio: Double?
    /// Millions of operations per second (throughput workloads only).
    var mopsPerSecond: Double?
    /// For LD_PRELOAD runs of bench's own workloads: the ns/op the program measured itself.
    var innerNsPerOp: Double?

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

enum Stats {
    /// Median of sorted values (mean of the middle two for an even count).
    static func median(_ sorted: [Double]) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

extension WorkloadTable {
    /// Fills every row's ratios against the baseline row (and Mops/s when throughput).
    mutating func computeRatios() {
        let base = rows.first { $0.name == baseline }
        for i in rows.indices {
            if let base, base.median > 0 {
                rows[i].ratio = rows[i].median / base.median
            } else {
                rows[i].ratio = nil
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
