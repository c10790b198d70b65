import CoreMetrics
import SpanAlloc
import Synchronization

/// Reports ``MemStats`` snapshots to a swift-metrics backend.
///
/// Gauges are set to a snapshot's value; counters are incremented by the
/// growth since the previous snapshot this reporter saw, so a backend's
/// counter equals the snapshot's count (a counter that went down is reset
/// to the new value). The metrics are made on first use and kept.
///
/// Thread-safe: reports from several threads are serialized.
public final class MemStatsReporter: Sendable {
    /// The start of every metric name (`spanalloc_heap_inuse_bytes`).
    public let prefix: String
    private let dimensions: [(String, String)]
    private let factory: any MetricsFactory
    private let state = Mutex(State())

    private struct State {
        var gauges: [String: Gauge] = [:]
        var counters: [String: Counter] = [:]
        var lastCount: [String: Int64] = [:]
    }

    /// A reporter whose metrics are named `prefix_…`, carry `dimensions` in
    /// addition to their own, and are made by `factory` (by default the one
    /// `MetricsSystem.bootstrap` installed).
    public init(
        prefix: String = "spanalloc",
        dimensions: [(String, String)] = [],
        factory: any MetricsFactory = MetricsSystem.factory
    ) {
        self.prefix = prefix
        self.dimensions = dimensions
        self.factory = factory
    }

    /// Reports one snapshot: every sample of
    /// ``SpanAllocMetrics/samples(of:prefix:)``.
    public func report(_ stats: MemStats) {
        let samples = SpanAllocMetrics.samples(of: stats, prefix: prefix)
        state.withLock { state in
            for s in samples {
                let dims = s.dimensions.map { ($0.key, $0.value) } + dimensions
                let key = s.name + "{" + dims.map { "\($0.0)=\($0.1)" }.joined(separator: ",") + "}"
                switch s.kind {
                case .gauge:
                    let gauge = state.gauges[key] ?? {
                        let g = Gauge(label: s.name, dimensions: dims, factory: factory)
                        state.gauges[key] = g
                        return g
                    }()
                    gauge.record(s.value)
                case .counter:
                    let counter = state.counters[key] ?? {
                        let c = Counter(label: s.name, dimensions: dims, factory: factory)
                        state.counters[key] = c
                        return c
                    }()
                    let last = state.lastCount[key] ?? 0
                    if s.value >= last {
                        if s.value > last { counter.increment(by: s.value - last) }
                    } else {
                        counter.reset()
                        counter.increment(by: s.value)
                    }
                    state.lastCount[key] = s.value
                }
            }
        }
    }

    /// Reads `heap.memStats` once, reports it, and returns the snapshot
    /// that was reported.
    @discardableResult
    public func report(heap: SpanHeap = .default) -> MemStats {
        let stats = heap.memStats
        report(stats)
        return stats
    }
}

/// Periodic reporting started by ``SpanAllocMetrics/start(interval:heap:reporter:)``.
public final class PeriodicReporting: Sendable {
    /// The reporter the snapshots go to.
    public let reporter: MemStatsReporter
    private let task: Task<Void, Never>

    init(interval: Duration, heap: SpanHeap, reporter: MemStatsReporter) {
        self.reporter = reporter
        task = Task.detached(priority: .utility) {
            while !Task.isCancelled {
                reporter.report(heap: heap)
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Stops reporting. A report already begun still completes; after
    /// ``stopped()`` returns, no more follow.
    public func stop() { task.cancel() }

    /// Waits until the reporting loop has ended (after ``stop()``).
    public func stopped() async { await task.value }

    deinit { task.cancel() }
}
