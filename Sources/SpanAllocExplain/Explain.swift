import CSpanAlloc
import Foundation
import SpanAlloc

/// The `bench explain` experiments: the classic questions about Go's
/// allocator, slices and channels, answered by running them on SpanAlloc.
///
/// ```swift
/// let e = Explain.run(9)                 // where do 3584 bytes land?
/// print(e.verdict.summary)
/// ```
///
/// Every experiment allocates from `SpanHeap.default` on the calling thread
/// and frees what it allocated before it returns. The experiments read
/// process-wide counters (`MemStats`), so they give exact numbers only when
/// no other thread uses the heap at the same time.
public enum Explain {
    /// The experiment numbers, 1...12.
    public static let numbers = 1...12

    /// Titles of the experiments, by number.
    public static let titles: [Int: String] = [
        1: "Do a slice and a channel share an mspan?",
        2: "Sizes and size classes of headers",
        3: "nil slice, make(len 0) and the first append",
        4: "The path of an allocation",
        5: "Slice growth",
        6: "Span reuse across size classes",
        7: "Where a channel's buffer lives",
        8: "spanClass of common allocations",
        9: "Where 3584 bytes land",
        10: "Thread-cache hit rate, slices and channels interleaved",
        11: "The alloc hook: spans shared by slices and channels",
        12: "The heap profiler: which call sites own which spans",
    ]

    /// Workload sizes; the defaults are what `bench explain` runs.
    public struct Options: Sendable {
        /// Allocations in the timed path of experiment 4.
        public var pathAllocations = 2_000
        /// Appends in experiment 5.
        public var appends = 5_000
        /// Slice/channel pairs in experiment 10.
        public var interleavedPairs = 2_000
        /// Operations in experiment 11.
        public var hookOperations = 400
        /// Slices made by experiment 12's first site (half as many channels).
        public var profileRounds = 400

        /// The defaults.
        public init() {}
    }

    /// Runs experiment `number` (1...12).
    public static func run(_ number: Int, options: Options = Options()) -> Explanation {
        switch number {
        case 1: sharedSpan()
        case 2: headerSizes()
        case 3: nilAndEmptySlices()
        case 4: allocationPath(count: options.pathAllocations)
        case 5: growth(appends: options.appends)
        case 6: spanReuse()
        case 7: channelBuffer()
        case 8: spanClasses()
        case 9: size3584()
        case 10: hitRate(pairs: options.interleavedPairs)
        case 11: hookRun(operations: options.hookOperations)
        case 12: profileSites(rounds: options.profileRounds)
        default: preconditionFailure("no experiment \(number); they are numbered \(numbers)")
        }
    }

    /// Runs every experiment in order.
    public static func runAll(options: Options = Options()) -> [Explanation] {
        numbers.map { run($0, options: options) }
    }

    // MARK: Notes shared by several experiments

    static let noGC = "SpanAlloc frees explicitly (the last reference to a GoSlice's array or a GoChan frees it) "
        + "where Go waits for the garbage collector; the span bookkeeping is the same."
    static let noTiny = "SpanAlloc has no tiny allocator: Go packs pointer-free objects under 16 B into shared "
        + "16-byte blocks (spanClass 5); SpanAlloc gives each its own size-class slot."
    static let noInlineMarks = "SpanAlloc uses the classic objects-per-span table; Go 1.27 keeps GC mark bits inline "
        + "at the end of some small-object spans, which can leave one object fewer per span."
    static let perThread = "SpanAlloc's mcache is per thread; Go's is per P (logical processor)."
}

// MARK: - Helpers

/// Counter changes between two `MemStats` readings.
struct StatsDelta {
    let before: MemStats
    let after: MemStats

    var mallocs: Int { Int(after.mallocs) - Int(before.mallocs) }
    var frees: Int { Int(after.frees) - Int(before.frees) }
    var totalAlloc: Int { Int(after.totalAlloc) - Int(before.totalAlloc) }
    var cacheAllocs: Int { Int(after.cacheAllocs) - Int(before.cacheAllocs) }
    var cacheRefills: Int { Int(after.cacheRefills) - Int(before.cacheRefills) }
    var cacheSweeps: Int { Int(after.cacheSweeps) - Int(before.cacheSweeps) }
    var centralGrows: Int { Int(after.centralGrows) - Int(before.centralGrows) }
    var spansFresh: Int { Int(after.spansFresh) - Int(before.spansFresh) }
    var spansReused: Int { Int(after.spansReused) - Int(before.spansReused) }
    var spansReturned: Int { Int(after.spansReturned) - Int(before.spansReturned) }
    var arenasMapped: Int { Int(after.arenasMapped) - Int(before.arenasMapped) }

