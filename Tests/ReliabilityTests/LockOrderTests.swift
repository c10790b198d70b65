import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

/// The lock order (docs/reliability.md): the stats lock → the mcache
/// registry → the heap → the mcentrals in spanClass order. Debug builds of
/// CSpanAlloc check every acquisition against it. The public API cannot take
/// locks out of order by itself (every stress and fuzz run checks that), but
/// the fork handlers let a test hold them all: `sa_fork_prepare` takes every
/// lock in order, after which anything that takes a lower-ranked one is an
/// inversion.
///
/// Not under ThreadSanitizer: its deadlock detector holds at most 64 locks
/// per thread, and `sa_fork_prepare` takes 2 + 136 (TSan then fails a CHECK
/// and hangs while reporting it).
extension ReliabilityTests {
    @Suite(.enabled(if: !Sanitizer.thread,
                    "sa_fork_prepare holds 138 locks; ThreadSanitizer's deadlock detector allows 64"))
    struct LockOrder {
        #if DEBUG
        /// Holding every allocator lock (as a fork handler does), reading the
        /// statistics takes the stats lock, ranked first: the rank check stops
        /// the process instead of letting it deadlock.
        @Test func inversionIsCaughtInDebugBuilds() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                sa_fork_prepare()
                var s = sa_mem_stats()
                sa_read_mem_stats(&s)
                sa_fork_parent()
            }
            let message = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
            #expect(r == nil || message.contains("lock order violation"), "\(message.prefix(300))")
        }
        #endif

        /// The fork handlers take and release every lock in order; the heap
        /// works normally afterwards (the rank bookkeeping is balanced).
        @Test func forkHandlersTakeEveryLockInOrder() throws {
            sa_fork_prepare()
            sa_fork_parent()
            let p = try #require(sa_alloc(100, 0))
            let q = try #require(sa_alloc(1 << 20, 0))
            sa_free(p)
            sa_free(q)
            _ = spanHeap.scavenge(byteCount: 1 << 20)
            #expect(spanHeap.checkInvariants() == nil)
        }
    }
}
