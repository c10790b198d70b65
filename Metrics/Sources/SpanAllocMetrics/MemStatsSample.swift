import SpanAlloc

/// One quantity of a ``MemStats`` snapshot under its metric name.
///
/// The samples of a snapshot come from reflection over `MemStats` (see
/// ``SpanAllocMetrics/samples(of:prefix:)``), so a field added to
/// `MemStats` later is reported without a change here.
public struct MemStatsSample: Sendable, Hashable {
    /// How a sample is reported.
    public enum Kind: Sendable, Hashable {
        /// A level that goes up and down (a size, a count of live things):
        /// a swift-metrics `Gauge`, set to the value.
        case gauge
        /// A count that only grows: a swift-metrics `Counter`, incremented by
        /// the growth since the previous report.
        case counter
    }

    /// The `MemStats` property the value comes from, as a path:
    /// `heapInuse`, or `bySize[5].mallocs` for one size class.
    public var field: String
    /// The metric name, modelled on Go's Prometheus collector:
    /// `spanalloc_heap_inuse_bytes` for `heapInuse`, as Go's
    /// `go_memstats_heap_inuse_bytes`; counters end in `_total`.
    public var name: String
    /// Labels of the metric: `size_class` and `size` for the per-class
    /// counts, none otherwise.
    public var dimensions: [Dimension]
    /// Gauge or counter.
    public var kind: Kind
    /// The value. `true`/`false` are 1/0; a `nil` memory limit is
    /// `Int64.max` (as Go reports "no limit" as `math.MaxInt64`).
    public var value: Int64

    /// One label of a metric.
    public struct Dimension: Sendable, Hashable {
        /// The label's name.
        public var key: String
        /// The label's value.
        public var value: String
    }
}

/// MemStats as swift-metrics gauges and counters.
///
/// ```swift
/// import SpanAllocMetrics
///
/// let reporting = SpanAllocMetrics.start(interval: .seconds(10))
/// // … the program runs; every 10 s `SpanHeap.default.memStats` is reported …
/// reporting.stop()
/// ```
///
/// Each stored property of ``MemStats`` becomes one metric named after Go's
/// Prometheus collector (`go_memstats_…` → `spanalloc_…`): sizes are gauges
/// ending in `_bytes`, cumulative counts are counters ending in `_total`,
/// and `bySize` becomes the counters `spanalloc_by_size_mallocs_total` and
/// `spanalloc_by_size_frees_total` with the labels `size_class` and `size`.
public enum SpanAllocMetrics {
    /// Starts reporting `heap.memStats` every `interval` through `reporter`
    /// (by default a ``MemStatsReporter`` on the bootstrapped
    /// `MetricsSystem.factory`), the first report at once. Reporting goes on
    /// until ``PeriodicReporting/stop()``.
    public static func start(
        interval: Duration = .seconds(10),
        heap: SpanHeap = .default,
        reporter: MemStatsReporter = MemStatsReporter()
    ) -> PeriodicReporting {
        PeriodicReporting(interval: interval, heap: heap, reporter: reporter)
    }

    /// The samples of one snapshot: every stored property of `MemStats`,
    /// found by reflection, in declaration order, with each size class's
    /// counts after the scalar fields' (size class 0, which is unused, left out).
    ///
    /// A property of a type this function does not know (none today) yields
    /// no sample; the package's tests check that every property yields one.
    public static func samples(of stats: MemStats, prefix: String = "spanalloc") -> [MemStatsSample] {
        var out: [MemStatsSample] = []
        var perClass: [MemStatsSample] = []
        for child in Mirror(reflecting: stats).children {
            guard let field = child.label else { continue }
            if let scalar = scalarValue(child.value) {
                out.append(sample(field: field, path: field, dimensions: [], value: scalar, prefix: prefix))
            } else if let rows = child.value as? [Any] {
                for (index, row) in rows.enumerated() {
                    perClass += rowSamples(field: field, index: index, row: row, prefix: prefix)
                }
            }
        }
        return out + perClass
    }

