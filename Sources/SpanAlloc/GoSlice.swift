import CSpanAlloc

/// Go's slice, `[]T`: a header of (pointer, length, capacity) over a backing
/// array allocated from SpanAlloc.
///
/// `GoSlice` behaves as a Go programmer expects. Several slices may share one
/// backing array; writing an element through one is visible through all of
/// them, and an ``append(_:)`` that fits the capacity writes into the shared
/// array:
///
/// ```swift
/// var a: GoSlice = [1, 2, 3, 4]        // a := []int{1, 2, 3, 4}
/// var b = a.reslice(0, 2)              // b := a[0:2]   len 2, cap 4
/// b.append(9)                          // b = append(b, 9)
/// print(a)                             // [1 2 9 4]
/// var c = a.reslice(0, 2, 2)           // c := a[0:2:2] len 2, cap 2
/// c.append(7)                          // grows: c gets a new array
/// print(a, c)                          // [1 2 9 4] [1 2 7]
/// ```
///
/// When an append does not fit, the slice moves to a new backing array whose
/// capacity is exactly the one Go 1.27's `growslice` picks: the next capacity
/// from `nextslicecap`, rounded up to a size class by `roundupsize` (see
/// ``append(_:)``).
///
/// Memory: backing arrays of trivial elements (Go's *noscan*) come from
/// noscan spans, all others from scan spans, as Go's spanClass does. The
/// backing array goes back to SpanAlloc when the last slice that refers to it
/// is destroyed; ``backingSpan`` shows the span that holds it.
///
/// Unlike Go, Swift has no zero value for every type. Element types that
/// conform to ``GoZeroValue`` (integers, floating-point numbers, `Bool`,
/// optionals, `String`, `GoSlice`) get Go's semantics: ``init(length:capacity:)``
/// and growth fill every slot up to the capacity with the zero value, so a
/// reslice up to the capacity shows zeros or values written earlier. For
/// other elements (`UnsafePointer<T>`, classes, …) every slot that a slice
/// can expose holds a value that was written before: slots past the written
/// prefix of the backing array cannot be exposed by reslicing (that traps),
/// and ``init(length:capacity:zero:)`` fills the whole capacity with the
/// value given as the zero.
///
/// `GoSlice` is a `RandomAccessCollection` and a `MutableCollection` indexed
/// from 0. It is deliberately not `Sendable`: like Go's slices, copies alias
/// mutable memory.
///
/// Complexity: element access, ``count``, ``capacity``, reslicing and an
/// append that fits are O(1); an append that grows is O(*n*) and amortized
/// O(1) over a run of appends.
@frozen
public struct GoSlice<Element> {
    /// Owner of the backing array (keeps it alive); `nil` when the slice has
    /// no SpanAlloc memory (nil slice, zero capacity, zero-size elements).
    @usableFromInline internal var _owner: _GoSliceStorage?
    /// Address of element 0 of this slice (Go's `array`); `nil` only for
    /// the nil slice.
    @usableFromInline internal var _base: UnsafeMutablePointer<Element>?
    /// Go's `len`.
    @usableFromInline internal var _count: Int
    /// Go's `cap`.
    @usableFromInline internal var _capacity: Int

    @inlinable @inline(__always)
    internal init(
        _owner: _GoSliceStorage?, base: UnsafeMutablePointer<Element>?, count: Int, capacity: Int
    ) {
        self._owner = _owner
        self._base = base
        self._count = count
        self._capacity = capacity
    }

    /// The nil slice (Go's `var s []T`): no backing array, length and
    /// capacity 0. Allocates nothing.
    @inlinable
    public init() {
        self.init(_owner: nil, base: nil, count: 0, capacity: 0)
    }

    /// Whether this is a nil slice (Go's `s == nil`): one that never had a
    /// backing array. An empty slice made with capacity 0 is not nil.
    @inlinable
    public var isNil: Bool { _base == nil }

    /// The number of elements (Go's `len(s)`).
    @inlinable
    public var count: Int { _count }

    /// The number of elements the backing array holds from this slice's first
    /// element on (Go's `cap(s)`).
    @inlinable
    public var capacity: Int { _capacity }
}

// MARK: - Creation (Go's make)

