import Testing
import SpanAllocTestSupport
import SpanAlloc

/// Whether two slices point into the same backing array at the same element.
func sameStart<T>(_ a: GoSlice<T>, _ b: GoSlice<T>) -> Bool {
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in pa.baseAddress == pb.baseAddress } }
}

@Suite(.heapShared) struct AliasingTests {
    @Test func appendThroughSubsliceOverwritesParent() {
        let a: GoSlice = [1, 2, 3, 4]
        var b = a.reslice(0, 2)
        #expect(b.count == 2 && b.capacity == 4)
        b.append(9)
        #expect(a == [1, 2, 9, 4])
        #expect(b == [1, 2, 9] && sameStart(a, b))
        // Writing an element through one slice is seen through the other.
        b[0] = 7
        #expect(a[0] == 7)
    }

    @Test func threeIndexSlicePreventsOverwrite() {
        let a: GoSlice = [1, 2, 3, 4]
        var c = a.reslice(0, 2, 2)
        #expect(c.count == 2 && c.capacity == 2)
        c.append(7)
        #expect(a == [1, 2, 3, 4])
        #expect(c == [1, 2, 7] && !sameStart(a, c))
        // Go: growing from cap 2 to hold 3 ints -> 4 -> 32 B, class 32 -> cap 4.
        #expect(c.capacity == 4)
        // Same on the left side: a[1:3:3] has cap 2.
        let d = a.reslice(1, 3, 3)
        #expect(d == [2, 3] && d.capacity == 2)
    }

    @Test func twoAppendsToOneSliceShareTheSlot() {
        // s := make([]int, 3, 10); t := append(s, 1); u := append(s, 2)
        let s = GoSlice<Int>(length: 3, capacity: 10)
        var t = s
        t.append(1)
        var u = s
        u.append(2)
        #expect(t[3] == 2 && u[3] == 2 && s.count == 3)
    }

    @Test func resliceUpToCapacityExposesZeroesAndWrites() {
        var s = GoSlice<Int>(length: 0, capacity: 5)
        s.append(contentsOf: [1, 2])
        #expect(s.reslice(0, 5) == [1, 2, 0, 0, 0])
        #expect(s.reslice(upTo: 5).capacity == 5)
        let tail = s.reslice(3, 5)
        #expect(tail == [0, 0] && tail.capacity == 2)
        #expect(s.reslice(from: 1) == [2] && s.reslice(from: 2).isEmpty)
        #expect(s.reslice(from: 2).capacity == 3)
    }

    /// Growth moves only the appending slice; a slice still holding the old
    /// array keeps it (GoSlice resizes in place only arrays nobody else sees).
    @Test func growthLeavesSharedArrayAlone() {
        var s = GoSlice<Int>(length: 4)
        for i in 0 ..< 4 { s[i] = i }
        let old = s
        s.append(4)
        s[0] = 100
        #expect(old == [0, 1, 2, 3] && s == [100, 1, 2, 3, 4] && !sameStart(old, s))
        // A unique slice that starts inside its array grows into a new one.
        var t = GoSlice(0 ..< 8).reslice(from: 3)
        for i in 8 ..< 100 { t.append(i) }
        #expect(t == GoSlice(3 ..< 100))
    }

    @Test func nilAndEmpty() {
        let n = GoSlice<Int>()
        #expect(n.isNil && n.isEmpty && n.count == 0 && n.capacity == 0 && n.backingSpan == nil)
        #expect(n.reslice(0, 0).isNil && n.description == "[]")
        let e = GoSlice<Int>(length: 0)
        #expect(!e.isNil && e.isEmpty && e.capacity == 0 && e.backingSpan == nil)
        #expect(n == e)
        var a = n
        a.append(contentsOf: [Int]())
        #expect(a.isNil)  // append(nil) with nothing stays nil
        a.append(5)
        #expect(!a.isNil && a == [5] && a.capacity == 1 && n.isNil)
    }

    @Test func copyWithOverlap() {
        let s = GoSlice(0 ..< 10)
        #expect(GoSlice.copy(to: s.reslice(from: 2), from: s) == 8)
        #expect(s == [0, 1, 0, 1, 2, 3, 4, 5, 6, 7])
        let t = GoSlice(0 ..< 10)
        #expect(t.copy(from: t.reslice(from: 2)) == 8)
        #expect(t == [2, 3, 4, 5, 6, 7, 8, 9, 8, 9])
        // min of the lengths; nil copies nothing.
        let short: GoSlice = [7, 7]
        #expect(GoSlice.copy(to: short, from: [1, 2, 3]) == 2 && short == [1, 2])
        #expect(GoSlice.copy(to: short, from: GoSlice()) == 0 && short == [1, 2])
    }

    @Test func copyWithOverlapNonTrivial() {
        let s = GoSlice((0 ..< 10).map(String.init))
        #expect(GoSlice.copy(to: s.reslice(from: 2), from: s) == 8)
        #expect(s == ["0", "1", "0", "1", "2", "3", "4", "5", "6", "7"])
        let t = GoSlice((0 ..< 10).map(String.init))
        #expect(GoSlice.copy(to: t, from: t.reslice(from: 2)) == 8)
        #expect(t == ["2", "3", "4", "5", "6", "7", "8", "9", "8", "9"])
    }

