import CSpanAlloc
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// The channel's control block: Go's hchan, laid out in SpanAlloc memory.
//
// Invariants (all under `lock`, as in Go's chan.go):
//   - at most one of `sendq` and `recvq` holds waiters that can still be
//     claimed, except that one select may wait on both queues of the same
//     channel;
//   - buffered channel: `qcount > 0` implies `recvq` holds no claimable
//     waiter; `qcount < dataqsiz` implies `sendq` holds no claimable waiter;
//   - unbuffered channel: `qcount == 0` always;
//   - the live buffer slots are `recvx, recvx+1, ... (mod dataqsiz)`,
//     `qcount` of them; `sendx == (recvx + qcount) mod dataqsiz`;
//   - `closed` implies `sendq` holds no claimable waiter (close wakes them).
//   - the rendezvous slot (`GoChanRendezvous`) is `empty` on a buffered
//     channel; `receiverWaits` means a receiver waits there, first in line
//     before every receiver in `recvq`, and no claimable sender is queued.
//     Senders move it on without the lock (`receiverWaits` → `filling` →
//     `filled`, one compare-and-swap), the receiver from `filled`/`closed`
//     back to `empty`; every other change is made under the lock.
// A waiter whose sleeper was claimed elsewhere (the other arm of a select, a
// cancellation, a timeout) may stay queued until its owner or the next
// dequeue drops it; it is never matched.

/// Bytes reserved for the control block, Go 1.27's `hchanSize` on amd64.
@usableFromInline let goChanControlSize = 112

/// Go's `maxAlloc` on 64-bit Linux: the largest allocation makechan accepts.
@usableFromInline let goChanMaxAlloc = 1 << 48

/// Go's hchan, first half: the lock, the atomics read without it, and the
/// immutable shape. Only ever borrowed, never modified in place, so that
/// (for ThreadSanitizer as for the language) no thread writes this memory
/// except through atomics; the fields changed under the lock are in
/// ``GoChanState``, right after it (see `UnsafeMutablePointer.state`).
///
/// It lives at the start of a SpanAlloc block (see ``GoChan/init(capacity:)``)
/// and is only reached through an `UnsafeMutablePointer`. `closed` and
/// `qcount` are atomics so that `count`, the spin-before-park checks and
/// the non-blocking fast paths may read them without the lock (Go reads them
/// with plain loads); they are written only under the lock.
@usableFromInline
struct GoChanControl: ~Copyable {
    /// Protects every field below (Go's `lock`).
    @usableFromInline let lock = GoChanLock()
    /// Set once by `close()`; written under `lock`, read anywhere.
    @usableFromInline let closed = Atomic<Bool>(false)
    /// Whether `buf` is a block of its own (pointer-holding elements);
    /// immutable, read at deinit.
    @usableFromInline let bufIsSeparate: Bool
    /// The rendezvous slot's state (see ``GoChanRendezvous``); with
    /// `rendezvousBits`, in the same 16 bytes as the lock, so one cache line
    /// carries a whole hand-off whatever the block's alignment.
    @usableFromInline let rendezvousState = Atomic<UInt8>(GoChanRendezvous.empty)
    /// The element a sender hands to the rendezvous receiver, as bits (moved:
    /// they own a reference element until the receiver moves it out).
    @usableFromInline let rendezvousBits = Atomic<UInt64>(0)
    /// Elements in the buffer (Go's `qcount`); written under `lock`, read anywhere.
    @usableFromInline let qcount = Atomic<Int>(0)
    /// Buffer capacity in elements (Go's `dataqsiz`); immutable.
    @usableFromInline let dataqsiz: Int
    /// First buffer slot; the control block itself when nothing was allocated
    /// for the buffer (Go's `raceaddr`). Immutable.
    @usableFromInline let buf: UnsafeMutableRawPointer
    /// Bytes between slots: the element's stride, 0 for zero-size elements
    /// (below 64 KiB: makechan refuses larger elements). Immutable.
    @usableFromInline let elemStride: UInt32
    /// How long a blocked thread spins before parking, in ns: doubled when a
    /// spin ends with the partner's answer, halved when it ends in a park
    /// (see ``GoChanSpin``). A hint, read and written without the lock.
    @usableFromInline let spinBudget = Atomic<UInt32>(UInt32(GoChanSpin.initialBudget))

