import AsyncAlgorithms
import SpanAlloc
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// GoChan vs AsyncChannel vs a mutex-and-condition-variable queue.
///
/// Workloads (one `Measurement` per workload and variant, ns per item or per
/// round trip, one sample per repetition after a warm-up run):
/// - `chan.buffered-threads`: capacity 128, one producer thread and one
///   consumer thread move 10^7 Ints (quick: 10^6).
/// - `chan.buffered-async`: the same with two tasks. AsyncChannel has no
///   buffer, so its variant is its (only) unbuffered form.
/// - `chan.pingpong-threads`: unbuffered, 10^6 round trips (quick: 10^5)
///   between two threads over two channels.
/// - `chan.pingpong-async`: the same between two tasks.
/// The slow baselines (AsyncChannel, and the condition-variable queue in
/// ping-pong, where every hand-off is a kernel sleep and wake) run a tenth
/// of the items: their per-item cost is flat, and the full count would take
/// minutes.
enum GoChanBench {
    static func run(repetitions: Int, quick: Bool, filter: [String] = []) async -> [Measurement] {
        let items = quick ? 1_000_000 : 10_000_000
        let trips = quick ? 100_000 : 1_000_000
        var out: [Measurement] = []

        func measure(_ workload: String, _ variant: String, count: Int,
                     _ body: (Int) async -> Void) async {
            guard Workloads.matches(workload, filter: filter) else { return }
            await body(Swift.max(count / 20, 1))          // warm-up
            var samples: [Double] = []
            for _ in 0..<repetitions {
                let t0 = nowNanoseconds()
                await body(count)
                samples.append(Double(nowNanoseconds() - t0) / Double(count))
            }
            out.append(Measurement(workload: workload, variant: variant, unit: "ns/op",
                                   samples: samples, peakRSSBytes: nil))
        }

        // The baseline of each workload first: the bench tables use the first
        // variant as the baseline of their ratios.
        await measure("chan.buffered-threads", "MutexCondQueue", count: items) { bufferedCondQueueThreads($0) }
        await measure("chan.buffered-threads", "GoChan", count: items) { bufferedGoChanThreads($0) }
        await measure("chan.buffered-async", "AsyncChannel", count: items / 10) { await asyncChannelTransfer($0) }
        await measure("chan.buffered-async", "GoChan", count: items) { await bufferedGoChanAsync($0) }
        await measure("chan.pingpong-threads", "MutexCondQueue", count: trips / 10) { pingPongCondQueueThreads($0) }
        await measure("chan.pingpong-threads", "GoChan", count: trips) { pingPongGoChanThreads($0) }
        await measure("chan.pingpong-async", "AsyncChannel", count: trips / 10) { await pingPongAsyncChannel($0) }
        await measure("chan.pingpong-async", "GoChan", count: trips) { await pingPongGoChanAsync($0) }
        return out
    }

    // MARK: GoChan

    static func bufferedGoChanThreads(_ n: Int) {
        let ch = GoChan<Int>(capacity: 128)
        let producer = BenchThread {
            for i in 0..<n { ch.send(i) }
            ch.close()
        }
        var sum = 0
        while let v = ch.receive() { sum &+= v }
        producer.join()
        check(sum, n)
    }

    static func bufferedGoChanAsync(_ n: Int) async {
        let ch = GoChan<Int>(capacity: 128)
        let producer = Task {
            for i in 0..<n { try! await ch.send(i) }
            ch.close()
        }
        var sum = 0
        for await v in ch { sum &+= v }
        await producer.value
        check(sum, n)
    }

    static func pingPongGoChanThreads(_ n: Int) {
        let ping = GoChan<Int>(), pong = GoChan<Int>()
        let echo = BenchThread {
            while let v = ping.receive() { pong.send(v) }
        }
        var sum = 0
        for i in 0..<n {
            ping.send(i)
            sum &+= pong.receive()!
        }
        ping.close()
        echo.join()
        check(sum, n)
    }

