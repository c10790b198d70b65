import CSpanAlloc
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

    private var sem: UnsafeMutablePointer<sem_t>?

    // Task suspension; written under the locks of every channel in
    // `controls`, read by the claimer.
    let isAsync: Bool
    /// Resumed by the claimer: `asyncFiredSuccess` or `asyncFiredFailure`
    /// when a channel operation fired a case (its index is `firedIndex`),
    /// -1 when a cancellation or timeout won.
    var continuation: UnsafeContinuation<Int, Never>?
    /// Resumption values of a fired case: with `success` true or false. Negative,
    /// so that they never look like the case index of an immediate completion.
    static let asyncFiredSuccess = -3
    static let asyncFiredFailure = -2
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
            // The result travels with the resumption (see `asyncFiredSuccess`).
            continuation!.resume(returning: success ? GoChanSleeper.asyncFiredSuccess : GoChanSleeper.asyncFiredFailure)
        } else {
            switch parkState.exchange(2, ordering: .acquiringAndReleasing) {
            case 1:
                sem_post(sem!)
                GoChanSleeper.notePartnerWasParked()
            // The owner spins: hand its spinning slot back now rather than
            // when it notices, so that this thread, about to wait for the
            // answer, may spin in turn (a ping-pong's two threads take turns).
            case 3: GoChanSpin.releaseSlot()
            default: break
            }
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
    /// adapting the spin budget of channel `c` (selects: the fixed initial
    /// budget).
    ///
    /// `parkState` is 3 while the owner spins; a waker that finds 3 releases
    /// the owner's spinning slot, and the owner leaves 3 by a compare-and-swap
    /// back to 0 when its budget runs out, so the slot is released once.
    func park(deadline: timespec? = nil, adapting c: UnsafeMutablePointer<GoChanControl>? = nil) -> Bool {
        if var limit = GoChanSpin.acquireSlot(adapting: c) {
            let start = GoChanSpin.now()
            if let boost = GoChanSleeper.spinBoostDeadline(), boost &- start > limit { limit = boost &- start }
            if !parkState.compareExchange(expected: 0, desired: 3, ordering: .relaxed).exchanged {
                GoChanSpin.releaseSlot()          // woken before spinning
                return parkAfterSpinning(deadline: deadline)
            }
            var i = 0
            while parkState.load(ordering: .relaxed) == 3 {
                GoChanSpin.pause()
                i &+= 1
                guard i & 15 == 0 else { continue }
                let elapsed = GoChanSpin.now() &- start
                if elapsed > GoChanSpin.yieldAfter { sched_yield() }
                if elapsed > limit {
                    if parkState.compareExchange(expected: 3, desired: 0, ordering: .relaxed).exchanged {
                        GoChanSpin.releaseSlot()
                        GoChanSpin.spinFailed(c, limit)
                        return parkAfterSpinning(deadline: deadline)
                    }
                    break                          // woken at the last moment
                }
            }
            GoChanSpin.spinPaid(c, limit)
        }
        return parkAfterSpinning(deadline: deadline)
    }

    /// Until when (``GoChanSpin/now()``) the calling thread's next waits may
    /// spin past their budget: set when it woke a partner that had parked in
    /// the kernel. That partner answers no sooner than its wake-up latency;
    /// a waiter that parks after its normal budget would then be woken just
    /// as late by the answer, and the two would keep waking each other
    /// through the kernel for good. Spinning through one wake-up latency
    /// once brings both back to spinning.
    private var spinBoostUntil = 0

    /// Keeps `parkState` off the cache line(s) of the fields above: a
    /// spinning owner reads `parkState` all the time, and the waker's writes
    /// to `claimWord`, `firedIndex`, `success` and the reference count would
    /// each have to take that line back from the spinner (measured: a thread
    /// round trip of ~2 µs on far-apart vCPUs came mostly from such steals).
    private let lineGap: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    /// Thread parking: 0 = running, 1 = parked on `sem`, 2 = woken,
    /// 3 = spinning. The one field a spinning owner reads; declared last,
    /// after `lineGap`.
    private let parkState = Atomic<UInt32>(0)

    /// Records, for the calling thread, that it just woke a parked partner.
    static func notePartnerWasParked() {
        guard let p = pthread_getspecific(goChanSleeperKey) else { return }
        let s = Unmanaged<GoChanSleeper>.fromOpaque(p).takeUnretainedValue()
        s.spinBoostUntil = GoChanSpin.now() &+ GoChanSpin.wakeLatencyBudget
    }

    /// The calling thread's boost deadline (see `spinBoostUntil`), if any.
    static func spinBoostDeadline() -> Int? {
        guard let p = pthread_getspecific(goChanSleeperKey) else { return nil }
        let until = Unmanaged<GoChanSleeper>.fromOpaque(p).takeUnretainedValue().spinBoostUntil
        return until == 0 ? nil : until
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

/// Bounded spinning before a thread parks.
///
/// A hand-off between two threads running on different cores completes in
/// a few hundred nanoseconds, far less than a semaphore sleep and wake-up
/// (about 25 µs on a virtual machine, where waking an idle vCPU is a
/// hypervisor round trip), so a waiter first spins. The budget follows the
/// classic competitive argument: spinning for a fraction of what a park
/// costs adds at most that fraction to a wait that ends in a park anyway,
/// and saves the whole park whenever the partner answers in time.
///
/// Three refinements keep spinning from working against the partner:
/// - a spinner polls (its own wake-up word every `pause`, a channel's count
///   every `pollPauses`) and, after `yieldAfter`, yields its
///   CPU at every poll: the partner may be queued behind it on the same CPU
///   (the scheduler places a woken thread next to its waker), where plain
///   spinning would only delay it;
/// - at most as many threads spin as there are CPUs;
/// - a thread that had to wake a partner parked in the kernel spins up to
///   `wakeLatencyBudget` for the answer (see `GoChanSleeper.spinBoostUntil`),
///   otherwise the two would keep waking each other through the kernel.
/// Each channel keeps a budget between `minBudget` and `maxBudget`, doubled
/// when a spin paid off and halved when it ended in a park.
@usableFromInline
enum GoChanSpin {
    /// Starting budget: covers a partner's turn-around (0.3-2 µs here,
    /// depending on where the host runs the vCPUs) and a partner's batch of
    /// 128 buffered operations, with margin.
    @usableFromInline static let initialBudget = 8_000
    /// Largest budget: two thirds of a park and wake-up on these VMs.
    static let maxBudget = 16_000
    /// Smallest budget: never below two `yieldAfter`s, so that a partner on
    /// the same CPU gets turns before the spinner parks.
    static let minBudget = 8_000
    /// How long a thread that woke a parked partner spins for the answer:
    /// one futex wake-up of an idle vCPU (about 25 µs measured here) with margin.
    static let wakeLatencyBudget = 50_000
    /// After this long a spinner yields its CPU at every poll (see above;
    /// with the partner on another CPU a yield returns at once).
    static let yieldAfter = 4_000
    /// Pauses between two looks at a spun-on count: ~1 µs here, so the
    /// spinner seldom steals the cache line the partner is writing.
    static let pollPauses = 64
    /// Pauses before a rendezvous receiver's first look at the slot (~200 ns;
    /// see `goChanRendezvousReceive`).
    static let rendezvousFirstLookPauses = 12
    /// At most one spinner per online CPU.
    static let maxSpinners: Int = Swift.max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    private static let spinners = Atomic<Int>(0)

    /// Takes a spinning slot and returns the budget in ns, or `nil` when
    /// all slots are taken (then the caller parks at once).
    @usableFromInline
    static func acquireSlot(adapting c: UnsafeMutablePointer<GoChanControl>?) -> Int? {
        let limit = c.map { Int($0.pointee.spinBudget.load(ordering: .relaxed)) } ?? initialBudget
        if spinners.wrappingAdd(1, ordering: .relaxed).newValue > maxSpinners {
            spinners.wrappingSubtract(1, ordering: .relaxed)
            return nil
        }
        return limit
    }

    /// Gives a spinning slot back.
    @usableFromInline
    static func releaseSlot() { spinners.wrappingSubtract(1, ordering: .relaxed) }

    /// The spin ended in a park: halve the budget.
    @usableFromInline
    static func spinFailed(_ c: UnsafeMutablePointer<GoChanControl>?, _ limit: Int) {
        if limit > minBudget { c?.pointee.spinBudget.store(UInt32(Swift.max(minBudget, limit / 2)), ordering: .relaxed) }
    }

    /// The spin saw the partner's answer: double the budget.
    @usableFromInline
    static func spinPaid(_ c: UnsafeMutablePointer<GoChanControl>?, _ limit: Int) {
        if limit < maxBudget { c?.pointee.spinBudget.store(UInt32(Swift.min(maxBudget, limit * 2)), ordering: .relaxed) }
    }

    /// The batch wait of `GoChan.spinWhileBlocked(send:)`: spins while
    /// channel `c`'s count is `blockedCount` and the channel is open, then on
    /// until the count reaches `batchCount`, stops moving between two polls,
    /// or the budget runs out. Adapts the channel's budget: paid when the
    /// wait ended unblocked.
    @usableFromInline
    static func spinForBatch(_ c: UnsafeMutablePointer<GoChanControl>, blockedCount: Int, batchCount: Int) {
        var last = c.pointee.qcount.load(ordering: .relaxed)
        if last != blockedCount || c.pointee.closed.load(ordering: .relaxed) { return }
        guard let limit = acquireSlot(adapting: c) else { return }
        defer { releaseSlot() }
        let start = now()
        while true {
            for _ in 0..<pollPauses { pause() }
            let elapsed = now() &- start
            if elapsed > yieldAfter { sched_yield() }
            let q = c.pointee.qcount.load(ordering: .relaxed)
            if c.pointee.closed.load(ordering: .relaxed) || q == batchCount || (q == last && q != blockedCount) {
                break
            }
            last = q
            if elapsed > limit {
                if q == blockedCount { spinFailed(c, limit); return }
                break
            }
        }
        spinPaid(c, limit)
    }

    /// The CPU's spin-wait hint (x86 `pause`, arm64 `yield`), ~16 ns here.
    @usableFromInline @inline(__always)
    static func pause() {
        sa_cpu_relax()
    }

    /// CLOCK_MONOTONIC in ns (vDSO, ~20 ns).
    @usableFromInline
    static func now() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec &* 1_000_000_000 &+ ts.tv_nsec
    }
}