    @usableFromInline
    init(dataqsiz: Int, buf: UnsafeMutableRawPointer, elemStride: Int, bufIsSeparate: Bool) {
        self.dataqsiz = dataqsiz
        self.buf = buf
        self.elemStride = UInt32(elemStride)
        self.bufIsSeparate = bufIsSeparate
    }
}

/// Go's hchan, second half: the fields read and written only under the
/// channel lock.
@usableFromInline
struct GoChanState {
    /// Next slot to fill (Go's `sendx`).
    @usableFromInline var sendx = 0
    /// Next slot to drain (Go's `recvx`).
    @usableFromInline var recvx = 0
    /// Blocked receivers, FIFO (Go's `recvq`).
    @usableFromInline var recvq = GoChanWaitQueue()
    /// Blocked senders, FIFO (Go's `sendq`).
    @usableFromInline var sendq = GoChanWaitQueue()

    @usableFromInline init() {}
}

/// The rendezvous slot of an unbuffered channel of elements of at most 8
/// bytes (a class reference travels as its bits, with its ownership):
/// `rendezvousState` and `rendezvousBits` in the control block, next to the
/// lock.
///
/// A thread that must wait to receive, when no receiver is queued before it,
/// waits here instead of in `recvq`: under the lock it sets `receiverWaits`,
/// then spins on the state. A sender claims the slot with one
/// compare-and-swap (`receiverWaits` → `filling`, no lock: the swap is the
/// send's linearization point, and `close()` can only change
/// `receiverWaits` the same way), stores the element's bits and publishes
/// `filled`; the receiver takes the bits and sets `empty`. A hand-off then
/// moves one cache line each way, where the queue path moves about seven
/// (lock, queue, waiter, sleeper, value slot, park word...): on far-apart
/// vCPUs ~0.4 µs per round trip instead of ~1.7 µs. A receiver whose spin
/// budget runs out swaps `receiverWaits` → `empty` under the lock and moves
/// to the head of `recvq` (every waiter there arrived after it), then parks
/// as usual, so FIFO order and all of Go's rules are those of the queue
/// path: the rendezvous receiver is simply the first receiver in line.
/// `close()` swaps `receiverWaits` → `closed`; a send that claimed the slot
/// first completes first.
@usableFromInline
enum GoChanRendezvous {
    @usableFromInline static let empty: UInt8 = 0
    @usableFromInline static let receiverWaits: UInt8 = 1
    @usableFromInline static let filled: UInt8 = 2
    @usableFromInline static let closed: UInt8 = 3
    /// A sender claimed the slot and is storing the bits.
    @usableFromInline static let filling: UInt8 = 4
}

/// Offset of ``GoChanState`` in the control block: right after
/// ``GoChanControl`` (48 bytes), so that everything a buffered send or
/// receive touches without waiters (lock, closed, qcount, buf, stride,
/// dataqsiz, sendx, recvx) shares the block's first 64-byte cache line, the
/// one line that moves between the producer's and the consumer's cores.
@usableFromInline let goChanStateOffset = 48

extension UnsafeMutablePointer where Pointee == GoChanControl {
    /// The lock-protected half of the control block.
    @inlinable
    var state: UnsafeMutablePointer<GoChanState> {
        (UnsafeMutableRawPointer(self) + goChanStateOffset).assumingMemoryBound(to: GoChanState.self)
    }

    /// Initializes both parts of a control block.
    @usableFromInline
    func initializeControl(dataqsiz: Int, buf: UnsafeMutableRawPointer, elemStride: Int, bufIsSeparate: Bool) {
        precondition(MemoryLayout<GoChanControl>.size <= goChanStateOffset
                     && goChanStateOffset + MemoryLayout<GoChanState>.size <= goChanControlSize,
                     "GoChan: control block layout exceeds hchanSize")
        initialize(to: GoChanControl(dataqsiz: dataqsiz, buf: buf, elemStride: elemStride, bufIsSeparate: bufIsSeparate))
        (UnsafeMutableRawPointer(self) + goChanStateOffset).bindMemory(to: GoChanState.self, capacity: 1)
            .initialize(to: GoChanState())
    }

    /// Deinitializes both parts (the queues and the slot must be empty).
    @usableFromInline
    func deinitializeControl() {
        state.deinitialize(count: 1)
        deinitialize(count: 1)
    }
}

