import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One case of a `select(_:)`: a send or a receive on some channel,
/// with the code to run when it is the case chosen.
///
/// Make cases with ``GoChan/onReceive(_:)`` and ``GoChan/onSend(_:_:)``.
/// A case is used by one `select` call. A case is not `Sendable`: it is
/// made and used where its body runs (the async `select` runs bodies on the
/// caller's executor, so a body in an actor may use the actor's state).
public struct GoSelectCase<Result> {
    let arm: GoChanArm
    let body: () -> Result
}

extension GoChan {
    /// A receive case, Go's `case v, ok := <-ch:`. `body` gets the value, or
    /// `nil` when the channel is closed and drained (a closed channel is
    /// always ready). The value is `sending`: the body owns it alone.
    public func onReceive<Result>(_ body: @escaping (sending Element?) -> Result) -> GoSelectCase<Result> {
        let arm = GoChanReceiveArm(channel: self)
        return GoSelectCase(arm: arm) { body(arm.take()) }
    }

    /// A send case, Go's `case ch <- value:`. If the case is not chosen the
    /// value is dropped. Choosing it on a closed channel traps with "send on
    /// closed channel", as in Go. `value` is `sending`: the caller gives it
    /// up, chosen or not.
    public func onSend<Result>(_ value: sending Element, _ body: @escaping () -> Result) -> GoSelectCase<Result> {
        GoSelectCase(arm: GoChanSendArm(channel: self, value: value), body: body)
    }
}

// MARK: - Blocking select (threads)

/// Go's `select` without `default`: blocks the calling thread until one case
/// can proceed, then runs that case's body and returns its result.
///
/// When several cases are ready, one is chosen uniformly at random. While
/// blocked, the thread waits on every channel at once; the first channel
/// operation that completes a case wins, and the other cases are withdrawn.
/// Channels are locked in address order, so concurrent selects cannot
/// deadlock each other. With no cases it blocks forever, like `select {}`.
@available(*, noasync, message: "blocks the thread; use 'try await select' in async code")
public func select<Result>(_ cases: GoSelectCase<Result>...) -> Result {
    let i = goChanSelectBlocking(cases.map(\.arm), nonBlocking: false, deadline: nil)!
    return cases[i].body()
}

/// Go's `select` with a `default` case: runs a ready case (chosen uniformly
/// at random among the ready ones) or, when none is ready, `default`,
/// without blocking.
public func select<Result>(_ cases: GoSelectCase<Result>..., default defaultCase: () -> Result) -> Result {
    guard let i = goChanSelectBlocking(cases.map(\.arm), nonBlocking: true, deadline: nil) else {
        return defaultCase()
    }
    return cases[i].body()
}

/// Go's `select` with a `case <-time.After(timeout):` case: blocks the
/// calling thread like `select(_:)` for at most `timeout`, then runs
/// `onTimeout`. A case that is ready at once wins even with a zero timeout.
@available(*, noasync, message: "blocks the thread; use 'try await select' in async code")
public func select<Result>(_ cases: GoSelectCase<Result>..., timeout: Duration,
                           onTimeout: () -> Result) -> Result {
    let deadline = goChanDeadline(after: timeout)
    guard let i = goChanSelectBlocking(cases.map(\.arm), nonBlocking: false, deadline: deadline) else {
        return onTimeout()
    }
    return cases[i].body()
}

// MARK: - Async select (tasks)

/// Go's `select` for a task: suspends until one case can proceed, then runs
/// its body. Choice, ordering and locking as in the blocking form.
///
/// - Throws: `CancellationError` when the task is cancelled before a case
///   was chosen and none is ready at once; then no case took place (no
///   value was sent or taken). A case ready at once is chosen even in a
///   cancelled task.
nonisolated(nonsending)
public func select<Result>(_ cases: GoSelectCase<Result>...) async throws(CancellationError) -> Result {
    let i = try await goChanSelectAsync(cases.map(\.arm), timeout: nil)!
    return cases[i].body()
}

/// Go's `select` with a timeout case, for a task: suspends for at most
/// `timeout`, then runs `onTimeout`.
///
/// - Throws: `CancellationError` when the task is cancelled before a case
///   was chosen or the timeout expired.
nonisolated(nonsending)
public func select<Result>(_ cases: GoSelectCase<Result>..., timeout: Duration,
                           onTimeout: () -> Result) async throws(CancellationError) -> Result {
    guard let i = try await goChanSelectAsync(cases.map(\.arm), timeout: timeout) else {
        return onTimeout()
    }
    return cases[i].body()
}

// MARK: - Case lists built at run time

/// The blocking ``select(_:)`` over a list of cases built at run time
/// (Go's `reflect.Select`). An empty list blocks forever.
@available(*, noasync, message: "blocks the thread; use 'try await select' in async code")
public func select<Result>(cases: [GoSelectCase<Result>]) -> Result {
    let i = goChanSelectBlocking(cases.map(\.arm), nonBlocking: false, deadline: nil)!
    return cases[i].body()
}

