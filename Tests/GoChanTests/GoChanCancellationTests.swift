import Synchronization
import Testing
@testable import SpanAlloc
import SpanAllocTestSupport

/// Cancelled async operations throw `CancellationError` exactly when they
/// did not take place; a cancelled task completes ready operations but never
/// waits; a cancelled waiter leaves its queue; no value is lost or delivered
/// twice.
@Suite(.heapShared) struct GoChanCancellationTests {
    /// Cancels the current task.
    static func cancelSelf() { withUnsafeCurrentTask { $0!.cancel() } }

    @Test func cancelledBeforeReceiveOnEmptyChannelThrowsWithoutWaiting() async throws {
        let ch = GoChan<Int>(capacity: 2)
        let r = await Task {
            Self.cancelSelf()
            return try await ch.receive()
        }.result
        #expect(throws: CancellationError.self) { try r.get() }
        #expect(ch.queuedReceivers == 0)       // it never queued
        #expect(ch.trySend(1))
        #expect(ch.count == 1)                 // and takes nothing later
    }

    @Test func cancelledTaskStillTakesAReadyValue() async throws {
        let ch = GoChan<Int>(capacity: 2)
        #expect(ch.trySend(1))
        let r = await Task {
            Self.cancelSelf()
            let v = try await ch.receive()
            let w = try? await ch.receive()     // now it would wait: throws
            return (v, w)
        }.result
        let (v, w) = try r.get()
        #expect(v == 1 && w == nil)
        #expect(ch.count == 0 && ch.queuedReceivers == 0)
    }

    @Test func cancelledBeforeSendOnFullChannelThrowsAndSendsNothing() async throws {
        let ch = GoChan<Int>(capacity: 1)
        #expect(ch.trySend(1))
        let r = await Task {
            Self.cancelSelf()
            try await ch.send(5)
        }.result
        #expect(throws: CancellationError.self) { try r.get() }
        #expect(ch.count == 1)
        #expect(ch.queuedSenders == 0)
        #expect(try await ch.receive() == 1)
    }

    @Test func cancelledSelectTakesAReadyCaseButNeverWaits() async throws {
        let a = GoChan<Int>(), b = GoChan<Int>(capacity: 1)
        #expect(b.trySend(7))
        let r = await Task {
            Self.cancelSelf()
            let first = try await select(a.onReceive { _ in -1 }, b.onReceive { $0! })
            let second = try? await select(a.onReceive { _ in -1 }, b.onReceive { $0! })
            return (first, second)
        }.result
        let (first, second) = try r.get()
        #expect(first == 7 && second == nil)
        #expect(a.queuedReceivers == 0 && b.queuedReceivers == 0)
    }

    @Test func cancelledWhileSuspendedOnReceive() async throws {
        let ch = GoChan<Int>()
        let t = Task { try await ch.receive() }
        while ch.queuedReceivers == 0 { await Task.yield() }
        t.cancel()
        await #expect(throws: CancellationError.self) { try await t.value }
        #expect(ch.queuedReceivers == 0)
        #expect(ch.trySend(1) == false)        // no receiver left to take it
    }

    @Test func cancelledWhileSuspendedOnSendKeepsFIFO() async throws {
        let ch = GoChan<Int>(capacity: 2)
        #expect(ch.trySend(1))
        #expect(ch.trySend(2))
        let t = Task { try await ch.send(99) }
        while ch.queuedSenders == 0 { await Task.yield() }
        t.cancel()
        await #expect(throws: CancellationError.self) { try await t.value }
        #expect(ch.queuedSenders == 0)
        ch.close()
        var got: [Int] = []
        for await v in ch { got.append(v) }
        #expect(got == [1, 2])                 // 99 was never sent
    }

    @Test func cancelledWhileSuspendedInSelect() async throws {
        let a = GoChan<Int>(), b = GoChan<String>(capacity: 1)
        #expect(b.trySend("full"))
        let t = Task {
            try await select(a.onReceive { _ in 1 }, b.onSend("x") { 2 })
        }
        while a.queuedReceivers == 0 || b.queuedSenders == 0 { await Task.yield() }
        t.cancel()
        await #expect(throws: CancellationError.self) { try await t.value }
        #expect(a.queuedReceivers == 0 && b.queuedSenders == 0)
        #expect(try await b.receive() == "full")
        #expect(b.count == 0)
    }

    @Test func forAwaitEndsOnCancellationWithoutTakingValues() async throws {
        let ch = GoChan<Int>(capacity: 4)
        let t = Task {
            var n = 0
            for await _ in ch { n += 1 }
            return n
        }
        while ch.queuedReceivers == 0 { await Task.yield() }
        t.cancel()
        #expect(await t.value == 0)
        #expect(ch.trySend(1))
        #expect(ch.count == 1)
    }

    /// A receiver task is cancelled while a thread tries to hand it a value.
    /// Whoever wins, the value is delivered exactly when the task returns
    /// normally. `waitForQueue` false also races the cancellation against
    /// the task entering the wait.
    @Test(arguments: [true, false])
    func cancellationRacingReceive(waitForQueue: Bool) async throws {
        let rounds = TestScale.underTSan ? 150 : 1_000
        var delivered = 0, cancelled = 0, sends = 0
        for i in 0..<rounds {
            let ch = GoChan<Int>()
            let t = Task { try await ch.receive() }
            if waitForQueue { while ch.queuedReceivers == 0 { await Task.yield() } }
            let sent = Box<Bool>(false)
            let sender = TestThread { sent.value = ch.trySend(i) }
            t.cancel()
            await joinAsync([sender])
            if sent.value { sends += 1 }
            switch await t.result {
            case .success(let v):
                #expect(v == i)
                #expect(sent.value)
                delivered += 1
            case .failure:
                #expect(!sent.value)
                cancelled += 1
            }
            #expect(ch.queuedReceivers == 0)
            #expect(ch._checkInvariants() == nil)
        }
        // A value was delivered exactly as often as a send succeeded: none
        // lost to a cancelled receiver, none received twice.
        #expect(delivered == sends, "\(delivered) delivered, \(sends) sends succeeded, \(cancelled) cancelled")
        print("cancellationRacingReceive(waitForQueue: \(waitForQueue)): \(delivered) delivered, \(cancelled) cancelled")
    }

    /// A sender task is cancelled while a thread tries to take its value.
    @Test func cancellationRacingSend() async throws {
        let rounds = TestScale.underTSan ? 150 : 1_000
        let tracker = LifetimeTracker()
        for _ in 0..<rounds {
            let ch = GoChan<Tracked>()
            let value = tracker.make()
            let id = value.id
            let t = Task { try await ch.send(value) }
            while ch.queuedSenders == 0 { await Task.yield() }
            let got = Box<Int?>(nil)
            let receiver = TestThread {
                if case .value(let v) = ch.tryReceive() { got.value = v.id }
            }
            t.cancel()
            await joinAsync([receiver])
            let taken = got.value
            switch await t.result {
            case .success: #expect(taken == id)
            case .failure: #expect(taken == nil)
            }
            #expect(ch.queuedSenders == 0)
            #expect(ch._checkInvariants() == nil)
        }
        tracker.expectAllDestroyedOnce()
    }
}