/// The channel lock: a test-and-test-and-set word.
///
/// Critical sections are a few dozen instructions (a ring-buffer step or a
/// queue splice plus one element move); nothing blocks or calls the OS while
/// holding it, since wake-ups run after unlocking. So waiting for it spins,
/// then yields the CPU (the holder may have been preempted on an
/// oversubscribed machine), then sleeps in short naps.
@usableFromInline
struct GoChanLock: ~Copyable {
    @usableFromInline let word = Atomic<UInt32>(0)

    @usableFromInline init() {}

    @inlinable
    func lock() {
        if word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged { return }
        lockSlow()
    }

    @inlinable
    func unlock() {
        word.store(0, ordering: .releasing)
    }

    @usableFromInline @inline(never)
    func lockSlow() {
        var attempt = 0
        while true {
            if word.load(ordering: .relaxed) == 0,
               word.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged {
                return
            }
            attempt += 1
            // ~1,000 paused reads (tens of µs at most) cover a critical
            // section run by another core, even one that missed a few cache
            // lines; after that the holder is likely descheduled, so give it
            // the CPU.
            if attempt < 128 {
                continue
            }
            if attempt < 128 + 1_000 {
                sched_yield()
            } else {
                var ts = timespec(tv_sec: 0, tv_nsec: 20_000)
                nanosleep(&ts, nil)
            }
        }
    }
}

/// A FIFO of waiters (Go's `waitq` of sudogs), linked through the waiters.
///
/// Each queued waiter is retained once by the queue; `dequeueClaiming()`
/// hands that reference to the caller.
@usableFromInline
struct GoChanWaitQueue {
    @usableFromInline var first: Unmanaged<GoChanWaiter>?
    @usableFromInline var last: Unmanaged<GoChanWaiter>?

    @usableFromInline init() {}

    /// Whether no waiter is queued (claimable or not).
    var isEmpty: Bool { first == nil }

    /// Appends `w`; it must not be queued anywhere.
    @usableFromInline
    mutating func enqueue(_ w: GoChanWaiter) {
        let u = Unmanaged.passRetained(w)
        w.prev = last
        w.next = nil
        if let l = last {
            l._withUnsafeGuaranteedRef { $0.next = u }
        } else {
            first = u
        }
        last = u
        w.queued = true
    }

    /// Puts `w` at the head; it must not be queued anywhere.
    mutating func enqueueFirst(_ w: GoChanWaiter) {
        let u = Unmanaged.passRetained(w)
        w.prev = nil
        w.next = first
        if let f = first {
            f._withUnsafeGuaranteedRef { $0.prev = u }
        } else {
            last = u
        }
        first = u
        w.queued = true
    }

    /// Unlinks `w` if it is queued here, dropping the queue's reference.
    mutating func remove(_ w: GoChanWaiter) {
        guard w.queued else { return }
        let u = Unmanaged.passUnretained(w)
        if let p = w.prev { p._withUnsafeGuaranteedRef { $0.next = w.next } } else { first = w.next }
        if let n = w.next { n._withUnsafeGuaranteedRef { $0.prev = w.prev } } else { last = w.prev }
        w.prev = nil
        w.next = nil
        w.queued = false
        u.release()
    }

    /// Removes the first waiter and returns it (with the queue's reference).
    private mutating func popFirst() -> GoChanWaiter? {
        guard let u = first else { return nil }
        let w = u.takeRetainedValue()
        first = w.next
        if let n = w.next { n._withUnsafeGuaranteedRef { $0.prev = nil } } else { last = nil }
        w.next = nil
        w.prev = nil
        w.queued = false
        return w
    }

    /// Removes waiters from the front until one whose sleeper this call
    /// claims (Go's `dequeue`, which skips selects that another case already
    /// won). The returned waiter's sleeper records `caseIndex` as fired; the
    /// caller fills in `success` and wakes it after unlocking.
    @usableFromInline
    mutating func dequeueClaiming() -> GoChanWaiter? {
        while let w = popFirst() {
            if w.sleeper.claim(.fired) {
                w.sleeper.firedIndex = w.caseIndex
                return w
            }
        }
        return nil
    }

    /// Removes every waiter, claiming those that can be claimed, and marks
    /// them unsuccessful (close). Returns their sleepers to wake.
    mutating func drainClaiming(into sleepers: inout [GoChanSleeper]) {
        while let w = dequeueClaiming() {
            w.sleeper.success = false
            sleepers.append(w.sleeper)
        }
    }
}

/// Locks `controls` (sorted by address, without duplicates) in order: the
/// global order that keeps two selects from deadlocking (Go's `sellock`).
@usableFromInline
func goChanLockAll(_ controls: [UnsafeMutablePointer<GoChanControl>]) {
    for c in controls { c.pointee.lock.lock() }
}

