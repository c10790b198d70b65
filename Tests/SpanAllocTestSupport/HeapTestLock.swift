import Foundation

/// A process-wide reader–writer lock for tests that share `SpanHeap.default`.
///
/// Swift Testing runs the suites of every test target in one process and in
/// parallel. Most tests only need the heap to work (**shared** access), but
/// some need it to themselves (**exclusive** access): the heap checker
/// (`SpanHeap.checkInvariants()`) requires that no other thread allocates or
/// frees while it runs, and exact `MemStats` deltas (live objects, live
/// bytes) are only meaningful when nobody else allocates.
///
/// Every test that allocates from `SpanHeap.default` (directly or through a
/// type built on it, such as `GoSlice` or `GoChan`) should hold shared
/// access; the allocator's own suite takes exclusive access per test:
///
/// ```swift
/// @Test func appendGrows() async {
///     await HeapTestLock.withSharedAccess {
///         var s = GoSlice<Int>()
///         s.append(1)
///         #expect(s.count == 1)
///     }
/// }
/// ```
///
/// or, for a whole suite, `@Suite(.heapShared)` (see ``HeapAccessTrait``).
///
/// Waiting suspends the task instead of blocking a thread, so the lock is
/// safe on the cooperative pool even when a holder awaits. Waiters are
/// served first come, first served: a waiting writer holds back later
/// readers, so it cannot starve.
public enum HeapTestLock {
    private enum Access { case shared, exclusive }

    private struct State {
        var readers = 0
        var writer = false
        var waiters: [(access: Access, continuation: CheckedContinuation<Void, Never>)] = []
    }

    /// An `NSLock` (a pthread mutex), which ThreadSanitizer understands;
    /// Synchronization's `Mutex` is invisible to it on Linux.
    private nonisolated(unsafe) static var state = State()
    private static let lock = NSLock()

    private static func withState<R>(_ body: (inout State) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&state)
    }

    /// Runs `body` while no other holder of the lock runs.
    public static func withExclusiveAccess<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> R
    ) async rethrows -> R {
        await acquire(.exclusive)
        defer { release(.exclusive) }
        return try await body()
    }

    /// Runs `body` while no exclusive holder runs; shared holders run together.
    public static func withSharedAccess<R>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: () async throws -> R
    ) async rethrows -> R {
        await acquire(.shared)
        defer { release(.shared) }
        return try await body()
    }

    private static func acquire(_ access: Access) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let granted = withState { s -> Bool in
                let free = access == .shared ? !s.writer : (!s.writer && s.readers == 0)
                if free && s.waiters.isEmpty {
                    if access == .shared { s.readers += 1 } else { s.writer = true }
                    return true
                }
                s.waiters.append((access, c))
                return false
            }
            if granted { c.resume() }
        }
    }

    private static func release(_ access: Access) {
        // Grant the head of the queue: one writer, or every reader in a row.
        let wake = withState { s -> [CheckedContinuation<Void, Never>] in
            if access == .shared { s.readers -= 1 } else { s.writer = false }
            var wake: [CheckedContinuation<Void, Never>] = []
            while let head = s.waiters.first {
                if head.access == .exclusive {
                    guard !s.writer && s.readers == 0 else { break }
                    s.writer = true
                } else {
                    guard !s.writer else { break }
                    s.readers += 1
                }
                wake.append(head.continuation)
                s.waiters.removeFirst()
                if head.access == .exclusive { break }
            }
            return wake
        }
        for c in wake { c.resume() }
    }
}
