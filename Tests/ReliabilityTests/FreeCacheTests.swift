import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The free side of the thread caches (Sources/CSpanAlloc/sa_freecache.c):
/// per-thread, per-spanClass bins of objects the thread freed into its own
/// spans, the buffer of its frees into other threads' spans, the cookie in
/// word 0 of every freed object, the budget, the counters and the checker.
/// Every test runs in an exit-test child: a fresh heap, so the bins, the
/// buffers and the counters hold only what the test put there.
///
/// A double free must stop the process at the second free, naming the
/// pointer, wherever the first free put the object: an owner's bin (also
/// through the LIFO shortcut), another thread's remote buffer, a batch
/// handed back to the span, a bin flushed into freeBits. A child that gets
/// past the second free writes "survived" on stderr, so a stop that only
/// comes later (at a sweep, say) fails the test too.
extension ReliabilityTests {
    @Suite struct FreeCache {}
}

// MARK: - Helpers

/// Written by a child that got past a free or call that should have stopped it.
func childSurvived(_ what: String) {
    FileHandle.standardError.write(Data("survived \(what)\n".utf8))
}

/// A POSIX thread that runs `body` and then waits, its cache, bins and
/// remote buffer as the body left them, until ``finish()`` lets it exit and
/// joins it. The initialiser returns when the body is done.
final class ParkedThread: @unchecked Sendable {
    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    private let done = DispatchSemaphore(value: 0)
    private let go = DispatchSemaphore(value: 0)
    private var id = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setstacksize(&attr, 1 << 20)
        defer { pthread_attr_destroy(&attr) }
        let box = Unmanaged.passRetained(Body { [done, go] in
            body()
            done.signal()
            go.wait()
        }).toOpaque()
        let rc = pthread_create(&id, &attr, { raw in
            Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create: \(rc)")
        done.wait()
    }

    /// Lets the thread exit (its cache is handed back) and joins it.
    func finish() {
        go.signal()
        pthread_join(id, nil)
    }
}

/// Reads or writes word `index` of the object at `address` through
/// /proc/self/mem: an access the compiler's instrumentation does not see
/// (under AddressSanitizer a freed object stays poisoned, and a plain store
/// would be reported there), which leaves in memory exactly what a
/// use-after-free read or write would.
func rawWord(_ address: UInt, _ index: Int) -> UInt64 {
    let fd = open("/proc/self/mem", O_RDONLY)
    guard fd >= 0 else { childFail("open /proc/self/mem: errno \(errno)") }
    defer { close(fd) }
    var v: UInt64 = 0
    guard pread(fd, &v, 8, off_t(address) + off_t(8 * index)) == 8 else { childFail("pread: errno \(errno)") }
    return v
}

func setRawWord(_ address: UInt, _ index: Int, _ value: UInt64) {
    let fd = open("/proc/self/mem", O_RDWR)
    guard fd >= 0 else { childFail("open /proc/self/mem: errno \(errno)") }
    defer { close(fd) }
    var v = value
    guard pwrite(fd, &v, 8, off_t(address) + off_t(8 * index)) == 8 else { childFail("pwrite: errno \(errno)") }
}

func pointer(_ address: UInt) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }

/// Gives the calling thread's bin for `size` its capacity (a bin gets it on
/// the thread's first free of the class; until then every free of the class
/// takes the slow path, which the LIFO shortcut and the fast path's checks
/// never see). The object freed stays in the bin: the next allocation of the
/// class pops it.
func grantBin(_ size: Int) {
    sa_free(sa_alloc(size, 0)!)
    childCheck(childStats().free_cache_objects == 1, "the first free of the class did not give its bin capacity")
}

/// `count` objects of `size` bytes, then one more, so none of the `count`
/// is the block allocated last (its free takes the full path, not the LIFO
/// shortcut). Returns the `count` addresses and the extra one.
func allocateNotLast(_ count: Int, size: Int) -> (blocks: [UInt], extra: UInt) {
    let blocks = (0..<count).map { _ in UInt(bitPattern: sa_alloc(size, 0)!) }
    return (blocks, UInt(bitPattern: sa_alloc(size, 0)!))
}

extension ReliabilityTests.FreeCache {
    static let doubleFreeWords = ["double free", "already freed"]

