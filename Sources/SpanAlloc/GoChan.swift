import Synchronization

/// A Go channel: a FIFO queue that threads and tasks use to hand values to
/// each other, with Go's exact semantics (`make(chan T, n)`, `ch <- v`,
/// `<-ch`, `close`, `len`, `cap`, `select`).
///
/// ```swift
/// let ch = GoChan<Int>(capacity: 16)        // make(chan int, 16)
/// Thread.detachNewThread { for i in 0..<100 { ch.send(i) }; ch.close() }   // Foundation
/// while let v = ch.receive() { print(v) }    // for v := range ch
/// ```
///
/// ## Blocking contract
/// - ``send(_:)`` blocks while the buffer is full; on an unbuffered channel
///   (capacity 0) it blocks until a receiver takes the value. A value handed
///   to a waiting receiver goes straight to it, without passing through the
///   buffer. When a receiver frees a slot of a full channel, the first
///   blocked sender's value moves to the tail, so FIFO order holds.
/// - ``receive()`` blocks while the channel is empty and open. After
///   ``close()`` it returns the values still buffered, then `nil` forever.
/// - Sending on a closed channel traps with "send on closed channel",
///   including a sender that was blocked when the channel was closed.
///   Closing a closed channel traps with "close of closed channel".
/// - A blocked thread spins briefly, then parks on its own semaphore; the
///   thread that completes its operation wakes it after unlocking.
/// - The async forms (`try await send(_:)`, `try await receive()`,
///   `for await v in ch`, async `select(_:)`) suspend the task instead
///   of the thread; they work on the same channel as the blocking forms at
///   the same time.
///
/// ## Memory
/// As Go's `makechan` does, the control block (Go's `hchan`, 112 bytes) and
/// the ring buffer come from ``SpanHeap``: one noscan block for pointer-free
/// elements, separate scan blocks for elements that hold references, and
/// the control block alone for unbuffered channels and zero-size elements.
/// Values still buffered when the last reference goes away are destroyed
/// and both blocks freed.
///
/// ## Sendability
/// `GoChan` is `Sendable` for every element type, as a Go channel may be
/// shared by any goroutines. Every way a value goes in takes it as
/// `sending` (``send(_:)``, ``trySend(_:)``, ``onSend(_:_:)``, the async
/// ``send(_:)``), and every way out returns it as `sending` (``receive()``,
/// ``tryReceive()``, the iterator, the value a select receive case's body
/// gets), so the compiler checks that a non-`Sendable` value, a ``GoSlice``
/// for one, is given up by the sender and owned by the receiver alone.
///
/// Channels compare by identity (Go's `ch1 == ch2`): `==` and the hash are
/// those of the object.
public final class GoChan<Element> {
    @usableFromInline let control: UnsafeMutablePointer<GoChanControl>

