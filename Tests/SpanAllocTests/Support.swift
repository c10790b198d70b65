import CSpanAlloc
import Foundation
import SpanAlloc
import SpanAllocTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The heap under test.
let heap = SpanHeap.default

/// Span page size (Go's 8 KiB).
let spanPage = Int(SA_PAGE_SIZE)

/// Every test of the core allocator runs inside this suite: one test at a
/// time, with the heap to itself (``HeapTestLock``, exclusive), and the heap
/// checker after each test. Nested suites live in the other files.
@Suite(.serialized, .heapExclusive)
struct CoreAllocatorTests {}

// MARK: - Go's size-class table

/// One row of `spec/sizeclasses.tsv` (Go's table).
struct GoSizeClass: Sendable {
    let index: Int
    let size: Int
    let pages: Int
    let objects: Int
    let spanClassScan: Int
    let spanClassNoscan: Int
}

/// Go's 67 small size classes, parsed from the repository's copy of the table
/// (found relative to this source file).
let goSizeClasses: [GoSizeClass] = {
    let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("spec/sizeclasses.tsv")
    guard let text = try? String(contentsOf: url, encoding: .utf8) else {
        fatalError("cannot read \(url.path)")
    }
    var rows: [GoSizeClass] = []
    for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix("class") {
        let f = line.split(separator: "\t").map(String.init)
        guard f.count >= 10, let c = Int(f[0]), let size = Int(f[1]), let span = Int(f[2]),
              let objects = Int(f[3]), let pages = Int(f[7]),
              let scan = Int(f[8]), let noscan = Int(f[9]) else {
            fatalError("bad row in sizeclasses.tsv: \(line)")
        }
        precondition(span == pages * 8192)
        rows.append(GoSizeClass(index: c, size: size, pages: pages, objects: objects,
                                spanClassScan: scan, spanClassNoscan: noscan))
    }
    return rows
}()

/// The largest power of two that divides `n`.
func largestPowerOfTwoDividing(_ n: Int) -> Int { n & -n }

// MARK: - Byte patterns

/// A byte pattern derived from the object's address, so a block that was
/// handed to two owners or overwritten shows up.
@inline(__always)
func patternByte(_ base: UInt, _ i: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (base >> 4) &+ (base >> 13) &+ UInt(i) &* 131)
}

/// Writes the pattern into the first and last `edge` bytes of a block of
/// `size` bytes (the whole block when it is small).
func fillPattern(_ p: UnsafeMutableRawPointer, size: Int, edge: Int = 512) {
    let base = UInt(bitPattern: p)
    let b = p.assumingMemoryBound(to: UInt8.self)
    if size <= 2 * edge {
        for i in 0..<size { b[i] = patternByte(base, i) }
    } else {
        for i in 0..<edge { b[i] = patternByte(base, i) }
        for i in (size - edge)..<size { b[i] = patternByte(base, i) }
    }
}

/// Whether the block still holds the pattern ``fillPattern(_:size:edge:)`` wrote.
func checkPattern(_ p: UnsafeRawPointer, size: Int, edge: Int = 512) -> Bool {
    let base = UInt(bitPattern: p)
    let b = p.assumingMemoryBound(to: UInt8.self)
    let ranges = size <= 2 * edge ? [0..<size] : [0..<edge, (size - edge)..<size]
    for r in ranges {
        for i in r where b[i] != patternByte(base, i) { return false }
    }
    return true
}

// MARK: - Random numbers

/// SplitMix64: small, fast, seeded, so every run of a stress test is the same.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Threads

private final class ThreadStart: @unchecked Sendable {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Runs `body(i)` for i in 0..<count, each on its own POSIX thread, at the
/// same time, and joins them all: when this returns, every thread has
/// exited (so thread-exit work, such as handing back the cache, is done).
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    var threads: [pthread_t] = []
    for i in 0..<count {
        let start = Unmanaged.passRetained(ThreadStart { body(i) }).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            Unmanaged<ThreadStart>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, start)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
}

/// Runs `body` on a new POSIX thread and waits until that thread has exited.
func runOnThread(_ body: @escaping @Sendable () -> Void) {
    runOnThreads(1) { _ in body() }
}

/// Addresses passed between threads (pointers are not `Sendable`).
typealias Address = UInt

