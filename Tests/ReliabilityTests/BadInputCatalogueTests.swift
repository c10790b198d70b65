import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Writes `p` in hex as a line of the exit test's standard output, so the
/// parent can check that the fault message names it.
func reportAddress(_ p: UnsafeRawPointer) {
    print("address:" + String(UInt(bitPattern: p), radix: 16))
    fflush(nil)
}

/// The bad-input catalogue (docs/reliability.md) where SpanAllocTests does
/// not already cover it: frees and reallocs of memory the heap gave back
/// (even to the OS), realloc of foreign and interior pointers, the
/// near-`SIZE_MAX` sizes on every entry point, calloc overflow at its
/// boundary, invalid alignments through both APIs, and the Swift face's traps.
extension ReliabilityTests {
    @Suite struct BadInputCatalogue {
        /// Bad inputs tried by the non-exit tests (each exit test is one
        /// more), printed as a running total for the closing counts.
        static let tried = Guarded(0)

        static func tally(_ n: Int, _ what: String) {
            let total = tried.withLock { $0 += n; return $0 }
            print("bad inputs tried: \(n) (\(what)); \(total) by the non-exit tests so far")
        }

        static let freedWords = ["already freed", "double free", "not allocated"]
        static let foreignWords = ["not allocated", "not owned", "foreign"]