    /// A scalar property's value as an Int64, `nil` for non-scalars.
    static func scalarValue(_ value: Any) -> Int64? {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return Int64.max }
            return scalarValue(wrapped)
        }
        switch value {
        case let v as UInt64: return Int64(clamping: v)
        case let v as Int64: return v
        case let v as Int: return Int64(v)
        case let v as UInt: return Int64(clamping: v)
        case let v as UInt32: return Int64(v)
        case let v as Int32: return Int64(v)
        case let v as Bool: return v ? 1 : 0
        default: return nil
        }
    }

    /// The samples of one element of an array property (`bySize`): its
    /// `size` field becomes a label, the others counters or gauges.
    static func rowSamples(field: String, index: Int, row: Any, prefix: String) -> [MemStatsSample] {
        let children = Mirror(reflecting: row).children.compactMap { c in
            c.label.flatMap { label in scalarValue(c.value).map { (label, $0) } }
        }
        guard let size = children.first(where: { $0.0 == "size" })?.1, size > 0 else { return [] }
        let dims = [
            MemStatsSample.Dimension(key: "size_class", value: String(index)),
            MemStatsSample.Dimension(key: "size", value: String(size)),
        ]
        return children.filter { $0.0 != "size" }.map { label, value in
            sample(field: field + "_" + label, path: "\(field)[\(index)].\(label)", dimensions: dims,
                   value: value, prefix: prefix)
        }
    }

    static func sample(field: String, path: String, dimensions: [MemStatsSample.Dimension],
                       value: Int64, prefix: String) -> MemStatsSample {
        let key = normalized(field)
        let counter = counters.contains(key)
        var base = snakeCase(field)
        if key == "totalalloc" { base = "alloc" }  // Go: go_memstats_alloc_bytes_total
        if bytes.contains(key), !base.hasSuffix("_bytes") { base += "_bytes" }
        if counter { base += "_total" }
        return MemStatsSample(field: path, name: prefix + "_" + base, dimensions: dimensions,
                              kind: counter ? .counter : .gauge, value: value)
    }

    /// Field names compared without case and underscores, so that
    /// `spansInUse` and Go's spelling `spansInuse` are the same field.
    static func normalized(_ field: String) -> String {
        field.lowercased().filter { $0 != "_" }
    }

    /// `heapInuse` → `heap_inuse`, `scavengerCPUNanoseconds` →
    /// `scavenger_cpu_nanoseconds`, `bySize_mallocs` → `by_size_mallocs`.
    static func snakeCase(_ field: String) -> String {
        let chars = Array(field)
        var out = ""
        for (i, c) in chars.enumerated() {
            if c.isUppercase, i > 0, chars[i - 1] != "_" {
                let prevLower = chars[i - 1].isLowercase || chars[i - 1].isNumber
                let nextLower = i + 1 < chars.count && chars[i + 1].isLowercase
                if prevLower || (chars[i - 1].isUppercase && nextLower) { out += "_" }
            }
            out += c.lowercased()
        }
        return out
    }

    /// Fields (normalized) that only grow: reported as counters. Any other
    /// field is a gauge, so a new cumulative field shows as a gauge until it
    /// is listed here.
    static let counters: Set<String> = [
        "totalalloc", "mallocs", "frees",
        "cacheallocs", "largeallocs", "largefrees", "cacherefills", "cachesweeps", "centralgrows",
        "spansfresh", "spansreused", "spansreturned", "centralemptyreuses",
        "remotefrees", "remotebatches", "pagesscavenged", "scavengeruns", "threadsexited",
        "freecachehits", "freecacheflushes", "freecachegcflushes", "exitflushes",
        "pagesreleasedbackground", "pagesreleasedpacer", "pagesreleasedlimit", "pagesreleaseddemand",
        "scavengercpunanoseconds", "idlecacheflushes",
        "memorylimithits", "memorylimitovershoots", "memorylimitrefusals",
        "bysizemallocs", "bysizefrees",
    ]

    /// Fields (normalized) that hold bytes: their names end in `_bytes`.
    static let bytes: Set<String> = [
        "alloc", "totalalloc", "sys", "heapalloc", "heapsys", "heapidle", "heapinuse", "heapreleased",
        "metadatasys", "centralemptybytes", "freecachebytes", "threadheldmax",
        "memorylimit", "memorycounted",
    ]
}
