// The async face of GoChan: the same channel, suspending tasks instead of
// blocking threads. Values pass between the two worlds in both directions.
//
// Cancellation rule for every async operation: an operation that can
// complete at once completes, even in a cancelled task (as a ready case does
// in Go); a cancelled task never suspends: where it would wait, the call
// throws CancellationError instead, and a task cancelled while suspended
// leaves the channel's queue and throws. It throws exactly when the
// operation did not take place. (Checking cancellation only where a task
// would wait also keeps it off the fast path: `Task.isCancelled` costs a
// retain, a runtime call and a release.)
//
// Isolation: every async operation is `nonisolated(nonsending)`: it runs on
// the caller's executor (an actor's, or none), so a call from an actor does
// not hop away and back, and closures it runs — select bodies — may use the
// actor's state. Values still cross only as `sending`.

extension GoChan {
    /// Sends `value` from a task (Go's `ch <- value`), suspending while the
    /// buffer is full, or on an unbuffered channel until a receiver (thread
    /// or task) takes it.
    ///
    /// Traps with "send on closed channel" if the channel is closed or
    /// becomes closed while suspended, as in Go.
    ///
    /// - Throws: `CancellationError` if the task is cancelled before the
    ///   value could be sent: when it would have to wait and is already
    ///   cancelled, or is cancelled while suspended. When it throws, the
    ///   value was not sent; when it returns, it was. A send that can
    ///   complete at once completes even in a cancelled task, and a
    ///   cancellation racing a receiver that already took the value loses.
    ///
    /// `value` is `sending`: the caller gives it up, sent or not.
    @inlinable
    nonisolated(nonsending)
    public func send(_ value: sending Element) async throws(CancellationError) {
        if sendNow(value) { return }
        try await sendSuspending(value)
    }

    /// The suspending part of the async send (inlinable, so that it is
    /// specialized for the element type: unspecialized, every suspension
    /// looked up generic metadata at run time).
    @inlinable
    nonisolated(nonsending)
    func sendSuspending(_ value: Element) async throws(CancellationError) {
        let slot = UnsafeMutablePointer<Element>.allocate(capacity: 1)
        slot.initialize(to: value)
        defer { slot.deallocate() }
        do {
            // Returns only when the value was taken (close traps).
            _ = try await goChanSuspend(control, channel: self, elem: UnsafeMutableRawPointer(slot),
                                        isSend: true) { sendLocked(slot) }
        } catch {
            slot.deinitialize(count: 1)     // not sent: the value is ours to drop
            throw error
        }
    }

    /// Receives the next value from a task (Go's `v := <-ch`), suspending
    /// while the channel is empty and open. Returns `nil` once the channel is
    /// closed and drained.
    ///
    /// - Throws: `CancellationError` if the task would have to wait and is
    ///   cancelled (before or while suspended); no value was taken from the
    ///   channel then. A value (or the end) that is ready at once is returned
    ///   even in a cancelled task.
    ///
    /// The value is returned as `sending`: the caller owns it alone.
    @inlinable
    nonisolated(nonsending)
    public func receive() async throws(CancellationError) -> sending Element? {
        switch receiveNow() {
        case .value(let v): return v
        case .closed: return nil
        case .empty: return try await receiveSuspending()
        }
    }

    /// The suspending part of the async receive (inlinable, see `sendSuspending`).
    @inlinable
    nonisolated(nonsending)
    func receiveSuspending() async throws(CancellationError) -> sending Element? {
        let slot = UnsafeMutablePointer<Element>.allocate(capacity: 1)
        defer { slot.deallocate() }
        let received = try await goChanSuspend(control, channel: self, elem: UnsafeMutableRawPointer(slot),
                                               isSend: false) { recvLocked(slot) }
        return received ? goChanMoveOut(slot) : nil
    }