    /// Makes a channel (Go's `make(chan Element, capacity)`).
    ///
    /// - Parameter capacity: buffer size in elements; 0 (the default) makes
    ///   an unbuffered channel. A negative capacity, or one whose buffer
    ///   would exceed Go's `maxAlloc` (2^48 bytes), traps with
    ///   "makechan: size out of range". Elements of 64 KiB or more trap with
    ///   "makechan: invalid channel element type", as in Go. A buffer the
    ///   heap cannot serve (above `SA_MAX_SIZE`, or refused by the OS) traps
    ///   with Go's "runtime: out of memory".
    public init(capacity: Int = 0) {
        let size = MemoryLayout<Element>.size
        if size >= 1 << 16 { fatalError("makechan: invalid channel element type") }
        let stride = size == 0 ? 0 : MemoryLayout<Element>.stride
        let (mem, overflow) = stride.multipliedReportingOverflow(by: capacity)
        if overflow || capacity < 0 || mem > goChanMaxAlloc - goChanControlSize {
            fatalError("makechan: size out of range")
        }
        let align = MemoryLayout<Element>.alignment
        // Every size class from 112 bytes up is a multiple of 16, and a small
        // object is aligned to the largest power of two dividing its class
        // size: the plain allocation path (Go's mallocgc) already gives the
        // control block and a buffer behind it 16-byte alignment. Only
        // over-aligned elements need the aligned path.
        let blockAlign = align > 16 ? align : 8
        let block: UnsafeMutableRawPointer
        let buf: UnsafeMutableRawPointer
        var separate = false
        if mem == 0 {
            // Unbuffered or zero-size elements: the control block alone,
            // pointer-free (blocked waiters are kept alive by their owners).
            block = Self.allocate(goChanControlSize, alignment: 8, noscan: true)
            buf = block
        } else if SpanHeap.isPointerFree(Element.self) {
            // Control block and buffer in one noscan block.
            let offset = (goChanControlSize + align - 1) / align * align
            block = Self.allocate(offset + mem, alignment: blockAlign, noscan: true)
            buf = block + offset
        } else {
            // Two scan blocks: the control block and the buffer.
            block = Self.allocate(goChanControlSize, alignment: 8, noscan: false)
            buf = Self.allocate(mem, alignment: align, noscan: false)
            separate = true
        }
        control = block.bindMemory(to: GoChanControl.self, capacity: 1)
        control.initializeControl(dataqsiz: capacity, buf: buf, elemStride: stride, bufIsSeparate: separate)
    }

    /// A block for the channel, or Go's out-of-memory trap (SpanAlloc
    /// refuses requests above `SA_MAX_SIZE`, and the OS may refuse memory).
    private static func allocate(_ byteCount: Int, alignment: Int, noscan: Bool) -> UnsafeMutableRawPointer {
        guard let p = SpanHeap.default.allocateIfPossible(byteCount: byteCount, alignment: alignment, noscan: noscan)
        else { _goOutOfMemory(byteCount) }
        return p
    }

    deinit {
        // No waiter can be queued: every blocked operation holds a reference.
        var i = control.state.pointee.recvx
        for _ in 0..<control.pointee.qcount.load(ordering: .relaxed) {
            slot(i).deinitialize(count: 1)
            i = i + 1 == control.pointee.dataqsiz ? 0 : i + 1
        }
        let buf = control.pointee.buf
        let separate = control.pointee.bufIsSeparate
        control.deinitializeControl()
        if separate { SpanHeap.default.deallocate(buf) }
        SpanHeap.default.deallocate(UnsafeMutableRawPointer(control))
    }

    // MARK: Go's len and cap

    /// The number of values in the buffer (Go's `len(ch)`), read without
    /// locking; 0 for an unbuffered channel. Zero-size elements count too.
    @inlinable
    public var count: Int { control.pointee.qcount.load(ordering: .relaxed) }

    /// The buffer size given at creation (Go's `cap(ch)`).
    @inlinable
    public var capacity: Int { control.pointee.dataqsiz }

    // MARK: Blocking API (threads)

    /// Sends `value` (Go's `ch <- value`), blocking the calling thread while
    /// the buffer is full, or on an unbuffered channel until a receiver takes
    /// it.
    ///
    /// Traps with "send on closed channel" if the channel is closed, or
    /// becomes closed while this call is blocked. Unavailable in `async`
    /// code (it would block a thread of the cooperative pool); tasks use
    /// the async form.
    ///
    /// `value` is `sending`: the caller gives it up, so whoever receives it
    /// may use it on any thread or task.
    @available(*, noasync, message: "blocks the thread; use 'try await send(_:)' in async code")
    @inlinable
    public func send(_ value: sending Element) {
        withUnsafeTemporaryAllocation(of: Element.self, capacity: 1) { tmp in
            let p = tmp.baseAddress!
            p.initialize(to: value)
            sendBlocking(p)
        }
    }

