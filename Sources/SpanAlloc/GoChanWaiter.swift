import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One blocked channel operation (Go's sudog): which sleeper it belongs to,
/// which select case it is, and where its element lives.
///
/// A blocking send points `elem` at the value to send; a blocking receive
/// points it at uninitialized storage the value is moved into. The memory
/// stays valid until the sleeper is woken, because its owner is blocked.
@usableFromInline
final class GoChanWaiter {
    /// The thread or task to wake; shared by every case of one select.
    /// Unowned: a queued waiter's sleeper is alive, because its owner is
    /// blocked until it has withdrawn every waiter it queued (or a claimer
    /// did). A claimer takes a strong reference before unlocking.
    @usableFromInline unowned(unsafe) let sleeper: GoChanSleeper
    /// The select case (0 for a plain send or receive).
    let caseIndex: Int
    /// Value to send, or destination of the received value.
    @usableFromInline var elem: UnsafeMutableRawPointer
    /// The channel whose queue this waiter joins.
    var control: UnsafeMutablePointer<GoChanControl>
    /// Whether it waits in `sendq` (else `recvq`).
    var isSend: Bool
    /// Queue links; under the channel lock.
    var next: Unmanaged<GoChanWaiter>?
    var prev: Unmanaged<GoChanWaiter>?
    /// Whether the waiter is in its channel's queue; under the channel lock.
    var queued = false

    init(sleeper: GoChanSleeper, caseIndex: Int, elem: UnsafeMutableRawPointer,
         control: UnsafeMutablePointer<GoChanControl>, isSend: Bool) {
        self.sleeper = sleeper
        self.caseIndex = caseIndex
        self.elem = elem
        self.control = control
        self.isSend = isSend
    }

    /// Unlinks the waiter from its channel's queue; the channel must be locked.
    func unlinkLocked() {
        if isSend { control.state.pointee.sendq.remove(self) } else { control.state.pointee.recvq.remove(self) }
    }
}

/// What ended a wait. Stored in the sleeper's claim word, so whoever wins the
/// claim also publishes why.
@usableFromInline
enum GoChanOutcome: UInt8 {
    case waiting = 0
    /// A channel operation completed one of the cases.
    case fired = 1
    /// The waiting task was cancelled first.
    case cancelled = 2
    /// The select's timeout expired first.
    case timedOut = 3
}

/// The thread or task behind one blocking operation or one select (Go's g
/// with its `selectDone` flag): its waiters, how to wake it and how it ended.
///
/// Exactly one party claims a sleeper (a compare-and-swap on `claimWord`):
/// a channel operation that dequeues one of its waiters, a cancellation, or
/// a timeout. Only the winner writes the result fields and wakes the owner,
/// so a value is never delivered to an operation that was also cancelled.
@usableFromInline
final class GoChanSleeper: @unchecked Sendable {
    /// `GoChanOutcome.rawValue`; leaves `waiting` exactly once.
    let claimWord = Atomic<UInt8>(GoChanOutcome.waiting.rawValue)
    /// Which case fired; written by the claimer before waking.
    var firedIndex = -1
    /// Fired receive: a value was delivered (false: the channel was closed).
    /// Fired send: the value was taken (false: the channel was closed).
    @usableFromInline var success = false

    // Thread parking: 0 = running, 1 = parked on `sem`, 2 = woken.
    private let parkState = Atomic<UInt32>(0)
    private var sem: UnsafeMutablePointer<sem_t>?

    // Task suspension; written under the locks of every channel in
    // `controls`, read by the claimer.
    let isAsync: Bool
    /// Resumed with -1 by a claimer (the result is in the sleeper).
    var continuation: UnsafeContinuation<Int, Never>?
    /// The owner's waiters are queued and `continuation` is set.
    var suspended = false
    /// The waiters, for a cancellation or timeout to unlink. Set by
    /// `publish` before the sleeper is shared.
    private(set) var waiters: [GoChanWaiter] = []
    /// Their channels, sorted by address without duplicates (lock order).
    private(set) var controls: [UnsafeMutablePointer<GoChanControl>] = []
    /// The select arms, which keep the channels in `controls` alive for a
    /// cancellation handler that runs after the select returned.
    private var owners: [AnyObject] = []
    /// A plain async send or receive (no arrays): its one waiter, and the
    /// channel, kept alive for a cancellation handler that runs late.
    private var single: (waiter: GoChanWaiter, channel: AnyObject)?

    init(isAsync: Bool) { self.isAsync = isAsync }

    /// ``publish(waiters:controls:owners:)`` for a single send or receive.
    func publishSingle(waiter: GoChanWaiter, channel: AnyObject) {
        single = (waiter, channel)
        claimWord.store(GoChanOutcome.waiting.rawValue, ordering: .releasing)
    }

    /// Records the waiters and channels, then publishes them with a release
    /// store that every later claim reads from.
    func publish(waiters: [GoChanWaiter], controls: [UnsafeMutablePointer<GoChanControl>],
                 owners: [AnyObject]) {
        self.waiters = waiters
        self.controls = controls
        self.owners = owners
        claimWord.store(GoChanOutcome.waiting.rawValue, ordering: .releasing)
    }

    deinit {
        if let sem {
            sem_destroy(sem)
            sem.deallocate()
        }
    }

    /// How the wait ended (`waiting` while nobody claimed it).
    var outcome: GoChanOutcome {
        GoChanOutcome(rawValue: claimWord.load(ordering: .acquiring))!
    }

    /// Tries to end the wait with `outcome`; true for the one winner.
    func claim(_ outcome: GoChanOutcome) -> Bool {
        claimWord.compareExchange(expected: GoChanOutcome.waiting.rawValue, desired: outcome.rawValue,
                                  ordering: .acquiringAndReleasing).exchanged
    }

    /// Wakes the owner; called by the claimer after unlocking, while it still
    /// holds a reference to the sleeper (so the semaphore outlives `sem_post`).
    @usableFromInline
    func wake() {
        if isAsync {
            continuation!.resume(returning: -1)
        } else if parkState.exchange(2, ordering: .acquiringAndReleasing) == 1 {
            sem_post(sem!)
        }
    }

    /// Ends the wait with `reason` (cancellation or timeout) unless a channel
    /// claimed it first: unlinks every waiter and, for a suspended task,
    /// resumes it. Returns whether this call won.
    @discardableResult
    func interrupt(_ reason: GoChanOutcome) -> Bool {
        guard claim(reason) else { return false }
        let resume: Bool
        if let w = single?.waiter {
            w.control.pointee.lock.lock()
            w.unlinkLocked()
            resume = isAsync && suspended
            w.control.pointee.lock.unlock()
        } else {
            goChanLockAll(controls)
            for w in waiters { w.unlinkLocked() }
            resume = isAsync && suspended
            goChanUnlockAll(controls)
        }
        if resume { continuation!.resume(returning: -1) }
        return true
    }

    // MARK: Thread parking

    /// The waiter reused by ``threadWaiter(control:elem:isSend:)``.
    private var cachedWaiter: GoChanWaiter?

    /// A waiter for a plain blocking send or receive of the calling thread,
    /// whose sleeper is the thread's (see ``forCurrentThread()``): both are
    /// reused, so a hand-off allocates nothing. When the owner wakes, the
    /// claimer has dequeued the waiter and dropped it under the channel lock.
    static func threadWaiter(control: UnsafeMutablePointer<GoChanControl>, elem: UnsafeMutableRawPointer,
                             isSend: Bool) -> GoChanWaiter {
        let s = forCurrentThread()
        if let w = s.cachedWaiter {
            w.control = control
            w.elem = elem
            w.isSend = isSend
            return w
        }
        let w = GoChanWaiter(sleeper: s, caseIndex: 0, elem: elem, control: control, isSend: isSend)
        s.cachedWaiter = w
        return w
    }

    /// The calling thread's sleeper for plain blocking sends and receives,
    /// reset for a new wait: one per thread, kept in thread-local storage,
    /// so a hand-off allocates no sleeper and no semaphore.
    ///
    /// Reuse is safe because a single send or receive is claimed exactly
    /// once, and its claimer touches the sleeper after the `parkState`
    /// exchange only to post the semaphore the owner is still waiting on.
    static func forCurrentThread() -> GoChanSleeper {
        if let p = pthread_getspecific(goChanSleeperKey) {
            let s = Unmanaged<GoChanSleeper>.fromOpaque(p).takeUnretainedValue()
            s.claimWord.store(GoChanOutcome.waiting.rawValue, ordering: .relaxed)
            s.parkState.store(0, ordering: .relaxed)
            s.success = false
            s.firedIndex = -1
            return s
        }
        let s = GoChanSleeper(isAsync: false)
        pthread_setspecific(goChanSleeperKey, Unmanaged.passRetained(s).toOpaque())
        return s
    }

    /// Blocks the calling thread until `wake()`, or until `deadline`
    /// (CLOCK_REALTIME) passes. Returns whether it was woken. Spins first,
    /// adapting the spin budget of channel `c`.
    func park(deadline: timespec? = nil, adapting c: UnsafeMutablePointer<GoChanControl>) -> Bool {
        GoChanSpin.spin(adapting: c) { parkState.load(ordering: .relaxed) != 2 }
        return parkAfterSpinning(deadline: deadline)
    }

    /// ``park(deadline:adapting:)`` with the fixed initial spin budget (selects).
    func park(deadline: timespec? = nil) -> Bool {
        GoChanSpin.spin(adapting: nil) { parkState.load(ordering: .relaxed) != 2 }
        return parkAfterSpinning(deadline: deadline)
    }

    private func parkAfterSpinning(deadline: timespec?) -> Bool {
        while true {
            let state = parkState.load(ordering: .acquiring)
            if state == 2 { return true }
            if state == 0 {
                if sem == nil {
                    let s = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
                    sem_init(s, 0, 0)
                    sem = s
                }
                if !parkState.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged {
                    continue
                }
            }
            let rc: Int32
            if var d = deadline {
                rc = sem_timedwait(sem!, &d)
            } else {
                rc = sem_wait(sem!)
            }
            if rc != 0 && errno == ETIMEDOUT {
                return parkState.load(ordering: .acquiring) == 2
            }
        }
    }
}

/// The thread-local slot of ``GoChanSleeper/forCurrentThread()``; its
/// destructor releases the thread's sleeper when the thread exits.
private let goChanSleeperKey: pthread_key_t = {
    var key = pthread_key_t()
    let rc = pthread_key_create(&key) { p in
        if let p { Unmanaged<GoChanSleeper>.fromOpaque(p).release() }
    }
    precondition(rc == 0, "GoChan: pthread_key_create failed")
    return key
}()

/// The CLOCK_REALTIME instant `timeout` from now (for `sem_timedwait`).
func goChanDeadline(after timeout: Duration) -> timespec {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let (secs, attos) = timeout.components
    var sec = Int(now.tv_sec) + Int(max(secs, 0))
    var nsec = Int(now.tv_nsec) + Int(max(attos, 0) / 1_000_000_000)
    if secs < 0 { sec = Int(now.tv_sec); nsec = Int(now.tv_nsec) }
    sec += nsec / 1_000_000_000
    nsec %= 1_000_000_000
    return timespec(tv_sec: sec, tv_nsec: nsec)
}

/// Bounded, adaptive spinning before a thread parks (Go's "spinning M"
/// policy plus glibc's adaptive mutex).
///
/// A hand-off between two threads running on different cores completes in
/// a few hundred nanoseconds, far less than a semaphore sleep and wake-up
/// (several microseconds, more on a loaded machine), so a waiter first
/// spins. Spinning only helps while the partner runs on another core: as
/// in Go, at most half the CPUs spin at once; and each channel keeps a spin
/// budget that doubles when spinning paid off and halves when it ended in a
/// park anyway, down to not spinning at all, so a machine too busy to run
/// both partners at once soon parks at once instead of burning the CPU the
/// partner needs (with an occasional full-length probe to notice when that
/// changes).
@usableFromInline
enum GoChanSpin {
    /// Starting and largest budget: covers a partner's turn-around (a few
    /// hundred ns) with margin and costs little next to a park/unpark pair
    /// (~5-10 µs).
    @usableFromInline static let initialBudget = 4_000
    static let maxBudget = 8_000
    /// Below this a spin is not worth its clock reads: the budget drops to
    /// 0 (park at once). Under a load that keeps the partners from running
    /// at the same time every spin fails, so spinning should cost nothing.
    static let minBudget = 250
    /// At budget 0, one park in `probeInterval` spins the initial budget
    /// instead (an average 125 ns per park), so a channel whose partners run
    /// at once again (the load went away) finds out and its budget grows back.
    static let probeInterval = 32
    private static let probes = Atomic<Int>(0)
    /// At most half the online CPUs spin at once (at least one).
    static let maxSpinners: Int = Swift.max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) / 2)
    private static let spinners = Atomic<Int>(0)

    /// Spins while `blocked()` holds, within the budget, if a spinning slot
    /// is free; returns at once otherwise. With a channel `c`, adapts its
    /// `spinBudget` to the outcome.
    @usableFromInline
    static func spin(adapting c: UnsafeMutablePointer<GoChanControl>?, while blocked: () -> Bool) {
        if !blocked() { return }
        var limit = c?.pointee.spinBudget.load(ordering: .relaxed) ?? initialBudget
        let probing = limit == 0
        if probing {
            if probes.wrappingAdd(1, ordering: .relaxed).newValue % probeInterval != 0 { return }
            limit = initialBudget
        }
        if spinners.wrappingAdd(1, ordering: .relaxed).newValue > maxSpinners {
            spinners.wrappingSubtract(1, ordering: .relaxed)
            return
        }
        defer { spinners.wrappingSubtract(1, ordering: .relaxed) }
        let start = now()
        var i = 0
        while blocked() {
            i &+= 1
            if i & 63 == 0 && now() &- start > limit {
                // A failed probe leaves the budget at 0.
                if !probing { c?.pointee.spinBudget.store(limit / 2 < minBudget ? 0 : limit / 2, ordering: .relaxed) }
                return
            }
        }
        if limit < maxBudget { c?.pointee.spinBudget.store(Swift.min(maxBudget, limit * 2), ordering: .relaxed) }
    }

    private static func now() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec &* 1_000_000_000 &+ ts.tv_nsec
    }
}
