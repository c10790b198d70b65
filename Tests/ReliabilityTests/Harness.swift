import CSpanAlloc
import Foundation
import SpanAlloc
import SpanAllocTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every reliability test runs in this suite: one test at a time, with the
/// heap to itself (exclusive ``HeapTestLock``) and the heap checker after
/// each test. The nested suites live in the other files.
@Suite(.serialized, .heapExclusive)
struct ReliabilityTests {}

/// The heap under test.
let spanHeap = SpanHeap.default

// MARK: - Run-time environment

/// Which sanitizer, if any, this test binary was built with (its runtime's
/// entry point is then visible to `dlsym`).
enum Sanitizer {
    static let thread = dlsym(nil, "__tsan_init") != nil
    static let address = dlsym(nil, "__asan_init") != nil
    static var any: Bool { thread || address }
    static var name: String { thread ? "ThreadSanitizer" : address ? "AddressSanitizer" : "none" }
}

/// A positive number from the environment, or `fallback`.
func environmentNumber(_ name: String, default fallback: Double) -> Double {
    guard let text = ProcessInfo.processInfo.environment[name], let v = Double(text), v > 0 else {
        return fallback
    }
    return v
}

/// Resident memory of the process in bytes (/proc/self/statm, field 2).
func residentMemory() -> Int {
    guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
          let pages = statm.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return -1 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Sets errno to 0, runs `body`, and returns its result with errno.
func errnoAfter<R>(_ body: () -> R) -> (result: R, errno: Int32) {
    errno = 0
    let r = body()
    return (r, errno)
}

// MARK: - Address-derived contents

/// The contents a block holds while it is live: 64-bit words derived from
/// the address the block was filled at (`origin`) and a per-block `seed`,
/// so a block handed out twice, overwritten by a neighbour, or moved by
/// realloc without its bytes shows up. Blocks above `fullLimit` bytes are
/// filled in their first and last 16 KiB and one word per 32 KiB between
/// (so the check stays cheap and most pages stay untouched).
struct BlockPattern {
    static let fullLimit = 64 << 10
    static let edge = 16 << 10
    static let gap = 32 << 10

    @inline(__always)
    static func word(origin: UInt, seed: UInt64, offset: Int) -> UInt64 {
        var z = UInt64(origin) &+ UInt64(offset) &* 0x9E37_79B9_7F4A_7C15 ^ seed
        z = (z ^ (z >> 29)) &* 0xBF58_476D_1CE4_E5B9
        return z ^ (z >> 32)
    }

    /// Word offsets (in bytes) the pattern covers in a block of `size`.
    static func offsets(_ size: Int, _ body: (Int) -> Bool) -> Bool {
        let words = size / 8
        if size <= fullLimit {
            for w in 0..<words where !body(w * 8) { return false }
        } else {
            for o in stride(from: 0, to: edge, by: 8) where !body(o) { return false }
            for o in stride(from: edge, to: size - edge, by: gap) where !body(o) { return false }
            for o in stride(from: (size - edge) & ~7, to: words * 8, by: 8) where !body(o) { return false }
        }
        // The odd tail bytes.
        for o in (words * 8)..<size where !body(o) { return false }
        return true
    }

    /// Writes the pattern of (`origin`, `seed`) into the first `size` bytes at `p`.
    static func fill(_ p: UnsafeMutableRawPointer, size: Int, origin: UInt, seed: UInt64) {
        _ = offsets(size) { o in
            let w = word(origin: origin, seed: seed, offset: o & ~7)
            if o + 8 <= size && o & 7 == 0 {
                p.storeBytes(of: w, toByteOffset: o, as: UInt64.self)
            } else {
                p.storeBytes(of: UInt8(truncatingIfNeeded: w >> ((o & 7) * 8)), toByteOffset: o, as: UInt8.self)
            }
            return true
        }
    }

    /// Whether the block at `p`, filled with `size` bytes of the pattern of
    /// (`origin`, `seed`), still holds it in its first `prefix` bytes
    /// (default: all of them; realloc keeps only a prefix).
    static func holds(_ p: UnsafeRawPointer, size: Int, origin: UInt, seed: UInt64, prefix: Int? = nil) -> Bool {
        let limit = min(prefix ?? size, size)
        return offsets(size) { o in
            guard o < limit else { return true }
            let w = word(origin: origin, seed: seed, offset: o & ~7)
            if o + 8 <= limit && o & 7 == 0 {
                return p.loadUnaligned(fromByteOffset: o, as: UInt64.self) == w
            }
            for k in 0..<min(8 - (o & 7), limit - o)
            where p.load(fromByteOffset: o + k, as: UInt8.self) != UInt8(truncatingIfNeeded: w >> (((o & 7) + k) * 8)) {
                return false
            }
            return true
        }
    }

    /// Whether the block is zero where the pattern would go (every byte up
    /// to `fullLimit`, the edges and one word per 32 KiB above).
    static func isZero(_ p: UnsafeRawPointer, size: Int) -> Bool {
        offsets(size) { o in
            o + 8 <= size ? p.loadUnaligned(fromByteOffset: o, as: UInt64.self) == 0
                : p.load(fromByteOffset: o, as: UInt8.self) == 0
        }
    }
}

/// A live block the tests track: where, how many bytes were asked for, and
/// what it must contain (the pattern of `origin` and `seed`).
struct TrackedBlock: Sendable {
    var address: UInt
    var size: Int
    var origin: UInt
    var seed: UInt64

    var pointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }

    /// Takes a freshly allocated block and fills it.
    init(_ p: UnsafeMutableRawPointer, size: Int, seed: UInt64) {
        address = UInt(bitPattern: p)
        self.size = size
        origin = address
        filled = size
        self.seed = seed
        BlockPattern.fill(p, size: size, origin: origin, seed: seed)
    }

    /// Size the pattern was written with (`size` may shrink by realloc).
    var filled: Int

    /// For tests that hand blocks between threads: the thread (index) whose
    /// cache held the block's span when it was allocated, and how often that
    /// thread had given its spans back by then.
    var maker = -1, makerEpoch = 0

    var isIntact: Bool { BlockPattern.holds(pointer, size: filled, origin: origin, seed: seed, prefix: size) }
}

