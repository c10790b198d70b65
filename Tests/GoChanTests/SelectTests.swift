import Synchronization
import Testing
@testable import SpanAlloc

#if canImport(Glibc)
import Glibc
import SpanAllocTestSupport
#endif

@Suite(.heapShared) struct SelectTests {
    @Test func defaultRunsWhenNothingIsReady() {
        let a = GoChan<Int>(), b = GoChan<Int>(capacity: 1)
        b.send(0)
        let r = select(a.onReceive { _ in "a" }, b.onSend(1) { "b" }, default: { "default" })
        #expect(r == "default")
        #expect(b.count == 1)
        #expect(a.queuedReceivers == 0 && b.queuedSenders == 0)
    }

    @Test func readyCaseBeatsDefault() {
        let a = GoChan<Int>(capacity: 1)
        a.send(7)
        #expect(select(a.onReceive { $0 }, default: { -1 }) == 7)
        #expect(select(a.onSend(8) { 8 }, default: { -1 }) == 8)
        #expect(a.receive() == 8)
    }

    @Test func closedChannelIsReadyAtOnce() {
        let open = GoChan<Int>(), closed = GoChan<Int>()
        closed.close()
        let r = select(open.onReceive { _ in "open" }, closed.onReceive { v in v == nil ? "closed" : "value" })
        #expect(r == "closed")
        #expect(select(closed.onReceive { _ in true }, default: { false }))
    }

    @Test func timeoutWhenNothingArrives() {
        let a = GoChan<Int>()
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        let r = select(a.onReceive { _ in "value" }, timeout: .milliseconds(30)) { "timeout" }
        clock_gettime(CLOCK_MONOTONIC, &end)
        #expect(r == "timeout")
        let elapsedMs = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1_000_000
        #expect(elapsedMs >= 29)
        #expect(a.queuedReceivers == 0)
        #expect(a.trySend(1) == false)
    }

    @Test func valueBeforeTimeoutWins() {
        let a = GoChan<Int>()
        let t = TestThread { sleepMilliseconds(5); a.send(3) }
        let r = select(a.onReceive { $0 ?? -1 }, timeout: .seconds(30)) { -2 }
        #expect(r == 3)
        t.join()
    }

    @Test func asyncTimeoutAndValue() async throws {
        let a = GoChan<Int>()
        let r1 = try await select(a.onReceive { _ in "value" }, timeout: .milliseconds(20)) { "timeout" }
        #expect(r1 == "timeout")
        #expect(a.queuedReceivers == 0)
        let t = TestThread { sleepMilliseconds(5); a.send(4) }
        let r2 = try await select(a.onReceive { "\($0!)" }, timeout: .seconds(30)) { "timeout" }
        #expect(r2 == "4")
        await joinAsync([t])
    }

    @Test func blockingSelectIsCompletedByEitherChannel() {
        for useSecond in [false, true] {
            let a = GoChan<Int>(), b = GoChan<Int>(capacity: 1), out = GoChan<String>(capacity: 1)
            let t = TestThread {
                out.send(select(a.onReceive { "a\($0!)" }, b.onReceive { "b\($0!)" }))
            }
            while a.queuedReceivers == 0 || b.queuedReceivers == 0 { sleepMilliseconds(1) }
            if useSecond { b.send(2) } else { a.send(1) }
            #expect(out.receive() == (useSecond ? "b2" : "a1"))
            t.join()
            #expect(a.queuedReceivers == 0 && b.queuedReceivers == 0)   // the other case was withdrawn
            #expect(b.count == 0)
        }
    }

    @Test func asyncSelectWithSendCase() async throws {
        let a = GoChan<Int>(), b = GoChan<Int>()
        let receiver = TestThread { _ = b.receive() }
        let r = try await select(a.onReceive { _ in "a" }, b.onSend(9) { "sent" })
        #expect(r == "sent")
        await joinAsync([receiver])
    }

    /// Two always-ready cases over 100,000 rounds: each chosen 50% ± 2%.
    @Test func fairnessBetweenReadyCases() {
        let rounds = TestScale.underTSan ? 20_000 : 100_000
        let a = GoChan<Int>(capacity: 1), b = GoChan<Int>(capacity: 1)
        var countA = 0
        for _ in 0..<rounds {
            if a.count == 0 { a.send(0) }
            if b.count == 0 { b.send(0) }
            if select(a.onReceive { _ in true }, b.onReceive { _ in false }) { countA += 1 }
        }
        let share = Double(countA) / Double(rounds)
        #expect(abs(share - 0.5) <= 0.02, "case a chosen \(countA) of \(rounds)")
    }

