import Testing
@testable import SpanAlloc

#if canImport(Glibc)
import Glibc
import SpanAllocTestSupport
#endif

/// Go's panics are traps: each is checked in a child process.
@Suite(.heapShared) struct GoChanTrapTests {
    @Test func makechanNegativeCapacity() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { _ = GoChan<Int>(capacity: -1) }
        expectMessage(r, "makechan: size out of range")
    }

    @Test func makechanOverflowingCapacity() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { _ = GoChan<Int>(capacity: Int.max / 4) }
        expectMessage(r, "makechan: size out of range")
    }

    @Test func makechanAboveMaxAlloc() async {
        // 2^46 Ints are 2^49 bytes, above Go's 2^48-byte maxAlloc.
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { _ = GoChan<Int>(capacity: 1 << 46) }
        expectMessage(r, "makechan: size out of range")
    }

    @Test func makechanZeroSizeElementsAcceptHugeCapacity() {
        let ch = GoChan<Void>(capacity: 1 << 60)
        #expect(ch.capacity == 1 << 60)
    }

    @Test func makechanInvalidElementType() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            typealias K = (Int, Int, Int, Int, Int, Int, Int, Int)             // 64 B
            typealias M = (K, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K)     // 1 KiB
            typealias Huge = (M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
                              M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
                              M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
                              M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M)   // 64 KiB
            _ = GoChan<Huge>()
        }
        expectMessage(r, "makechan: invalid channel element type")
    }

    @Test func sendOnClosedChannel() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            // The blocking send is for threads: call it from a synchronous function.
            func sendAfterClose() {
                let ch = GoChan<Int>(capacity: 1)
                ch.close()
                ch.send(1)
            }
            sendAfterClose()
        }
        expectMessage(r, "send on closed channel")
    }

    @Test func trySendOnClosedChannel() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ch = GoChan<Int>(capacity: 1)
            ch.close()
            _ = ch.trySend(1)
        }
        expectMessage(r, "send on closed channel")
    }

    @Test func asyncSendOnClosedChannel() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ch = GoChan<Int>()
            ch.close()
            try? await ch.send(1)
        }
        expectMessage(r, "send on closed channel")
    }

    @Test func selectSendOnClosedChannel() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            func selectAfterClose() {
                let a = GoChan<Int>(), b = GoChan<Int>()
                b.close()
                _ = select(a.onReceive { _ in 0 }, b.onSend(1) { 1 })
            }
            selectAfterClose()
        }
        expectMessage(r, "send on closed channel")
    }

    @Test func blockedSenderTrapsWhenClosed() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            func blockedSend() {
                let ch = GoChan<Int>()
                let closer = closeOnceASenderIsQueued(ch)
                ch.send(1)            // blocks until the close, then traps
                closer.join()
            }
            blockedSend()
        }
        expectMessage(r, "send on closed channel")
    }

    @Test func blockedAsyncSenderTrapsWhenClosed() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ch = GoChan<Int>(capacity: 1)
            _ = ch.trySend(0)
            let closer = closeOnceASenderIsQueued(ch)
            try? await ch.send(1)
            closer.join()
        }
        expectMessage(r, "send on closed channel")
    }

    @Test func blockedSelectSenderTrapsWhenClosed() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            func blockedSelect() {
                let a = GoChan<Int>(), b = GoChan<Int>()
                let closer = closeOnceASenderIsQueued(b)
                _ = select(a.onReceive { _ in 0 }, b.onSend(1) { 1 })
                closer.join()
            }
            blockedSelect()
        }
        expectMessage(r, "send on closed channel")
    }

    @Test func closeOfClosedChannel() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ch = GoChan<Int>()
            ch.close()
            ch.close()
        }
        expectMessage(r, "close of closed channel")
    }

    @Test func closeWithBlockedReceiversAndSendersTogether() async {
        // Receivers see the end; the blocked sender traps (on a select that
        // waits to send on the channel while receivers wait on another).
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let ch = GoChan<Int>(capacity: 1)
            _ = ch.trySend(0)
            let sender = TestThread { ch.send(1) }
            closeOnceASenderIsQueued(ch).join()
            sender.join()
        }
        expectMessage(r, "send on closed channel")
    }
}


/// In an exit test's child: a thread that closes `ch` once a sender is
/// queued on it, i.e. blocked in the send (not merely about to send, nor
/// sending on a channel already closed). If no sender queues within 10 s,
/// it says so and ends the child with exit code 0, so the exit test, which
/// expects a trap, fails.
func closeOnceASenderIsQueued(_ ch: GoChan<Int>) -> TestThread {
    TestThread {
        var waited = 0
        while ch.queuedSenders == 0 {
            if waited == 10_000 {
                let message = "the sender never blocked\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
                exit(0)
            }
            usleep(1_000)
            waited += 1
        }
        ch.close()
    }
}

/// Checks that a trapped child process printed `message`.
func expectMessage(_ result: ExitTest.Result?, _ message: String,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    guard let result else { return }
    let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
    #expect(stderr.contains(message), "stderr: \(stderr.suffix(300))", sourceLocation: sourceLocation)
}
