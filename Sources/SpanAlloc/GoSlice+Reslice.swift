// Go's slice expressions s[low:high] and s[low:high:max], and copy().
//
// A Collection's SubSequence keeps its base's indices (Swift's rule), so Go's
// reslice — whose result is indexed from 0 and may reach past the length up
// to the capacity — is its own API: `reslice`.

extension GoSlice {
    /// Go's `s[low:high]`: elements `low ..< high` of the backing array as
    /// seen from this slice, sharing it. `high` may exceed ``count`` up to
    /// ``capacity``; the result's capacity is `capacity - low`.
    ///
    /// Traps with Go's messages: "slice bounds out of range [:7] with
    /// capacity 5" when `high` is past the capacity, "slice bounds out of
    /// range [3:2]" when `low > high`. For elements without a
    /// ``GoZeroValue`` (and non-trivial ones made without a zero), slots past
    /// the initialized prefix of the backing array hold no value and cannot
    /// be exposed: "slice bounds out of range [:7] with initialized
    /// capacity 5".
    @inlinable
    public func reslice(_ low: Int, _ high: Int) -> GoSlice {
        if UInt(bitPattern: high) > UInt(bitPattern: _capacity) {
            _goSliceBoundsPanic(high < 0 ? "[:\(high)]" : "[:\(high)] with capacity \(_capacity)")
        }
        if UInt(bitPattern: low) > UInt(bitPattern: high) {
            _goSliceBoundsPanic(low < 0 ? "[\(low):]" : "[\(low):\(high)]")
        }
        return _resliced(low, high, _capacity)
    }

    /// Go's three-index `s[low:high:max]`: as ``reslice(_:_:)`` with the
    /// result's capacity limited to `max - low`, so a later append past it
    /// moves to a new array instead of overwriting this one.
    ///
    /// Traps with Go's messages: "slice bounds out of range [::9] with
    /// capacity 5", "slice bounds out of range [:4:3]", "slice bounds out of
    /// range [3:2:]".
    @inlinable
    public func reslice(_ low: Int, _ high: Int, _ max: Int) -> GoSlice {
        if UInt(bitPattern: max) > UInt(bitPattern: _capacity) {
            _goSliceBoundsPanic(max < 0 ? "[::\(max)]" : "[::\(max)] with capacity \(_capacity)")
        }
        if UInt(bitPattern: high) > UInt(bitPattern: max) {
            _goSliceBoundsPanic(high < 0 ? "[:\(high):]" : "[:\(high):\(max)]")
        }
        if UInt(bitPattern: low) > UInt(bitPattern: high) {
            _goSliceBoundsPanic(low < 0 ? "[\(low)::]" : "[\(low):\(high):]")
        }
        return _resliced(low, high, max)
    }

    /// Go's `s[low:]`. Traps with "slice bounds out of range [4:3]" when
    /// `low` is past the length.
    @inlinable
    public func reslice(from low: Int) -> GoSlice {
        if UInt(bitPattern: low) > UInt(bitPattern: _count) {
            _goSliceBoundsPanic(low < 0 ? "[\(low):]" : "[\(low):\(_count)]")
        }
        return _resliced(low, _count, _capacity)
    }

    /// Go's `s[:high]`; see ``reslice(_:_:)``.
    @inlinable
    public func reslice(upTo high: Int) -> GoSlice {
        reslice(0, high)
    }

    /// The checked reslice: bounds are valid against the capacity.
    @inlinable
    internal func _resliced(_ low: Int, _ high: Int, _ max: Int) -> GoSlice {
        if !GoSlice._zeroFilledTrivial && high > _count {
            let exposable = _exposableCount
            if high > exposable {
                _goSliceBoundsPanic("[:\(high)] with initialized capacity \(exposable)")
            }
        }
        let s = GoSlice(_owner: _owner, base: _base.map { $0 + low },
                        count: high &- low, capacity: max &- low)
        s._checkInvariants()
        return s
    }

    /// Go's `copy(dst, src)`: copies `min(dst.count, src.count)` elements
    /// from `src` into `dst`'s backing array and returns that number. The
    /// two may share a backing array and overlap; the result is as if the
    /// source had been copied out first (`memmove`).
    @discardableResult
    @inlinable
    public static func copy(to dst: GoSlice, from src: GoSlice) -> Int {
        let n = Swift.min(dst._count, src._count)
        if n == 0 || GoSlice._elementSize == 0 { return n }
        let d = dst._base.unsafelyUnwrapped
        let s = src._base.unsafelyUnwrapped
        if _isPOD(Element.self) {
            UnsafeMutableRawPointer(d).copyMemory(from: s, byteCount: n * GoSlice._elementSize)
        } else if d < s {
            for i in 0 ..< n { d[i] = s[i] }
        } else if d > s {
            for i in (0 ..< n).reversed() { d[i] = s[i] }
        }
        return n
    }

    /// Go's `copy(s, src)` with this slice as the destination.
    @discardableResult
    @inlinable
    public func copy(from src: GoSlice) -> Int {
        GoSlice.copy(to: self, from: src)
    }
}

@usableFromInline @inline(never)
internal func _goSliceBoundsPanic(_ bounds: String) -> Never {
    _goPanic("slice bounds out of range " + bounds)
}

@usableFromInline @inline(never)
internal func _goIndexPanic(_ index: Int, _ count: Int) -> Never {
    _goPanic(index < 0 ? "index out of range [\(index)]" : "index out of range [\(index)] with length \(count)")
}