extension UnsafeMutableRawPointer {
    init(address: Address) { self.init(bitPattern: address)! }
    var address: Address { UInt(bitPattern: self) }
}

// MARK: - Process memory

/// The OS page size (not the span page).
let osPageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

/// Resident memory of this process, from /proc/self/statm (resident pages ×
/// the OS page size).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return -1 }
    return pages * osPageSize
}

/// Whether this process runs under ThreadSanitizer (its runtime's entry
/// point is then visible to dlsym).
let runningUnderTSan: Bool = dlsym(nil, "__tsan_init") != nil

/// Rounds `n` up to a multiple of the span page.
func roundUpToPages(_ n: Int) -> Int { (n + spanPage - 1) / spanPage * spanPage }

/// Reads errno after `body`, which starts with errno = 0.
func withErrno<R>(_ body: () -> R) -> (R, Int32) {
    errno = 0
    let r = body()
    return (r, errno)
}

// MARK: - Stamped objects

/// Writes `serial` into the first 8 bytes (when the block has them) and the
/// address pattern into the rest of the block's edges: a block handed out
/// twice, or written by someone else, fails ``verifyStamp(_:size:serial:edge:)``.
func stamp(_ p: UnsafeMutableRawPointer, size: Int, serial: UInt64, edge: Int = 512) {
    fillPattern(p, size: size, edge: edge)
    if size >= 8 { p.storeBytes(of: serial, as: UInt64.self) }
}

/// Whether the block still holds what ``stamp(_:size:serial:edge:)`` wrote.
func verifyStamp(_ p: UnsafeRawPointer, size: Int, serial: UInt64, edge: Int = 512) -> Bool {
    if size >= 8 {
        guard p.load(as: UInt64.self) == serial else { return false }
        let base = UInt(bitPattern: p)
        let b = p.assumingMemoryBound(to: UInt8.self)
        let ranges = size <= 2 * edge ? [8..<size] : [8..<edge, (size - edge)..<size]
        for r in ranges {
            for i in r where b[i] != patternByte(base, i) { return false }
        }
        return true
    }
    return checkPattern(p, size: size, edge: edge)
}

// MARK: - Filling spans

/// Allocates objects of `size` until the span of the latest one is full and
/// every object in it is one of ours; returns that span (nil if `limit`
/// objects did not get there) and every object allocated.
func allocateUntilOwnFullSpan(size: Int, noscan: Bool, limit: Int)
    -> (span: SpanInfo?, objects: [UnsafeMutableRawPointer])
{
    var objects: [UnsafeMutableRawPointer] = []
    var perSpan: [UInt64: Int] = [:]
    for _ in 0..<limit {
        let p = heap.allocate(byteCount: size, noscan: noscan)
        objects.append(p)
        guard let span = heap.span(containing: p) else { continue }
        perSpan[span.id, default: 0] += 1
        if span.allocatedCount == span.elementCount && perSpan[span.id] == span.elementCount {
            return (span, objects)
        }
    }
    return (nil, objects)
}

// MARK: - Shared state for threads

/// A value behind a lock, shareable by reference between threads.
///
/// An `NSLock` (a pthread mutex) rather than Synchronization's `Mutex`:
/// ThreadSanitizer does not see the ordering `Mutex` provides on Linux (its
/// futex word is not instrumented) and reports races on the guarded value.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&stored)
    }
    var value: Value { withLock { $0 } }
}

/// A counter shareable by reference between threads.
final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)
    func add(_ n: Int = 1) { atomic.add(n, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .relaxed) }
}

// MARK: - Taking every free run

/// Allocates large objects until no free run of at least `bytes` is left
/// (call it while `sa_debug_fail_mmap_after(0)` keeps the heap from
/// growing). Big runs are taken in big pieces first, so few span
/// structures are needed. Returns the objects, to be freed by the caller.
func takeFreeRuns(atLeast bytes: Int) -> [UnsafeMutableRawPointer] {
    var holds: [UnsafeMutableRawPointer] = []
    var piece = 1 << 34
    while piece >= bytes {
        while holds.count < 100_000, let p = sa_alloc(piece, UInt32(SA_NOSCAN)) { holds.append(p) }
        piece /= 2
    }
    while holds.count < 100_000, let p = sa_alloc(bytes, UInt32(SA_NOSCAN)) { holds.append(p) }
    return holds
}
