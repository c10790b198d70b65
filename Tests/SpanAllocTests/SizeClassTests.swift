import CSpanAlloc
import SpanAlloc
import Testing

extension CoreAllocatorTests {
    /// Go's 67 size classes: lookup, table, alignment, span of every object.
    @Suite struct SizeClasses {
        @Test func tableHasGosSixtySevenClasses() {
            #expect(goSizeClasses.count == 67)
            #expect(goSizeClasses.map(\.index) == Array(1...67))
            #expect(heap.sizeClasses.count == 67)
        }

        @Test func classToSizePagesObjectsMatchGo() {
            for go in goSizeClasses {
                let c = SizeClass(index: go.index)
                #expect(c.objectSize == go.size, "class \(go.index)")
                #expect(c.pageCount == go.pages, "class \(go.index)")
                #expect(c.objectsPerSpan == go.objects, "class \(go.index)")
                #expect(c.spanClass(noscan: false) == go.spanClassScan)
                #expect(c.spanClass(noscan: true) == go.spanClassNoscan)
                #expect(Int(sa_span_class(Int32(go.index), false)) == go.spanClassScan)
                #expect(Int(sa_span_class(Int32(go.index), true)) == go.spanClassNoscan)
            }
            #expect(heap.sizeClasses.map(\.objectSize) == goSizeClasses.map(\.size))
            // Out of range and class 0 have no object size.
            #expect(sa_class_size(0) == 0)
            #expect(sa_class_size(68) == 0)
            #expect(sa_class_size(-1) == 0)
        }

        /// size → class → size for every small size: the class is the
        /// smallest of Go's classes that fits the size.
        @Test func sizeToClassForEverySmallSize() {
            var mismatches: [String] = []
            var cls = 1
            for size in 0...Int(SA_MAX_SMALL_SIZE) {
                while goSizeClasses[cls - 1].size < size { cls += 1 }
                let got = heap.sizeClass(forByteCount: size)
                let roundTrip = got > 0 ? Int(sa_class_size(Int32(got))) : -1
                if got != cls || roundTrip != goSizeClasses[cls - 1].size {
                    mismatches.append("size \(size): class \(got) (\(roundTrip) B), Go: \(cls)")
                }
            }
            #expect(mismatches.isEmpty, "\(mismatches.count) mismatches, first: \(mismatches.prefix(5))")
        }

        @Test(arguments: [32769, 32776, 40000, 1 << 20, 1 << 30, Int.max])
        func largeSizesAreClassZero(size: Int) {
            #expect(heap.sizeClass(forByteCount: size) == 0)
        }

        /// Every class, scan and noscan: objects are aligned to the largest
        /// power of two dividing the class size, lie in their span, and the
        /// span describes the class as Go's table does.
        @Test(arguments: [false, true])
        func everyClassAlignmentAndSpan(noscan: Bool) {
            for go in goSizeClasses {
                let previous = go.index > 1 ? goSizeClasses[go.index - 2].size : 0
                // Requests at both ends of the class's range.
                let sizes = [go.size, go.size, go.size, previous + 1, previous + 1, max(go.size - 1, 1)]
                var live: [UnsafeMutableRawPointer] = []
                for size in sizes {
                    guard let p = heap.allocateIfPossible(byteCount: size, noscan: noscan) else {
                        Issue.record("class \(go.index): allocation of \(size) B failed")
                        continue
                    }
                    live.append(p)
                    p.storeBytes(of: 0xA5, as: UInt8.self)
                    (p + size - 1).storeBytes(of: 0x5A, as: UInt8.self)
                    let align = largestPowerOfTwoDividing(go.size)
                    #expect(p.address % UInt(align) == 0,
                            "class \(go.index) (\(go.size) B): \(p) not aligned to \(align)")
                    #expect(heap.usableSize(of: p) == go.size)
                    guard let span = heap.span(containing: p) else {
                        Issue.record("class \(go.index): no span for \(p)")
                        continue
                    }
                    #expect(span.contains(p))
                    #expect(span.contains(p + go.size - 1))
                    #expect(span.sizeClass == go.index)
                    #expect(span.noscan == noscan)
                    #expect(span.spanClass == (noscan ? go.spanClassNoscan : go.spanClassScan))
                    #expect(span.elementSize == go.size)
                    #expect(span.elementCount == go.objects)
                    #expect(span.pageCount == go.pages)
                    #expect(span.base % UInt(spanPage) == 0)
                    #expect(span.allocatedCount >= 1 && span.allocatedCount <= span.elementCount)
                    let offset = Int(p.address - span.base)
                    #expect(offset % go.size == 0, "class \(go.index): \(p) is not an object start")
                    #expect(offset / go.size < go.objects)
                    // Interior pointers find the same span.
                    #expect(heap.span(containing: p + go.size - 1)?.id == span.id)
                    #expect(heap.owns(p))
                }
                #expect(Set(live).count == live.count, "class \(go.index): a pointer was returned twice")
                for p in live { heap.deallocate(p) }
            }
        }

        @Test func zeroByteAllocationsAreUnique() {
            let ps = (0..<100).map { _ in heap.allocate(byteCount: 0) }
            #expect(Set(ps).count == 100)
            for p in ps {
                #expect(heap.span(containing: p)?.sizeClass == 1)
                heap.deallocate(p)
            }
        }

        /// Typed allocation puts pointer-free types in noscan spans.
        @Test func typedAllocationChoosesNoscan() {
            let ints = heap.allocate(Int.self, capacity: 10)
            let refs = heap.allocate(AnyObject?.self, capacity: 10)
            #expect(heap.span(containing: ints)?.noscan == true)
            #expect(heap.span(containing: refs)?.noscan == false)
            #expect(heap.span(containing: ints)?.sizeClass == heap.sizeClass(forByteCount: 80))
            heap.deallocate(ints)
            heap.deallocate(refs)
        }
    }
}