    /// Receives the next value (Go's `v := <-ch`), blocking the calling
    /// thread while the channel is empty and open. Returns `nil` once the
    /// channel is closed and drained. Unavailable in `async` code; tasks
    /// use the async form.
    ///
    /// The value is returned as `sending`: the sender gave it up, so the
    /// caller owns it alone.
    @available(*, noasync, message: "blocks the thread; use 'try await receive()' in async code")
    @inlinable
    public func receive() -> sending Element? {
        withUnsafeTemporaryAllocation(of: Element.self, capacity: 1) { tmp in
            let p = tmp.baseAddress!
            return receiveBlocking(p) ? goChanMoveOut(p) : nil
        }
    }

    /// Go's `v, ok := <-ch`: blocks like ``receive()``; after close and
    /// drain returns `(zero, false)`, where `zero` stands in for Go's zero
    /// value. Unavailable in `async` code.
    @available(*, noasync, message: "blocks the thread; use 'try await receive(zero:)' in async code")
    @inlinable
    public func receive(zero: @autoclosure () -> sending Element) -> sending (value: Element, ok: Bool) {
        if let v = receive() { return (v, true) }
        return (zero(), false)
    }

    /// Closes the channel (Go's `close(ch)`): blocked receivers get `nil`
    /// (after any buffered values are drained by later receives), blocked
    /// senders trap with "send on closed channel".
    ///
    /// Traps with "close of closed channel" when already closed.
    public func close() {
        let c = control
        c.pointee.lock.lock()
        if c.pointee.closed.load(ordering: .relaxed) {
            c.pointee.lock.unlock()
            goChanPanic("close of closed channel")
        }
        c.pointee.closed.store(true, ordering: .relaxed)
        // A rendezvous receiver sees the end, unless a send claimed the slot first.
        _ = c.pointee.rendezvousState.compareExchange(expected: GoChanRendezvous.receiverWaits,
                                                      desired: GoChanRendezvous.closed, ordering: .releasing)
        var woken: [GoChanSleeper] = []
        c.state.pointee.recvq.drainClaiming(into: &woken)   // receivers see the end
        c.state.pointee.sendq.drainClaiming(into: &woken)   // senders will trap
        c.pointee.lock.unlock()
        for s in woken { s.wake() }
    }

    // MARK: Non-blocking API

    /// Sends `value` if that can be done without blocking (a receiver is
    /// waiting or the buffer has room), like Go's
    /// `select { case ch <- v: default: }`. Returns whether it was sent.
    ///
    /// Traps with "send on closed channel" if the channel is closed.
    ///
    /// `value` is `sending` whether or not it is sent: when the send would
    /// block, the value is destroyed.
    @inlinable
    public func trySend(_ value: sending Element) -> Bool {
        // Go's fast path: an open, full channel cannot take the value.
        if !control.pointee.closed.load(ordering: .relaxed) && isFullWithoutLock { return false }
        return sendNow(value)
    }

    /// One locked send attempt: true when `value` was sent, false when the
    /// send would block. Traps on a closed channel.
    @inlinable
    func sendNow(_ value: Element) -> Bool {
        let c = control
        return withUnsafeTemporaryAllocation(of: Element.self, capacity: 1) { tmp in
            let p = tmp.baseAddress!
            p.initialize(to: value)
            c.pointee.lock.lock()
            switch sendLocked(p) {
            case .done(_, let wake):
                c.pointee.lock.unlock()
                wake?.wake()
                return true
            case .sendOnClosed:
                c.pointee.lock.unlock()
                goChanPanic("send on closed channel")
            case .notReady:
                c.pointee.lock.unlock()
                p.deinitialize(count: 1)
                return false
            }
        }
    }

    /// The result of ``tryReceive()``.
    @frozen
    public enum TryReceiveResult {
        /// A value was received.
        case value(Element)
        /// The channel is closed and drained (Go's `ok == false`).
        case closed
        /// Nothing to receive without blocking.
        case empty
    }

