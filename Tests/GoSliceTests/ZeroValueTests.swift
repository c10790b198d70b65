import Testing
import SpanAllocTestSupport
import SpanAlloc

/// Go's zero values where Swift has them (`GoZeroValue`), an explicit zero
/// everywhere else. The forms that must not compile are checked by
/// scripts/typecheck-snippets.sh; the traps by TrapTests.
@Suite(.heapShared) struct ZeroValueTests {
    /// A zero value that is not the all-zero bit pattern: written as values,
    /// not by zeroing memory.
    struct Seven: GoZeroValue, Equatable {
        var x: Int
        static var goZeroValue: Seven { Seven(x: 7) }
    }

    @Test func makeFillsTheCapacityWithTheZeroValue() {
        let ints = GoSlice<Int>(length: 2, capacity: 5)
        #expect(Array(ints.reslice(0, 5)) == [0, 0, 0, 0, 0])
        let strings = GoSlice<String>(length: 1, capacity: 3)
        #expect(Array(strings.reslice(0, 3)) == ["", "", ""])
        let nested = GoSlice<GoSlice<Int>>(length: 2)
        #expect(nested.allSatisfy { $0.isNil })
        let flags = GoSlice<Bool>(length: 0, capacity: 2)
        #expect(Array(flags.reslice(0, 2)) == [false, false])
        let sevens = GoSlice<Seven>(length: 1, capacity: 4)
        #expect(Array(sevens.reslice(0, 4)) == Array(repeating: Seven(x: 7), count: 4))
    }

    /// Growth gives every new slot the zero value, so reslicing up to the
    /// capacity works as in Go for every type with a zero value.
    @Test func growthFillsNewSlotsWithTheZeroValue() {
        var strings: GoSlice = ["a", "b", "c"]
        strings.append("d")                                  // cap 3 -> 6
        #expect(strings.capacity == 6)
        #expect(Array(strings.reslice(0, 6)) == ["a", "b", "c", "d", "", ""])

        var optionalInts: GoSlice<Int?> = [1, 2, 3]
        optionalInts.append(4)
        #expect(Array(optionalInts.reslice(0, optionalInts.capacity).dropFirst(4)).allSatisfy { $0 == nil },
                "Int? slots added by growth are nil, not 0")

        var sevens: GoSlice = [Seven(x: 1)]
        sevens.append(Seven(x: 2))
        sevens.append(Seven(x: 3))
        #expect(Array(sevens.reslice(0, sevens.capacity).dropFirst(3)).allSatisfy { $0 == Seven(x: 7) })

        var ints: GoSlice = [1, 2, 3]
        ints.append(4)
        #expect(Array(ints.reslice(0, ints.capacity).dropFirst(4)).allSatisfy { $0 == 0 })
    }

    /// Element types without a zero value get one explicitly; growth adds
    /// slots that stay hidden until written, and slots once written can be
    /// exposed again, as in Go.
    @Test func explicitZeroForPointers() {
        let p = UnsafeRawPointer(bitPattern: 0x1000)!
        let q = UnsafeRawPointer(bitPattern: 0x2000)!
        let s = GoSlice<UnsafeRawPointer>(length: 1, capacity: 4, zero: p)
        #expect(Array(s.reslice(0, 4)) == [p, p, p, p])
        var t: GoSlice = [q, q]
        t.append(q)                                          // grows; slot 3 never written
        var u = t.reslice(0, 1)
        u.append(p)                                          // writes slot 1 of t's array
        #expect(Array(u.reslice(0, 3)) == [q, p, q])
        #expect(t[1] == p)
    }
}
