import MetricsTestKit
import SpanAlloc
@testable import SpanAllocMetrics
import Testing

/// The value of a MemStats property found by reflection, as the metric
/// carries it (Bool 1/0, a nil limit Int64.max). Written apart from the
/// library's reflection so that the two can disagree.
private func reflectedValue(_ value: Any) -> Int64? {
    let m = Mirror(reflecting: value)
    if m.displayStyle == .optional {
        guard let v = m.children.first?.value else { return .max }
        return reflectedValue(v)
    }
    if let v = value as? UInt64 { return Int64(clamping: v) }
    if let v = value as? Int { return Int64(v) }
    if let v = value as? Bool { return v ? 1 : 0 }
    return nil
}

/// The value the backend holds for a sample (gauge: last value; counter: total).
private func backendValue(_ metrics: TestMetrics, _ s: MemStatsSample) throws -> Double {
    let dims = s.dimensions.map { ($0.key, $0.value) }
    switch s.kind {
    case .gauge: return try #require(try metrics.expectGauge(s.name, dims).lastValue)
    case .counter: return Double(try metrics.expectCounter(s.name, dims).totalValue)
    }
}

/// Some allocations of several classes, so that counters are not all zero.
private func churn(_ n: Int) {
    let heap = SpanHeap.default
    var ps: [UnsafeMutableRawPointer] = []
    for i in 0..<n { ps.append(heap.allocate(byteCount: 16 << (i % 8), noscan: true)) }
    for p in ps { heap.deallocate(p) }
    ps.append(heap.allocate(byteCount: 100_000, noscan: true))
    heap.deallocate(ps.removeLast())
}

@Suite struct SpanAllocMetricsTests {
    @Test func everyMemStatsFieldIsReportedWithTheSnapshotsValue() throws {
        churn(1000)
        let metrics = TestMetrics()
        let reporter = MemStatsReporter(factory: metrics)
        let snapshot = reporter.report(heap: .default)
        let samples = SpanAllocMetrics.samples(of: snapshot)

        let fields = Mirror(reflecting: snapshot).children.compactMap(\.label)
        #expect(fields.count >= 50, "MemStats has \(fields.count) stored properties")
        for field in fields {
            let mine = samples.filter { $0.field == field || $0.field.hasPrefix(field + "[") }
            #expect(!mine.isEmpty, "MemStats.\(field) is not reported")
        }
        for child in Mirror(reflecting: snapshot).children {
            guard let field = child.label, let expected = reflectedValue(child.value) else { continue }
            let s = try #require(samples.first { $0.field == field })
            #expect(s.value == expected, "\(field)")
            #expect(try backendValue(metrics, s) == Double(expected), "\(s.name) for MemStats.\(field)")
        }
        // Every size class with objects: two counters, labelled with class and size.
        var classesChecked = 0
        for (i, c) in snapshot.bySize.enumerated() where c.size > 0 {
            let dims = [("size_class", String(i)), ("size", String(c.size))]
            #expect(try metrics.expectCounter("spanalloc_by_size_mallocs_total", dims).totalValue == Int64(c.mallocs))
            #expect(try metrics.expectCounter("spanalloc_by_size_frees_total", dims).totalValue == Int64(c.frees))
            classesChecked += 1
        }
        #expect(classesChecked == snapshot.bySize.count - 1)
        // Every sample reached the backend.
        for s in samples { _ = try backendValue(metrics, s) }
    }

    @Test func namesFollowGosPrometheusCollector() throws {
        churn(100)
        let metrics = TestMetrics()
        let snapshot = MemStatsReporter(factory: metrics).report(heap: .default)
        #expect(try metrics.expectGauge("spanalloc_heap_inuse_bytes").lastValue == Double(snapshot.heapInuse))
        #expect(try metrics.expectGauge("spanalloc_heap_alloc_bytes").lastValue == Double(snapshot.heapAlloc))
        #expect(try metrics.expectGauge("spanalloc_sys_bytes").lastValue == Double(snapshot.sys))
        #expect(try metrics.expectGauge("spanalloc_heap_objects").lastValue == Double(snapshot.heapObjects))
        #expect(try metrics.expectCounter("spanalloc_alloc_bytes_total").totalValue == Int64(snapshot.totalAlloc))
        #expect(try metrics.expectCounter("spanalloc_mallocs_total").totalValue == Int64(snapshot.mallocs))
        #expect(try metrics.expectCounter("spanalloc_frees_total").totalValue == Int64(snapshot.frees))
        // The span-reuse counters.
        #expect(try metrics.expectCounter("spanalloc_spans_fresh_total").totalValue == Int64(snapshot.spansFresh))
        #expect(try metrics.expectCounter("spanalloc_spans_reused_total").totalValue == Int64(snapshot.spansReused))
        #expect(try metrics.expectCounter("spanalloc_spans_returned_total").totalValue == Int64(snapshot.spansReturned))
        #expect(try metrics.expectCounter("spanalloc_central_empty_reuses_total").totalValue
                == Int64(snapshot.centralEmptyReuses))
        #expect(try metrics.expectCounter("spanalloc_scavenger_cpu_nanoseconds_total").totalValue
                == Int64(snapshot.scavengerCPUNanoseconds))
    }

    /// The lists of counters and byte-valued fields name MemStats fields
    /// (compared without case and underscores): a renamed field must be
    /// renamed there too, or it would turn into a plain gauge.
    @Test func classificationNamesExistingFields() {
        let s = SpanHeap.default.memStats
        var fields = Set(Mirror(reflecting: s).children.compactMap { $0.label.map(SpanAllocMetrics.normalized) })
        for row in Mirror(reflecting: s.bySize[1]).children.compactMap(\.label) {
            fields.insert(SpanAllocMetrics.normalized("bySize" + row))
        }
        for name in SpanAllocMetrics.counters.union(SpanAllocMetrics.bytes) {
            #expect(fields.contains(name), "\(name) is listed in SpanAllocMetrics but is no MemStats field")
        }
    }

    @Test func countersFollowLaterSnapshots() throws {
        let metrics = TestMetrics()
        let reporter = MemStatsReporter(factory: metrics)
        let first = reporter.report(heap: .default)
        churn(5000)
        let second = reporter.report(heap: .default)
        #expect(second.mallocs > first.mallocs)
        let c = try metrics.expectCounter("spanalloc_mallocs_total")
        #expect(c.totalValue == Int64(second.mallocs))
        #expect(c.values.count == (first.mallocs > 0 ? 2 : 1))  // one increment per growth
        for s in SpanAllocMetrics.samples(of: second) {
            #expect(try backendValue(metrics, s) == Double(s.value), "\(s.name)")
        }
    }

    @Test func periodicReportingStartsAndStops() async throws {
        let metrics = TestMetrics()
        let reporting = SpanAllocMetrics.start(interval: .milliseconds(20),
                                               reporter: MemStatsReporter(factory: metrics))
        var reports = 0
        for _ in 0..<500 where reports < 3 {
            try await Task.sleep(for: .milliseconds(10))
            reports = (try? metrics.expectGauge("spanalloc_heap_sys_bytes").values.count) ?? 0
        }
        #expect(reports >= 3)
        reporting.stop()
        await reporting.stopped()
        let after = try metrics.expectGauge("spanalloc_heap_sys_bytes").values.count
        try await Task.sleep(for: .milliseconds(100))
        #expect(try metrics.expectGauge("spanalloc_heap_sys_bytes").values.count == after)
    }
}
