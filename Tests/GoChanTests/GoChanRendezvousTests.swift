import Synchronization
import Testing
@testable import SpanAlloc
import SpanAllocTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The rendezvous slot of unbuffered channels (`GoChanRendezvous`): the first
/// receiver in line may wait next to the lock instead of in `recvq`, and a
/// sender claims it with one compare-and-swap. Whether a blocked receiver is
/// still in the slot or has moved to the queue depends on timing (it spins
/// 8-16 µs), so each test repeats its scenario and checks Go's rules either
/// way; `inSlot` counts how often the slot path was taken, so a run shows
/// that it was exercised.
@Suite(.heapShared) struct GoChanRendezvousTests {
    /// Rounds per scenario (fewer under ThreadSanitizer, which is slow).
    static let rounds = TestScale.underTSan ? 20 : 200

    /// Waits until a receiver of `ch` is blocked, in the slot or in `recvq`;
    /// returns whether it was seen in the slot.
    static func waitForReceiver(_ ch: GoChan<Int>) -> Bool {
        while true {
            if ch.control.pointee.rendezvousState.load(ordering: .acquiring) == GoChanRendezvous.receiverWaits {
                return true
            }
            if ch.queuedReceivers > 0 { return false }
            sched_yield()
        }
    }

    @Test func onlyElementsOfAtMost8BytesUseTheSlot() {
        #expect(GoChan<Int>.usesRendezvous)
        #expect(GoChan<UInt8>.usesRendezvous)
        #expect(GoChan<Void>.usesRendezvous)
        #expect(GoChan<Double>.usesRendezvous)
        #expect(GoChan<AnyObject>.usesRendezvous)      // a reference travels with its ownership
        #expect(GoChan<[Int]>.usesRendezvous)          // one reference to the array's storage
        #expect(!GoChan<String>.usesRendezvous)        // 16 bytes
        #expect(!GoChan<SIMD2<Int>>.usesRendezvous)    // 16 bytes
    }

    /// References handed through the slot: each object destroyed exactly once,
    /// none while still in flight.
    @Test func referencesThroughTheSlotAreDestroyedOnce() {
        let tracker = LifetimeTracker()
        var inSlot = 0
        do {
            let ch = GoChan<Tracked>()
            for round in 0..<Self.rounds {
                let got = TestMutex<Int>(-1)
                let t = TestThread { let v = ch.receive(); got.withLock { $0 = v?.id ?? -2 } }
                while ch.control.pointee.rendezvousState.load(ordering: .acquiring) != GoChanRendezvous.receiverWaits
                        && ch.queuedReceivers == 0 { sched_yield() }
                if ch.control.pointee.rendezvousState.load(ordering: .acquiring) == GoChanRendezvous.receiverWaits {
                    inSlot += 1
                }
                let v = tracker.make()
                let id = v.id
                ch.send(v)
                t.join()
                #expect(got.withLock { $0 } == id, "round \(round)")
            }
        }
        tracker.expectAllDestroyedOnce()
        #expect(tracker.createdCount == Self.rounds)
        print("rendezvous references: receiver seen in the slot in \(inSlot) of \(Self.rounds) rounds")
    }

    @Test func everyKindOfSenderReachesTheWaitingReceiver() async throws {
        var inSlot = 0
        for round in 0..<Self.rounds {
            let ch = GoChan<Int>()
            let got = Collected()
            let t = TestThread { got.add([ch.receive() ?? -1]) }
            if Self.waitForReceiver(ch) { inSlot += 1 }
            switch round % 4 {
            case 0: await joinAsync([TestThread { ch.send(round) }])                  // blocking send
            case 1: while !ch.trySend(round) { sched_yield() }   // a receiver waits: it succeeds once seen
            case 2: await joinAsync([TestThread { select(ch.onSend(round) {}) }])     // select send case
            default: try await ch.send(round)                                          // async send
            }
            await joinAsync([t])
            #expect(got.all == [[round]])
            #expect(ch.control.pointee.rendezvousState.load(ordering: .relaxed) == GoChanRendezvous.empty)
            #expect(ch._checkInvariants() == nil)
        }
        print("rendezvous: receiver seen in the slot in \(inSlot) of \(Self.rounds) rounds")
    }