    /// The counters as table rows (name, delta).
    var rows: [[String]] {
        [["mallocs", "\(mallocs)"], ["frees", "\(frees)"], ["totalAlloc (bytes)", "\(totalAlloc)"],
         ["cacheAllocs", "\(cacheAllocs)"], ["cacheRefills", "\(cacheRefills)"], ["cacheSweeps", "\(cacheSweeps)"],
         ["centralGrows", "\(centralGrows)"], ["spansFresh", "\(spansFresh)"], ["spansReused", "\(spansReused)"],
         ["spansReturned", "\(spansReturned)"], ["arenasMapped", "\(arenasMapped)"]]
    }

    /// Measures the counters around `body`.
    static func around<R>(_ body: () throws -> R) rethrows -> (R, StatsDelta) {
        let heap = SpanHeap.default
        let before = heap.memStats
        let r = try body()
        return (r, StatsDelta(before: before, after: heap.memStats))
    }
}

/// Go's rules, written from Go 1.27's sources, evaluated over SpanAlloc's
/// size-class table (which is Go's). Used as the independent oracle the
/// observations are compared with.
enum GoModel {
    /// Go's `nextslicecap(newLen, oldCap)` (src/runtime/slice.go).
    static func nextSliceCap(newLength: Int, oldCapacity: Int) -> Int {
        let doubled = oldCapacity * 2
        if newLength > doubled { return newLength }
        if oldCapacity < 256 { return doubled }
        var c = oldCapacity
        while c < newLength { c += (c + 3 * 256) >> 2 }
        return c
    }

    /// Go's `roundupsize(size, noscan)` (src/runtime/msize.go): the class size,
    /// minus the 8-byte malloc header that a pointer-holding object above
    /// 512 B carries (internal/runtime/gc: MallocHeaderSize, MinSizeForMallocHeader);
    /// whole 8 KiB pages above 32 KiB.
    static func roundUpSize(_ size: Int, noscan: Bool) -> Int {
        if size <= Int(SA_MAX_SMALL_SIZE) - 8 {
            let header = !noscan && size > 512 ? 8 : 0
            return Int(sa_class_size(sa_size_to_class(size + header))) - header
        }
        let page = Int(SA_PAGE_SIZE)
        return (size + page - 1) / page * page
    }

    /// The capacity Go's `growslice` gives when appending one element to a
    /// full slice of `oldCapacity` elements of `stride` bytes.
    static func grownCapacity(oldCapacity: Int, stride: Int, noscan: Bool) -> Int {
        let c = nextSliceCap(newLength: oldCapacity + 1, oldCapacity: oldCapacity)
        return roundUpSize(c * stride, noscan: noscan) / stride
    }

    /// Go's spanClass for an object of `size` bytes (tiny allocator included:
    /// pointer-free objects under 16 B live in 16-byte blocks, spanClass 5).
    static func spanClass(size: Int, noscan: Bool) -> Int {
        if noscan && size < 16 && size > 0 { return 2 << 1 | 1 }
        let header = !noscan && size > 512 && size <= Int(SA_MAX_SMALL_SIZE) - 8 ? 8 : 0
        return Int(sa_size_to_class(size + header)) << 1 | (noscan ? 1 : 0)
    }
}

/// Small text helpers.
enum Text {
    static func hex(_ a: UInt) -> String { "0x" + String(a, radix: 16) }
    static func percent(_ x: Double) -> String { String(format: "%.2f%%", x * 100) }
    static func ns(_ x: Double) -> String { x.isFinite ? String(format: "%.0f ns", x) : "-" }
    static func yesNo(_ b: Bool) -> String { b ? "yes" : "no" }
}

/// Go's hchan size on 64-bit platforms in Go 1.27 (src/runtime/chan.go, hchanSize).
let goHchanSize = 112
/// Go's slice header size on 64-bit platforms (src/runtime/slice.go, type slice).
let goSliceHeaderSize = 24
/// Go 1.27's map header size on amd64 (src/internal/runtime/maps/map.go, type Map).
let goMapHeaderSize = 48
