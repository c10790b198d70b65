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
    /// Reallocs that moved the block (a malloc and a free in MemStats).
    var movedReallocs = 0
    /// Blocks the allocator handed out and took back, per size class
    /// (index 0: large objects), as the workers saw them.
    var made = [Int](repeating: 0, count: 68), freed = [Int](repeating: 0, count: 68)
    /// Handed-over blocks per receiving thread (counted by the senders), and
    /// per receiver as it took them from its inbox.
    var handedTo: [Int] = [], receivedBy: [Int] = []
    /// Wrapping sums of a hash of every handed-over (address, seed), at the
    /// sender and at the receiver: equal when every block arrived once.
    var handedHash: UInt64 = 0, receivedHash: UInt64 = 0
    /// Blocks posted to the sender's own inbox (must be none).
    var selfHandovers = 0
    /// Frees (plain, or by a moving realloc) of a small block whose span the
    /// thread that allocated it still cached: remote frees for certain.
    var certainRemoteFrees = 0

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
        movedReallocs += o.movedReallocs
        func sum(_ a: [Int], _ b: [Int]) -> [Int] {
            (0..<max(a.count, b.count)).map { (a.indices.contains($0) ? a[$0] : 0) + (b.indices.contains($0) ? b[$0] : 0) }
        }
        made = sum(made, o.made); freed = sum(freed, o.freed)
        handedTo = sum(handedTo, o.handedTo); receivedBy = sum(receivedBy, o.receivedBy)
        handedHash &+= o.handedHash; receivedHash &+= o.receivedHash
        selfHandovers += o.selfHandovers; certainRemoteFrees += o.certainRemoteFrees
    }

    var summary: String {
        "\(operations) operations: \(allocs) allocs (\(largeAllocs) large, \(zeroedAllocs) zeroed), "
            + "\(alignedAllocs) aligned, \(callocs) calloc, \(reallocs) realloc (\(movedReallocs) moved), \(ownFrees) own frees, "
            + "\(handedOver) handed over: \(receivedFrees) freed and \(remoteReallocs) realloc'd by the receiver, "
            + "\(certainRemoteFrees) frees certainly remote, "
            + "\(lookups) span lookups, \(flushes) cache flushes; \(classesUsed.count) size classes used"
    }
}