    @Test func closeEndsAReceiverInTheSlotOrTheQueue() {
        var inSlot = 0
        for _ in 0..<Self.rounds {
            let ch = GoChan<Int>()
            let got = Collected()
            let t = TestThread { got.add([ch.receive() ?? -1]) }
            if Self.waitForReceiver(ch) { inSlot += 1 }
            ch.close()
            t.join()
            #expect(got.all == [[-1]])
            #expect(ch.receive() == nil)
            #expect(ch.control.pointee.rendezvousState.load(ordering: .relaxed) == GoChanRendezvous.empty)
        }
        print("rendezvous close: receiver seen in the slot in \(inSlot) of \(Self.rounds) rounds")
    }

    /// A second receiver that queues while the first still spins in the slot
    /// must not overtake it: the first moves to the head of `recvq` when it
    /// gives up, and the first value sent is the first receiver's.
    @Test func aReceiverLeavingTheSlotStaysFirstInLine() {
        var overlapped = 0
        for round in 0..<Self.rounds {
            let ch = GoChan<Int>()
            let go = Atomic<Bool>(false)
            let first = Collected(), second = Collected()
            let r1 = TestThread { first.add([ch.receive() ?? -1]) }
            let r2 = TestThread {
                while !go.load(ordering: .acquiring) { sched_yield() }
                second.add([ch.receive() ?? -1])
            }
            let r1InSlot = Self.waitForReceiver(ch)
            go.store(true, ordering: .releasing)        // r2 is already running: it blocks within ~1 µs
            while ch.queuedReceivers + (ch.control.pointee.rendezvousState.load(ordering: .acquiring)
                                        == GoChanRendezvous.receiverWaits ? 1 : 0) < 2 {
                sched_yield()
            }
            if r1InSlot && ch.control.pointee.rendezvousState.load(ordering: .acquiring)
                == GoChanRendezvous.receiverWaits {
                overlapped += 1                          // r2 queued while r1 was in the slot
            }
            ch.send(2 * round)
            ch.send(2 * round + 1)
            r1.join()
            r2.join()
            #expect(first.all == [[2 * round]])
            #expect(second.all == [[2 * round + 1]])
            #expect(ch._checkInvariants() == nil)
        }
        print("rendezvous FIFO: second receiver queued behind a slot receiver in \(overlapped) of \(Self.rounds) rounds")
    }

    @Test func manyThreadsThroughOneUnbufferedChannel() {
        let ch = GoChan<Int>()
        let perSender = TestScale.underTSan ? 2_000 : 50_000
        let sums = TestMutex<[Int]>([])
        let receivers = (0..<3).map { _ in
            TestThread {
                var s = 0, n = 0
                while let v = ch.receive() { s &+= v; n += 1 }
                sums.withLock { $0.append(s) }
            }
        }
        onThreads(3) { p in for i in 0..<perSender { ch.send(p * perSender + i + 1) } }
        ch.close()
        for r in receivers { r.join() }
        let total = 3 * perSender
        #expect(sums.withLock { $0.reduce(0, &+) } == total * (total + 1) / 2)
        #expect(ch.control.pointee.rendezvousState.load(ordering: .relaxed) == GoChanRendezvous.empty)
    }

    @Test func checkerReportsABadSlotState() {
        let ch = GoChan<Int>(capacity: 1)
        #expect(ch._checkInvariants() == nil)
        ch.control.pointee.rendezvousState.store(GoChanRendezvous.receiverWaits, ordering: .relaxed)
        #expect(ch._checkInvariants() != nil)           // a buffered channel never uses the slot
        ch.control.pointee.rendezvousState.store(GoChanRendezvous.empty, ordering: .relaxed)
        #expect(ch._checkInvariants() == nil)
    }
}
