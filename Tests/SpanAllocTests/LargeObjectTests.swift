import CSpanAlloc
import SpanAlloc
import Testing

extension CoreAllocatorTests {
    /// Objects over 32 KiB: one span each, straight from the page heap.
    @Suite struct LargeObjects {
        static let sizes: [Int] = [
            32769, 40960, 65537, 1 << 20, (8 << 20) + 8191,
            64 << 20, (64 << 20) + 1, 200 << 20, 1 << 30,
        ]

        @Test(arguments: sizes)
        func largeObjectIsOneSpan(size: Int) throws {
            let pages = (size + spanPage - 1) / spanPage
            let before = heap.memStats
            let p = try #require(heap.allocateIfPossible(byteCount: size, noscan: size % 2 == 1))
            let during = heap.memStats
            p.storeBytes(of: 0x11, as: UInt8.self)
            (p + size - 1).storeBytes(of: 0x22, as: UInt8.self)
            #expect(p.address % UInt(spanPage) == 0, "large objects are 8 KiB aligned")
            let span = try #require(heap.span(containing: p))
            #expect(span.base == p.address)
            #expect(span.sizeClass == 0)
            #expect(span.noscan == (size % 2 == 1))
            #expect(span.spanClass == (size % 2 == 1 ? 1 : 0))
            #expect(span.pageCount == pages)
            #expect(span.elementCount == 1)
            #expect(span.elementSize == pages * spanPage)
            #expect(span.allocatedCount == 1)
            #expect(heap.usableSize(of: p) == pages * spanPage)
            #expect(heap.span(containing: p + size - 1)?.id == span.id)
            #expect(during.largeAllocs >= before.largeAllocs + 1)
            #expect(during.heapInuse >= UInt64(pages * spanPage))
            #expect(p.load(as: UInt8.self) == 0x11)
            #expect((p + size - 1).load(as: UInt8.self) == 0x22)
            heap.deallocate(p)
            let after = heap.memStats
            #expect(after.largeFrees >= before.largeFrees + 1)
            #expect(heap.span(containing: p) == nil)
            #expect(heap.span(containing: p + size - 1) == nil)
        }

        /// One-page and two-page objects are still small classes.
        @Test(arguments: [8192, 16384])
        func pageSizedObjectsAreSmall(size: Int) throws {
            let p = try #require(heap.allocateIfPossible(byteCount: size))
            let span = try #require(heap.span(containing: p))
            #expect(span.sizeClass == heap.sizeClass(forByteCount: size))
            #expect(span.elementSize == size)
            #expect(p.address % UInt(size) == 0)
            heap.deallocate(p)
        }

        /// Two adjacent large spans are freed; a span as big as both is then
        /// allocated. The sizes are chosen so that no other free run in the
        /// heap can hold it (2 × size > all other idle memory): without
        /// coalescing the heap would have to map a new arena.
        @Test func freedNeighboursCoalesce() throws {
            var size = max(roundUpToPages(Int(heap.memStats.heapIdle) / 2 + spanPage), 4 << 20)
            var chosen: (lo: UnsafeMutableRawPointer, hi: UnsafeMutableRawPointer)?
            var otherIdle = 0
            while chosen == nil && size <= 8 << 30 {
                let a = try #require(heap.allocateIfPossible(byteCount: size, noscan: true))
                let b = try #require(heap.allocateIfPossible(byteCount: size, noscan: true))
                otherIdle = Int(heap.memStats.heapIdle)
                let (lo, hi) = a < b ? (a, b) : (b, a)
                if lo + size == hi && 2 * size > otherIdle {
                    chosen = (lo, hi)
                } else {
                    heap.deallocate(a)
                    heap.deallocate(b)
                    size *= 2
                }
            }
            let pair = try #require(chosen, "never got two adjacent large spans larger than the idle memory")
            let before = heap.memStats
            heap.deallocate(pair.lo)
            heap.deallocate(pair.hi)
            let big = try #require(heap.allocateIfPossible(byteCount: 2 * size, noscan: true))
            let after = heap.memStats
            #expect(after.arenasMapped == before.arenasMapped, "no new arena")
            #expect(after.heapSys == before.heapSys, "no new heap memory")
            // Only the coalesced run can hold it, so it overlaps the freed pair
            // by at least 2 × size − (all other idle memory).
            let lo = max(big.address, pair.lo.address)
            let hi = min(big.address + UInt(2 * size), pair.lo.address + UInt(2 * size))
            #expect(hi > lo && Int(hi - lo) >= 2 * size - otherIdle,
                    "the new span \(big) lies in the coalesced run at \(pair.lo)")
            let span = try #require(heap.span(containing: big))
            #expect(span.pageCount == 2 * size / spanPage)
            big.storeBytes(of: 1, as: UInt8.self)
            (big + 2 * size - 1).storeBytes(of: 1, as: UInt8.self)
            heap.deallocate(big)
        }

        /// A large object freed dirty and allocated again zeroed reads zero.
        @Test func zeroedLargeObjectIsZero() throws {
            let size = 1 << 20
            let dirty = heap.allocate(byteCount: size)
            dirty.initializeMemory(as: UInt8.self, repeating: 0xFF, count: size)
            heap.deallocate(dirty)
            let p = try #require(heap.allocateIfPossible(byteCount: size, zeroed: true))
            let bytes = UnsafeRawBufferPointer(start: p, count: size)
            #expect(bytes.allSatisfy { $0 == 0 })
            heap.deallocate(p)
        }
    }
}
