import Testing
@testable import SpanAlloc
import SpanAllocTestSupport

/// 4 producers and 4 consumers move `TestScale.items` values (10^6 in a
/// plain run) through a buffered channel with no loss, no duplicate and
/// per-producer FIFO order, with threads, with tasks, and with both on the
/// same channel; a tenth of that through an unbuffered channel, where every
/// value is a hand-off between two parties. Serialized: the tests would
/// otherwise oversubscribe the CPUs with each other's threads.
@Suite(.serialized, .heapShared) struct GoChanTransferTests {
    static let producers = 4
    static let consumers = 4
    static func perProducer(capacity: Int) -> Int {
        (capacity == 0 ? TestScale.items / 10 : TestScale.items) / producers
    }

    @Test(arguments: [0, 64])
    func blockingThreads(capacity: Int) {
        let ch = GoChan<Int>(capacity: capacity)
        let per = Self.perProducer(capacity: capacity)
        let out = Collected()
        let consumers = (0..<Self.consumers).map { _ in
            TestThread {
                var got: [Int] = []
                while let v = ch.receive() { got.append(v) }
                out.add(got)
            }
        }
        onThreads(Self.producers) { p in
            for k in 0..<per { ch.send(p * per + k) }
        }
        ch.close()
        for t in consumers { t.join() }
        checkTransfer(received: out.all, producers: Self.producers, perProducer: per)
        #expect(ch._checkInvariants() == nil)
    }

    @Test(arguments: [0, 64])
    func asyncTasks(capacity: Int) async {
        let ch = GoChan<Int>(capacity: capacity)
        let per = Self.perProducer(capacity: capacity)
        let received = await withTaskGroup(of: [Int].self) { group in
            for _ in 0..<Self.consumers {
                group.addTask {
                    var got: [Int] = []
                    for await v in ch { got.append(v) }
                    return got
                }
            }
            await withTaskGroup(of: Void.self) { producers in
                for p in 0..<Self.producers {
                    producers.addTask {
                        for k in 0..<per { try! await ch.send(p * per + k) }
                    }
                }
            }
            ch.close()
            var all: [[Int]] = []
            for await list in group { all.append(list) }
            return all
        }
        checkTransfer(received: received, producers: Self.producers, perProducer: per)
        #expect(ch._checkInvariants() == nil)
    }

    @Test(arguments: [0, 64])
    func mixedThreadsAndTasks(capacity: Int) async {
        // Producers 0, 1 and consumers 0, 1 are threads; the others are tasks.
        let ch = GoChan<Int>(capacity: capacity)
        let per = Self.perProducer(capacity: capacity)
        let out = Collected()
        let threadConsumers = (0..<2).map { _ in
            TestThread {
                var got: [Int] = []
                while let v = ch.receive() { got.append(v) }
                out.add(got)
            }
        }
        let threadProducers = (0..<2).map { p in
            TestThread { for k in 0..<per { ch.send(p * per + k) } }
        }
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    var got: [Int] = []
                    while let v = try! await ch.receive() { got.append(v) }
                    out.add(got)
                }
            }
            await withTaskGroup(of: Void.self) { producers in
                for p in 2..<4 {
                    producers.addTask {
                        for k in 0..<per { try! await ch.send(p * per + k) }
                    }
                }
            }
            await joinAsync(threadProducers)
            ch.close()
        }
        await joinAsync(threadConsumers)
        checkTransfer(received: out.all, producers: Self.producers, perProducer: per)
        #expect(ch._checkInvariants() == nil)
    }

    @Test func selectFanIn() {
        // Two producers on two channels, one consumer selecting over both.
        let a = GoChan<Int>(capacity: 8), b = GoChan<Int>()
        let per = TestScale.items / 20
        let producers = [TestThread { for k in 0..<per { a.send(k) }; a.close() },
                         TestThread { for k in 0..<per { b.send(per + k) }; b.close() }]
        var got: [Int] = []
        var open = 2
        var aOpen = true, bOpen = true
        while open > 0 {
            var cases: [GoSelectCase<Int?>] = []
            if aOpen { cases.append(a.onReceive { v in if v == nil { aOpen = false }; return v }) }
            if bOpen { cases.append(b.onReceive { v in if v == nil { bOpen = false }; return v }) }
            if let v = select(cases: cases) { got.append(v) } else { open -= 1 }
        }
        for t in producers { t.join() }
        checkTransfer(received: [got], producers: 2, perProducer: per)
        #expect(a._checkInvariants() == nil && b._checkInvariants() == nil)
    }
}

