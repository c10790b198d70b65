import SpanAlloc

#if canImport(Glibc)
import Glibc
#endif

/// GoSlice vs Array workloads.
///
/// - `slice.append-int`: append 10^7 `Int`s one at a time to an empty
///   GoSlice, Array and ContiguousArray (growth included).
/// - `slice.make64`: create and drop 10^7 64-byte slices,
///   `GoSlice<UInt8>(length: 64, capacity: 64)` (Go's `make([]byte, 64)`) vs
///   `[UInt8](repeating: 0, count: 64)`.
///
/// Each variant runs once as a warm-up, then `repetitions` times; every
/// sample is nanoseconds per operation on the monotonic clock. Quick mode
/// does 10x fewer operations.
enum GoSliceBench {
    static func run(repetitions: Int, quick: Bool) -> [Measurement] {
        let ops = quick ? 1_000_000 : 10_000_000
        let reps = max(1, repetitions)
        func measure(_ workload: String, _ variant: String, _ body: (Int) -> Void) -> Measurement {
            body(ops)  // warm-up
            var samples: [Double] = []
            for _ in 0 ..< reps {
                let t0 = goSliceBenchNow()
                body(ops)
                let t1 = goSliceBenchNow()
                samples.append(Double(t1 - t0) / Double(ops))
            }
            return Measurement(workload: workload, variant: variant, unit: "ns/op",
                               samples: samples, peakRSSBytes: nil)
        }
        // The first variant of a workload is the baseline of its table: Array.
        return [
            measure("slice.append-int", "Array", appendArray),
            measure("slice.append-int", "ContiguousArray", appendContiguousArray),
            measure("slice.append-int", "GoSlice", appendGoSlice),
            measure("slice.make64", "Array", makeArray64),
            measure("slice.make64", "GoSlice", makeGoSlice64),
        ]
    }

    @inline(never)
    static func appendGoSlice(_ n: Int) {
        var s = GoSlice<Int>()
        for i in 0 ..< n { s.append(i) }
        goSliceBenchBlackHole(s)
    }

    @inline(never)
    static func appendArray(_ n: Int) {
        var a: [Int] = []
        for i in 0 ..< n { a.append(i) }
        goSliceBenchBlackHole(a)
    }

    @inline(never)
    static func appendContiguousArray(_ n: Int) {
        var a = ContiguousArray<Int>()
        for i in 0 ..< n { a.append(i) }
        goSliceBenchBlackHole(a)
    }

    @inline(never)
    static func makeGoSlice64(_ n: Int) {
        for _ in 0 ..< n {
            let s = GoSlice<UInt8>(length: 64, capacity: 64)
            goSliceBenchBlackHole(s)
        }
    }

    @inline(never)
    static func makeArray64(_ n: Int) {
        for _ in 0 ..< n {
            let a = [UInt8](repeating: 0, count: 64)
            goSliceBenchBlackHole(a)
        }
    }
}

/// Keeps the optimizer from deleting the work that produced `x`.
@inline(never) @_optimize(none)
func goSliceBenchBlackHole<T>(_ x: T) {}

/// Monotonic clock in nanoseconds.
func goSliceBenchNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