    @Test func fairnessAmongThreeClosedChannels() {
        let chans = (0..<3).map { _ in GoChan<Int>() }
        for c in chans { c.close() }
        var counts = [0, 0, 0]
        let rounds = TestScale.underTSan ? 6_000 : 30_000
        for _ in 0..<rounds {
            counts[select(chans[0].onReceive { _ in 0 }, chans[1].onReceive { _ in 1 }, chans[2].onReceive { _ in 2 })] += 1
        }
        for c in counts { #expect(abs(Double(c) / Double(rounds) - 1.0 / 3) <= 0.02, "\(counts)") }
    }

    /// Two threads select over the same two unbuffered channels with the
    /// cases in opposite order; address-ordered locking keeps them from
    /// deadlocking, and every round pairs them up.
    @Test func crosswiseSelectsDoNotDeadlock() {
        let x = GoChan<Int>(), y = GoChan<Int>()
        let rounds = TestScale.underTSan ? 300 : 3_000
        let sums = Box<[Int]>([0, 0])
        onThreads(2) { me in
            var s = 0
            for _ in 0..<rounds {
                if me == 0 {
                    s += select(x.onSend(1) { 1 }, y.onReceive { $0! * 10 })
                } else {
                    s += select(y.onSend(2) { 2 }, x.onReceive { $0! * 10 })
                }
            }
            sums.update { $0[me] = s }
        }
        let s = sums.value
        // Each round pairs a send with a receive: on x (thread 0 gets 1,
        // thread 1 gets 10) or on y (thread 1 gets 2, thread 0 gets 20). With
        // nx rounds on x: s1 = 10·nx + 2·(rounds − nx), s0 = nx + 20·(rounds − nx).
        let nx = (s[1] - 2 * rounds) / 8
        #expect((s[1] - 2 * rounds) % 8 == 0 && (0...rounds).contains(nx), "sums \(s)")
        #expect(s[0] == nx + 20 * (rounds - nx), "sums \(s): \(nx) rounds on x")
        #expect(x.queuedSenders + x.queuedReceivers + y.queuedSenders + y.queuedReceivers == 0)
        #expect(x._checkInvariants() == nil && y._checkInvariants() == nil)
    }

    @Test func sameChannelTwiceInOneSelect() {
        let a = GoChan<Int>(capacity: 2)
        a.send(1)
        let r = select(a.onReceive { $0! }, a.onSend(5) { 5 })
        // Both cases are ready; whichever ran, the channel shows it.
        if r == 1 {
            #expect(a.count == 0)
        } else {
            #expect(r == 5)
            #expect(a.count == 2)
            #expect(a.receive() == 1 && a.receive() == 5)
        }
        let t = TestThread { a.send(9) }
        #expect(a.receive() == 9)
        t.join()
        #expect(a.count == 0)
    }
}

@Suite(.heapShared) struct SelectCaseListTests {
    @Test func caseListsBuiltAtRunTime() {
        let chans = (0..<5).map { _ in GoChan<Int>(capacity: 1) }
        #expect(chans[3].trySend(33))
        let cases = chans.enumerated().map { i, c in c.onReceive { v in (i, v) } }
        let (i, v) = select(cases: cases)
        #expect(i == 3 && v == 33)
        let none = select(cases: chans.map { c in c.onReceive { _ in false } }, default: { true })
        #expect(none)
    }

    @Test func asyncCaseList() async throws {
        let chans = (0..<5).map { _ in GoChan<Int>(capacity: 1) }
        let t = TestThread { sleepMilliseconds(5); chans[1].send(11) }
        let r = try await select(cases: chans.map { c in c.onReceive { $0 } })
        #expect(r == 11)
        await joinAsync([t])
    }
}

@Suite(.heapShared) struct SelectWithdrawalTests {
    /// A blocked select offering values on two channels: once one receiver
    /// takes its value, the other offer is withdrawn (nothing left to take).
    @Test func losingSendCasesAreWithdrawn() {
        let a = GoChan<Int>(), b = GoChan<Int>()
        let out = GoChan<String>(capacity: 1)
        let t = TestThread { out.send(select(a.onSend(1) { "a" }, b.onSend(2) { "b" })) }
        while a.queuedSenders == 0 || b.queuedSenders == 0 { sleepMilliseconds(1) }
        #expect(a.receive() == 1)
        t.join()
        #expect(out.receive() == "a")
        guard case .empty = b.tryReceive() else { Issue.record("b still offered a value"); return }
        #expect(a.queuedSenders + b.queuedSenders == 0)
    }

    @Test func closeWakesSuspendedTasks() async throws {
        let ch = GoChan<Int>()
        let tasks = (0..<3).map { _ in Task { try await ch.receive() } }
        while ch.queuedReceivers < 3 { await Task.yield() }
        ch.close()
        for t in tasks { #expect(try await t.value == nil) }
    }

    @Test func closeWakesSuspendedSelect() async throws {
        let a = GoChan<Int>(), b = GoChan<Int>()
        let t = Task { try await select(a.onReceive { v in "a\(v ?? -1)" }, b.onReceive { v in "b\(v ?? -1)" }) }
        while a.queuedReceivers == 0 || b.queuedReceivers == 0 { await Task.yield() }
        b.close()
        #expect(try await t.value == "b-1")
        #expect(a.queuedReceivers == 0)
    }
}

/// A value arriving as the timeout expires: either the select takes it or
/// it times out and the value is still there to receive, never both and
/// never neither.
@Suite(.heapShared) struct SelectTimeoutRaceTests {
    static let rounds = TestScale.underTSan ? 100 : 400

    @Test func blockingSelectTimeoutRacingASender() {
        let ch = GoChan<Int>()
        var viaSelect = 0, afterTimeout = 0
        for i in 0..<Self.rounds {
            let sender = TestThread { usleep(UInt32(i % 3) * 300); ch.send(i) }
            let r = select(ch.onReceive { $0 }, timeout: .microseconds(400)) { nil }
            if let v = r {
                #expect(v == i)
                viaSelect += 1
            } else {
                #expect(ch.receive() == i)      // the sender is still waiting
                afterTimeout += 1
            }
            sender.join()
            #expect(ch.queuedReceivers == 0 && ch.queuedSenders == 0)
        }
        #expect(viaSelect + afterTimeout == Self.rounds)
    }

    @Test func asyncSelectTimeoutRacingASender() async throws {
        let ch = GoChan<Int>()
        for i in 0..<Self.rounds {
            let sender = TestThread { usleep(UInt32(i % 3) * 300); ch.send(i) }
            let r = try await select(ch.onReceive { $0 }, timeout: .microseconds(400)) { nil }
            if let v = r {
                #expect(v == i)
            } else {
                #expect(try await ch.receive() == i)
            }
            await joinAsync([sender])
            #expect(ch.queuedReceivers == 0 && ch.queuedSenders == 0)
        }
    }
}
