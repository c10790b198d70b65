// SpanHeap's hot paths through the Swift API. The malloc counters
// (mallocCountTotal, from the MallocInterposer trait) count calls to the libc
// malloc family: SpanHeap allocates from its own mmap'ed spans, so every
// benchmark here must report 0 of them (the thresholds below fail the
// `benchmark baseline check`/`thresholds check` commands otherwise).
import Benchmark
import SpanAlloc

let benchmarks: @Sendable () -> Void = {
    let noLibcMalloc: [BenchmarkMetric: BenchmarkThresholds] = [
        // `thresholds check` compares p90 with Thresholds/*.p90.json (0) within the .p90 tolerance here.
        .mallocCountTotal: .init(absolute: [.p0: 0, .p50: 0, .p90: 0, .p100: 0]),
    ]
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(1),
        maxIterations: 1_000,
        thresholds: noLibcMalloc
    )

    for size in [16, 64, 256, 1024, 16384] {
        Benchmark("SpanHeap allocate+deallocate \(size) B") { benchmark in
            let heap = SpanHeap.default
            for _ in benchmark.scaledIterations {
                let p = heap.allocate(byteCount: size)
                blackHole(p)
                heap.deallocate(p)
            }
        }
    }

    Benchmark("SpanHeap 1000 x 48 B, then free all") { benchmark in
        let heap = SpanHeap.default
        let ptrs = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 1000)
        defer { ptrs.deallocate() }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for i in 0..<1000 { ptrs[i] = heap.allocate(byteCount: 48) }
            for i in 0..<1000 { heap.deallocate(ptrs[i]!) }
        }
    }

    Benchmark("SpanHeap typed allocate<Int64>(capacity: 8), noscan") { benchmark in
        let heap = SpanHeap.default
        for _ in benchmark.scaledIterations {
            let p = heap.allocate(Int64.self, capacity: 8)
            p.initialize(to: 1)
            blackHole(p.pointee)
            heap.deallocate(p)
        }
    }

    Benchmark("SpanHeap large 256 KiB allocate+deallocate") { benchmark in
        let heap = SpanHeap.default
        for _ in benchmark.scaledIterations {
            let p = heap.allocate(byteCount: 256 << 10)
            p.storeBytes(of: 1, as: UInt8.self)
            blackHole(p)
            heap.deallocate(p)
        }
    }

    // The control: the same counter sees the Swift runtime's libc mallocs (an Array
    // buffer each iteration), so the zeros above are measurements, not a dead counter.
    Benchmark(
        "control: [Int] with capacity 16 (Swift runtime, libc malloc)",
        configuration: .init(metrics: [.wallClock, .mallocCountTotal], thresholds: [:])
    ) { benchmark in
        for _ in benchmark.scaledIterations {
            var a = [Int]()
            a.reserveCapacity(16)
            a.append(1)
            blackHole(a)
        }
    }

    // GoSlice append and GoChan send/receive join this suite once those types are on main.
}
