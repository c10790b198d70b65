// The async face of GoChan: the same channel, suspending tasks instead of
// blocking threads. Values pass between the two worlds in both directions.

extension GoChan {
    /// Sends `value` from a task (Go's `ch <- value`), suspending while the
    /// buffer is full, or on an unbuffered channel until a receiver (thread
    /// or task) takes it.
    ///
    /// Traps with "send on closed channel" if the channel is closed or
    /// becomes closed while suspended, as in Go.
    ///
    /// - Throws: `CancellationError` if the task is cancelled before the
    ///   value was taken, including when it is already cancelled on entry
    ///   (then the channel is not touched). When it throws, the value was not
    ///   sent; when it returns, it was. A cancellation racing a receiver that
    ///   already took the value loses: the call returns normally.
    @inlinable
    public func send(_ value: Element) async throws(CancellationError) {
        if Task.isCancelled { throw CancellationError() }
        if sendNow(value) { return }
        try await sendSuspending(value)
    }

    /// The suspending part of the async send: a one-case select.
    @usableFromInline
    func sendSuspending(_ value: Element) async throws(CancellationError) {
        let arm = GoChanSendArm(channel: self, value: value)
        _ = try await goChanSelectAsync([arm], timeout: nil)
    }

    /// Receives the next value from a task (Go's `v := <-ch`), suspending
    /// while the channel is empty and open. Returns `nil` once the channel is
    /// closed and drained.
    ///
    /// - Throws: `CancellationError` if the task is cancelled before a value
    ///   arrived (or on entry); no value was taken from the channel then.
    @inlinable
    public func receive() async throws(CancellationError) -> Element? {
        if Task.isCancelled { throw CancellationError() }
        switch receiveNow() {
        case .value(let v): return v
        case .closed: return nil
        case .empty: return try await receiveSuspending()
        }
    }

    /// The suspending part of the async receive: a one-case select.
    @usableFromInline
    func receiveSuspending() async throws(CancellationError) -> Element? {
        let arm = GoChanReceiveArm(channel: self)
        _ = try await goChanSelectAsync([arm], timeout: nil)
        return arm.take()
    }

    /// Go's `v, ok := <-ch` for a task: like `receive()`, returning
    /// `(zero, false)` once the channel is closed and drained.
    ///
    /// - Throws: `CancellationError` as `receive()` does.
    @inlinable
    public func receive(zero: @autoclosure () -> Element) async throws(CancellationError)
        -> (value: Element, ok: Bool) {
        if let v = try await receive() { return (v, true) }
        return (zero(), false)
    }
}

extension GoChan: AsyncSequence {
    /// Go's `for v := range ch`: yields every value until the channel is
    /// closed and drained.
    ///
    /// Iteration also ends (returns `nil`) when the iterating task is
    /// cancelled; a cancelled `next()` takes no value from the channel.
    @frozen
    public struct AsyncIterator: AsyncIteratorProtocol {
        @usableFromInline let channel: GoChan

        @inlinable init(channel: GoChan) { self.channel = channel }

        /// The next value, or `nil` at close (after draining) or cancellation.
        @inlinable
        public mutating func next() async -> Element? {
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