extension GoSlice where Element: GoZeroValue {
    /// Go's `make([]T, length, capacity)`: a slice of `length` zero elements
    /// over a new backing array of exactly `capacity` elements (`make` never
    /// rounds the capacity), every slot holding ``GoZeroValue/goZeroValue``.
    /// Trivial elements whose zero value is the all-zero bit pattern get
    /// zeroed memory from the heap.
    ///
    /// Only element types with a zero value have this initializer; for
    /// others (`UnsafePointer<T>`, `OpaquePointer`, `Unmanaged<T>`, classes)
    /// use ``init(length:capacity:zero:)``.
    ///
    /// Traps with "makeslice: len out of range" when `length` is negative or
    /// too large, and "makeslice: cap out of range" when `capacity` is less
    /// than `length` or too large.
    @inlinable
    public init(length: Int, capacity: Int? = nil) {
        if GoSlice._zeroFilledTrivial {
            let cap = capacity ?? length
            _goCheckMake(length: length, capacity: cap, stride: GoSlice._elementSize)
            self.init(_uninitializedCapacity: cap, zeroed: true)
            _count = length
        } else {
            self.init(repeating: Element.goZeroValue, length: length, capacity: capacity)
        }
    }
}

extension GoSlice {
    /// Go's `make([]T, length, capacity)` for any element type, with `zero`
    /// as the zero value: every slot of the new backing array, up to
    /// `capacity`, holds a copy of `zero`, so a later reslice up to the
    /// capacity shows it, as Go shows zero values. Growth does not invent
    /// values for element types without a ``GoZeroValue``: slots it adds
    /// past the length are exposed only once written.
    ///
    /// Traps as ``init(length:capacity:)`` does.
    @inlinable
    public init(length: Int, capacity: Int? = nil, zero: Element) {
        self.init(repeating: zero, length: length, capacity: capacity)
    }

    /// Go's `make([]T, length, capacity)` for any element type: the zero
    /// value is `value`, so every slot of the new backing array, up to
    /// `capacity`, holds a copy of `value` and a later reslice up to the
    /// capacity exposes it, as Go exposes zero values.
    ///
    /// Traps as ``init(length:capacity:)`` does.
    @inlinable
    public init(repeating value: Element, length: Int, capacity: Int? = nil) {
        let cap = capacity ?? length
        _goCheckMake(length: length, capacity: cap, stride: GoSlice._elementSize)
        self.init(_uninitializedCapacity: cap, zeroed: false)
        if let base = _base, cap > 0, GoSlice._elementSize > 0 {
            base.initialize(repeating: value, count: cap)
            _typedOwner?._initialized = cap
        }
        _count = length
    }

    /// A slice with the elements of `elements`, whose length and capacity are
    /// both their number, like Go's composite literal `[]T{...}`.
    @inlinable
    public init(_ elements: some Sequence<Element>) {
        if let s = elements.withContiguousStorageIfAvailable({ GoSlice(_copying: $0) }) {
            self = s
        } else {
            let array = ContiguousArray(elements)
            self = array.withUnsafeBufferPointer { GoSlice(_copying: $0) }
        }
    }

    /// A slice whose length and capacity are `buffer.count`, holding copies.
    @inlinable
    internal init(_copying buffer: UnsafeBufferPointer<Element>) {
        self.init(_uninitializedCapacity: buffer.count, zeroed: false)
        if let base = _base, let src = buffer.baseAddress, buffer.count > 0, GoSlice._elementSize > 0 {
            base.initialize(from: src, count: buffer.count)
            _typedOwner?._initialized = buffer.count
        }
        _count = buffer.count
    }

    /// A slice of length 0 over a new backing array of `capacity` elements,
    /// none of them initialized (trivial elements: zeroed when `zeroed`).
    /// Capacity 0 and zero-size elements allocate nothing (Go's zerobase).
    @inlinable
    internal init(_uninitializedCapacity capacity: Int, zeroed: Bool) {
        let bytes = capacity &* GoSlice._elementSize
        if bytes == 0 {
            self.init(_owner: nil, base: _goZeroBase(Element.self), count: 0, capacity: capacity)
            return
        }
        let owner = _GoSliceStorage._make(Element.self, byteCount: bytes, zeroed: zeroed)
        self.init(_owner: owner, base: owner._block.assumingMemoryBound(to: Element.self),
                  count: 0, capacity: capacity)
    }
}