    /// Receives a value if that can be done without blocking, like Go's
    /// `select { case v, ok := <-ch: default: }`. A received value is
    /// returned as `sending`.
    @inlinable
    public func tryReceive() -> sending TryReceiveResult {
        let c = control
        // Go's fast path: an open, empty channel has nothing to give.
        if isEmptyWithoutLock {
            if !c.pointee.closed.load(ordering: .acquiring) { return .empty }
            if isEmptyWithoutLock { return .closed }
        }
        return receiveNow()
    }

    /// One locked receive attempt.
    @inlinable
    func receiveNow() -> sending TryReceiveResult {
        let c = control
        return withUnsafeTemporaryAllocation(of: Element.self, capacity: 1) { tmp in
            let p = tmp.baseAddress!
            c.pointee.lock.lock()
            switch recvLocked(p) {
            case .done(let received, let wake):
                c.pointee.lock.unlock()
                wake?.wake()
                return received ? .value(goChanMoveOut(p)) : .closed
            case .notReady, .sendOnClosed:
                c.pointee.lock.unlock()
                return .empty
            }
        }
    }

    // MARK: Internals

    /// Buffer slot `i`.
    @inlinable @inline(__always)
    func slot(_ i: Int) -> UnsafeMutablePointer<Element> {
        (control.pointee.buf + i &* Int(control.pointee.elemStride)).assumingMemoryBound(to: Element.self)
    }

    /// Go's `full()` for buffered channels: a send would block (read
    /// without the lock, so only a hint). Unbuffered channels answer false:
    /// whether a receiver waits is only known under the lock.
    @inlinable
    var isFullWithoutLock: Bool {
        let cap = control.pointee.dataqsiz
        return cap != 0 && control.pointee.qcount.load(ordering: .relaxed) == cap
    }

    /// Go's `empty()` for buffered channels: a receive would block (a hint,
    /// as above; false for unbuffered channels).
    @inlinable
    var isEmptyWithoutLock: Bool {
        control.pointee.dataqsiz != 0 && control.pointee.qcount.load(ordering: .relaxed) == 0
    }

    /// One send step under the lock (Go's `chansend` after `lock(&c.lock)`):
    /// hand the value to a waiting receiver, else put it in the buffer.
    /// On `.done` the value at `src` has been moved out.
    @inlinable
    func sendLocked(_ src: UnsafeMutablePointer<Element>) -> GoChanStep {
        let c = control
        if c.pointee.closed.load(ordering: .relaxed) { return .sendOnClosed }
        // The first receiver in line may wait in the rendezvous slot
        // (unbuffered channels of small elements; see GoChanRendezvous).
        if Self.usesRendezvous, c.pointee.dataqsiz == 0, goChanRendezvousClaim(c) {
            rendezvousFill(src)
            return .done(received: true, wake: nil)
        }
        let q = c.pointee.qcount.load(ordering: .relaxed)
        // A live receiver waits only on an empty buffer (Go's invariant),
        // so a non-empty one needs no look at `recvq`.
        if q == 0, c.state.pointee.recvq.first != nil, let r = c.state.pointee.recvq.dequeueClaiming() {
            // Direct hand-off: the receiver's storage is valid until it wakes.
            r.elem.assumingMemoryBound(to: Element.self).moveInitialize(from: src, count: 1)
            r.sleeper.success = true
            return .done(received: true, wake: r.sleeper)
        }
        if q < c.pointee.dataqsiz {
            let x = c.state.pointee.sendx
            slot(x).moveInitialize(from: src, count: 1)
            c.state.pointee.sendx = x + 1 == c.pointee.dataqsiz ? 0 : x + 1
            c.pointee.qcount.store(q + 1, ordering: .relaxed)
            return .done(received: true, wake: nil)
        }
        return .notReady
    }