    static func pingPongGoChanAsync(_ n: Int) async {
        let ping = GoChan<Int>(), pong = GoChan<Int>()
        let echo = Task {
            for await v in ping { try! await pong.send(v) }
        }
        var sum = 0
        for i in 0..<n {
            try! await ping.send(i)
            sum &+= try! await pong.receive()!
        }
        ping.close()
        await echo.value
        check(sum, n)
    }

    // MARK: AsyncChannel (swift-async-algorithms)

    static func asyncChannelTransfer(_ n: Int) async {
        let ch = AsyncChannel<Int>()
        let producer = Task {
            for i in 0..<n { await ch.send(i) }
            ch.finish()
        }
        var sum = 0
        for await v in ch { sum &+= v }
        await producer.value
        check(sum, n)
    }

    static func pingPongAsyncChannel(_ n: Int) async {
        let ping = AsyncChannel<Int>(), pong = AsyncChannel<Int>()
        let echo = Task {
            for await v in ping { await pong.send(v) }
            pong.finish()
        }
        var sum = 0
        var replies = pong.makeAsyncIterator()
        for i in 0..<n {
            await ping.send(i)
            sum &+= await replies.next()!
        }
        ping.finish()
        await echo.value
        check(sum, n)
    }

    // MARK: Mutex + condition variable queue

    static func bufferedCondQueueThreads(_ n: Int) {
        let q = CondQueue(capacity: 128)
        let producer = BenchThread {
            for i in 0..<n { q.push(i) }
            q.push(-1)
        }
        var sum = 0
        while true {
            let v = q.pop()
            if v < 0 { break }
            sum &+= v
        }
        producer.join()
        check(sum, n)
    }

    static func pingPongCondQueueThreads(_ n: Int) {
        let ping = CondQueue(capacity: 1), pong = CondQueue(capacity: 1)
        let echo = BenchThread {
            while true {
                let v = ping.pop()
                if v < 0 { break }
                pong.push(v)
            }
        }
        var sum = 0
        for i in 0..<n {
            ping.push(i)
            sum &+= pong.pop()
        }
        ping.push(-1)
        echo.join()
        check(sum, n)
    }

    // MARK: Support

    static func check(_ sum: Int, _ n: Int) {
        precondition(sum == n &* (n &- 1) / 2, "GoChanBench: checksum mismatch")
    }

    static func nowNanoseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
}

/// A bounded FIFO of Ints behind one pthread mutex and two condition
/// variables: the classic baseline, where a blocked side sleeps in the kernel.
final class CondQueue: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let notEmpty = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let notFull = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let buf: UnsafeMutablePointer<Int>
    private let capacity: Int
    private var head = 0, count = 0

    init(capacity: Int) {
        self.capacity = capacity
        buf = .allocate(capacity: capacity)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(notEmpty, nil)
        pthread_cond_init(notFull, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(notEmpty)
        pthread_cond_destroy(notFull)
        mutex.deallocate()
        notEmpty.deallocate()
        notFull.deallocate()
        buf.deallocate()
    }

    func push(_ v: Int) {
        pthread_mutex_lock(mutex)
        while count == capacity { pthread_cond_wait(notFull, mutex) }
        buf[(head + count) % capacity] = v
        count += 1
        pthread_cond_signal(notEmpty)
        pthread_mutex_unlock(mutex)
    }

    func pop() -> Int {
        pthread_mutex_lock(mutex)
        while count == 0 { pthread_cond_wait(notEmpty, mutex) }
        let v = buf[head]
        head = (head + 1) % capacity
        count -= 1
        pthread_cond_signal(notFull)
        pthread_mutex_unlock(mutex)
        return v
    }
}

/// A joinable POSIX thread for the channel workloads.
final class BenchThread {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    private var tid = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        let ctx = Unmanaged.passRetained(Body(body)).toOpaque()
        let rc = pthread_create(&tid, nil, { p in
            Unmanaged<Body>.fromOpaque(p!).takeRetainedValue().run()
            return nil
        }, ctx)
        precondition(rc == 0, "pthread_create failed")
    }

    func join() { pthread_join(tid, nil) }
}
