// RandomAccessCollection and MutableCollection, indexed 0 ..< count.
//
// Writing an element writes the shared backing array (Go's `s[i] = x`), so
// the setter does not mutate the slice header: it is `nonmutating`, and every
// slice that shares the array sees the new value.

extension GoSlice: RandomAccessCollection, MutableCollection {
    /// Positions are offsets from the slice's first element.
    public typealias Index = Int
    /// The valid indices, `0 ..< count`.
    public typealias Indices = Range<Int>

    /// Always 0.
    @inlinable
    public var startIndex: Int { 0 }

    /// The length, ``count``.
    @inlinable
    public var endIndex: Int { _count }

    /// Go's `s[i]`. Traps with "index out of range [5] with length 3" when
    /// `i` is not below ``count``.
    @inlinable
    public subscript(position: Int) -> Element {
        unsafeAddress {
            if _slowPath(UInt(bitPattern: position) >= UInt(bitPattern: _count)) {
                _goIndexPanic(position, _count)
            }
            return UnsafePointer(_base.unsafelyUnwrapped + position)
        }
        nonmutating unsafeMutableAddress {
            if _slowPath(UInt(bitPattern: position) >= UInt(bitPattern: _count)) {
                _goIndexPanic(position, _count)
            }
            return _base.unsafelyUnwrapped + position
        }
    }

    /// Whether the slice has no elements (`len(s) == 0`); a nil slice is empty.
    @inlinable
    public var isEmpty: Bool { _count == 0 }

    /// The next position, `i + 1`.
    @inlinable
    public func index(after i: Int) -> Int { i &+ 1 }

    /// The previous position, `i - 1`.
    @inlinable
    public func index(before i: Int) -> Int { i &- 1 }

    /// Calls `body` with the elements in the backing array; never `nil`.
    @inlinable
    public func withContiguousStorageIfAvailable<R>(
        _ body: (UnsafeBufferPointer<Element>) throws -> R
    ) rethrows -> R? {
        try withUnsafeBufferPointer(body)
    }

    /// Calls `body` with the elements in the backing array, which it may
    /// change in place (but not replace); never `nil`.
    @inlinable
    public mutating func withContiguousMutableStorageIfAvailable<R>(
        _ body: (inout UnsafeMutableBufferPointer<Element>) throws -> R
    ) rethrows -> R? {
        var buffer = UnsafeMutableBufferPointer(start: _base, count: _count)
        let start = buffer.baseAddress, n = buffer.count
        defer {
            precondition(buffer.baseAddress == start && buffer.count == n,
                         "GoSlice: withContiguousMutableStorageIfAvailable: replacing the buffer is not allowed")
        }
        return try body(&buffer)
    }
}

extension GoSlice {
    /// Calls `body` with the slice's elements in the backing array (the
    /// `count` elements from the slice's first one). The pointer is valid
    /// only during the call.
    @inlinable
    public func withUnsafeBufferPointer<R>(
        _ body: (UnsafeBufferPointer<Element>) throws -> R
    ) rethrows -> R {
        try withExtendedLifetime(_owner) {
            try body(UnsafeBufferPointer(start: _base, count: _count))
        }
    }

    /// Calls `body` with the slice's elements in the backing array, which
    /// `body` may change in place (every slice sharing the array sees the
    /// changes). The pointer is valid only during the call.
    @inlinable
    public func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Element>) throws -> R
    ) rethrows -> R {
        try withExtendedLifetime(_owner) {
            try body(UnsafeMutableBufferPointer(start: _base, count: _count))
        }
    }

    /// The span of the SpanAlloc heap that holds the backing array, read now;
    /// `nil` when the slice has no SpanAlloc memory (a nil slice, capacity 0,
    /// zero-size elements).
    public var backingSpan: SpanInfo? {
        guard let owner = _owner else { return nil }
        return withExtendedLifetime(owner) { SpanHeap.default.span(containing: owner._block) }
    }
}
