import Testing
import SpanAllocTestSupport
@testable import SpanAlloc

/// A pointer-free element of exactly `N` bytes.
struct Bytes<let N: Int>: BitwiseCopyable {
    var bytes = InlineArray<N, UInt8>(repeating: 0)
}

/// A pointer-holding element: one reference and `N` more bytes.
struct Refs<let N: Int> {
    var ref: AnyObject? = nil
    var bytes = InlineArray<N, UInt8>(repeating: 0)
}

/// The distinct capacities a GoSlice passes through, appending `value` one
/// at a time from the nil slice until the capacity reaches `limit`.
func capacitiesAppendingOne<T>(_ value: T, limit: Int) -> [Int] {
    var s = GoSlice<T>()
    var caps: [Int] = []
    while s.capacity < limit {
        s.append(value)
        if s.capacity != caps.last { caps.append(s.capacity) }
    }
    return caps
}

/// Checks one element type against the reference, one at a time and many at once.
func checkGrowth<T>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) {
    let size = MemoryLayout<T>.stride
    let pointers = !_isPOD(T.self)
    let limit = max(600, (1 << 20) / size)
    #expect(capacitiesAppendingOne(value, limit: limit)
            == GoReference.capacitiesAppendingOne(size: size, pointers: pointers, limit: limit),
            "one at a time, \(size) B, pointers: \(pointers)", sourceLocation: sourceLocation)
    for start in [0, 1, 3, 255, 256, 700] {
        for n in [1, 2, 5, 100, 257, 1000] {
            var s = GoSlice<T>()
            s.append(contentsOf: repeatElement(value, count: start))
            let before = s.capacity
            let expectedStart = start == 0 ? 0
                : GoReference.grownCapacity(needed: start, old: 0, size: size, pointers: pointers)
            s.append(contentsOf: repeatElement(value, count: n))
            let expected = start + n <= before ? before
                : GoReference.grownCapacity(needed: start + n, old: before, size: size, pointers: pointers)
            #expect(before == expectedStart && s.capacity == expected && s.count == start + n,
                    "\(start) then \(n) at once, \(size) B, pointers: \(pointers)",
                    sourceLocation: sourceLocation)
        }
    }
}

