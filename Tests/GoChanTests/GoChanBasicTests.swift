import Testing
@testable import SpanAlloc
import SpanAllocTestSupport

@Suite(.heapShared) struct GoChanBasicTests {
    @Test func bufferedFIFOCountAndCapacity() {
        let ch = GoChan<Int>(capacity: 4)
        #expect(ch.capacity == 4)
        #expect(ch.count == 0)
        for i in 1...4 { ch.send(i) }
        #expect(ch.count == 4)
        #expect(ch.trySend(5) == false)
        #expect(ch.receive() == 1)
        #expect(ch.count == 3)
        ch.send(5)
        #expect((2...5).map { _ in ch.receive()! } == [2, 3, 4, 5])
        #expect(ch.count == 0)
        #expect(ch._checkInvariants() == nil)
    }

    @Test func ringWrapsAroundManyTimes() {
        let ch = GoChan<Int>(capacity: 3)
        var expected = 0
        for i in 0..<100 {
            ch.send(i)
            if i % 3 == 2 {
                while ch.count > 0 {
                    #expect(ch.receive() == expected)
                    expected += 1
                }
            }
        }
        while case .value(let v) = ch.tryReceive() {
            #expect(v == expected)
            expected += 1
        }
        #expect(expected == 100)
    }

    @Test func unbufferedHasNoCountAndNeedsAPartner() {
        let ch = GoChan<Int>()
        #expect(ch.capacity == 0)
        #expect(ch.trySend(1) == false)          // nobody receiving
        guard case .empty = ch.tryReceive() else { Issue.record("expected empty"); return }
        let t = TestThread { ch.send(42) }
        #expect(ch.receive() == 42)
        #expect(ch.count == 0)
        t.join()
    }

    @Test func closeDrainsThenEnds() {
        let ch = GoChan<String>(capacity: 3)
        ch.send("a")
        ch.send("b")
        ch.close()
        #expect(ch.receive() == "a")
        #expect(ch.receive(zero: "") == ("b", true))
        #expect(ch.receive() == nil)
        #expect(ch.receive(zero: "zero") == ("zero", false))
        guard case .closed = ch.tryReceive() else { Issue.record("expected closed"); return }
        #expect(ch.count == 0)
    }

    @Test func zeroSizeElementsStillCount() {
        let ch = GoChan<Void>(capacity: 3)
        ch.send(())
        ch.send(())
        #expect(ch.count == 2)
        #expect(ch.trySend(()))
        #expect(ch.trySend(()) == false)
        #expect(ch.receive() != nil)
        #expect(ch.count == 2)
        ch.close()
        #expect(ch.receive() != nil)
        #expect(ch.receive() != nil)
        #expect(ch.receive() == nil)
    }

    @Test func optionalElementsKeepNilDistinctFromClose() {
        let ch = GoChan<Int?>(capacity: 2)
        ch.send(nil)
        ch.close()
        let first = ch.receive()
        #expect(first == .some(nil))
        #expect(ch.receive() == nil)
    }

    @Test func largeElementsAndAlignment() {
        struct Big: Equatable { var a: (Int, Int, Int, Int, Int, Int) = (1, 2, 3, 4, 5, 6)
            var b = [1, 2]
            static func == (l: Big, r: Big) -> Bool { l.a == r.a && l.b == r.b } }
        let ch = GoChan<Big>(capacity: 5)
        var b = Big()
        b.a.5 = 99
        ch.send(b)
        #expect(ch.receive() == b)
        let v = GoChan<SIMD4<Double>>(capacity: 3)
        v.send(SIMD4(1, 2, 3, 4))
        #expect(UInt(bitPattern: v.control.pointee.buf) % UInt(MemoryLayout<SIMD4<Double>>.alignment) == 0)
        #expect(v.receive() == SIMD4(1, 2, 3, 4))
    }

    @Test func blockedSenderValueJoinsTailInOrder() {
        // Full channel with a blocked sender: the receiver that frees a slot
        // moves the sender's value to the tail, after the buffered ones.
        let ch = GoChan<Int>(capacity: 2)
        ch.send(1)
        ch.send(2)
        let t = TestThread { ch.send(3) }
        while ch.queuedSenders == 0 { sleepMilliseconds(1) }
        #expect(ch.count == 2)
        #expect(ch._checkInvariants() == nil)      // a live sender on a full buffer
        #expect(ch.receive() == 1)
        t.join()                      // the sender was released by that receive
        #expect(ch.count == 2)
        #expect(ch.receive() == 2)
        ch.send(4)
        #expect([ch.receive(), ch.receive()] == [3, 4])
    }

    @Test func directHandOffToWaitingReceiver() {
        let ch = GoChan<Int>(capacity: 1)
        let got = Collected()
        let t = TestThread { got.add([ch.receive()!]) }
        while ch.queuedReceivers == 0 { sleepMilliseconds(1) }
        #expect(ch.trySend(7))        // goes to the receiver, not the buffer
        t.join()
        #expect(ch.count == 0)
        #expect(got.all == [[7]])
    }

    @Test func closeWakesBlockedReceivers() {
        let ch = GoChan<Int>()
        let results = Collected()
        let threads = (0..<3).map { _ in TestThread { results.add([ch.receive() ?? -1]) } }
        while ch.queuedReceivers < 3 { sleepMilliseconds(1) }
        #expect(ch._checkInvariants() == nil)
        ch.close()
        for t in threads { t.join() }
        #expect(results.all.flatMap { $0 } == [-1, -1, -1])
    }
}


/// Compiles only if `T` is `Sendable`.
func requireSendable<T: Sendable>(_: T.Type) {}

@Suite(.heapShared) struct GoChanConformanceTests {
    @Test func sendableWhenElementIs() async throws {
        requireSendable(GoChan<Int>.self)
        requireSendable(GoChan<String>.self)
        // So a channel can cross into a task and a thread.
        let ch = GoChan<String>(capacity: 1)
        let t = Task.detached { try await ch.send("from a task") }
        try await t.value
        let th = TestThread { ch.send("from a thread") }
        #expect(try await ch.receive() == "from a task")
        #expect(try await ch.receive() == "from a thread")
        await joinAsync([th])
    }
}

@Suite(.heapShared) struct GoChanInvariantCheckerTests {
    /// The checker itself must be able to fail: corrupt a ring index and
    /// see it reported, then restore it.
    @Test func checkerReportsACorruptRing() {
        let ch = GoChan<Int>(capacity: 4)
        #expect(ch.trySend(1))
        #expect(ch._checkInvariants() == nil)
        ch.control.pointee.lock.lock()
        ch.control.state.pointee.sendx = 3
        ch.control.pointee.lock.unlock()
        #expect(ch._checkInvariants() != nil)
        ch.control.pointee.lock.lock()
        ch.control.state.pointee.sendx = 1
        ch.control.pointee.lock.unlock()
        #expect(ch._checkInvariants() == nil)
        #expect(ch.receive() == 1)
    }
}