// MARK: - Random numbers

/// wyrand: one multiply per number, seeded, so every run repeats.
struct WyRand: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0xA076_1D64_78BD_642F
        let m = state.multipliedFullWidth(by: state ^ 0xE703_7ED1_A0B4_28DB)
        return m.high ^ m.low
    }
    /// A number in 0..<n.
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    /// True with probability `percent`/100.
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

// MARK: - Threads

/// Threads started together and joined together. POSIX threads, joined
/// with `pthread_join`: when `run` returns, every thread has exited and its
/// thread-exit work (SpanAlloc hands its cache back) is done, so the heap
/// checker may run. (Foundation's `Thread` cannot be joined.)
enum ThreadGang {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Runs `body(i)` for every i in 0..<count on its own thread and waits
    /// until all have exited.
    static func run(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let ids = (0..<count).map { i -> pthread_t in
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            pthread_attr_setstacksize(&attr, 1 << 20)
            defer { pthread_attr_destroy(&attr) }
            var id = pthread_t()
            let box = Unmanaged.passRetained(Body { body(i) }).toOpaque()
            let rc = pthread_create(&id, &attr, { raw in
                Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
                return nil
            }, box)
            precondition(rc == 0, "pthread_create: \(rc)")
            return id
        }
        for id in ids { pthread_join(id, nil) }
    }
}

/// A mailbox of blocks handed from one thread to another (unbounded; the
/// receiver takes everything at once).
final class Inbox: @unchecked Sendable {
    private let lock = NSLock()
    private var blocks: [TrackedBlock] = []

    func post(_ block: TrackedBlock) {
        lock.lock()
        blocks.append(block)
        lock.unlock()
    }

    func takeAll() -> [TrackedBlock] {
        lock.lock()
        defer { lock.unlock() }
        let all = blocks
        blocks.removeAll(keepingCapacity: true)
        return all
    }
}

/// A value behind an `NSLock` (which ThreadSanitizer sees, unlike
/// Synchronization's `Mutex` on Linux).
final class Guarded<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