    /// One receive step under the lock (Go's `chanrecv` after locking):
    /// the end of a closed, drained channel; else a blocked sender's value
    /// (through the buffer's head when buffered); else the buffer's head.
    /// On `.done(received: true, …)` `dst` holds the value.
    @inlinable
    func recvLocked(_ dst: UnsafeMutablePointer<Element>) -> GoChanStep {
        let c = control
        let q = c.pointee.qcount.load(ordering: .relaxed)
        if c.pointee.closed.load(ordering: .relaxed) {
            if q == 0 { return .done(received: false, wake: nil) }
        } else if q == c.pointee.dataqsiz, c.state.pointee.sendq.first != nil,
                  let s = c.state.pointee.sendq.dequeueClaiming() {
            // A live sender waits only on a full buffer (Go's invariant).
            let src = s.elem.assumingMemoryBound(to: Element.self)
            if c.pointee.dataqsiz == 0 {
                dst.moveInitialize(from: src, count: 1)
            } else {
                // Full buffer: take the head, the sender's value becomes the
                // tail (the same slot), and the ring turns by one.
                let x = c.state.pointee.recvx
                dst.moveInitialize(from: slot(x), count: 1)
                slot(x).moveInitialize(from: src, count: 1)
                let next = x + 1 == c.pointee.dataqsiz ? 0 : x + 1
                c.state.pointee.recvx = next
                c.state.pointee.sendx = next
            }
            s.sleeper.success = true
            return .done(received: true, wake: s.sleeper)
        }
        if q > 0 {
            let x = c.state.pointee.recvx
            dst.moveInitialize(from: slot(x), count: 1)
            c.state.pointee.recvx = x + 1 == c.pointee.dataqsiz ? 0 : x + 1
            c.pointee.qcount.store(q - 1, ordering: .relaxed)
            return .done(received: true, wake: nil)
        }
        return .notReady
    }

    /// Spins while a buffered channel stays full (send) or empty (receive)
    /// and open, so that a partner running on another core can make room
    /// before this thread queues itself. Buffered channels only: on an
    /// unbuffered one both sides would spin waiting for the other to queue,
    /// so a blocked operation queues at once (and spins in `park`).
    ///
    /// It waits for a batch, not a single slot: a blocked sender returns
    /// when the receiver has drained the buffer, a blocked receiver when the
    /// sender has filled it, or as soon as the partner stops (the count did
    /// not move for one poll), or the budget runs out. Producer and consumer
    /// then take turns, each running a batch on a channel whose cache lines
    /// stay in its core, instead of moving the control block's line between
    /// the cores at every element (which costs ~150 ns on these VMs, Go's
    /// channel gets the same effect by running both goroutines on one P).
    /// The count is polled every ~1 µs, so the spinner seldom steals the
    /// line from the partner. Only the wait's timing changes, never what it
    /// completes: once it returns the operation proceeds as in Go.
    @inlinable
    func spinWhileBlocked(send: Bool) {
        let c = control
        let cap = c.pointee.dataqsiz
        GoChanSpin.spinForBatch(c, blockedCount: send ? cap : 0, batchCount: send ? 0 : cap)
    }

    /// Blocking send of the value at `src` (moved out on return).
    @inlinable
    func sendBlocking(_ src: UnsafeMutablePointer<Element>) {
        let c = control
        // A receiver waiting in the rendezvous slot takes the value without the lock.
        if Self.usesRendezvous, c.pointee.dataqsiz == 0, goChanRendezvousClaim(c) {
            rendezvousFill(src)
            return
        }
        c.pointee.lock.lock()
        var step = sendLocked(src)
        if case .notReady = step, c.pointee.dataqsiz != 0 {
            c.pointee.lock.unlock()
            spinWhileBlocked(send: true)
            c.pointee.lock.lock()
            step = sendLocked(src)
        }
        switch step {
        case .done(_, let wake):
            c.pointee.lock.unlock()
            wake?.wake()
            return
        case .sendOnClosed:
            c.pointee.lock.unlock()
            goChanPanic("send on closed channel")
        case .notReady:
            if !goChanParkThreadLocked(c, elem: UnsafeMutableRawPointer(src), isSend: true) {
                goChanPanic("send on closed channel")
            }
        }
    }

