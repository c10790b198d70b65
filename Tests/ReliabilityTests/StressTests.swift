import CSpanAlloc
import Foundation
import SpanAlloc
import Synchronization
import Testing

/// What one stress run did, summed over its threads.
struct StressCounts: Sendable {
    var allocs = 0, largeAllocs = 0, zeroedAllocs = 0, alignedAllocs = 0, callocs = 0
    var reallocs = 0, remoteReallocs = 0, ownFrees = 0, handedOver = 0, receivedFrees = 0, lookups = 0, flushes = 0
    var corrupted = 0, wrongZero = 0, misaligned = 0, badLookups = 0, zeroAllocCounts = 0, failedAllocs = 0
    var classesUsed = Set<Int>()

    var operations: Int {
        allocs + alignedAllocs + callocs + reallocs + remoteReallocs + ownFrees + receivedFrees + lookups + flushes
    }

    mutating func add(_ o: StressCounts) {
        allocs += o.allocs; largeAllocs += o.largeAllocs; zeroedAllocs += o.zeroedAllocs
        alignedAllocs += o.alignedAllocs; callocs += o.callocs; reallocs += o.reallocs; remoteReallocs += o.remoteReallocs
        ownFrees += o.ownFrees; handedOver += o.handedOver; receivedFrees += o.receivedFrees
        lookups += o.lookups; flushes += o.flushes; corrupted += o.corrupted; wrongZero += o.wrongZero
        misaligned += o.misaligned; badLookups += o.badLookups; zeroAllocCounts += o.zeroAllocCounts
        failedAllocs += o.failedAllocs
        classesUsed.formUnion(o.classesUsed)
    }

    var summary: String {
        "\(operations) operations: \(allocs) allocs (\(largeAllocs) large, \(zeroedAllocs) zeroed), "
            + "\(alignedAllocs) aligned, \(callocs) calloc, \(reallocs) realloc, \(ownFrees) own frees, "
            + "\(handedOver) handed over: \(receivedFrees) freed and \(remoteReallocs) realloc'd by the receiver, "
            + "\(lookups) span lookups, \(flushes) cache flushes; \(classesUsed.count) size classes used"
    }
}

/// The stress harness: threads allocate, check, hand over and free at once.
///
/// Each configuration runs for `SPANALLOC_STRESS_SECONDS` (default 1 s;
/// the same wall time under a sanitizer, which does fewer operations in it),
/// so CI stays short and a long soak is one environment variable away:
/// `SPANALLOC_STRESS_SECONDS=600 swift test --filter ReliabilityTests.Stress`.
extension ReliabilityTests {
    @Suite struct Stress {
        static let seconds = environmentNumber("SPANALLOC_STRESS_SECONDS", default: 1)
        /// Bytes of live blocks a thread keeps at most (16 threads × 24 MiB).
        static let liveBytesPerThread = 24 << 20
        static let liveBlocksPerThread = 1500
        /// Every stress run's counts, for the totals printed at the end.
        static let totals = Guarded(StressCounts())

        /// A request size: every small class equally often (a size in the
        /// class's range), and large objects up to 2 MiB 3% of the time.
        static func randomSize(_ rng: inout WyRand) -> Int {
            if rng.chance(3) { return Int(SA_MAX_SMALL_SIZE) + 1 + rng.below(2 << 20) }
            let cls = 1 + rng.below(67)
            let hi = Int(sa_class_size(Int32(cls)))
            let lo = cls == 1 ? 0 : Int(sa_class_size(Int32(cls - 1)))
            return lo + 1 + rng.below(hi - lo)
        }