/// The non-blocking `select(_:default:)` over a list of cases.
public func select<Result>(cases: [GoSelectCase<Result>], default defaultCase: () -> Result) -> Result {
    guard let i = goChanSelectBlocking(cases.map(\.arm), nonBlocking: true, deadline: nil) else {
        return defaultCase()
    }
    return cases[i].body()
}

/// The async `select(_:)` over a list of cases.
///
/// - Throws: `CancellationError` when the task is cancelled before a case
///   was chosen.
nonisolated(nonsending)
public func select<Result>(cases: [GoSelectCase<Result>]) async throws(CancellationError) -> Result {
    let i = try await goChanSelectAsync(cases.map(\.arm), timeout: nil)!
    return cases[i].body()
}

// MARK: - Arms

/// A select case without its element type: the channel, the direction and
/// the element storage, with the locked step that tries it.
class GoChanArm {
    let control: UnsafeMutablePointer<GoChanControl>
    let isSend: Bool
    let elem: UnsafeMutableRawPointer

    init(control: UnsafeMutablePointer<GoChanControl>, isSend: Bool, elem: UnsafeMutableRawPointer) {
        self.control = control
        self.isSend = isSend
        self.elem = elem
    }

    /// Tries the case with the channel locked.
    func pollLocked() -> GoChanStep { fatalError("abstract") }

    /// Records that a channel operation completed this case while it waited.
    func completed(success: Bool) { fatalError("abstract") }
}

/// A send case: owns a copy of the value until a receiver takes it.
final class GoChanSendArm<Element>: GoChanArm {
    let channel: GoChan<Element>
    private let slot: UnsafeMutablePointer<Element>
    private var holdsValue = true

    init(channel: GoChan<Element>, value: sending Element) {
        self.channel = channel
        slot = .allocate(capacity: 1)
        slot.initialize(to: value)
        super.init(control: channel.control, isSend: true, elem: UnsafeMutableRawPointer(slot))
    }

    deinit {
        if holdsValue { slot.deinitialize(count: 1) }
        slot.deallocate()
    }

    override func pollLocked() -> GoChanStep {
        let step = channel.sendLocked(slot)
        if case .done = step { holdsValue = false }
        return step
    }

    override func completed(success: Bool) {
        if success { holdsValue = false }
    }
}

/// A receive case: owns the storage the value arrives in.
final class GoChanReceiveArm<Element>: GoChanArm {
    let channel: GoChan<Element>
    private let slot: UnsafeMutablePointer<Element>
    private var holdsValue = false

    init(channel: GoChan<Element>) {
        self.channel = channel
        slot = .allocate(capacity: 1)
        super.init(control: channel.control, isSend: false, elem: UnsafeMutableRawPointer(slot))
    }

    deinit {
        if holdsValue { slot.deinitialize(count: 1) }
        slot.deallocate()
    }

    override func pollLocked() -> GoChanStep {
        let step = channel.recvLocked(slot)
        if case .done(true, _) = step { holdsValue = true }
        return step
    }

    override func completed(success: Bool) {
        if success { holdsValue = true }
    }

    /// The received value (once), or `nil` for a closed channel.
    func take() -> sending Element? {
        guard holdsValue else { return nil }
        holdsValue = false
        return goChanMoveOut(slot)
    }
}

// MARK: - The select algorithm (Go's selectgo)

/// A cheap generator for poll orders: splitmix64 seeded per select from a
/// process-wide counter that starts at a random value.
struct GoChanRandom: RandomNumberGenerator {
    private static let seed = Atomic<UInt64>(UInt64.random(in: .min ... .max))
    private var state: UInt64