    /// Go's `v, ok := <-ch` for a task: like `receive()`, returning
    /// `(zero, false)` once the channel is closed and drained.
    ///
    /// - Throws: `CancellationError` as `receive()` does.
    @inlinable
    nonisolated(nonsending)
    public func receive(zero: @autoclosure () -> sending Element) async throws(CancellationError)
        -> sending (value: Element, ok: Bool) {
        if let v = try await receive() { return (v, true) }
        return (zero(), false)
    }
}

extension GoChan: AsyncSequence {
    /// Go's `for v := range ch`: yields every value until the channel is
    /// closed and drained.
    ///
    /// Iteration also ends (returns `nil`) when the iterating task is
    /// cancelled and would have to wait; a cancelled `next()` that returns
    /// `nil` took no value from the channel. Values ready at once are still
    /// delivered, as by ``receive()``.
    ///
    /// Called directly, ``next()`` returns each value as `sending`.
    @frozen
    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        @usableFromInline let channel: GoChan

        @inlinable init(channel: GoChan) { self.channel = channel }

        /// The next value, or `nil` at close (after draining) or
        /// cancellation; runs on the caller's executor.
        @inlinable
        nonisolated(nonsending)
        public mutating func next() async -> sending Element? {
            do {
                return try await channel.receive()
            } catch {
                return nil
            }
        }

        /// The next value, as ``next()``, on the executor of `actor` (what
        /// `for await` calls).
        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async -> sending Element? {
            do {
                return try await channel.receive()
            } catch {
                return nil
            }
        }
    }

    /// An iterator over the channel's values, ending at close.
    @inlinable
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(channel: self)
    }
}

/// Suspends the current task in a plain send or receive on channel `c`
/// (the one-case select, without a select's arrays and arms). `attempt`
/// runs under the channel lock, first to retry the operation, then the
/// waiter is queued. Returns whether the operation succeeded (a receive
/// that saw the end of a closed channel returns false; a send on a closed
/// channel traps).
///
/// - Throws: `CancellationError` when the task is cancelled before it
///   queued or while queued; then the operation did not take place.
@usableFromInline
nonisolated(nonsending)
func goChanSuspend(_ c: UnsafeMutablePointer<GoChanControl>, channel: AnyObject, elem: UnsafeMutableRawPointer,
                   isSend: Bool, attempt: () -> GoChanStep) async throws(CancellationError) -> Bool {
    if Task.isCancelled { throw CancellationError() }     // a cancelled task never waits
    let sleeper = GoChanSleeper(isAsync: true)
    let w = GoChanWaiter(sleeper: sleeper, caseIndex: 0, elem: elem, control: c, isSend: isSend)
    sleeper.publishSingle(waiter: w, channel: channel)
    let immediate: Int = await withTaskCancellationHandler {
        await withUnsafeContinuation { (cont: UnsafeContinuation<Int, Never>) in
            c.pointee.lock.lock()
            if sleeper.outcome != .waiting {                  // cancelled before queueing
                c.pointee.lock.unlock()
                cont.resume(returning: -1)
                return
            }
            switch attempt() {
            case .done(let received, let wake):
                c.pointee.lock.unlock()
                wake?.wake()
                cont.resume(returning: received ? 1 : 0)
            case .sendOnClosed:
                c.pointee.lock.unlock()
                goChanPanic("send on closed channel")
            case .notReady:
                sleeper.continuation = cont
                sleeper.suspended = true
                if isSend { c.state.pointee.sendq.enqueue(w) } else { c.state.pointee.recvq.enqueue(w) }
                c.pointee.lock.unlock()
            }
        }
    } onCancel: {
        sleeper.interrupt(.cancelled)
    }
    if immediate >= 0 { return immediate == 1 }
    // The claimer wrote the value before resuming the continuation, and
    // passed the result in the resumption (a resumption orders the
    // resumer's writes before the resumed task's reads).
    if immediate == -1 { throw CancellationError() }     // cancellation won
    let success = immediate == GoChanSleeper.asyncFiredSuccess
    if isSend && !success { goChanPanic("send on closed channel") }
    return success
}
