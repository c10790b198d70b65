import Testing
@testable import SpanAlloc
import SpanAllocTestSupport

/// Every element is destroyed exactly once, wherever it is when its
/// journey ends: received, still buffered at deinit, held by an unchosen
/// select case, owned by a cancelled send.
@Suite(.heapShared) struct GoChanLifetimeTests {
    @Test func bufferedValuesDieWithTheChannel() {
        let tracker = LifetimeTracker()
        do {
            let ch = GoChan<Tracked>(capacity: 5)
            for _ in 0..<4 { ch.send(tracker.make()) }
            _ = ch.receive()
            _ = ch.receive()
            for _ in 0..<3 { ch.send(tracker.make()) }   // wraps around the ring
            #expect(ch.count == 5)
            #expect(tracker.destroyedCount == 2)
        }
        tracker.expectAllDestroyedOnce()
        #expect(tracker.createdCount == 7)
    }

    @Test func closedChannelWithValuesLeft() {
        let tracker = LifetimeTracker()
        do {
            let ch = GoChan<[Tracked]>(capacity: 3)
            ch.send([tracker.make(), tracker.make()])
            ch.send([])
            ch.close()
        }
        tracker.expectAllDestroyedOnce()
    }

    @Test func valuesPassingThrough() {
        let tracker = LifetimeTracker()
        for capacity in [0, 1, 16] {
            let ch = GoChan<Tracked>(capacity: capacity)
            let producer = TestThread {
                for _ in 0..<500 { ch.send(tracker.make()) }
                ch.close()
            }
            var ids: [Int] = []
            while let v = ch.receive() { ids.append(v.id) }
            producer.join()
            #expect(ids == ids.sorted())
            #expect(ids.count == 500)
        }
        tracker.expectAllDestroyedOnce()
    }

    @Test func tryFormsAndSelectCases() {
        let tracker = LifetimeTracker()
        do {
            let ch = GoChan<Tracked>(capacity: 1)
            #expect(ch.trySend(tracker.make()))
            #expect(!ch.trySend(tracker.make()))          // refused: the caller's copy dies
            let other = GoChan<Tracked>()
            // The send case is not chosen (nobody receives on `other`).
            let r = select(ch.onReceive { $0!.id }, other.onSend(tracker.make()) { -1 })
            #expect(r == 0)
            // Nothing ready: both unchosen send cases drop their values.
            let d = select(other.onSend(tracker.make()) { 1 }, other.onSend(tracker.make()) { 2 },
                           default: { 0 })
            #expect(d == 0)
            ch.send(tracker.make())
            #expect(ch.count == 1)
        }
        tracker.expectAllDestroyedOnce()
    }

    @Test func cancelledAsyncSend() async throws {
        let tracker = LifetimeTracker()
        do {
            let ch = GoChan<Tracked>()
            let value = tracker.make()
            let t = Task { try await ch.send(value) }
            while ch.queuedSenders == 0 { await Task.yield() }
            t.cancel()
            _ = await t.result
        }
        tracker.expectAllDestroyedOnce()
    }

    @Test func manyToManyWithReferences() {
        let tracker = LifetimeTracker()
        let per = TestScale.underTSan ? 500 : 5_000
        do {
            let ch = GoChan<Tracked>(capacity: 8)
            let consumers = (0..<4).map { _ in TestThread { while ch.receive() != nil {} } }
            onThreads(4) { _ in for _ in 0..<per { ch.send(tracker.make()) } }
            ch.close()
            for t in consumers { t.join() }
        }
        #expect(tracker.createdCount == 4 * per)
        tracker.expectAllDestroyedOnce()
    }
}