    init() {
        state = Self.seed.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A uniformly random permutation of the cases (Go's `pollorder`): the
/// first ready case in it is a uniform choice among the ready ones.
func goChanPollOrder(_ n: Int) -> [Int] {
    if n <= 1 { return n == 1 ? [0] : [] }   // a single case needs no dice
    var order = Array(0..<n)
    var rng = GoChanRandom()
    order.shuffle(using: &rng)
    return order
}

/// The channels of `arms` sorted by address, each once (Go's `lockorder`).
func goChanLockOrder(_ arms: [GoChanArm]) -> [UnsafeMutablePointer<GoChanControl>] {
    if arms.count == 1 { return [arms[0].control] }
    var controls = arms.map(\.control)
    controls.sort { UInt(bitPattern: $0) < UInt(bitPattern: $1) }
    var out: [UnsafeMutablePointer<GoChanControl>] = []
    out.reserveCapacity(controls.count)
    for c in controls where out.last != c { out.append(c) }
    return out
}

/// Makes one waiter per arm for `sleeper` and publishes them to it.
func goChanMakeWaiters(_ arms: [GoChanArm], sleeper: GoChanSleeper,
                       controls: [UnsafeMutablePointer<GoChanControl>]) -> [GoChanWaiter] {
    var waiters: [GoChanWaiter] = []
    waiters.reserveCapacity(arms.count)
    for (i, a) in arms.enumerated() {
        waiters.append(GoChanWaiter(sleeper: sleeper, caseIndex: i, elem: a.elem, control: a.control,
                                    isSend: a.isSend))
    }
    sleeper.publish(waiters: waiters, controls: controls, owners: arms)
    return waiters
}

/// Pass 1 of selectgo, with every channel locked: tries the cases in poll
/// order. On success unlocks, wakes the partner and returns the case index;
/// returns nil (still locked) when none is ready.
func goChanPollLocked(_ arms: [GoChanArm], order: [Int],
                      controls: [UnsafeMutablePointer<GoChanControl>]) -> Int? {
    for i in order {
        switch arms[i].pollLocked() {
        case .notReady:
            continue
        case .sendOnClosed:
            goChanUnlockAll(controls)
            goChanPanic("send on closed channel")
        case .done(_, let wake):
            goChanUnlockAll(controls)
            wake?.wake()
            return i
        }
    }
    return nil
}

/// Queues every waiter on its channel (pass 2); channels locked.
func goChanEnqueueLocked(_ waiters: [GoChanWaiter]) {
    for w in waiters {
        if w.isSend { w.control.state.pointee.sendq.enqueue(w) } else { w.control.state.pointee.recvq.enqueue(w) }
    }
}

/// Pass 3 after a channel fired one case: withdraws the other waiters and
/// returns the fired index. A send case completed by close traps.
///
/// The locks are taken even for a single case: the claimer wrote the result
/// (and the received value) under the fired channel's lock, and acquiring
/// it orders those writes before the reads here without relying on how the
/// wake-up (semaphore or continuation) synchronizes.
func goChanFinishFired(_ arms: [GoChanArm], sleeper: GoChanSleeper) -> Int {
    goChanLockAll(sleeper.controls)
    for w in sleeper.waiters { w.unlinkLocked() }
    let i = sleeper.firedIndex
    let success = sleeper.success
    goChanUnlockAll(sleeper.controls)
    if arms[i].isSend && !success { goChanPanic("send on closed channel") }
    arms[i].completed(success: success)
    return i
}

/// selectgo for threads. Returns the chosen case, or nil for default
/// (`nonBlocking`) or timeout (`deadline`).
func goChanSelectBlocking(_ arms: [GoChanArm], nonBlocking: Bool, deadline: timespec?) -> Int? {
    let order = goChanPollOrder(arms.count)
    let controls = goChanLockOrder(arms)
    goChanLockAll(controls)
    if let i = goChanPollLocked(arms, order: order, controls: controls) { return i }
    if nonBlocking {
        goChanUnlockAll(controls)
        return nil
    }
    let sleeper = GoChanSleeper(isAsync: false)
    let waiters = goChanMakeWaiters(arms, sleeper: sleeper, controls: controls)
    goChanEnqueueLocked(waiters)
    goChanUnlockAll(controls)
    if !sleeper.park(deadline: deadline) {
        // Timed out, unless a channel claimed the select meanwhile.
        if sleeper.interrupt(.timedOut) { return nil }
        _ = sleeper.park()
    }
    return goChanFinishFired(arms, sleeper: sleeper)
}

/// selectgo for tasks. Returns the chosen case, or nil on timeout.
///
/// A cancellation or timeout and a channel operation race for the sleeper's
/// claim; exactly one wins. If the task is cancelled before its waiters are
/// queued, the claim is already taken when the continuation body runs and
/// it resumes at once, so an early cancellation is never lost.
nonisolated(nonsending)
func goChanSelectAsync(_ arms: [GoChanArm], timeout: Duration?) async throws(CancellationError) -> Int? {
    // A cancelled task takes a ready case but never waits. (The single-case
    // callers, async send and receive, have just tried theirs.)
    if Task.isCancelled {
        if arms.count > 1, let i = goChanSelectBlocking(arms, nonBlocking: true, deadline: nil) { return i }
        throw CancellationError()
    }
    let order = goChanPollOrder(arms.count)
    let controls = goChanLockOrder(arms)
    let sleeper = GoChanSleeper(isAsync: true)
    let waiters = goChanMakeWaiters(arms, sleeper: sleeper, controls: controls)
    var timer: Task<Void, Never>?
    if let timeout {
        timer = Task {
            do { try await Task.sleep(for: timeout) } catch { return }
            sleeper.interrupt(.timedOut)
        }
    }
    let immediate: Int = await withTaskCancellationHandler {
        await withUnsafeContinuation { (cont: UnsafeContinuation<Int, Never>) in
            goChanLockAll(controls)
            if sleeper.outcome != .waiting {
                goChanUnlockAll(controls)
                cont.resume(returning: -1)
                return
            }
            if let i = goChanPollLocked(arms, order: order, controls: controls) {
                cont.resume(returning: i)
                return
            }
            sleeper.continuation = cont
            sleeper.suspended = true
            goChanEnqueueLocked(waiters)
            goChanUnlockAll(controls)
        }
    } onCancel: {
        sleeper.interrupt(.cancelled)
    }
    timer?.cancel()
    if immediate >= 0 { return immediate }
    switch sleeper.outcome {
    case .fired: return goChanFinishFired(arms, sleeper: sleeper)
    case .timedOut: return nil
    case .cancelled, .waiting: throw CancellationError()
    }
}
