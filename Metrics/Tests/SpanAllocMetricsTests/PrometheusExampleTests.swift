import Prometheus
import SpanAlloc
import SpanAllocMetrics
import Testing

/// The example of the DocC article "Metrics" (SpanAlloc.docc/Metrics.md):
/// MemStats through swift-prometheus's registry, in the text format a
/// scrape of `/metrics` returns.
@Suite struct PrometheusExampleTests {
    @Test func memStatsInPrometheusTextFormat() throws {
        // A registry of its own; a server would bootstrap MetricsSystem with
        // PrometheusMetricsFactory(registry:) and call SpanAllocMetrics.start().
        let registry = PrometheusCollectorRegistry()
        let reporter = MemStatsReporter(factory: PrometheusMetricsFactory(registry: registry))
        let stats = reporter.report(heap: .default)
        let text = registry.emitToString()  // the body of GET /metrics

        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("# TYPE spanalloc_heap_inuse_bytes gauge"))
        #expect(lines.contains("spanalloc_heap_inuse_bytes \(Double(stats.heapInuse))"))
        #expect(lines.contains("# TYPE spanalloc_mallocs_total counter"))
        #expect(lines.contains("spanalloc_mallocs_total \(stats.mallocs)"))
        #expect(lines.contains { $0.hasPrefix("spanalloc_by_size_mallocs_total{size_class=\"5\",size=\"48\"}") })
    }
}