    @Test func appendFromOwnArray() {
        // Go's delete idiom: s = append(s[:1], s[2:]...)
        let s: GoSlice = [0, 1, 2, 3, 4]
        var d = s.reslice(upTo: 1)
        d.append(contentsOf: s.reslice(from: 2))
        #expect(d == [0, 2, 3, 4] && s == [0, 2, 3, 4, 4])
        // Overlap the other way: append(s[:2], s[1:4]...) within capacity.
        let u = GoSlice<String>(["a", "b", "c", "d", "e", "f"])
        var v = u.reslice(upTo: 2)
        v.append(contentsOf: u.reslice(1, 4))
        #expect(v == ["a", "b", "b", "c", "d"] && u == ["a", "b", "b", "c", "d", "f"])
        var w: GoSlice = [1, 2, 3]
        w.append(contentsOf: w)
        #expect(w == [1, 2, 3, 1, 2, 3] && w.capacity == 6)
    }

    @Test func repeatingFillsTheCapacity() {
        let s = GoSlice(repeating: "z", length: 1, capacity: 3)
        #expect(s == ["z"] && s.capacity == 3)
        #expect(s.reslice(0, 3) == ["z", "z", "z"])
        var t = s
        t.append("y")
        #expect(s.reslice(0, 3) == ["z", "y", "z"])
    }

    /// Optionals get Go's zero value of pointers, nil, in every slot: from
    /// make and from growth, so they reslice up to the capacity as in Go.
    @Test func optionalElementsHaveNilZeroValue() {
        let p = GoSlice<AnyObject?>(length: 2, capacity: 4)
        #expect(p.count == 2 && p.capacity == 4 && p.reslice(0, 4).allSatisfy { $0 == nil })
        var t: GoSlice<String?> = ["a"]
        t.append("b")
        t.append("c")                       // 16-byte elements: cap 1 -> 2 -> 4
        #expect(t.capacity == 4 && t.reslice(0, 4) == ["a", "b", "c", nil])
        var big = GoSlice<String?>()
        for i in 0 ..< 300 { big.append("\(i)") }
        let all = big.reslice(0, big.capacity)
        #expect(all.count > 300 && all[300...].allSatisfy { $0 == nil } && all[299] == "299")
        #expect(GoSlice<Int?>(length: 2) == [nil, nil])
        #expect(GoSlice<UnsafePointer<Int>?>(length: 3).allSatisfy { $0 == nil })
    }

    @Test func collectionBehaviour() {
        let s: GoSlice = [5, 3, 9, 1, 7]
        var mid = s.reslice(1, 4)
        mid.sort()
        #expect(s == [5, 1, 3, 9, 7])
        #expect(s.reversed() == [7, 9, 3, 1, 5])
        #expect(s.firstIndex(of: 9) == 3 && s[1 ..< 3].elementsEqual([1, 3]))
        let let_ = s
        let_[4] = 0   // a nonmutating element write, as in Go
        #expect(s[4] == 0)
        #expect(s.withUnsafeBufferPointer { $0.reduce(0, +) } == 18)
        s.withUnsafeMutableBufferPointer { $0[0] = 100 }
        #expect(s[0] == 100)
    }

    @Test func equalityHashingAndDescription() {
        let a: GoSlice = [1, 2, 3]
        let b = GoSlice([0, 1, 2, 3]).reslice(from: 1)
        #expect(a == b && a.hashValue == b.hashValue)
        #expect(a != [1, 2] && a != [1, 2, 4])
        #expect(a.description == "[1 2 3]")
        let nested: GoSlice<GoSlice<Int>> = [[1, 2], [3], []]
        #expect(nested.description == "[[1 2] [3] []]")
        #expect(GoSlice(["a", "b"]).description == "[a b]")
        #expect(GoSlice<Int>(length: 2, capacity: 4).debugDescription == "GoSlice<Int>(len: 2, cap: 4) [0 0]")
        #expect(GoSlice<Int>().debugDescription == "GoSlice<Int>(nil)")
        let set: Set<GoSlice<Int>> = [a, b, [1]]
        #expect(set.count == 2)
    }

    @Test func backingSpanClasses() throws {
        // make([]byte, 64): 64 B, noscan, class 6 -> spanClass 13.
        let bytes = GoSlice<UInt8>(length: 64)
        let bs = try #require(bytes.backingSpan)
        #expect(bs.noscan && bs.sizeClass == 6 && bs.spanClass == 13 && bs.elementSize == 64)
        // []string of 3: 48 B, scan, class 5 -> spanClass 10.
        let strings: GoSlice = ["a", "b", "c"]
        let ss = try #require(strings.backingSpan)
        #expect(!ss.noscan && ss.sizeClass == 5 && ss.spanClass == 10)
        // []*T grown to 143: 1144 B -> class 1152 (the class Go uses with its header).
        var ptrs = GoSlice<AnyObject?>(repeating: nil, length: 64)
        ptrs.append(nil)
        let ps = try #require(ptrs.backingSpan)
        #expect(ptrs.capacity == 143 && ps.elementSize == 1152 && !ps.noscan)
        // Above 32 KiB: a large span of its own.
        let large = GoSlice<UInt8>(length: 40000)
        let ls = try #require(large.backingSpan)
        #expect(ls.sizeClass == 0 && ls.noscan)
    }
}