/// The address Go calls `zerobase`: where every zero-byte backing array
/// points. It is never dereferenced for a non-zero number of bytes.
@inlinable @inline(__always)
internal func _goZeroBase<T>(_: T.Type) -> UnsafeMutablePointer<T> {
    UnsafeMutablePointer(bitPattern: MemoryLayout<T>.alignment).unsafelyUnwrapped
}

/// Largest backing array Go allocates on 64-bit Linux (`maxAlloc`, 2^48).
@usableFromInline internal let _goMaxAlloc = 1 << 48

/// Go's makeslice checks, in Go's order, with Go's messages.
@inlinable
internal func _goCheckMake(length: Int, capacity: Int, stride: Int) {
    let (mem, overflow) = stride.multipliedReportingOverflow(by: capacity)
    if _slowPath(overflow || mem > _goMaxAlloc || capacity < 0 || length < 0 || length > capacity) {
        _goMakeslicePanic(length: length, stride: stride)
    }
}

@usableFromInline @inline(never)
internal func _goMakeslicePanic(length: Int, stride: Int) -> Never {
    // As Go: report len when len alone is already out of range (golang.org/issue/4085).
    let (mem, overflow) = stride.multipliedReportingOverflow(by: length)
    if overflow || mem > _goMaxAlloc || length < 0 {
        _goPanic("makeslice: len out of range")
    }
    _goPanic("makeslice: cap out of range")
}

/// Stops the process with Go's runtime error text.
@usableFromInline @inline(never)
internal func _goPanic(_ message: String) -> Never {
    fatalError("runtime error: " + message)
}

// MARK: - The storage object

/// Owns one backing array in SpanAlloc memory and frees it when the last
/// slice that refers to it is gone. One instance per backing array, made
/// only when an array is allocated (creation and growth), never per append.
///
/// Trivial elements whose zero value is the all-zero bit pattern use this
/// class itself: all `capacity` slots are always initialized (zeroed by make
/// or growth). Other elements use ``_GoSliceTypedStorage``, which also
/// tracks the initialized prefix.
///
/// Why not a header in front of the elements in the same block: a copyable
/// Swift struct has no copy hook, so the reference count must be a Swift
/// object's, and the Swift runtime frees object memory with `free()`; and a
/// header would push the array out of the size class Go picks for it.
@usableFromInline
internal class _GoSliceStorage {
    /// First byte of the backing array (a block from `sa_alloc`). Changes
    /// only when a trivial array that no other slice refers to is resized.
    @usableFromInline @exclusivity(unchecked) internal final var _block: UnsafeMutableRawPointer

    @inlinable
    internal init(_block: UnsafeMutableRawPointer) {
        self._block = _block
    }

    deinit {
        sa_free(_block)
    }

    /// Allocates `byteCount` (> 0) bytes for `Element`s from a noscan span
    /// when `Element` is trivial, a scan span otherwise, and wraps them.
    @inlinable
    internal static func _make<Element>(
        _: Element.Type, byteCount: Int, zeroed: Bool
    ) -> _GoSliceStorage {
        let pod = _isPOD(Element.self)
        var flags = pod ? UInt32(SA_NOSCAN) : 0
        if zeroed { flags |= UInt32(SA_ZERO) }
        let untracked = GoSlice<Element>._zeroFilledTrivial
        let raw: UnsafeMutableRawPointer?
        if MemoryLayout<Element>.alignment <= 8 {
            raw = sa_alloc(byteCount, flags)
        } else {
            raw = sa_alloc_aligned(byteCount, MemoryLayout<Element>.alignment, flags)
        }
        guard let block = raw else { _goOutOfMemory(byteCount) }
        block.bindMemory(to: Element.self, capacity: byteCount / MemoryLayout<Element>.stride)
        if untracked { return _GoSliceStorage(_block: block) }
        return _GoSliceTypedStorage<Element>(_block: block)
    }
}

@usableFromInline @inline(never)
internal func _goOutOfMemory(_ bytes: Int) -> Never {
    fatalError("runtime: out of memory: cannot allocate \(bytes)-byte block")
}

