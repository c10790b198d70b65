import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One request a workload makes, so a refused one can be retried.
enum Request: Sendable {
    case alloc(Int, noscan: Bool)
    case aligned(Int, alignment: Int)
    case calloc(Int, Int)

    var byteCount: Int {
        switch self {
        case .alloc(let n, _), .aligned(let n, _): n
        case .calloc(let n, let m): n * m
        }
    }

    /// Makes the request; the block, or nil with errno.
    func perform() -> (UnsafeMutableRawPointer?, Int32) {
        errnoAfter {
            switch self {
            case .alloc(let n, let noscan): sa_alloc(n, noscan ? UInt32(SA_NOSCAN) : 0)
            case .aligned(let n, let a): sa_alloc_aligned(n, a, 0)
            case .calloc(let n, let m): sa_calloc(n, m, 0)
            }
        }
    }

    /// Requests of every kind: large ones that need fresh arenas once the
    /// free runs are taken, and small ones of every class.
    static func random(_ rng: inout WyRand) -> Request {
        switch rng.below(8) {
        case 0, 1: .alloc(Int(SA_MAX_SMALL_SIZE) + 1 + rng.below(12 << 20), noscan: rng.chance(50))
        case 2: .aligned(1 + rng.below(1 << 20), alignment: 1 << (4 + rng.below(18)))
        case 3: .calloc(1 + rng.below(256), 1 + rng.below(64 << 10))
        default: .alloc(Int(sa_class_size(Int32(1 + rng.below(67)))), noscan: rng.chance(50))
        }
    }
}

/// Takes every free page run of the heap (mmap must already be failing,
/// so the heap cannot grow meanwhile), biggest pieces first, so the next
/// span needs memory from the OS. Returns the blocks holding them.
func holdEveryFreeRun() -> [UnsafeMutableRawPointer] {
    var held: [UnsafeMutableRawPointer] = []
    var piece = 1 << 36
    while piece >= Int(SA_PAGE_SIZE) {
        while let p = sa_alloc(piece, UInt32(SA_NOSCAN)) { held.append(p) }
        piece >>= 1
    }
    return held
}

/// Fault injection: the OS layer's mmap fails after N more calls
/// (`sa_debug_fail_mmap_after`) in the middle of a workload.
extension ReliabilityTests {
    @Suite struct FaultInjection {
        /// Requests refused with ENOMEM over all runs, for the report.
        static let refusedTotal = Guarded(0)

        /// Blocks of every class and some large ones, filled: they must
        /// survive whatever the failing OS does to the workload after them.
        func blocksBeforeTheFault(_ rng: inout WyRand) -> [TrackedBlock] {
            var blocks: [TrackedBlock] = []
            for cls in 1...67 {
                for _ in 0..<2 {
                    let size = Int(sa_class_size(Int32(cls))) - rng.below(8)
                    blocks.append(TrackedBlock(spanHeap.allocate(byteCount: size), size: size, seed: rng.next()))
                }
            }
            for size in [40_000, 300_000, 3 << 20] {
                blocks.append(TrackedBlock(spanHeap.allocate(byteCount: size), size: size, seed: rng.next()))
            }
            return blocks
        }