/// Unlocks in reverse order (Go's `selunlock`).
@usableFromInline
func goChanUnlockAll(_ controls: [UnsafeMutablePointer<GoChanControl>]) {
    for c in controls.reversed() { c.pointee.lock.unlock() }
}

/// What a locked channel step did; the caller unlocks, then acts on it.
@usableFromInline
enum GoChanStep {
    /// The operation cannot complete now.
    case notReady
    /// The operation completed; `received` is false for a receive that saw
    /// a closed, drained channel. `wake` (if any) must be woken after unlocking.
    case done(received: Bool, wake: GoChanSleeper?)
    /// A send found the channel closed: the caller unlocks and traps.
    case sendOnClosed
}

/// Queues a waiter for the calling thread on a locked channel, unlocks it
/// and parks until a partner (or close) completes the operation. Returns
/// the sleeper's `success`. Not generic, so every channel shares it.
/// `first`: queue at the head (a rendezvous receiver giving up its spin).
@usableFromInline @inline(never)
func goChanParkThreadLocked(_ c: UnsafeMutablePointer<GoChanControl>, elem: UnsafeMutableRawPointer,
                            isSend: Bool, first: Bool = false) -> Bool {
    let w = GoChanSleeper.threadWaiter(control: c, elem: elem, isSend: isSend)
    let sleeper = w.sleeper
    if isSend {
        c.state.pointee.sendq.enqueue(w)
    } else if first {
        c.state.pointee.recvq.enqueueFirst(w)
    } else {
        c.state.pointee.recvq.enqueue(w)
    }
    c.pointee.lock.unlock()
    _ = sleeper.park(adapting: c)
    return sleeper.success
}

/// Claims channel `c`'s rendezvous slot for a send: true when a receiver
/// waited there and this call now owns the slot (state `filling`); the
/// caller stores the bits and publishes `filled`. No lock needed.
@inlinable @inline(__always)
func goChanRendezvousClaim(_ c: UnsafeMutablePointer<GoChanControl>) -> Bool {
    c.pointee.rendezvousState.load(ordering: .relaxed) == GoChanRendezvous.receiverWaits
        && c.pointee.rendezvousState.compareExchange(expected: GoChanRendezvous.receiverWaits,
                                                     desired: GoChanRendezvous.filling,
                                                     ordering: .acquiring).exchanged
}

/// How a rendezvous wait ended (see ``goChanRendezvousReceive(_:elem:)``).
@usableFromInline
enum GoChanRendezvousEnd {
    /// A sender filled the slot with these bits (the slot is `empty` again).
    case filled(UInt64)
    /// The channel was closed (the slot is `empty` again); nothing received.
    case closed
    /// The receiver moved to the queue and parked; `received` as for
    /// ``goChanParkThreadLocked(_:elem:isSend:first:)`` (the value, if
    /// any, is at `elem`).
    case queued(received: Bool)
}