/// Storage for all other elements: slots `0..<_initialized` of the backing
/// array hold values; the rest are uninitialized. Every slice's elements lie
/// inside the initialized prefix, so each value is destroyed exactly once,
/// here or by an assignment that replaces it.
@usableFromInline
internal final class _GoSliceTypedStorage<Element>: _GoSliceStorage {
    /// Number of initialized slots from the start of the backing array.
    @usableFromInline @exclusivity(unchecked) internal var _initialized: Int = 0

    @inlinable
    override internal init(_block: UnsafeMutableRawPointer) {
        super.init(_block: _block)
    }

    deinit {
        _block.assumingMemoryBound(to: Element.self).deinitialize(count: _initialized)
    }
}

extension GoSlice {
    /// Go's element size: the stride, except 0 for types of size 0 (whose
    /// Swift stride is 1). Zero-size elements use no memory.
    @inlinable
    internal static var _elementSize: Int {
        MemoryLayout<Element>.size == 0 ? 0 : MemoryLayout<Element>.stride
    }

    /// Whether every slot of every backing array of this element type is
    /// always initialized: trivial elements with a ``GoZeroValue`` that is
    /// the all-zero bit pattern, which make and growth write by zeroing, and
    /// zero-size trivial elements (one value, no memory). (Decided at
    /// compile time for a specialized conforming type.)
    @inlinable
    internal static var _zeroFilledTrivial: Bool {
        guard _isPOD(Element.self) else { return false }
        if MemoryLayout<Element>.size == 0 { return true }
        guard let z = Element.self as? any GoZeroValue.Type else { return false }
        return _goIsZeroBits(z)
    }

    /// The zero value of `Element` if it has one (slow paths only).
    @inlinable
    internal static var _zeroValue: Element? {
        guard let z = Element.self as? any GoZeroValue.Type else { return nil }
        return (z.goZeroValue as! Element)
    }

    /// The owner as typed storage (elements that are not ``_zeroFilledTrivial``).
    @inlinable
    internal var _typedOwner: _GoSliceTypedStorage<Element>? {
        if GoSlice._zeroFilledTrivial { return nil }
        guard let o = _owner else { return nil }
        return unsafeDowncast(o, to: _GoSliceTypedStorage<Element>.self)
    }

    /// Index of this slice's element 0 in the backing array.
    @inlinable
    internal var _offset: Int {
        guard let o = _owner, let b = _base else { return 0 }
        return (UnsafeMutableRawPointer(b) - o._block) / MemoryLayout<Element>.stride
    }

    /// How far from element 0 slots may be exposed: the capacity for
    /// zero-filled trivial elements, the initialized prefix (from this slice
    /// on) otherwise.
    @inlinable
    internal var _exposableCount: Int {
        guard let t = _typedOwner else { return _capacity }
        return Swift.min(_capacity, t._initialized - _offset)
    }
}

// MARK: - Internal checks

extension GoSlice {
#if GOSLICE_INTERNAL_CHECKS
    /// Checks the header and storage invariants (built with
    /// `-Xswiftc -DGOSLICE_INTERNAL_CHECKS`):
    ///
    ///     0 <= count <= capacity
    ///     base == nil  =>  owner == nil && capacity == 0          (nil slice)
    ///     owner != nil =>  (offset + capacity) * elemsize <= usable size of the block
    ///     tracked      =>  offset + count <= initialized <= usable size / elemsize
    @usableFromInline
    internal func _checkInvariants() {
        precondition(_count >= 0 && _count <= _capacity, "GoSlice: len/cap out of order")
        if _base == nil {
            precondition(_owner == nil && _capacity == 0, "GoSlice: nil slice with storage")
        }
        guard let owner = _owner else { return }
        let usable = sa_usable_size(owner._block)
        let size = GoSlice._elementSize
        precondition((_offset + _capacity) * size <= usable, "GoSlice: capacity past the block")
        if let t = _typedOwner {
            precondition(_offset + _count <= t._initialized, "GoSlice: uninitialized element visible")
            precondition(t._initialized * size <= usable, "GoSlice: initialized prefix past the block")
        }
    }
#else
    /// Checks the invariants when built with `GOSLICE_INTERNAL_CHECKS`; a no-op here.
    @inlinable @inline(__always)
    internal func _checkInvariants() {}
#endif
}