        @Test(arguments: [0, 1, 2, 3, 5, 8])
        func mmapFailsInTheMiddleOfAWorkload(successes: Int) throws {
            defer { sa_debug_fail_mmap_after(-1) }
            spanHeap.flushThreadCache()
            let before = spanHeap.memStats
            var rng = WyRand(seed: 0xFA17 &+ UInt64(successes))
            let earlier = blocksBeforeTheFault(&rng)

            sa_debug_fail_mmap_after(0)
            let held = holdEveryFreeRun()
            sa_debug_fail_mmap_after(successes)
            var made: [TrackedBlock] = []
            var refused: [Request] = []
            for _ in 0..<300 {
                let request = Request.random(&rng)
                let (p, err) = request.perform()
                if let p {
                    made.append(TrackedBlock(p, size: request.byteCount, seed: rng.next()))
                } else {
                    #expect(err == ENOMEM, "\(request) refused with errno \(err)")
                    refused.append(request)
                }
                // Growing a block in place or by moving: refused means untouched.
                if rng.chance(10), !made.isEmpty {
                    let i = rng.below(made.count)
                    let (q, err) = errnoAfter { sa_realloc(made[i].pointer, made[i].size + (16 << 20)) }
                    if let q {
                        made[i].address = UInt(bitPattern: q)
                    } else {
                        #expect(err == ENOMEM)
                        refused.append(.alloc(made[i].size + (16 << 20), noscan: false))
                    }
                    #expect(made[i].isIntact, "a block survives its realloc, refused or not")
                }
            }
            Self.refusedTotal.withLock { $0 += refused.count }
            print("mmap fails after \(successes) calls: \(made.count) requests served, \(refused.count) refused with ENOMEM")
            #expect(!refused.isEmpty, "the injected failure was reached")

            // Nothing allocated before or during the failure was lost or corrupted.
            #expect(earlier.allSatisfy { $0.isIntact }, "blocks allocated before the fault")
            #expect(made.allSatisfy { $0.isIntact }, "blocks allocated while mmap was failing")
            #expect(spanHeap.checkInvariants() == nil, "heap consistent while mmap still fails")

            // Memory is available again: every refused request now succeeds.
            sa_debug_fail_mmap_after(-1)
            for p in held { sa_free(p) }
            for request in refused {
                let (p, err) = request.perform()
                let q = try #require(p, "\(request) after injection is off (errno \(err))")
                let b = TrackedBlock(q, size: request.byteCount, seed: 1)
                #expect(b.isIntact)
                sa_free(q)
            }
            for b in earlier + made {
                #expect(b.isIntact)
                sa_free(b.pointer)
            }
            let after = spanHeap.memStats
            #expect(after.heapObjects == before.heapObjects, "every block freed")
            #expect(after.heapAlloc == before.heapAlloc)
            #expect(after.mallocs - before.mallocs == after.frees - before.frees)
        }

        /// Four threads allocate and free while mmap fails: each refusal is
        /// ENOMEM on the thread that asked, blocks of all threads stay intact.
        @Test func threadsUnderInjectedFailure() throws {
            defer { sa_debug_fail_mmap_after(-1) }
            spanHeap.flushThreadCache()
            let before = spanHeap.memStats
            sa_debug_fail_mmap_after(0)
            let held = holdEveryFreeRun()
            sa_debug_fail_mmap_after(3)
            let outcome = Guarded((served: 0, refused: 0, wrongErrno: 0, corrupted: 0))
            ThreadGang.run(4) { me in
                var rng = WyRand(seed: 0xFA17_7000 &+ UInt64(me))
                var mine: [TrackedBlock] = []
                var served = 0, refusedCount = 0, wrongErrno = 0, corrupted = 0
                for _ in 0..<200 {
                    if !mine.isEmpty && rng.chance(30) {
                        let b = mine.remove(at: rng.below(mine.count))
                        if !b.isIntact { corrupted += 1 }
                        sa_free(b.pointer)
                        continue
                    }
                    let request = Request.random(&rng)
                    let (p, err) = request.perform()
                    if let p {
                        served += 1
                        mine.append(TrackedBlock(p, size: request.byteCount, seed: rng.next()))
                    } else {
                        refusedCount += 1
                        if err != ENOMEM { wrongErrno += 1 }
                    }
                }
                for b in mine {
                    if !b.isIntact { corrupted += 1 }
                    sa_free(b.pointer)
                }
                outcome.withLock {
                    $0.served += served; $0.refused += refusedCount
                    $0.wrongErrno += wrongErrno; $0.corrupted += corrupted
                }
            }
            sa_debug_fail_mmap_after(-1)
            for p in held { sa_free(p) }
            let o = outcome.withLock { $0 }
            Self.refusedTotal.withLock { $0 += o.refused }
            print("4 threads under injected mmap failure: \(o.served) served, \(o.refused) refused")
            #expect(o.refused > 0, "the injected failure was reached")
            #expect(o.wrongErrno == 0, "every refusal sets ENOMEM")
            #expect(o.corrupted == 0, "no block changed while mmap failed")
            let after = spanHeap.memStats
            #expect(after.heapObjects == before.heapObjects)
            #expect(after.mallocs - before.mallocs == after.frees - before.frees)
            let p = try #require(sa_alloc(64 << 20, 0), "the heap grows again")
            sa_free(p)
        }
    }
}
