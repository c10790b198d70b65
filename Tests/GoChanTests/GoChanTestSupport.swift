import Synchronization
import Testing
@testable import SpanAlloc

#if canImport(Glibc)
import Glibc
#endif

/// A joinable POSIX thread running a closure.
final class TestThread {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    private var tid = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&tid, nil, { p in
            Unmanaged<Box>.fromOpaque(p!).takeRetainedValue().body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed")
    }

    func join() { pthread_join(tid, nil) }

    /// Lets the thread end on its own (it will not be joined).
    func detach() { pthread_detach(tid) }
}

/// Runs `body(i)` on `n` threads and joins them.
func onThreads(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let threads = (0..<n).map { i in TestThread { body(i) } }
    for t in threads { t.join() }
}

/// Joins `threads` without blocking a thread of the concurrency pool.
func joinAsync(_ threads: [TestThread]) async {
    nonisolated(unsafe) let threads = threads
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
        TestThread {
            for t in threads { t.join() }
            c.resume()
        }.detach()
    }
}

/// Sleeps the calling thread.
func sleepMilliseconds(_ ms: Int) {
    usleep(useconds_t(ms * 1000))
}

/// Workload sizes: 10^6 items in a plain run, fewer under
/// ThreadSanitizer (detected by its runtime symbol), overridable with
/// GOCHAN_TEST_ITEMS.
enum TestScale {
    static let underTSan: Bool = dlsym(nil, "__tsan_init") != nil

    static let items: Int = {
        if let s = getenv("GOCHAN_TEST_ITEMS"), let n = Int(String(cString: s)) { return n }
        return underTSan ? 40_000 : 1_000_000
    }()
}

/// A pthread mutex guarding a value. The test helpers use it rather than
/// `Synchronization.Mutex`, whose futex-based lock ThreadSanitizer does not
/// see as synchronization on Linux (two threads inside `withLock` are then
/// reported as a race), while it intercepts pthread mutexes.
final class TestMutex<T>: @unchecked Sendable {
    private let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: T

    init(_ value: T) {
        self.value = value
        pthread_mutex_init(m, nil)
    }

    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }

    func withLock<R>(_ body: (inout T) -> R) -> R {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return body(&value)
    }
}

/// Counts creations and destructions of ``Tracked`` values per id, so a
/// test can check that every value was destroyed exactly once.
final class LifetimeTracker: Sendable {
    private let destroyedByID = TestMutex<[Int: Int]>([:])
    private let nextID = Atomic<Int>(0)

    func make() -> Tracked { Tracked(id: nextID.wrappingAdd(1, ordering: .relaxed).oldValue, tracker: self) }

    fileprivate func destroyed(_ id: Int) { destroyedByID.withLock { $0[id, default: 0] += 1 } }

    var createdCount: Int { nextID.load(ordering: .relaxed) }
    var destroyedCount: Int { destroyedByID.withLock { $0.values.reduce(0, +) } }

    /// Ids destroyed more than once.
    var destroyedTwice: [Int] { destroyedByID.withLock { $0.filter { $0.value > 1 }.map(\.key) } }

    /// Checks that every value made was destroyed exactly once.
    func expectAllDestroyedOnce(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(destroyedTwice.isEmpty, sourceLocation: sourceLocation)
        #expect(destroyedCount == createdCount, sourceLocation: sourceLocation)
    }
}

/// A reference-holding element that reports its destruction.
final class Tracked: Sendable {
    let id: Int
    let tracker: LifetimeTracker
    init(id: Int, tracker: LifetimeTracker) { self.id = id; self.tracker = tracker }
    deinit { tracker.destroyed(id) }
}

/// Checks a many-to-many transfer: producer `p` sent `p * perProducer + k`
/// for k in order. Every value must arrive exactly once, and each consumer
/// must see each producer's values in increasing order (FIFO).
func checkTransfer(received: [[Int]], producers: Int, perProducer: Int,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    let total = producers * perProducer
    var seen = [UInt8](repeating: 0, count: total)
    var sum = 0
    var inOrder = true
    for list in received {
        var last = [Int](repeating: -1, count: producers)
        for v in list {
            guard v >= 0 && v < total else { inOrder = false; continue }
            seen[v] &+= 1
            sum &+= v
            let p = v / perProducer
            if v <= last[p] { inOrder = false }
            last[p] = v
        }
    }
    #expect(received.map(\.count).reduce(0, +) == total, sourceLocation: sourceLocation)
    #expect(sum == total * (total - 1) / 2, "checksum", sourceLocation: sourceLocation)
    #expect(!seen.contains { $0 != 1 }, "each value exactly once", sourceLocation: sourceLocation)
    #expect(inOrder, "per-producer FIFO", sourceLocation: sourceLocation)
}

/// A thread-safe list the consumers of a test append to.
final class Collected: Sendable {
    private let lists = TestMutex<[[Int]]>([])
    func add(_ list: [Int]) { lists.withLock { $0.append(list) } }
    var all: [[Int]] { lists.withLock { $0 } }
}

extension GoChan {
    /// Waiters in `sendq`, counted under the channel lock.
    var queuedSenders: Int { countQueued(send: true) }
    /// Waiters in `recvq`, counted under the channel lock.
    var queuedReceivers: Int { countQueued(send: false) }

    private func countQueued(send: Bool) -> Int {
        let c = control
        c.pointee.lock.lock()
        defer { c.pointee.lock.unlock() }
        var n = 0
        var w = send ? c.state.pointee.sendq.first : c.state.pointee.recvq.first
        while let u = w {
            n += 1
            w = u.takeUnretainedValue().next
        }
        return n
    }
}

/// A value shared between threads, behind a mutex.
final class Box<T: Sendable>: Sendable {
    private let m: TestMutex<T>
    init(_ v: T) { m = TestMutex(v) }
    var value: T {
        get { m.withLock { $0 } }
        set { m.withLock { $0 = newValue } }
    }
    func update(_ f: (inout T) -> Void) { m.withLock { f(&$0) } }
}
