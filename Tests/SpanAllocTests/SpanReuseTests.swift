import CSpanAlloc
import SpanAlloc
import Testing

extension CoreAllocatorTests {
    /// A span whose objects are all freed is kept on its mcentral's empty
    /// list; once mheap takes it back (before mapping more memory, or on
    /// sa_scavenge) its pages serve any size class.
    @Suite struct SpanReuse {
        /// Frees every object of a one-page span of class `from`, then
        /// allocates objects of class `to` (also one page per span) until a
        /// span lands on the freed pages.
        @Test(arguments: [(3, 9, false), (5, 2, true), (1, 4, true)])
        func freedSpanServesAnotherClass(from: Int, to: Int, noscan: Bool) throws {
            let a = goSizeClasses[from - 1], b = goSizeClasses[to - 1]
            #expect(a.pages == b.pages)
            heap.flushThreadCache()
            let (found, objects) = allocateUntilOwnFullSpan(size: a.size, noscan: noscan, limit: 4 * a.objects)
            let full = try #require(found, "filled a span of class \(from) by itself")
            let inSpan = objects.filter { full.contains($0) }
            for p in objects where !full.contains(p) { heap.deallocate(p) }
            // Uncache the span, then free all its objects: mcentral keeps it
            // empty; sa_scavenge(0) gives the kept spans back to mheap.
            heap.flushThreadCache()
            let s0 = heap.memStats
            // Frees into a span the thread does not own are buffered and
            // handed to the span in batches: a thread frees them and exits,
            // which hands its buffer back.
            let addresses = inSpan.map(\.address)
            runOnThread { for a in addresses { heap.deallocate(UnsafeMutableRawPointer(address: a)) } }
            let kept = heap.memStats
            #expect(kept.centralEmptySpans > s0.centralEmptySpans, "the emptied span is kept")
            #expect(heap.span(containing: UnsafeRawPointer(bitPattern: full.base)!)?.allocatedCount == 0)
            _ = heap.scavenge(byteCount: 0)
            let s1 = heap.memStats
            #expect(s1.spansReturned > s0.spansReturned, "the emptied span was returned")
            #expect(s1.centralEmptySpans == 0)
            #expect(heap.span(containing: UnsafeRawPointer(bitPattern: full.base)!) == nil)

            var mine: [UnsafeMutableRawPointer] = []
            var reused: SpanInfo?
            for _ in 0..<(64 * b.objects) {
                let p = heap.allocate(byteCount: b.size, noscan: !noscan)
                mine.append(p)
                if let span = heap.span(containing: p), span.base == full.base {
                    reused = span
                    break
                }
            }
            let s2 = heap.memStats
            #expect(s2.spansReused > s1.spansReused, "spans were made from freed pages")
            #expect(s2.arenasMapped == s0.arenasMapped, "no new arena")
            if let reused {
                #expect(reused.sizeClass == to)
                #expect(reused.noscan == !noscan)
                #expect(reused.id != full.id, "span ids are never reused")
                #expect(reused.pageCount == full.pageCount)
            } else {
                Issue.record("the pages of the freed class-\(from) span never served class \(to)")
            }
            for p in mine { heap.deallocate(p) }
        }

        /// The pages of freed small spans serve a large object: with every
        /// other free run that could hold it taken (and mmap failing), a
        /// large object still fits, on pages the small spans used.
        @Test func freedSmallSpansServeALargeObject() throws {
            heap.flushThreadCache()
            let go = goSizeClasses[66]            // class 67: 32 KiB, 4 pages, 1 object
            let objects = (0..<64).map { _ in heap.allocate(byteCount: go.size) }
            let spans = objects.compactMap { heap.span(containing: $0) }
            #expect(Set(spans.map(\.id)).count == 64)
            let largeSize = 4 * go.size           // 16 pages
            sa_debug_fail_mmap_after(0)
            defer { sa_debug_fail_mmap_after(-1) }
            let holds = takeFreeRuns(atLeast: largeSize)
            heap.flushThreadCache()
            for p in objects { heap.deallocate(p) }
            let s0 = heap.memStats
            let large = sa_alloc(largeSize, 0)
            sa_debug_fail_mmap_after(-1)
            let s1 = heap.memStats
            #expect(large != nil, "the freed small spans' pages served a \(largeSize >> 10) KiB object")
            if let large {
                // The run may start with a page or two that the 32 KiB-aligned
                // spans skipped, so ask for overlap, not for the first byte.
                let lo = UInt(bitPattern: large), hi = lo + UInt(largeSize)
                #expect(spans.contains { $0.base < hi && lo < $0.base + UInt($0.pageCount) * 8192 },
                        "\(large) lies on pages of a freed small span")
                #expect(heap.span(containing: large)?.sizeClass == 0)
                #expect(s1.spansReused > s0.spansReused)
                #expect(s1.arenasMapped == s0.arenasMapped)
                heap.deallocate(large)
            }
            for p in holds { heap.deallocate(p) }
        }
    }
}