/// A hash of a handed-over block, summed at both ends of the hand-over.
private func handoverHash(_ b: TrackedBlock) -> UInt64 {
    BlockPattern.word(origin: b.address, seed: b.seed, offset: b.size)
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

        /// The size class of the span holding live block `p` (0: large).
        static func classOf(_ p: UnsafeRawPointer) -> Int {
            var info = sa_span_info()
            return sa_span_of(p, &info) ? Int(info.size_class) : -1
        }

        @Test(arguments: [2, 5, 16])
        func threadsMixEveryOperation(threads: Int) {
            spanHeap.flushThreadCache()
            let before = spanHeap.memStats
            let deadline = Date().addingTimeInterval(Self.seconds)
            let inboxes = (0..<threads).map { _ in Inbox() }
            let counts = Guarded(StressCounts())
            let stillRunning = Atomic<Int>(threads)
            // Per thread, how often it gave its cached spans back (flush, and
            // once more at exit). Bumped under the lock before the flush; read
            // under it after a free: unchanged, the free happened before the
            // flush, while the allocating thread still cached the span.
            let epochs = Guarded([Int](repeating: 0, count: threads))

            ThreadGang.run(threads) { me in
                var c = StressCounts()
                c.handedTo = [Int](repeating: 0, count: threads)
                c.receivedBy = [Int](repeating: 0, count: threads)
                var rng = WyRand(seed: 0x5A5A_0000 &+ UInt64(threads) << 8 &+ UInt64(me))
                var live: [TrackedBlock] = []
                var liveBytes = 0
                var serial = UInt64(me) << 40
                var myEpoch = 0

                /// Counts a free of `b` (of class `cls`) that has just happened.
                func countFree(_ b: TrackedBlock, class cls: Int) {
                    c.freed[max(cls, 0)] += 1
                    if cls > 0 && b.maker != me && epochs.withLock({ $0[b.maker] }) == b.makerEpoch {
                        c.certainRemoteFrees += 1
                    }
                }
                func release(_ b: TrackedBlock) {
                    if !b.isIntact { c.corrupted += 1 }
                    let cls = Self.classOf(b.pointer)
                    sa_free(b.pointer)
                    countFree(b, class: cls)
                }
                /// Tracks block `p`; `from` is the block it was realloc'd in
                /// place from (its span's cacher stays the one that made it).
                func track(_ p: UnsafeMutableRawPointer, size: Int, inPlaceOf from: TrackedBlock? = nil) {
                    serial += 1
                    var b = TrackedBlock(p, size: size, seed: serial)
                    if let from {
                        b.maker = from.maker
                        b.makerEpoch = from.makerEpoch
                    } else {
                        b.maker = me
                        b.makerEpoch = myEpoch
                        c.made[max(Self.classOf(p), 0)] += 1
                    }
                    live.append(b)
                    liveBytes += size
                }
                /// Reallocs `b` to `newSize` (> 0), checks the prefix it
                /// keeps and tracks the result; false (b kept) when refused.
                func resize(_ b: TrackedBlock, to newSize: Int) -> Bool {
                    var b = b
                    if !b.isIntact { c.corrupted += 1 }
                    let old = b
                    let oldClass = Self.classOf(b.pointer)
                    guard let q = sa_realloc(b.pointer, newSize) else {
                        c.failedAllocs += 1
                        live.append(b)
                        liveBytes += b.size
                        return false
                    }
                    let moved = q != old.pointer
                    if moved {
                        c.movedReallocs += 1
                        countFree(old, class: oldClass)
                    }
                    b.address = UInt(bitPattern: q)
                    b.size = min(b.size, newSize)
                    if !b.isIntact { c.corrupted += 1 }
                    track(q, size: newSize, inPlaceOf: moved ? nil : old)
                    return true
                }
                func takeRandom() -> TrackedBlock {
                    let i = rng.below(live.count)
                    live.swapAt(i, live.count - 1)
                    let b = live.removeLast()
                    liveBytes -= b.size
                    return b
                }
                func receive() -> [TrackedBlock] {
                    let got = inboxes[me].takeAll()
                    c.receivedBy[me] += got.count
                    for b in got { c.receivedHash &+= handoverHash(b) }
                    return got
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
                        if Self.classOf(p) != cls { c.badLookups += 1 }  // in a span of the class asked for
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
                            let cls = Self.classOf(b.pointer)
                            if sa_realloc(b.pointer, 0) != nil { c.badLookups += 1 }
                            countFree(b, class: cls)
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
                        if rng.chance(5) {
                            myEpoch += 1
                            epochs.withLock { $0[me] = myEpoch }
                            sa_thread_flush()
                            c.flushes += 1
                        }
                    case 59..<75:  // hand a block to another thread
                        let to = (me + 1 + rng.below(threads - 1)) % threads
                        let b = takeRandom()
                        if to == me { c.selfHandovers += 1 }
                        c.handedTo[to] += 1
                        c.handedHash &+= handoverHash(b)
                        inboxes[to].post(b)
                        c.handedOver += 1
                    default:  // free one of our own
                        release(takeRandom())
                        c.ownFrees += 1
                    }
                    if op & 31 == 0 {
                        for b in receive() {
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
                    for b in receive() { release(b); c.receivedFrees += 1 }
                    sched_yield()
                }
                for b in receive() { release(b); c.receivedFrees += 1 }
                // The cache goes back at thread exit, after this.
                epochs.withLock { $0[me] = myEpoch + 1 }
                counts.withLock { $0.add(c) }
            }

            let c = counts.withLock { $0 }
            Self.totals.withLock { $0.add(c) }
            spanHeap.flushThreadCache() // and the emptied spans mcentral keeps, to mheap
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
            #expect(c.classesUsed.count == 67 || Sanitizer.any, "every size class was used")

            // Hand-over: every block posted to another thread's inbox was
            // taken by that thread, once, and freed or realloc'd by it.
            #expect(c.selfHandovers == 0, "blocks handed to their own sender")
            #expect(c.receivedBy == c.handedTo, "blocks received per thread vs handed to it")
            #expect(c.receivedHash == c.handedHash, "the received blocks are the handed-over ones")
            #expect(c.handedOver == c.receivedFrees + c.remoteReallocs,
                    "handed over \(c.handedOver) vs freed \(c.receivedFrees) + realloc'd \(c.remoteReallocs) by the receiver")

            // MemStats counted exactly what the workers did: one malloc per
            // allocation and per moving realloc, one free per free, per
            // moving realloc and per realloc to 0; per size class and for
            // large objects.
            let mallocs = Int(after.mallocs - before.mallocs), frees = Int(after.frees - before.frees)
            #expect(mallocs == c.allocs + c.alignedAllocs + c.callocs + c.movedReallocs,
                    "mallocs \(mallocs) vs \(c.allocs) + \(c.alignedAllocs) aligned + \(c.callocs) calloc + \(c.movedReallocs) moved")
            #expect(frees == c.ownFrees + c.receivedFrees + c.movedReallocs,
                    "frees \(frees) vs \(c.ownFrees) own + \(c.receivedFrees) received + \(c.movedReallocs) moved")
            #expect(mallocs == frees, "mallocs \(mallocs) vs frees \(frees)")
            #expect(c.made.reduce(0, +) == mallocs && c.freed.reduce(0, +) == frees)
            for cls in 1..<68 {
                let m = Int(after.bySize[cls].mallocs - before.bySize[cls].mallocs)
                let f = Int(after.bySize[cls].frees - before.bySize[cls].frees)
                #expect(m == c.made[cls] && f == c.freed[cls],
                        "class \(cls): mallocs \(m) vs \(c.made[cls]) made, frees \(f) vs \(c.freed[cls]) freed")
            }
            #expect(Int(after.largeAllocs - before.largeAllocs) == c.made[0], "large allocs vs large blocks made")
            #expect(Int(after.largeFrees - before.largeFrees) == c.freed[0], "large frees vs large blocks freed")
            // Remote frees: at least every free of a small block whose span
            // its allocating thread still cached (the span may also be in
            // mcentral, or cached by another thread, when a flush came
            // first), at most every small free.
            let remote = Int(after.remoteFrees - before.remoteFrees)
            #expect(remote >= c.certainRemoteFrees && remote <= frees - c.freed[0],
                    "remote frees \(remote) vs \(c.certainRemoteFrees) certain, \(frees - c.freed[0]) small frees")
            // Each equation above was exercised: every kind of operation it
            // counts happened in this run.
            let kinds = ["allocs": c.allocs, "large": c.made[0], "aligned": c.alignedAllocs, "calloc": c.callocs,
                         "moved reallocs": c.movedReallocs, "remote reallocs": c.remoteReallocs,
                         "received frees": c.receivedFrees, "certain remote frees": c.certainRemoteFrees]
            #expect(kinds.filter { $0.value == 0 }.isEmpty, "kinds of operation that never ran")
            // Balanced: the heap is back where it started, and the checker agrees.
            #expect(after.heapObjects == before.heapObjects)
            #expect(after.heapAlloc == before.heapAlloc)
            // No span left behind by the run (another thread of the test
            // process, exiting meanwhile, may hand one back: at most equal).
            #expect(after.spansInuse <= before.spansInuse, "spans in use \(before.spansInuse) -> \(after.spansInuse)")
            #expect(after.heapInuse <= before.heapInuse, "heap in use \(before.heapInuse) -> \(after.heapInuse)")
            #expect(spanHeap.checkInvariants() == nil)
        }
    }
}