    /// Blocking receive into `dst`; returns whether a value was received.
    @inlinable
    func receiveBlocking(_ dst: UnsafeMutablePointer<Element>) -> Bool {
        let c = control
        c.pointee.lock.lock()
        var step = recvLocked(dst)
        if case .notReady = step, c.pointee.dataqsiz != 0 {
            c.pointee.lock.unlock()
            spinWhileBlocked(send: false)
            c.pointee.lock.lock()
            step = recvLocked(dst)
        }
        switch step {
        case .done(let received, let wake):
            c.pointee.lock.unlock()
            wake?.wake()
            return received
        case .notReady, .sendOnClosed:
            // First in line on an unbuffered channel: wait in the rendezvous slot.
            if Self.usesRendezvous, c.pointee.dataqsiz == 0, c.state.pointee.recvq.first == nil,
               c.pointee.rendezvousState.load(ordering: .relaxed) == GoChanRendezvous.empty {
                c.pointee.rendezvousState.store(GoChanRendezvous.receiverWaits, ordering: .relaxed)
                switch goChanRendezvousReceive(c, elem: UnsafeMutableRawPointer(dst)) {
                case .filled(var bits):
                    // The bits own the element (a reference's count included): move it out.
                    withUnsafeMutableBytes(of: &bits) { raw in
                        raw.baseAddress!.withMemoryRebound(to: Element.self, capacity: 1) {
                            dst.moveInitialize(from: $0, count: 1)
                        }
                    }
                    return true
                case .closed:
                    return false
                case .queued(let received):
                    return received
                }
            }
            return goChanParkThreadLocked(c, elem: UnsafeMutableRawPointer(dst), isSend: false)
        }
    }

    /// Whether a receiver may wait in the rendezvous slot: elements of at
    /// most 8 bytes (integers, floats, pointers, class references, small
    /// structs) travel as the bits of one atomic word, moved, so a
    /// reference's ownership goes with them (see ``GoChanRendezvous``).
    @inlinable
    static var usesRendezvous: Bool {
        MemoryLayout<Element>.size <= 8 && MemoryLayout<Element>.alignment <= 8
    }

    /// Moves the value at `src` into the rendezvous slot this thread claimed
    /// (``goChanRendezvousClaim(_:)``) and publishes it.
    @inlinable
    func rendezvousFill(_ src: UnsafeMutablePointer<Element>) {
        var bits: UInt64 = 0
        withUnsafeMutableBytes(of: &bits) { raw in
            raw.baseAddress!.withMemoryRebound(to: Element.self, capacity: 1) { $0.moveInitialize(from: src, count: 1) }
        }
        control.pointee.rendezvousBits.store(bits, ordering: .relaxed)
        control.pointee.rendezvousState.store(GoChanRendezvous.filled, ordering: .releasing)
    }
}

/// Sound for every element type: values cross only as `sending` (see the
/// type's documentation), and the channel's own state is guarded by its lock.
extension GoChan: @unchecked Sendable {}

extension GoChan: Hashable {
    /// Whether `lhs` and `rhs` are the same channel (Go's `==` on channels).
    @inlinable
    public static func == (lhs: GoChan, rhs: GoChan) -> Bool { lhs === rhs }

    /// Hashes the channel's identity, consistently with `==`.
    @inlinable
    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(self))
    }
}

/// Moves the value out of `p` as a value the caller owns alone. Every
/// channel storage slot holds a value that its sender gave up (`sending`),
/// and no one else can reach it once it is moved out, which the compiler
/// cannot see through the raw storage.
@inlinable @inline(__always)
func goChanMoveOut<T>(_ p: UnsafeMutablePointer<T>) -> sending T {
    nonisolated(unsafe) let value = p.move()
    return value
}