@Suite(.heapShared) struct GrowthTests {
    /// Go's growth computation for every element size 1...4096, pointer-free
    /// and pointer-holding, appending one element at a time.
    @Test func everySizeOneAtATime() {
        var mismatches: [String] = []
        for size in 1 ... 4096 {
            for pointers in [false, true] {
                let limit = max(600, (1 << 20) / size)
                var cap = 0
                while cap < limit {
                    let got = _goGrowCapacity(newLength: cap + 1, oldCapacity: cap, stride: size, noscan: !pointers)
                    let want = GoReference.grownCapacity(needed: cap + 1, old: cap, size: size, pointers: pointers)
                    if got != want { mismatches.append("size \(size) ptr \(pointers) cap \(cap): \(got) != \(want)") }
                    cap = want
                }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    /// Go's growth computation for every element size 1...4096 when many
    /// elements are appended at once (newLen above and below double).
    @Test func everySizeManyAtOnce() {
        var mismatches: [String] = []
        for size in 1 ... 4096 {
            for pointers in [false, true] {
                for oldCap in [0, 1, 2, 7, 100, 255, 256, 257, 1000, 4097] {
                    for added in [1, 2, 3, 9, 100, 513, 5000] {
                        let needed = oldCap + added
                        let got = _goGrowCapacity(newLength: needed, oldCapacity: oldCap, stride: size, noscan: !pointers)
                        let want = GoReference.grownCapacity(needed: needed, old: oldCap, size: size, pointers: pointers)
                        if got != want { mismatches.append("size \(size) ptr \(pointers) \(oldCap)+\(added): \(got) != \(want)") }
                    }
                }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.prefix(10))")
    }

    /// Capacities worked out by hand from the rule, as Go prints them.
    @Test func handDerivedSequences() {
        // []int: double to 512; 512+(512+768)/4 = 832 -> 6656 B -> class 6784 -> 848;
        // 848+404 = 1252 -> 10016 B -> class 10240 -> 1280.
        #expect(capacitiesAppendingOne(0, limit: 1280) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 848, 1280])
        // []byte: 1 -> class 8; ...; 512+320 = 832 -> class 896.
        #expect(capacitiesAppendingOne(UInt8(0), limit: 896) == [8, 16, 32, 64, 128, 256, 512, 896])
        // []*T: 128 pointers = 1024 B > 512 needs the 8-byte malloc header: 1032 -> class 1152
        // -> 1144 B -> 143; 286 -> 2288+8 -> class 2304 -> 287; 287+263 = 550 -> 4400+8
        // -> class 4864 -> 4856 B -> 607.
        let obj: AnyObject? = nil
        #expect(capacitiesAppendingOne(obj, limit: 607) == [1, 2, 4, 8, 16, 32, 64, 143, 287, 607])
        // s := []int{1, 2}; s = append(s, 4, 5, 6): 5 > 4 -> 5 -> 40 B -> class 48 -> cap 6.
        var s: GoSlice = [1, 2]
        s.append(contentsOf: [4, 5, 6])
        #expect(s.count == 5 && s.capacity == 6)
        // Above 32 KiB: []int at cap 4096 -> 4096+1216 = 5312 -> 42496 B -> 6 pages -> 6144.
        var big = GoSlice<Int>(length: 4096, capacity: 4096)
        big.append(1)
        #expect(big.capacity == 6144)
        // make never rounds.
        #expect(GoSlice<UInt8>(length: 3, capacity: 5).capacity == 5)
        #expect(GoSlice<Int>(length: 7).capacity == 7)
    }

    @Test func pointerFreeElementTypes() {
        checkGrowth(Bytes<1>())
        checkGrowth(Bytes<2>())
        checkGrowth(Bytes<3>())
        checkGrowth(Bytes<5>())
        checkGrowth(Bytes<7>())
        checkGrowth(Bytes<8>())
        checkGrowth(Bytes<12>())
        checkGrowth(Bytes<24>())
        checkGrowth(Bytes<40>())
        checkGrowth(Bytes<100>())
        checkGrowth(Bytes<255>())
        checkGrowth(Bytes<512>())
        checkGrowth(Bytes<513>())
        checkGrowth(Bytes<1000>())
        checkGrowth(Bytes<1024>())
        checkGrowth(Bytes<2049>())
        checkGrowth(Bytes<4096>())
    }

    @Test func pointerHoldingElementTypes() {
        checkGrowth(Refs<0>())      // 8 B
        checkGrowth(Refs<1>())      // 16 B
        checkGrowth(Refs<16>())     // 24 B
        checkGrowth(Refs<56>())     // 64 B
        checkGrowth(Refs<200>())    // 208 B
        checkGrowth(Refs<504>())    // 512 B
        checkGrowth(Refs<505>())    // 520 B
        checkGrowth(Refs<1016>())   // 1024 B
        checkGrowth(Refs<3000>())   // 3008 B
        checkGrowth(Refs<4088>())   // 4096 B
        checkGrowth("string")       // String: 16 B, holds a reference
    }

    /// Zero-size elements allocate nothing; Go gives them cap == len on growth.
    @Test func zeroSizeElements() {
        var s = GoSlice<Void>()
        #expect(s.isNil)
        s.append(())
        #expect(!s.isNil && s.count == 1 && s.capacity == 1 && s.backingSpan == nil)
        s.append(contentsOf: repeatElement((), count: 9))
        #expect(s.count == 10 && s.capacity == 10)
        let m = GoSlice<Void>(length: 1 << 40, zero: ())
        #expect(m.count == 1 << 40 && m.backingSpan == nil)
        let lit: GoSlice<Void> = [(), (), ()]
        let rep = GoSlice(repeating: (), length: 2, capacity: 5)
        #expect(lit.count == 3 && lit.capacity == 3 && rep.count == 2 && rep.capacity == 5)
        #expect(GoSlice(s.reslice(2, 7)).count == 5 && rep.reslice(1, 5).count == 4)
    }

    /// Growth keeps the elements, trivial and not.
    @Test func growthKeepsElements() {
        var ints = GoSlice<Int>()
        var strings = GoSlice<String>()
        for i in 0 ..< 5000 {
            ints.append(i)
            strings.append("s\(i)")
        }
        #expect(Array(ints) == Array(0 ..< 5000))
        #expect(Array(strings) == (0 ..< 5000).map { "s\($0)" })
        // The slots Go zeroes after growth read as zero.
        let full = ints.reslice(0, ints.capacity)
        #expect(full[5000...].allSatisfy { $0 == 0 })
    }

    /// Elements aligned above 8 bytes get aligned arrays (Go has no such
    /// types; the capacity still follows Go's rule for their size).
    @Test func overAlignedElements() {
        var s = GoSlice<SIMD8<Float>>()   // 32 B, 32-byte aligned
        for i in 0 ..< 100 {
            s.append(SIMD8(repeating: Float(i)))
            let aligned = s.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) % 32 == 0 }
            #expect(aligned)
        }
        #expect(s[99][7] == 99 && s.capacity
                == GoReference.grownCapacity(needed: 65, old: 64, size: 32, pointers: false))
    }
}
