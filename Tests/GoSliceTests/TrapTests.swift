import Testing
import SpanAllocTestSupport
import SpanAlloc

/// Checks that the child process printed Go's runtime error `message`.
func expectGoPanic(_ result: ExitTest.Result?, _ message: String,
                   sourceLocation: SourceLocation = #_sourceLocation) {
    guard let result else { return }  // the exit test itself already failed
    let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
    #expect(stderr.contains("runtime error: " + message + "\n"),
            "stderr was: \(stderr.prefix(300))", sourceLocation: sourceLocation)
}

/// Every trap of GoSlice, each in a child process, with Go's message.
@Suite(.heapShared) struct TrapTests {
    @Test func indexPastLength() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s: GoSlice = [1, 2, 3]
            _ = s[5]
        }
        expectGoPanic(r, "index out of range [5] with length 3")
    }

    @Test func negativeIndexOnWrite() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s: GoSlice = [1, 2, 3]
            s[-1] = 0
        }
        expectGoPanic(r, "index out of range [-1]")
    }

    @Test func indexOfNilSlice() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<String>()
            _ = s[0]
        }
        expectGoPanic(r, "index out of range [0] with length 0")
    }

    @Test func sliceHighPastCapacity() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<Int>(length: 3, capacity: 5)
            _ = s.reslice(0, 7)
        }
        expectGoPanic(r, "slice bounds out of range [:7] with capacity 5")
    }

    @Test func sliceLowAboveHigh() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<Int>(length: 5)
            _ = s.reslice(3, 2)
        }
        expectGoPanic(r, "slice bounds out of range [3:2]")
    }

    @Test func sliceFromPastLength() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<Int>(length: 3, capacity: 8)
            _ = s.reslice(from: 4)
        }
        expectGoPanic(r, "slice bounds out of range [4:3]")
    }

    @Test func sliceNegativeLow() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<Int>(length: 3)
            _ = s.reslice(-1, 2)
        }
        expectGoPanic(r, "slice bounds out of range [-1:]")
    }

    @Test func slice3MaxPastCapacity() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<Int>(length: 5)
            _ = s.reslice(0, 2, 9)
        }
        expectGoPanic(r, "slice bounds out of range [::9] with capacity 5")
    }

    @Test func slice3HighAboveMax() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<Int>(length: 5)
            _ = s.reslice(0, 4, 3)
        }
        expectGoPanic(r, "slice bounds out of range [:4:3]")
    }

    @Test func slice3LowAboveHigh() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<Int>(length: 5)
            _ = s.reslice(3, 2, 4)
        }
        expectGoPanic(r, "slice bounds out of range [3:2:]")
    }

    @Test func makeNegativeLength() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = GoSlice<Int>(length: -1)
        }
        expectGoPanic(r, "makeslice: len out of range")
    }

    @Test func makeHugeLength() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = GoSlice<Int>(length: Int.max / 4)
        }
        expectGoPanic(r, "makeslice: len out of range")
    }

    @Test func makeCapacityBelowLength() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = GoSlice(repeating: "x", length: 5, capacity: 3)
        }
        expectGoPanic(r, "makeslice: cap out of range")
    }

    @Test func makeHugeCapacity() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = GoSlice<UInt8>(length: 1, capacity: 1 << 50)
        }
        expectGoPanic(r, "makeslice: cap out of range")
    }

    @Test func growLengthOverflow() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var s = GoSlice<Void>(length: Int.max, zero: ())
            s.append(())
        }
        expectGoPanic(r, "growslice: len out of range")
    }

    @Test func growPastMaxAlloc() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var s: GoSlice = [1]
            s.append(contentsOf: repeatElement(0, count: 1 << 46))
        }
        expectGoPanic(r, "growslice: len out of range")
    }

    /// GoSlice's own rule: slots of an element type without a zero value
    /// that never held a value cannot be exposed by reslicing.
    @Test func resliceIntoUninitializedNonTrivialSlots() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            final class Box {}
            var s: GoSlice = [Box(), Box(), Box()]
            s.append(Box())                  // grows: cap 6, slots 4 and 5 hold no value
            _ = s.reslice(1, 6)
        }
        expectGoPanic(r, "slice bounds out of range [:6] with initialized capacity 4")
    }

    /// Trivial element types without a valid all-zero value: growth does
    /// not expose the zeroed slots it adds (a null non-optional pointer).
    @Test func resliceIntoGrownPointerSlots() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let p = UnsafeRawPointer(bitPattern: 0x1000)!
            var s: GoSlice = [p, p, p]
            s.append(p)                      // grows: cap 6, slots 4 and 5 hold no value
            let t = s.reslice(0, 6)
            print(t[5])
        }
        expectGoPanic(r, "slice bounds out of range [:6] with initialized capacity 4")
    }

    @Test func resliceIntoGrownOpaquePointerSlots() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let p = OpaquePointer(bitPattern: 0x1000)!
            var s = GoSlice<OpaquePointer>(length: 1, capacity: 1, zero: p)
            s.append(p)                      // grows: cap 2
            s = s.reslice(0, 1)
            s.append(p)
            s.append(p)                      // grows again: cap 4, slots 3 and up hold no value
            _ = s.reslice(0, 4)
        }
        expectGoPanic(r, "slice bounds out of range [:4] with initialized capacity 3")
    }

    @Test func resliceIntoGrownUnmanagedSlots() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            final class Box {}
            let box = Box()
            let u = Unmanaged.passUnretained(box)
            var s: GoSlice = [u]
            s.append(u)                      // grows: cap 2
            s.append(u)                      // grows: cap 4, slot 3 holds no value
            _ = s.reslice(0, 4)
            withExtendedLifetime(box) {}
        }
        expectGoPanic(r, "slice bounds out of range [:4] with initialized capacity 3")
    }
}