    /// The child stopped with a message naming the pointer it reported
    /// (its full `0x…` form), with one of `words`, and did not get past the
    /// call that should have stopped it. With `reached`, it must also have
    /// printed that line on stdout (it got through the valid calls before
    /// the bad one).
    func expectStop(_ result: ExitTest.Result?, _ what: String, _ words: [String] = Self.doubleFreeWords,
                    reached: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let result else { return }
        let out = String(decoding: result.standardOutputContent, as: UTF8.self)
        if let reached {
            #expect(out.split(separator: "\n").contains { $0 == reached },
                    "\(what): the child did not get through the valid calls to '\(reached)'", sourceLocation: sourceLocation)
        }
        let address = out.split(separator: "\n").last { $0.hasPrefix("address:") }?.dropFirst(8) ?? ""
        let message = String(decoding: result.standardErrorContent, as: UTF8.self).lowercased()
        #expect(!address.isEmpty && message.contains("0x" + address),
                "\(what): the message names 0x\(address): \(message.suffix(400))", sourceLocation: sourceLocation)
        #expect(words.contains { message.contains($0) },
                "\(what): the message says one of \(words): \(message.suffix(400))", sourceLocation: sourceLocation)
        #expect(!message.contains("survived") && !message.contains("child check failed"),
                "\(what): the child got past the call that should stop it: \(message.suffix(400))",
                sourceLocation: sourceLocation)
    }

    // MARK: a. Owner double frees

    /// The first free puts the object on its bin (another object was
    /// allocated after it: no LIFO shortcut); the second finds the cookie.
    @Test func ownerDoubleFreeOfCachedObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let p = sa_alloc(64, 0)!
            let after = sa_alloc(64, 0)!
            reportAddress(p)
            sa_free(p)
            childCheck(childStats().free_cache_objects == 1, "the freed object is not in a bin")
            sa_free(p)
            childSurvived("the second free of an object in a bin")
            sa_free(after)
        }
        expectStop(r, "owner double free of a cached object")
    }

    /// The object allocated last, popped from a bin, is freed twice: the
    /// first free takes the LIFO shortcut (no page-map walk) back onto the
    /// bin and must leave the cookie too. (An object allocCache handed out
    /// goes back to allocCache instead: BadInput.doubleFreeOfLastObjectStops.)
    @Test func ownerDoubleFreeThroughTheLIFOShortcutStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            grantBin(64)  // the shortcut pushes on a bin with capacity only
            let keep = sa_alloc(64, 0)!
            let x = sa_alloc(64, 0)!, y = sa_alloc(64, 0)!
            sa_free(x)  // not the last allocation: onto the bin
            let p = sa_alloc(64, 0)!
            childCheck(p == x, "the allocation did not pop the bin")
            reportAddress(p)
            sa_free(p)
            childCheck(childStats().free_cache_objects == 1, "the freed object is not in a bin")
            sa_free(p)
            childSurvived("the second free of the object allocated last")
            sa_free(y)
            sa_free(keep)
        }
        expectStop(r, "owner double free through the LIFO shortcut")
    }

    /// A bin popped and pushed again in between (p freed, the slot reused
    /// by the next allocation and freed, then p freed a third time): the
    /// cookie is back, and the third free stops.
    @Test func doubleFreeAfterTheSlotWentThroughTheBinAgainStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let p = sa_alloc(64, 0)!
            let after = sa_alloc(64, 0)!
            sa_free(p)
            let q = sa_alloc(64, 0)!
            childCheck(q == p, "the next allocation did not pop the bin")
            let after2 = sa_alloc(64, 0)!
            reportAddress(q)
            sa_free(q)  // a valid free of the new object
            print("valid free done")
            fflush(nil)
            sa_free(q)
            childSurvived("the second free of a reused slot")
            sa_free(after)
            sa_free(after2)
        }
        expectStop(r, "double free of a slot reused from the bin", reached: "valid free done")
    }

    // MARK: b. Remote double frees

    /// Thread A allocates (and keeps caching the span); thread B frees the
    /// object twice while the first free is still in B's remote buffer.
    @Test func remoteDoubleFreeWhileBufferedStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)
            let a = blocks[1]
            reportAddress(pointer(a))
            onThread {
                sa_free(pointer(a))
                let s = childStats()
                childCheck(s.free_cache_objects == 1 && s.remote_batches == 0,
                           "the remote free is not buffered (\(s.free_cache_objects) cached, \(s.remote_batches) batches)")
                sa_free(pointer(a))
                childSurvived("a second remote free of a buffered object")
            }
        }
        expectStop(r, "remote double free of a buffered object")
    }

    /// B frees (buffered, B stays alive), then the owner A frees: A's free
    /// finds the cookie B left, not (yet) any bit in the span's bitmaps.
    /// `last`: p is A's last allocation, so A's free tries the LIFO shortcut
    /// first, which must refuse an object carrying its cookie.
    static func remoteThenOwnerWhileBuffered(last: Bool) {
        grantBin(64)  // so A's free takes the fast path (or the shortcut), not the slow one
        let keep = sa_alloc(64, 0)!
        let p = sa_alloc(64, 0)!
        let after = last ? nil : sa_alloc(64, 0)
        let a = UInt(bitPattern: p)
        reportAddress(p)
        let b = ParkedThread { sa_free(pointer(a)) }
        childCheck(childStats().free_cache_objects == 1, "the remote free is not buffered")
        sa_free(p)
        childSurvived("the owner's free of an object in another thread's remote buffer")
        b.finish()
        sa_free(keep)
        if let after { sa_free(after) }
    }

    @Test func remoteThenOwnerDoubleFreeWhileBufferedStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            ReliabilityTests.FreeCache.remoteThenOwnerWhileBuffered(last: false)
        }
        expectStop(r, "remote then owner double free (buffered)")
    }

    @Test func remoteThenOwnerDoubleFreeOfLastAllocationStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            ReliabilityTests.FreeCache.remoteThenOwnerWhileBuffered(last: true)
        }
        expectStop(r, "remote then owner double free of the owner's last allocation")
    }

    /// B frees and exits (its buffer is handed to the span's remoteBits),
    /// then the owner frees: it stops at once, before any sweep.
    static func remoteExitThenOwner(last: Bool) {
        grantBin(64)
        let keep = sa_alloc(64, 0)!
        let p = sa_alloc(64, 0)!
        let after = last ? nil : sa_alloc(64, 0)
        let a = UInt(bitPattern: p)
        reportAddress(p)
        let s0 = childStats()
        onThread { sa_free(pointer(a)) }
        let s1 = childStats()
        childCheck(s1.remote_batches == s0.remote_batches + 1 && s1.free_cache_objects == 0,
                   "the exiting thread did not hand its buffer back")
        sa_free(p)
        childSurvived("the owner's free of an object another thread freed and handed back")
        sa_free(keep)
        if let after { sa_free(after) }
    }

    @Test func remoteFreeHandedBackThenOwnerFreeStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            ReliabilityTests.FreeCache.remoteExitThenOwner(last: false)
        }
        expectStop(r, "remote free handed back at exit, then owner free")
    }

    @Test func remoteFreeHandedBackThenOwnerFreeOfLastAllocationStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            ReliabilityTests.FreeCache.remoteExitThenOwner(last: true)
        }
        expectStop(r, "remote free handed back at exit, then owner free of its last allocation")
    }

    /// B frees, hands its buffer back with sa_thread_flush, and frees again:
    /// the slot is in the span's remoteBits now.
    @Test func remoteDoubleFreeAfterTheBatchWasHandedBackStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)
            let a = blocks[1]
            reportAddress(pointer(a))
            onThread {
                sa_free(pointer(a))
                sa_thread_flush()
                childCheck(childStats().remote_batches == 1, "sa_thread_flush did not hand the buffer back")
                sa_free(pointer(a))
                childSurvived("a remote free of an object already handed back")
            }
        }
        expectStop(r, "remote double free after the batch was handed back")
    }

    /// The owner frees into its bin; another thread frees the same object.
    @Test func ownerThenRemoteDoubleFreeOfCachedObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)
            let a = blocks[1]
            reportAddress(pointer(a))
            sa_free(pointer(a))
            childCheck(childStats().free_cache_objects == 1, "the freed object is not in a bin")
            onThread {
                sa_free(pointer(a))
                childSurvived("a remote free of an object in the owner's bin")
            }
        }
        expectStop(r, "owner (bin) then remote double free")
    }

    // MARK: c. After a flush; 8-byte objects

    /// free, then the bin is flushed (sa_thread_flush: the object goes to
    /// freeBits, the span is swept and handed to mcentral), then free again.
    @Test func doubleFreeAfterThreadFlushStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)  // blocks[0] and the extra keep the span in use
            let p = pointer(blocks[1])
            reportAddress(p)
            sa_free(p)
            sa_thread_flush()
            childCheck(childStats().free_cache_objects == 0, "sa_thread_flush left objects in the bins")
            sa_free(p)
            childSurvived("a free of an object flushed from the bin")
        }
        expectStop(r, "double free after sa_thread_flush")
    }

    /// The same with sa_scavenge, which hands the caller's cache back first.
    @Test func doubleFreeAfterScavengeStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)
            let p = pointer(blocks[1])
            reportAddress(p)
            sa_free(p)
            _ = sa_scavenge(0)
            childCheck(childStats().free_cache_objects == 0, "sa_scavenge left objects in the bins")
            sa_free(p)
            childSurvived("a free of an object flushed by sa_scavenge")
        }
        expectStop(r, "double free after sa_scavenge")
    }

    /// The owner frees into its bin and exits (bin flushed at thread exit);
    /// another thread frees the object again.
    @Test func doubleFreeAfterTheOwnerExitedStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let made = Guarded<UInt>(0)
            onThread {
                let (blocks, _) = allocateNotLast(2, size: 64)
                sa_free(pointer(blocks[1]))
                made.withLock { $0 = blocks[1] }
            }
            let p = pointer(made.withLock { $0 })
            reportAddress(p)
            sa_free(p)
            childSurvived("a free of an object its exited owner had cached")
        }
        expectStop(r, "double free after the owner exited")
    }

    /// 8-byte objects are cached like any other (the cookie fills the
    /// object): the second free stops.
    @Test func doubleFreeOfEightByteObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 8)
            let p = pointer(blocks[1])
            reportAddress(p)
            sa_free(p)
            sa_free(p)
            childSurvived("the second free of an 8-byte object")
        }
        expectStop(r, "double free of an 8-byte object")
    }

    /// The 8-byte object allocated last: the first free undoes the
    /// allocation step (the slot is free again); the second stops.
    @Test func doubleFreeOfLastEightByteObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let keep = sa_alloc(8, 0)!
            let p = sa_alloc(8, 0)!
            reportAddress(p)
            sa_free(p)
            sa_free(p)
            childSurvived("the second free of the 8-byte object allocated last")
            sa_free(keep)
        }
        expectStop(r, "double free of the last 8-byte object")
    }

    // MARK: d. realloc and malloc_usable_size of a freed (cached) object

    /// realloc of an object in the owner's bin, to a size of the same class
    /// (in place) or to one that moves: realloc itself must refuse it (a
    /// moving realloc would otherwise copy from it and free it again).
    static func reallocCached(to size: Int) {
        let (blocks, _) = allocateNotLast(2, size: 64)
        let p = pointer(blocks[1])
        sa_free(p)
        reportAddress(p)
        let q = sa_realloc(p, size)
        childSurvived("realloc of an object in a bin returned \(String(describing: q))")
    }

    @Test func reallocInPlaceOfCachedObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            ReliabilityTests.FreeCache.reallocCached(to: 60)
        }
        expectStop(r, "in-place realloc of a cached object", ["realloc of pointer"])
    }

    @Test func movingReallocOfCachedObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            ReliabilityTests.FreeCache.reallocCached(to: 4096)
        }
        expectStop(r, "moving realloc of a cached object", ["realloc of pointer"])
    }

    /// sa_usable_size_checked (malloc_usable_size) of an object in a bin.
    @Test func usableSizeOfCachedObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)
            let p = pointer(blocks[1])
            sa_free(p)
            reportAddress(p)
            let n = sa_usable_size_checked(p)
            childSurvived("malloc_usable_size of an object in a bin returned \(n)")
        }
        expectStop(r, "malloc_usable_size of a cached object", ["malloc_usable_size of pointer"])
    }

    /// realloc by the owner of an object another thread freed (still in
    /// that thread's remote buffer).
    @Test func reallocOfRemotelyBufferedObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)
            let a = blocks[1]
            reportAddress(pointer(a))
            let b = ParkedThread { sa_free(pointer(a)) }
            let q = sa_realloc(pointer(a), 60)
            childSurvived("realloc of an object in a remote buffer returned \(String(describing: q))")
            b.finish()
        }
        expectStop(r, "realloc of a remotely buffered object", ["realloc of pointer"])
    }

    /// realloc by another thread of an object in the owner's bin (the
    /// bitmaps still say live: only the cookie tells).
    @Test func reallocFromAnotherThreadOfCachedObjectStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(2, size: 64)
            let a = blocks[1]
            sa_free(pointer(a))
            reportAddress(pointer(a))
            onThread {
                let q = sa_realloc(pointer(a), 60)
                childSurvived("realloc from another thread of an object in a bin returned \(String(describing: q))")
            }
        }
        expectStop(r, "realloc from another thread of a cached object", ["realloc of pointer"])
    }

    // MARK: e. Counters, and exact statistics while objects sit in bins

    /// 200 objects of 64 B freed (in allocation order) and allocated again:
    /// a bin takes what it holds, the rest find it full (flushes); the
    /// allocations pop the bin (hits). MemStats counts the cached objects as
    /// freed throughout, and the checker accepts them.
    @Test func hitsAndFlushesAreCountedAndStatisticsStayExact() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let n = 200, size = 64
            let (blocks, extra) = allocateNotLast(n, size: size)
            let s0 = childStats()
            for a in blocks { sa_free(pointer(a)) }
            let s1 = childStats()
            let cached = s1.free_cache_objects - s0.free_cache_objects
            childCheck(cached > 0 && cached < UInt64(n), "\(cached) of \(n) objects cached (a bin holds fewer)")
            childCheck(s1.free_cache_bytes - s0.free_cache_bytes == cached * UInt64(size),
                       "freeCacheBytes \(s1.free_cache_bytes) for \(cached) objects")
            childCheck(s1.free_cache_flushes - s0.free_cache_flushes == UInt64(n) - cached,
                       "freeCacheFlushes +\(s1.free_cache_flushes - s0.free_cache_flushes), expected \(UInt64(n) - cached)")
            childCheck(s1.frees - s0.frees == UInt64(n), "frees +\(s1.frees - s0.frees), expected \(n)")
            childCheck(s1.heap_objects == s0.heap_objects - UInt64(n), "heapObjects \(s0.heap_objects) -> \(s1.heap_objects)")
            childCheck(s1.heap_alloc == s0.heap_alloc - UInt64(n * size), "heapAlloc \(s0.heap_alloc) -> \(s1.heap_alloc)")
            childCheck(s1.free_cache_hits == s0.free_cache_hits, "hits counted before any allocation")
            if let v = childHeapViolation() { childFail("with objects in a bin: \(v)") }
            if let v = SpanHeap.default.checkInvariants() { childFail("checkInvariants with objects in a bin: \(v)") }
            let again = (0..<n).map { _ in UInt(bitPattern: sa_alloc(size, 0)!) }
            let s2 = childStats()
            childCheck(s2.free_cache_hits - s1.free_cache_hits == cached,
                       "freeCacheHits +\(s2.free_cache_hits - s1.free_cache_hits), \(cached) objects were cached")
            childCheck(s2.free_cache_objects == s0.free_cache_objects, "the bin is not empty after \(n) allocations")
            childCheck(Set(again).intersection(blocks).count >= Int(cached), "the cached objects were not handed out again")
            childCheck(s2.heap_objects == s0.heap_objects && s2.mallocs - s1.mallocs == UInt64(n),
                       "heapObjects \(s2.heap_objects), expected \(s0.heap_objects)")
            if let v = childHeapViolation() { childFail(v) }
            for a in again { sa_free(pointer(a)) }
            sa_free(pointer(extra))
            sa_thread_flush()
            let s3 = childStats()
            childCheck(s3.heap_objects == 0 && s3.free_cache_objects == 0, "heapObjects \(s3.heap_objects) at the end")
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    /// A thread frees 100 objects another thread allocated: the 64th fills
    /// its buffer and hands it back (a batch), the rest wait in the buffer,
    /// counted as freed, until the thread exits (another batch, and an exit
    /// flush).
    @Test func remoteBatchesAndExitFlushesAreCounted() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let n = 100, size = 64
            let (blocks, extra) = allocateNotLast(n, size: size)
            let s0 = childStats()
            onThread {
                for a in blocks { sa_free(pointer(a)) }
                let s = childStats()
                childCheck(s.remote_batches > s0.remote_batches, "no batch handed back after \(n) remote frees")
                childCheck(s.free_cache_objects > 0 && s.free_cache_objects < UInt64(n),
                           "\(s.free_cache_objects) objects buffered")
                childCheck(s.remote_frees - s0.remote_frees == UInt64(n), "remoteFrees +\(s.remote_frees - s0.remote_frees)")
                childCheck(s.frees - s0.frees == UInt64(n) && s.heap_objects == s0.heap_objects - UInt64(n),
                           "frees +\(s.frees - s0.frees), heapObjects \(s0.heap_objects) -> \(s.heap_objects)")
                childCheck(s.heap_alloc == s0.heap_alloc - UInt64(n * size), "heapAlloc \(s0.heap_alloc) -> \(s.heap_alloc)")
                if let v = childHeapViolation() { childFail("with a buffered remote free: \(v)") }
                childCheck(s.exit_flushes == s0.exit_flushes, "an exit flush before any thread exited")
            }
            let s1 = childStats()
            let batches = s1.remote_batches - s0.remote_batches
            childCheck(batches >= 2 && batches <= 4, "\(batches) batches for \(n) remote frees")
            childCheck(s1.exit_flushes - s0.exit_flushes == 1, "exitFlushes +\(s1.exit_flushes - s0.exit_flushes)")
            childCheck(s1.free_cache_objects == s0.free_cache_objects, "objects still buffered after the thread exited")
            childCheck(s1.heap_objects == s0.heap_objects - UInt64(n), "heapObjects \(s1.heap_objects)")
            if let v = childHeapViolation() { childFail(v) }
            sa_free(pointer(extra))
        }
        expectChildPasses(r)
    }

    /// Only a thread that exits with objects in its bins counts an exit
    /// flush: not one that flushed first, not one whose frees were never
    /// cached (no budget).
    @Test func exitFlushesCountThreadsThatHeldCachedFrees() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let s0 = childStats()
            onThread {
                let (blocks, extra) = allocateNotLast(50, size: 96)
                for a in blocks { sa_free(pointer(a)) }
                childCheck(childStats().free_cache_objects == 50, "the 50 frees are not in a bin")
                sa_free(pointer(extra))
            }
            let s1 = childStats()
            childCheck(s1.exit_flushes - s0.exit_flushes == 1, "exitFlushes +\(s1.exit_flushes - s0.exit_flushes)")
            childCheck(s1.threads_exited - s0.threads_exited == 1 && s1.free_cache_objects == 0,
                       "the thread's cache was not handed back")
            onThread {
                let (blocks, extra) = allocateNotLast(50, size: 96)
                for a in blocks { sa_free(pointer(a)) }
                sa_free(pointer(extra))
                sa_thread_flush()
            }
            onThread {
                // Frees with no bin capacity (a budget of zero) go to freeBits.
                var cfg = sa_cache_config(), zero = sa_cache_config(thread_bytes: 0, total_bytes: 0)
                sa_get_cache_config(&cfg)
                sa_set_cache_config(&zero)
                let (blocks, extra) = allocateNotLast(50, size: 8)
                for a in blocks { sa_free(pointer(a)) }
                sa_free(pointer(extra))
                childCheck(childStats().free_cache_objects == 0, "objects cached with a zero budget")
                sa_set_cache_config(&cfg)
            }
            let s2 = childStats()
            childCheck(s2.threads_exited - s0.threads_exited == 3, "\(s2.threads_exited - s0.threads_exited) threads exited")
            childCheck(s2.exit_flushes == s1.exit_flushes,
                       "exitFlushes +\(s2.exit_flushes - s1.exit_flushes) for threads that held nothing at exit")
            childCheck(s2.heap_objects == s0.heap_objects, "heapObjects \(s2.heap_objects)")
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    // MARK: f. The checker sees corruption of cached objects; the budget

    /// A use-after-free write over word 0 of a cached object (its cookie):
    /// the checker reports the pointer; with the word restored, nil again.
    @Test func checkerReportsOverwrittenCookie() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let (blocks, extra) = allocateNotLast(3, size: 64)
            let a = blocks[1]
            sa_free(pointer(a))
            let heap = SpanHeap.default
            if let v = heap.checkInvariants() { childFail("before the write: \(v)") }
            let cookie = rawWord(a, 0)
            setRawWord(a, 0, 0x4141_4141_4141_4141)
            let hex = "0x" + String(a, radix: 16)
            guard let v = heap.checkInvariants() else { childFail("checkInvariants missed the overwritten cookie") }
            childCheck(v.contains(hex), "the report does not name \(hex): \(v)")
            guard let vq = heap.checkInvariants(quiescent: true) else {
                childFail("checkInvariants(quiescent:) missed the overwritten cookie")
            }
            childCheck(vq.contains(hex), "the quiescent report does not name \(hex): \(vq)")
            var buf = [CChar](repeating: 0, count: 256)
            childCheck(sa_check_heap(&buf, buf.count) != 0, "sa_check_heap returned 0")
            setRawWord(a, 0, cookie)
            if let v = heap.checkInvariants(quiescent: true) { childFail("after the word was restored: \(v)") }
            sa_free(pointer(blocks[0])); sa_free(pointer(blocks[2])); sa_free(pointer(extra))
        }
        expectChildPasses(r)
    }

    /// A bin that holds its object twice (pushed again by the checker's
    /// fault injection, sa_debug_push_cached): the checker reports the
    /// duplicate, naming it. The child stops using the heap afterwards.
    @Test func checkerReportsDuplicateInBin() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let (blocks, _) = allocateNotLast(3, size: 64)
            let a = blocks[1]
            sa_free(pointer(a))  // a is in the bin
            let heap = SpanHeap.default
            if let v = heap.checkInvariants() { childFail("before the injection: \(v)") }
            childCheck(sa_debug_push_cached(pointer(a)), "no room in the bin for the duplicate")
            guard let v = heap.checkInvariants() else { childFail("checkInvariants missed a pointer twice in a bin") }
            childCheck(v.contains("0x" + String(a, radix: 16)) && v.contains("twice"),
                       "the report does not name the duplicate: \(v)")
        }
        expectChildPasses(r)
    }

    /// With thread_bytes = 64 KiB, a thread that frees 10,000 objects of
    /// every class (in allocation order, 500 at a time) holds at most the
    /// budget in its free caches, read from that thread before it exits.
    @Test func threadHoldsAtMostItsBudget() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let budget: UInt64 = 64 << 10
            var cfg = sa_cache_config()
            sa_get_cache_config(&cfg)
            cfg.thread_bytes = Int(budget)
            sa_set_cache_config(&cfg)
            onThread {
                var cls: Int32 = 1, freed = 0, held: UInt64 = 0
                while freed < 10_000 {
                    var round: [UInt] = []
                    for _ in 0..<500 {
                        round.append(UInt(bitPattern: sa_alloc(sa_class_size(cls), 0)!))
                        cls = cls == 67 ? 1 : cls + 1
                    }
                    let extra = sa_alloc(48, 0)!  // none of the round is the last allocation
                    for a in round { sa_free(pointer(a)) }
                    sa_free(extra)
                    freed += round.count + 1
                    let s = childStats()
                    childCheck(s.thread_held_max <= budget, "after \(freed) frees the thread holds \(s.thread_held_max) bytes")
                    childCheck(s.free_cache_bytes <= budget, "after \(freed) frees \(s.free_cache_bytes) bytes are cached")
                    held = max(held, s.thread_held_max)
                }
                childCheck(held > 0, "no free was ever cached")
                childCheck(childStats().heap_objects == 0, "heapObjects \(childStats().heap_objects)")
                if let v = childHeapViolation() { childFail(v) }
            }
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    /// The process-wide cap: with total_bytes = 64 KiB, four live threads
    /// that each freed objects of every class cache at most 64 KiB together.
    @Test func allThreadsTogetherHoldAtMostTheTotalBudget() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let total: UInt64 = 64 << 10
            var cfg = sa_cache_config()
            sa_get_cache_config(&cfg)
            cfg.total_bytes = Int(total)
            sa_set_cache_config(&cfg)
            let threads = (0..<4).map { _ in
                ParkedThread {
                    var blocks: [UInt] = []
                    for cls in Int32(2)...67 { for _ in 0..<4 { blocks.append(UInt(bitPattern: sa_alloc(sa_class_size(cls), 0)!)) } }
                    let extra = sa_alloc(48, 0)!
                    for a in blocks { sa_free(pointer(a)) }
                    sa_free(extra)
                }
            }
            let s = childStats()
            childCheck(s.free_cache_objects > 0, "no free was cached")
            childCheck(s.free_cache_bytes <= total, "four threads cache \(s.free_cache_bytes) bytes, the total budget is \(total)")
            if let v = childHeapViolation() { childFail(v) }
            for t in threads { t.finish() }
            childCheck(childStats().heap_objects == 0, "heapObjects \(childStats().heap_objects)")
        }
        expectChildPasses(r)
    }

    // MARK: g. SPANALLOC=thread_cache=0

    /// Non-LIFO free/alloc pairs of 64 B objects: with the bins disabled no
    /// allocation is a hit; with the default budget (the control) they are.
    static func nonLIFOPairs() -> sa_mem_stats {
        let keep = sa_alloc(64, 0)!
        for _ in 0..<100 {
            let a = sa_alloc(64, 0)!, b = sa_alloc(64, 0)!
            sa_free(a)  // b was allocated after it
            let c = sa_alloc(64, 0)!
            sa_free(b)
            sa_free(c)
        }
        let s = childStats()
        sa_free(keep)
        return s
    }

    @Test func threadCacheZeroDisablesTheBins() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            setenv("SPANALLOC", "thread_cache=0", 1)
            let s = ReliabilityTests.FreeCache.nonLIFOPairs()
            var cfg = sa_cache_config()
            sa_get_cache_config(&cfg)
            childCheck(cfg.thread_bytes == 0, "thread_bytes \(cfg.thread_bytes) under thread_cache=0")
            childCheck(s.free_cache_hits == 0, "freeCacheHits \(s.free_cache_hits) with the bins disabled")
            childCheck(s.free_cache_objects == 0 && s.free_cache_flushes == 0,
                       "\(s.free_cache_objects) objects cached, \(s.free_cache_flushes) flushes with the bins disabled")
            childCheck(s.mallocs - s.frees == s.heap_objects && s.heap_objects == 1, "heapObjects \(s.heap_objects)")
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    @Test func defaultThreadCacheServesNonLIFOPairsFromTheBins() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            unsetenv("SPANALLOC")
            let s = ReliabilityTests.FreeCache.nonLIFOPairs()
            childCheck(s.free_cache_hits >= 100, "freeCacheHits \(s.free_cache_hits) for 100 non-LIFO pairs")
        }
        expectChildPasses(r)
    }
}

