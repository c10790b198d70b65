import CSpanAlloc
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension CoreAllocatorTests {
    /// calloc, realloc, aligned allocation, zeroing, and sizes that cannot
    /// be served.
    @Suite struct AllocationAPI {
        @Test(arguments: [1, 24, 100, 5000, 40000])
        func alignedAllocation(size: Int) throws {
            var live: [UnsafeMutableRawPointer] = []
            for shift in 0...20 {
                let alignment = 1 << shift
                let p = try #require(sa_alloc_aligned(size, alignment, 0), "size \(size) alignment \(alignment)")
                live.append(p)
                #expect(p.address % UInt(alignment) == 0, "size \(size) alignment \(alignment): \(p)")
                #expect(heap.usableSize(of: p) >= size)
                let span = try #require(heap.span(containing: p))
                #expect(span.contains(p) && span.contains(p + size - 1))
                (p + size - 1).storeBytes(of: 7, as: UInt8.self)
            }
            #expect(Set(live).count == live.count)
            for p in live { heap.deallocate(p) }
        }

        @Test func gigabyteAlignment() throws {
            let p = try #require(sa_alloc_aligned(8, 1 << 30, UInt32(SA_NOSCAN)))
            #expect(p.address % UInt(1 << 30) == 0)
            p.storeBytes(of: 1, as: UInt64.self)
            #expect(heap.span(containing: p) != nil)
            heap.deallocate(p)
        }

        @Test(arguments: [0, 3, 24, 4097, 3 << 20, 1 << 31, Int.max])
        func badAlignmentIsEINVAL(alignment: Int) {
            let (p, err) = withErrno { sa_alloc_aligned(64, alignment, 0) }
            #expect(p == nil)
            #expect(err == EINVAL)
        }

        @Test(arguments: [Int(bitPattern: UInt(SIZE_MAX)), Int.max, 1 << 62, 1 << 50])
        func impossibleSizeIsENOMEM(size: Int) {
            let (p, err) = withErrno { sa_alloc(size, 0) }
            #expect(p == nil)
            #expect(err == ENOMEM)
            if size >= 0 {
                let (q, err2) = withErrno { heap.allocateIfPossible(byteCount: size, alignment: 64) }
                #expect(q == nil)
                #expect(err2 == ENOMEM)
            }
            // The heap still serves ordinary requests.
            let r = heap.allocate(byteCount: 100)
            heap.deallocate(r)
        }

        @Test(arguments: [(Int.max, 2), (2, Int.max), (1 << 32, 1 << 32), (Int(bitPattern: UInt(SIZE_MAX)), 1 << 20)])
        func callocOverflowIsENOMEM(count: Int, size: Int) {
            let (p, err) = withErrno { sa_calloc(count, size, 0) }
            #expect(p == nil)
            #expect(err == ENOMEM)
        }

        @Test func callocZeroesReusedMemory() throws {
            for size in [8, 48, 512, 4096, 32768, 100_000] {
                // Dirty a block, free it, and calloc (then SA_ZERO-allocate)
                // the same size: the block must come back (the test is about
                // reused memory) and read as zero. A small block returns
                // through this thread's LIFO slot; a large one through the
                // freed pages, which a test on another thread may take first,
                // so a few tries are allowed.
                var callocReused = false, zeroReused = false
                for _ in 0..<20 where !(callocReused && zeroReused) {
                    let dirty = try #require(sa_alloc(size, 0))
                    dirty.initializeMemory(as: UInt8.self, repeating: 0xEE, count: size)
                    sa_free(dirty)
                    let p = try #require(sa_calloc(1, size, 0))
                    #expect(UnsafeRawBufferPointer(start: p, count: size).allSatisfy { $0 == 0 }, "calloc \(size)")
                    if p == dirty { callocReused = true }
                    p.initializeMemory(as: UInt8.self, repeating: 0xDD, count: size)
                    sa_free(p)
                    let q = try #require(heap.allocateIfPossible(byteCount: size, zeroed: true))
                    #expect(UnsafeRawBufferPointer(start: q, count: size).allSatisfy { $0 == 0 }, "SA_ZERO \(size)")
                    if q == p { zeroReused = true }
                    heap.deallocate(q)
                }
                #expect(callocReused, "calloc(\(size)) never got the dirty block back")
                #expect(zeroReused, "a zeroed allocation of \(size) never got the dirty block back")
            }
        }

        @Test func reallocKeepsContentsAndClass() throws {
            let p = try #require(heap.allocateIfPossible(byteCount: 20, noscan: true))
            fillBytes(p, size: 20)
            // 24 B fits the same class (24): in place.
            let same = try #require(heap.reallocate(p, byteCount: 24))
            #expect(same == p)
            // 1000 B: a new block, contents copied, noscan kept.
            let moved = try #require(heap.reallocate(same, byteCount: 1000))
            #expect(checkBytes(moved, size: 20))
            #expect(heap.span(containing: moved)?.noscan == true)
            #expect(heap.span(containing: moved)?.sizeClass == heap.sizeClass(forByteCount: 1000))
            fillBytes(moved, size: 1000)
            // Large and back.
            let large = try #require(heap.reallocate(moved, byteCount: 3 << 20))
            #expect(checkBytes(large, size: 1000))
            #expect(heap.span(containing: large)?.sizeClass == 0)
            fillBytes(large, size: 3 << 20)
            let larger = try #require(heap.reallocate(large, byteCount: 5 << 20))
            #expect(checkBytes(larger, size: 3 << 20))
            // A failed realloc leaves the block alone.
            let (failed, err) = withErrno { heap.reallocate(larger, byteCount: Int.max) }
            #expect(failed == nil)
            #expect(err == ENOMEM)
            #expect(checkBytes(larger, size: 3 << 20))
            let small = try #require(heap.reallocate(larger, byteCount: 100))
            #expect(checkBytes(small, size: 100))
            // realloc(p, 0) frees p.
            let before = heap.memStats.frees
            #expect(heap.reallocate(small, byteCount: 0) == nil)
            #expect(heap.memStats.frees >= before + 1)
            // realloc(NULL, n) allocates.
            let fresh = try #require(heap.reallocate(nil, byteCount: 64))
            #expect(heap.span(containing: fresh)?.sizeClass == heap.sizeClass(forByteCount: 64))
            heap.deallocate(fresh)
        }
    }
}

/// An address-independent pattern (for blocks that realloc moves) in the
/// first and last 4 KiB of the block.
private func edgeOffsets(_ size: Int) -> [Range<Int>] {
    size <= 8192 ? [0..<size] : [0..<4096, (size - 4096)..<size]
}

private func fillBytes(_ p: UnsafeMutableRawPointer, size: Int) {
    let b = p.assumingMemoryBound(to: UInt8.self)
    for r in edgeOffsets(size) { for i in r { b[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) } }
}

private func checkBytes(_ p: UnsafeRawPointer, size: Int) -> Bool {
    let b = p.assumingMemoryBound(to: UInt8.self)
    for r in edgeOffsets(size) { for i in r where b[i] != UInt8(truncatingIfNeeded: i &* 7 &+ 3) { return false } }
    return true
}