        /// The child stopped with a message that names the address it
        /// reported and one of `words`.
        func expectFault(_ result: ExitTest.Result?, _ what: String, _ words: [String],
                         sourceLocation: SourceLocation = #_sourceLocation) {
            guard let result else { return }
            let out = String(decoding: result.standardOutputContent, as: UTF8.self)
            let address = out.split(separator: "\n").last { $0.hasPrefix("address:") }?.dropFirst(8) ?? ""
            let message = String(decoding: result.standardErrorContent, as: UTF8.self).lowercased()
            #expect(!address.isEmpty && message.contains(address),
                    "\(what): the message names 0x\(address): \(message.prefix(300))", sourceLocation: sourceLocation)
            #expect(words.contains { message.contains($0) },
                    "\(what): the message says \(words): \(message.prefix(300))", sourceLocation: sourceLocation)
        }

        // MARK: Frees of memory the heap gave back

        /// A large object is freed, its pages returned to the OS, and the
        /// pointer freed again.
        @Test func freeOfLargeObjectAfterScavengeStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = sa_alloc(1 << 20, 0)!
                sa_free(p)
                _ = sa_scavenge(.max)
                reportAddress(p)
                sa_free(p)
            }
            expectFault(r, "free after scavenge (large)", Self.freedWords)
        }

        /// A small object's span is emptied, handed back to mheap and
        /// scavenged; the object is freed again.
        @Test func freeOfSmallObjectAfterItsSpanWasScavengedStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = sa_alloc(48, 0)!
                sa_free(p)
                sa_thread_flush()  // the empty span goes back to mheap
                _ = sa_scavenge(.max)
                reportAddress(p)
                sa_free(p)
            }
            expectFault(r, "free after scavenge (small)", Self.freedWords)
        }

        /// A pointer into the middle of a scavenged free run (whose interior
        /// pages map to no span).
        @Test func freeInsideAScavengedFreeRunStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = sa_alloc(4 << 20, 0)!
                sa_free(p)
                _ = sa_scavenge(.max)
                reportAddress(p + (1 << 20))
                sa_free(p + (1 << 20))
            }
            expectFault(r, "free inside a free run", Self.freedWords)
        }

        /// The slot just past a span's last object (in the span's tail).
        @Test func freeOfTheSpanTailStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = sa_alloc(24, 0)!  // class 3: 341 objects, 8 bytes of tail
                var info = sa_span_info()
                _ = sa_span_of(p, &info)
                let tail = UnsafeMutableRawPointer(bitPattern: info.base + UInt(info.nelems * info.elemsize))!
                reportAddress(tail)
                sa_free(tail)
            }
            expectFault(r, "free of a span's tail", ["interior", "unallocated", "double free", "not allocated"])
        }

        /// The free fast path trusts that no class has both a tail (room for
        /// a slot index == nelems) and a multiple of 64 objects (where that
        /// index would read past allocBits): check the table keeps it so.
        @Test func noClassHasATailAndAWholeNumberOfBitmapWords() {
            for cls in Int32(1)...67 {
                let bytes = sa_class_pages(cls) * Int(SA_PAGE_SIZE)
                let tail = bytes - sa_class_objects(cls) * sa_class_size(cls)
                #expect(tail < sa_class_size(cls), "class \(cls): the tail holds no whole slot")
                if tail > 0 {
                    #expect(sa_class_objects(cls) % 64 != 0, "class \(cls): tail and nelems % 64 == 0")
                }
            }
        }

        // MARK: realloc of pointers it does not own

        @Test func reallocOfGlibcPointerStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = malloc(64)!
                reportAddress(p)
                _ = sa_realloc(p, 128)
            }
            expectFault(r, "realloc of a glibc pointer", Self.foreignWords)
        }

        @Test func reallocOfStackAddressStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                var x = 0
                withUnsafeMutablePointer(to: &x) { p in
                    reportAddress(p)
                    _ = sa_realloc(p, 16)
                }
            }
            expectFault(r, "realloc of a stack address", Self.foreignWords)
        }

        @Test func reallocOfInteriorPointerStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = sa_alloc(256, 0)!
                reportAddress(p + 16)
                _ = sa_realloc(p + 16, 1000)
            }
            expectFault(r, "realloc of an interior pointer", ["interior"])
        }

        @Test func reallocOfFreedLargeObjectStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = sa_alloc(1 << 20, 0)!
                sa_free(p)
                _ = sa_scavenge(.max)
                reportAddress(p)
                _ = sa_realloc(p, 2 << 20)
            }
            expectFault(r, "realloc of a freed large object", Self.freedWords)
        }

        /// realloc of a freed small object to a size that needs a move:
        /// the free of the old block inside realloc catches it.
        @Test func reallocOfFreedSmallObjectStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let keep = sa_alloc(64, 0)!
                let p = sa_alloc(64, 0)!
                sa_free(p)
                reportAddress(p)
                _ = sa_realloc(p, 4096)
                sa_free(keep)
            }
            expectFault(r, "realloc of a freed small object", Self.freedWords + ["unallocated"])
        }

        /// realloc of a freed small object to a size of the same class: the
        /// in-place path must not hand the freed block back (the next
        /// allocation would own it too); it stops, as for a double free.
        @Test func reallocInPlaceOfFreedSmallObjectStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let keep = sa_alloc(64, 0)!
                let p = sa_alloc(64, 0)!
                sa_free(p)
                reportAddress(p)
                let q = sa_realloc(p, 60)  // same class: in place
                let again = sa_alloc(64, 0)
                if q != nil && q == again { print("the block was handed out twice") }
                sa_free(keep)
            }
            expectFault(r, "in-place realloc of a freed small object", Self.freedWords + ["unallocated"])
        }

        // MARK: Sizes that cannot be served

        /// Near `SIZE_MAX` and just above the largest servable size, on every
        /// entry point: nil with ENOMEM, and a live block given to realloc
        /// stays valid and unchanged.
        static let impossibleSizes: [UInt] = [
            .max, .max - 1, .max - 8191, .max - (1 << 20), .max - (1 << 30),
            1 << 63, (1 << 46) + 1, 1 << 47, 1 << 56,
        ]

        @Test(arguments: impossibleSizes)
        func impossibleSizeOnEveryEntryPoint(size: UInt) throws {
            let n = Int(bitPattern: size)
            var tried = 0
            func expectRefused(_ what: String, _ body: () -> UnsafeMutableRawPointer?) {
                tried += 1
                let (p, err) = errnoAfter(body)
                #expect(p == nil, "\(what)(\(size)) returned a block")
                #expect(err == ENOMEM, "\(what)(\(size)): errno \(err)")
            }
            expectRefused("sa_alloc zeroed") { sa_alloc(n, UInt32(SA_ZERO | SA_NOSCAN)) }
            for shift in [4, 13, 14, 20, 30] {
                expectRefused("sa_alloc_aligned 2^\(shift)") { sa_alloc_aligned(n, 1 << shift, 0) }
            }
            expectRefused("sa_calloc(1, n)") { sa_calloc(1, n, 0) }
            expectRefused("sa_calloc(n, 1)") { sa_calloc(n, 1, UInt32(SA_NOSCAN)) }
            if n > 0 {
                expectRefused("SpanHeap.allocateIfPossible") { spanHeap.allocateIfPossible(byteCount: n, alignment: 4096) }
            }
            for start in [100, 20_000, 3 << 20] {
                let b = TrackedBlock(spanHeap.allocate(byteCount: start), size: start, seed: UInt64(start))
                expectRefused("sa_realloc from \(start)") { sa_realloc(b.pointer, n) }
                #expect(b.isIntact, "the block realloc refused to grow is unchanged")
                #expect(spanHeap.usableSize(of: b.pointer) >= start)
                sa_free(b.pointer)
            }
            Self.tally(tried, "size \(size) on every entry point")
        }

        /// calloc's count × size at the overflow boundary.
        static let overflowingProducts: [(UInt, UInt)] = [
            (UInt.max / 2 + 1, 2), (2, UInt.max / 2 + 1), (1 << 33, 1 << 31),
            (UInt.max / 3 + 1, 3), (65537, UInt.max / 65536),
        ]

        @Test(arguments: overflowingProducts)
        func callocOverflowAtTheBoundary(count: UInt, size: UInt) {
            let overflow = count.multipliedReportingOverflow(by: size).overflow
            #expect(overflow, "the case overflows")
            let (p, err) = errnoAfter { sa_calloc(Int(bitPattern: count), Int(bitPattern: size), 0) }
            #expect(p == nil)
            #expect(err == ENOMEM)
            Self.tally(1, "calloc \(count) × \(size)")
        }

        /// Zero elements, or elements of zero bytes, are a valid (empty) request.
        @Test func callocOfZeroBytesIsAUniqueBlock() throws {
            let a = try #require(sa_calloc(0, Int(bitPattern: UInt.max), 0))
            let b = try #require(sa_calloc(Int(bitPattern: UInt.max), 0, 0))
            #expect(a != b)
            sa_free(a)
            sa_free(b)
            Self.tally(2, "calloc of zero bytes")
        }

        /// Alignments that are not a power of two up to 1 GiB: EINVAL from
        /// the C API, nil from SpanHeap (alignments the core tests do not try).
        @Test(arguments: [6, 12, 48, 96, 0x8000_0001, 1 << 31 | 1 << 30, 1 << 40, Int.min, -1, -4096])
        func invalidAlignmentIsEINVAL(alignment: Int) {
            for size in [0, 16, 5000, 100_000] {
                let (p, err) = errnoAfter { sa_alloc_aligned(size, alignment, 0) }
                #expect(p == nil && err == EINVAL, "alignment \(alignment), size \(size): errno \(err)")
                if alignment > 8 {
                    let (q, err2) = errnoAfter { spanHeap.allocateIfPossible(byteCount: size, alignment: alignment) }
                    #expect(q == nil && err2 == EINVAL, "SpanHeap alignment \(alignment)")
                }
            }
            Self.tally(alignment > 8 ? 8 : 4, "alignment \(alignment)")
        }

        /// NULL and foreign or freed pointers given to the read-only calls
        /// answer "not ours" and do not stop the process.
        @Test func introspectionOfPointersItDoesNotOwn() throws {
            var info = sa_span_info()
            let big = try #require(sa_alloc(2 << 20, 0))
            sa_free(big)
            _ = sa_scavenge(.max)
            let foreign = malloc(32)!
            defer { free(foreign) }
            var local = 0
            let candidates: [UnsafeRawPointer?] = [
                nil, UnsafeRawPointer(foreign), withUnsafePointer(to: &local) { UnsafeRawPointer($0) },
                UnsafeRawPointer(bitPattern: 0x1000), UnsafeRawPointer(bitPattern: UInt.max - 15),
                UnsafeRawPointer(bitPattern: UInt(1) << 48), UnsafeRawPointer(big), UnsafeRawPointer(big + 8192),
            ]
            for p in candidates {
                #expect(!sa_owns(p), "\(String(describing: p)) owned")
                #expect(sa_usable_size(p) == 0, "\(String(describing: p)) has a usable size")
                if let p { #expect(!sa_span_of(p, &info), "\(p) has a span") }
            }
            sa_free(nil)  // freeing NULL does nothing
            Self.tally(3 * candidates.count + 1, "introspection of pointers it does not own")
        }

        // MARK: The Swift face

        @Test func allocateTrapsWhenOutOfMemory() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = SpanHeap.default.allocate(byteCount: Int.max)
            }
            let message = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
            #expect(r == nil || message.contains("out of memory"), "\(message.prefix(300))")
        }

        @Test func negativeByteCountTraps() async {
            await #expect(processExitsWith: .failure) {
                _ = SpanHeap.default.allocateIfPossible(byteCount: -1)
            }
        }

        @Test func typedCapacityOverflowTraps() async {
            await #expect(processExitsWith: .failure) {
                _ = SpanHeap.default.allocate(Int64.self, capacity: Int.max / 4)
            }
        }
    }
}