// MARK: - Frees after a thread's cache is gone

/// The late destructor's key and the blocks it frees (a C callback cannot capture them).
nonisolated(unsafe) var orphanKey = pthread_key_t()
nonisolated(unsafe) var orphanBlocks: [UInt] = []

extension ReliabilityTests.FreeCache {
    /// A thread's pthread key destructor that runs after SpanAlloc's (the
    /// cache is handed back) frees 100 objects: orphan frees, published at
    /// once, never in a bin. free_cache_hits must not move: no allocation
    /// was served from a bin.
    ///
    /// Not under ThreadSanitizer: its runtime finishes the thread in its own
    /// last-round key destructor, and a call intercepted after that faults
    /// (as for Defects.allocationAfterCacheDestructorLeavesNothingBehind).
    @Test(.enabled(if: !Sanitizer.thread, "ThreadSanitizer finishes the thread before glibc's last destructor round"))
    func freesAfterTheThreadCacheIsGoneAreNotHits() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            var key = pthread_key_t()
            let rc = pthread_key_create(&key, { value in
                // Re-armed up to glibc's last round (PTHREAD_DESTRUCTOR_ITERATIONS
                // = 4); SpanAlloc's destructor ran in the first.
                let round = Int(bitPattern: value)
                if round < 4 {
                    pthread_setspecific(orphanKey, UnsafeRawPointer(bitPattern: round + 1))
                    return
                }
                for a in orphanBlocks { sa_free(pointer(a)) }
            })
            childCheck(rc == 0, "pthread_key_create")
            orphanKey = key
            let (blocks, extra) = allocateNotLast(100, size: 64)
            orphanBlocks = blocks
            let s0 = childStats()
            onThread {
                pthread_setspecific(orphanKey, UnsafeRawPointer(bitPattern: 1))
                sa_free(sa_alloc(8, 0)!)  // the thread has a cache of its own
            }
            let s1 = childStats()
            childCheck(s1.frees - s0.frees == 101 && s1.heap_objects == s0.heap_objects - 100,
                       "frees +\(s1.frees - s0.frees), heapObjects \(s0.heap_objects) -> \(s1.heap_objects)")
            childCheck(s1.free_cache_hits == s0.free_cache_hits,
                       "freeCacheHits +\(s1.free_cache_hits - s0.free_cache_hits) for frees no bin ever saw")
            if let v = childHeapViolation() { childFail(v) }
            sa_free(pointer(extra))
        }
        expectChildPasses(r)
    }
}