        @Test(arguments: [2, 5, 16])
        func threadsMixEveryOperation(threads: Int) {
            spanHeap.flushThreadCache()
            let before = spanHeap.memStats
            let deadline = Date().addingTimeInterval(Self.seconds)
            let inboxes = (0..<threads).map { _ in Inbox() }
            let counts = Guarded(StressCounts())
            let stillRunning = Atomic<Int>(threads)

            ThreadGang.run(threads) { me in
                var c = StressCounts()
                var rng = WyRand(seed: 0x5A5A_0000 &+ UInt64(threads) << 8 &+ UInt64(me))
                var live: [TrackedBlock] = []
                var liveBytes = 0
                var serial = UInt64(me) << 40

                func release(_ b: TrackedBlock) {
                    if !b.isIntact { c.corrupted += 1 }
                    sa_free(b.pointer)
                }
                func track(_ p: UnsafeMutableRawPointer, size: Int) {
                    serial += 1
                    live.append(TrackedBlock(p, size: size, seed: serial))
                    liveBytes += size
                }
                /// Reallocs `b` to `newSize` (> 0), checks the prefix it
                /// keeps and tracks the result; false (b kept) when refused.
                func resize(_ b: TrackedBlock, to newSize: Int) -> Bool {
                    var b = b
                    if !b.isIntact { c.corrupted += 1 }
                    guard let q = sa_realloc(b.pointer, newSize) else {
                        c.failedAllocs += 1
                        live.append(b)
                        liveBytes += b.size
                        return false
                    }
                    b.address = UInt(bitPattern: q)
                    b.size = min(b.size, newSize)
                    if !b.isIntact { c.corrupted += 1 }
                    track(q, size: newSize)
                    return true
                }
                func takeRandom() -> TrackedBlock {
                    let i = rng.below(live.count)
                    live.swapAt(i, live.count - 1)
                    let b = live.removeLast()
                    liveBytes -= b.size
                    return b
                }

                var op = 0
                while true {
                    if op & 255 == 0 && Date() >= deadline { break }
                    op += 1
                    let full = live.count >= Self.liveBlocksPerThread || liveBytes >= Self.liveBytesPerThread
                    let roll = live.isEmpty ? 0 : full ? 60 + rng.below(40) : rng.below(100)
                    switch roll {
                    case 0..<34:  // allocate, sometimes zeroed, scan or noscan
                        let size = Self.randomSize(&rng)
                        let zero = rng.chance(10)
                        let flags = (rng.chance(50) ? UInt32(SA_NOSCAN) : 0) | (zero ? UInt32(SA_ZERO) : 0)
                        guard let p = sa_alloc(size, flags) else { c.failedAllocs += 1; continue }
                        c.allocs += 1
                        let cls = Int(sa_size_to_class(size))
                        if cls == 0 { c.largeAllocs += 1 } else { c.classesUsed.insert(cls) }
                        let natural = cls == 0 ? Int(SA_PAGE_SIZE) : Int(sa_class_size(Int32(cls))) & -Int(sa_class_size(Int32(cls)))
                        if Int(bitPattern: p) % min(natural, Int(SA_PAGE_SIZE)) != 0 { c.misaligned += 1 }
                        if zero {
                            c.zeroedAllocs += 1
                            if !BlockPattern.isZero(p, size: size) { c.wrongZero += 1 }
                        }
                        track(p, size: size)
                    case 34..<40:  // aligned allocation
                        let alignment = 1 << (3 + rng.below(rng.chance(10) ? 18 : 11))
                        let size = rng.chance(50) ? rng.below(4096) : Self.randomSize(&rng)
                        guard let p = sa_alloc_aligned(size, alignment, rng.chance(50) ? UInt32(SA_NOSCAN) : 0) else {
                            c.failedAllocs += 1; continue
                        }
                        c.alignedAllocs += 1
                        if Int(bitPattern: p) % alignment != 0 { c.misaligned += 1 }
                        track(p, size: size)
                    case 40..<44:  // calloc
                        let count = 1 + rng.below(64), each = 1 + rng.below(512)
                        guard let p = sa_calloc(count, each, 0) else { c.failedAllocs += 1; continue }
                        c.callocs += 1
                        if !BlockPattern.isZero(p, size: count * each) { c.wrongZero += 1 }
                        track(p, size: count * each)
                    case 44..<54:  // realloc: the old contents survive the move
                        let b = takeRandom()
                        let newSize = rng.chance(50) ? Self.randomSize(&rng) : max(0, b.size + rng.below(256) - 128)
                        if newSize == 0 {  // realloc(p, 0) frees p
                            if !b.isIntact { c.corrupted += 1 }
                            if sa_realloc(b.pointer, 0) != nil { c.badLookups += 1 }
                            c.ownFrees += 1
                        } else if resize(b, to: newSize) {
                            c.reallocs += 1
                        }
                    case 54..<58:  // span lookups of a live block
                        let b = live[rng.below(live.count)]
                        var info = sa_span_info()
                        let inner = b.pointer + (b.size > 0 ? rng.below(b.size) : 0)
                        c.lookups += 1
                        if !sa_span_of(inner, &info) || !sa_owns(inner) || info.base > b.address
                            || b.address + UInt(b.size) > info.base + UInt(info.npages) * UInt(SA_PAGE_SIZE)
                            || sa_usable_size(b.pointer) < b.size || info.alloc_count > info.nelems {
                            c.badLookups += 1
                        } else if info.alloc_count == 0 {
                            c.zeroAllocCounts += 1
                        }
                    case 58:
                        if rng.chance(5) { sa_thread_flush(); c.flushes += 1 }
                    case 59..<75:  // hand a block to another thread
                        let to = (me + 1 + rng.below(threads - 1)) % threads
                        inboxes[to].post(takeRandom())
                        c.handedOver += 1
                    default:  // free one of our own
                        release(takeRandom())
                        c.ownFrees += 1
                    }
                    if op & 31 == 0 {
                        for b in inboxes[me].takeAll() {
                            // A quarter of the received blocks are resized by
                            // their new owner (realloc on a span another
                            // thread caches) and kept; the rest are freed.
                            if rng.chance(25) && !full && b.size > 0 {
                                if resize(b, to: max(1, b.size + rng.below(64) - 32)) { c.remoteReallocs += 1 }
                            } else {
                                release(b)
                                c.receivedFrees += 1
                            }
                        }
                    }
                }
                for b in live { release(b); c.ownFrees += 1 }
                // Blocks posted to us until every thread has stopped posting.
                stillRunning.subtract(1, ordering: .acquiringAndReleasing)
                while stillRunning.load(ordering: .acquiring) > 0 {
                    for b in inboxes[me].takeAll() { release(b); c.receivedFrees += 1 }
                    sched_yield()
                }
                for b in inboxes[me].takeAll() { release(b); c.receivedFrees += 1 }
                counts.withLock { $0.add(c) }
            }

            let c = counts.withLock { $0 }
            Self.totals.withLock { $0.add(c) }
            let after = spanHeap.memStats
            let mode = Sanitizer.any ? " under \(Sanitizer.name)" : ""
            print("stress \(threads) threads, \(Self.seconds) s\(mode): \(c.summary)")
            #expect(c.corrupted == 0, "blocks whose contents changed while live")
            #expect(c.wrongZero == 0, "zeroed allocations that were not zero")
            #expect(c.misaligned == 0, "misaligned blocks")
            #expect(c.badLookups == 0, "span lookups that disagree with the block")
            // The span of a live block counts at least that block, also when
            // another thread caches the span.
            #expect(c.zeroAllocCounts == 0, "lookups of a live block whose span says 0 objects allocated")
            #expect(c.failedAllocs == 0, "allocations refused with memory available")
            #expect(c.handedOver == c.receivedFrees + c.remoteReallocs, "every handed-over block reached its receiver")
            #expect(c.classesUsed.count == 67 || Sanitizer.any, "every size class was used")
            #expect(c.operations >= (Sanitizer.any ? 100 : 300) * threads, "the run did real work")
            // Balanced: everything allocated was freed, and the checker agrees.
            #expect(after.mallocs - before.mallocs == after.frees - before.frees,
                    "mallocs \(after.mallocs - before.mallocs) vs frees \(after.frees - before.frees)")
            #expect(after.heapObjects == before.heapObjects)
            #expect(after.heapAlloc == before.heapAlloc)
            #expect(spanHeap.checkInvariants() == nil)
        }
    }
}