/// The receiving side of the rendezvous slot, entered with the channel
/// locked and the slot just set to `receiverWaits` by the caller: unlocks,
/// spins for a sender (or close), and if none comes within the budget moves
/// to the head of `recvq` and parks. Not generic.
@usableFromInline @inline(never)
func goChanRendezvousReceive(_ c: UnsafeMutablePointer<GoChanControl>, elem: UnsafeMutableRawPointer)
    -> GoChanRendezvousEnd {
    c.pointee.lock.unlock()
    /// Takes a filled or closed slot; nil while a receiver waits or a sender fills.
    func take() -> GoChanRendezvousEnd? {
        let st = c.pointee.rendezvousState.load(ordering: .acquiring)
        if st == GoChanRendezvous.filled {
            let bits = c.pointee.rendezvousBits.load(ordering: .relaxed)
            c.pointee.rendezvousState.store(GoChanRendezvous.empty, ordering: .releasing)
            return .filled(bits)
        }
        if st == GoChanRendezvous.closed {
            c.pointee.rendezvousState.store(GoChanRendezvous.empty, ordering: .releasing)
            return .closed
        }
        return nil
    }
    if var limit = GoChanSpin.acquireSlot(adapting: c) {
        let start = GoChanSpin.now()
        if let boost = GoChanSleeper.spinBoostDeadline(), boost &- start > limit { limit = boost &- start }
        var i = 0
        // The first look waits ~200 ns: the partner cannot answer sooner, and
        // a look while it is between its claim and its two stores takes the
        // line back from it (measured: 0.52-0.74 µs per round trip without
        // the wait, 0.35-0.62 µs with it; 6 or 24 pauses did worse).
        for _ in 0..<GoChanSpin.rendezvousFirstLookPauses { GoChanSpin.pause() }
        while true {
            if let end = take() {
                GoChanSpin.releaseSlot()
                GoChanSpin.spinPaid(c, limit)
                return end
            }
            GoChanSpin.pause()
            i &+= 1
            guard i & 15 == 0 else { continue }
            let elapsed = GoChanSpin.now() &- start
            if elapsed > GoChanSpin.yieldAfter { sched_yield() }
            if elapsed > limit { break }
        }
        GoChanSpin.releaseSlot()
        GoChanSpin.spinFailed(c, limit)
    }
    c.pointee.lock.lock()
    if c.pointee.rendezvousState.compareExchange(expected: GoChanRendezvous.receiverWaits,
                                                 desired: GoChanRendezvous.empty, ordering: .relaxed).exchanged {
        return .queued(received: goChanParkThreadLocked(c, elem: elem, isSend: false, first: true))
    }
    // A sender (or close) got there first: it is done or about to be.
    c.pointee.lock.unlock()
    while true {
        if let end = take() { return end }
        sched_yield()
    }
}

/// Go's panics; out of line to keep them off the fast paths.
@usableFromInline @inline(never)
func goChanPanic(_ message: StaticString) -> Never {
    fatalError("\(message)")
}

extension GoChan {
    /// Checks the control block's invariants under the lock (the list at the
    /// top of this file) and returns the first violation, or `nil`. For tests
    /// and debugging; never called by the channel itself.
    func _checkInvariants() -> String? {
        let c = control
        c.pointee.lock.lock()
        defer { c.pointee.lock.unlock() }
        let cap = c.pointee.dataqsiz
        let q = c.pointee.qcount.load(ordering: .relaxed)
        let st = c.state.pointee
        if q < 0 || q > cap { return "qcount \(q) outside 0...\(cap)" }
        if cap > 0 {
            if !(0..<cap).contains(st.sendx) || !(0..<cap).contains(st.recvx) {
                return "sendx \(st.sendx) or recvx \(st.recvx) outside the ring of \(cap)"
            }
            if st.sendx != (st.recvx + q) % cap { return "sendx \(st.sendx) != recvx \(st.recvx) + qcount \(q)" }
        } else if st.sendx != 0 || st.recvx != 0 {
            return "unbuffered channel moved its ring indices"
        }
        func scan(_ queue: GoChanWaitQueue, send: Bool) -> (live: Int, error: String?) {
            var live = 0
            var prev: Unmanaged<GoChanWaiter>? = nil
            var w = queue.first
            while let u = w {
                let waiter = u.takeUnretainedValue()
                if waiter.prev?.toOpaque() != prev?.toOpaque() { return (live, "broken prev link") }
                if !waiter.queued || waiter.isSend != send || waiter.control != c {
                    return (live, "waiter in the wrong queue")
                }
                if waiter.sleeper.outcome == .waiting { live += 1 }
                prev = u
                w = waiter.next
            }
            return (live, queue.last?.toOpaque() != prev?.toOpaque() ? "last does not end the list" : nil)
        }
        let (liveReceivers, e1) = scan(st.recvq, send: false)
        if let e1 { return "recvq: \(e1)" }
        let (liveSenders, e2) = scan(st.sendq, send: true)
        if let e2 { return "sendq: \(e2)" }
        if liveReceivers > 0 && q > 0 { return "\(liveReceivers) receiver(s) wait on a non-empty buffer" }
        if liveSenders > 0 && q < cap { return "\(liveSenders) sender(s) wait on a buffer with room" }
        if liveSenders > 0 && c.pointee.closed.load(ordering: .relaxed) { return "senders wait on a closed channel" }
        let rv = c.pointee.rendezvousState.load(ordering: .relaxed)
        if rv > GoChanRendezvous.filling { return "rendezvous state \(rv)" }
        if cap > 0 && rv != GoChanRendezvous.empty { return "a buffered channel used its rendezvous slot" }
        if rv == GoChanRendezvous.receiverWaits && liveSenders > 0 { return "a rendezvous receiver waits while senders are queued" }
        return nil
    }
}
