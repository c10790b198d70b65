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

        /// One-page and two-page objects are still small classes, aligned to
        /// their size (a 16 KiB object to 16 KiB, though span pages are 8 KiB).
        @Test(arguments: [8192, 16384])
        func pageSizedObjectsAreSmall(size: Int) throws {
            let objects = (0..<8).map { _ in heap.allocate(byteCount: size) }
            for p in objects {
                let span = try #require(heap.span(containing: p))
                #expect(span.sizeClass == heap.sizeClass(forByteCount: size))
                #expect(span.elementSize == size)
                #expect(p.address % UInt(size) == 0, "\(p) is not aligned to \(size)")
            }
            for p in objects { heap.deallocate(p) }
        }

        /// Two adjacent large spans are freed; a span as big as both is then
        /// allocated while every mmap fails. Before the frees, the heap
        /// proves it has no other free run that large (allocations of that
        /// size are taken until one fails), so only the coalesced run can
        /// serve it.
        @Test func freedNeighboursCoalesce() throws {
            let size = 4 << 20
            // Two adjacent spans of `size` (consecutive large allocations
            // from one free run are adjacent; look among a few).
            var objects: [UnsafeMutableRawPointer] = []
            var pair: (lo: UnsafeMutableRawPointer, hi: UnsafeMutableRawPointer)?
            for _ in 0..<8 where pair == nil {
                let p = try #require(heap.allocateIfPossible(byteCount: size, noscan: true))
                if let q = objects.first(where: { $0 + size == p || p + size == $0 }) {
                    pair = q < p ? (q, p) : (p, q)
                }
                objects.append(p)
            }
            let (lo, hi) = try #require(pair, "two of 8 consecutive \(size >> 20) MiB spans are adjacent")
            for p in objects where p != lo && p != hi { heap.deallocate(p) }

            let before = heap.memStats
            sa_debug_fail_mmap_after(0)
            defer { sa_debug_fail_mmap_after(-1) }
            // Take every free run that could hold 2 × size.
            let holds = takeFreeRuns(atLeast: 2 * size)
            heap.deallocate(lo)
            heap.deallocate(hi)
            let big = sa_alloc(2 * size, UInt32(SA_NOSCAN))
            sa_debug_fail_mmap_after(-1)
            let after = heap.memStats
            #expect(big != nil, "the two freed neighbours coalesced into one run of 2 × size")
            #expect(after.arenasMapped == before.arenasMapped, "no new arena")
            #expect(after.heapSys == before.heapSys, "no new heap memory")
            if let big {
                // The run is the freed pair plus free neighbours each smaller than 2 × size.
                #expect(big + 2 * size > lo && big < hi + size, "the new span \(big) overlaps the pair at \(lo)")
                let span = try #require(heap.span(containing: big))
                #expect(span.pageCount == 2 * size / spanPage)
                big.storeBytes(of: 1, as: UInt8.self)
                (big + 2 * size - 1).storeBytes(of: 1, as: UInt8.self)
                heap.deallocate(big)
            }
            for p in holds { heap.deallocate(p) }
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
