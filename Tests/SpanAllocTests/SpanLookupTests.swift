import CSpanAlloc
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension CoreAllocatorTests {
    /// The page → span map: every object finds its span, nothing else does.
    @Suite struct SpanLookup {
        @Test func foreignPointersHaveNoSpan() {
            var local = 42
            withUnsafeMutablePointer(to: &local) { stack in
                #expect(heap.span(containing: stack) == nil)
                #expect(!heap.owns(stack))
            }
            let glibc = malloc(64)!
            #expect(heap.span(containing: glibc) == nil)
            #expect(!heap.owns(glibc))
            free(glibc)
            let low = UnsafeRawPointer(bitPattern: 0x1000)!
            #expect(heap.span(containing: low) == nil)
            #expect(!heap.owns(low))
            let high = UnsafeRawPointer(bitPattern: UInt(1) << 62)!
            #expect(heap.span(containing: high) == nil)
            // A function's code is not heap memory either.
            let code = unsafeBitCast(malloc as @convention(c) (Int) -> UnsafeMutableRawPointer?,
                                     to: UnsafeRawPointer.self)
            #expect(heap.span(containing: code) == nil)
        }

        @Test func freedLargeObjectHasNoSpan() {
            let size = 3 * 1024 * 1024
            let p = heap.allocate(byteCount: size)
            let span = heap.span(containing: p + size / 2)
            #expect(span?.base == p.address)
            heap.deallocate(p)
            #expect(heap.span(containing: p) == nil, "free pages are in no span")
            #expect(heap.span(containing: p + size / 2) == nil)
            #expect(!heap.owns(p))
        }

        /// Allocates 2 × nelems + 70 objects of classes 1, 2 and 3, which
        /// crosses many 64-object allocCache windows and at least one span
        /// end: every object is distinct, an object start inside its span,
        /// and the thread cache only moves to another span once the current
        /// one is full.
        @Test(arguments: [(1, false), (2, false), (3, false), (1, true), (3, true)])
        func allocCacheRefillsAcrossWindowsAndSpans(sizeClass: Int, noscan: Bool) {
            let go = goSizeClasses[sizeClass - 1]
            heap.flushThreadCache()
            let s0 = heap.memStats
            let count = 2 * go.objects + 70
            var objects: [UnsafeMutableRawPointer] = []
            objects.reserveCapacity(count)
            var order: [UInt64] = []          // span ids in the order they served us
            var slots: [UInt64: Set<Int>] = [:]
            var lastSlot: [UInt64: Int] = [:]
            var problems: [String] = []
            for i in 0..<count {
                let p = heap.allocate(byteCount: go.size, noscan: noscan)
                p.storeBytes(of: UInt64(i), as: UInt64.self)
                objects.append(p)
                guard let span = heap.span(containing: p) else {
                    problems.append("object \(i) at \(p) has no span"); continue
                }
                if span.sizeClass != sizeClass || span.noscan != noscan { problems.append("\(span) for class \(sizeClass)") }
                let offset = Int(p.address - span.base)
                if offset % go.size != 0 || offset / go.size >= go.objects {
                    problems.append("\(p) is not an object start of \(span)")
                }
                let slot = offset / go.size
                if order.last != span.id {
                    if order.contains(span.id) { problems.append("span \(span.id) served again before it was full") }
                    order.append(span.id)
                } else if let last = lastSlot[span.id], slot <= last {
                    problems.append("span \(span.id): slot \(slot) after slot \(last) (freeindex went back)")
                }
                lastSlot[span.id] = slot
                if !slots[span.id, default: []].insert(slot).inserted {
                    problems.append("span \(span.id) slot \(slot) handed out twice")
                }
            }
            #expect(problems.isEmpty, "\(problems.count) problems: \(problems.prefix(5))")
            #expect(Set(objects).count == count, "every object is distinct")
            #expect(order.count >= 2, "the allocations crossed a span end")
            #expect(heap.memStats.cacheRefills - s0.cacheRefills >= UInt64(order.count),
                    "each span came to the cache by a refill")
            // Every span the cache left behind is full; one of them is all ours.
            for id in order.dropLast() {
                let p = objects.first { heap.span(containing: $0)?.id == id }!
                let span = heap.span(containing: p)!
                #expect(span.allocatedCount == span.elementCount, "span left before it was full: \(span)")
            }
            #expect(order.dropLast().contains { slots[$0]!.count == go.objects },
                    "some span was filled entirely by this test")
            for (i, p) in objects.enumerated() {
                #expect(p.load(as: UInt64.self) == UInt64(i))
            }
            for p in objects { heap.deallocate(p) }
        }

        /// Every object of more than a span's worth, in every class, finds
        /// its span from its first and its last byte.
        @Test func everyObjectFindsItsSpan() {
            var problems: [String] = []
            for go in goSizeClasses {
                let objects = (0...go.objects).map { _ in heap.allocate(byteCount: go.size, noscan: go.index % 2 == 0) }
                for p in objects {
                    guard let span = heap.span(containing: p) else { problems.append("class \(go.index): \(p) has no span"); continue }
                    let offset = Int(p.address - span.base)
                    if span.sizeClass != go.index || offset % go.size != 0 || offset / go.size >= go.objects
                        || !span.contains(p + go.size - 1) || heap.span(containing: p + go.size - 1)?.id != span.id {
                        problems.append("class \(go.index): \(p) in \(span)")
                    }
                }
                for p in objects { heap.deallocate(p) }
            }
            #expect(problems.isEmpty, "\(problems.count) problems: \(problems.prefix(5))")
        }

        /// Fills a span until it is the thread's exhausted cached span, frees
        /// every third object from `freeingThread`, and allocates again: the
        /// owner's frees come back from its free-cache bin; remote frees reach
        /// the span when the freeing thread exits, and the sweep folds them
        /// into allocBits while the cache keeps the span.
        func sweepKeepsCachedSpan(remote: Bool) {
            let go = goSizeClasses[3]  // class 4: 32 B, 256 objects
            heap.flushThreadCache()
            let (full, mine) = allocateUntilOwnFullSpan(size: go.size, noscan: true, limit: 4 * go.objects)
            guard let full else {
                Issue.record("never filled a span of class 4 by itself")
                for p in mine { heap.deallocate(p) }
                return
            }
            let inSpan = mine.filter { full.contains($0) }.sorted { $0.address < $1.address }
            let freed = stride(from: 0, to: inSpan.count, by: 3).map { inSpan[$0] }
            let before = heap.memStats
            if remote {
                let addresses = freed.map(\.address)
                runOnThread { for a in addresses { heap.deallocate(UnsafeMutableRawPointer(address: a)) } }
            } else {
                for p in freed { heap.deallocate(p) }
            }
            #expect(heap.span(containing: inSpan[1])?.allocatedCount == full.elementCount - freed.count)
            let again = (0..<freed.count).map { _ in heap.allocate(byteCount: go.size, noscan: true) }
            let after = heap.memStats
            #expect(Set(again) == Set(freed), "the freed slots of the cached span were reused")
            if remote {
                #expect(after.cacheSweeps > before.cacheSweeps)
                #expect(after.remoteFrees >= before.remoteFrees + UInt64(freed.count))
            } else {
                // All but the object allocated last, which the LIFO shortcut
                // hands back to allocCache, come back from the bin.
                #expect(after.freeCacheHits + 1 >= before.freeCacheHits + UInt64(freed.count))
            }
            #expect(heap.span(containing: inSpan[0])?.allocatedCount == full.elementCount)
            let others = Set(mine).subtracting(freed)
            for p in others { heap.deallocate(p) }
            for p in again { heap.deallocate(p) }
        }

        @Test func ownerFreesAreSweptIntoCachedSpan() { sweepKeepsCachedSpan(remote: false) }

        @Test func remoteFreesAreSweptIntoCachedSpan() { sweepKeepsCachedSpan(remote: true) }
    }
}
