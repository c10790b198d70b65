import CSpanAlloc

// Go 1.27's growslice (src/runtime/slice.go) and roundupsize
// (src/runtime/msize.go), computed the same way, step for step:
//
//   newcap  = nextslicecap(newLen, oldCap)
//   capmem  = roundupsize(newcap * elemsize, noscan)
//   newcap  = capmem / elemsize
//
// nextslicecap: the needed length when it exceeds twice the old capacity;
// otherwise double while the old capacity is below 256; otherwise repeat
// newcap += (newcap + 3*256) >> 2 until the needed length fits.
//
// roundupsize: requests up to 32 KiB - 8 round up to the smallest size class
// that fits; a pointer-holding object larger than 512 bytes reserves Go's
// 8-byte malloc header inside its class, so its usable size is the class size
// minus 8; larger requests round up to whole 8 KiB pages.

/// Go's `nextslicecap(newLen, oldCap)`.
@usableFromInline
internal func _goNextSliceCap(newLength: Int, oldCapacity: Int) -> Int {
    var newcap = oldCapacity
    let doublecap = newcap &+ newcap
    if newLength > doublecap { return newLength }
    let threshold = 256
    if oldCapacity < threshold { return doublecap }
    repeat {
        // Smooth transition from 2x growth for small slices to 1.25x.
        newcap &+= (newcap &+ 3 &* threshold) >> 2
        // newLength > 0, so an overflowed newcap also ends the loop.
    } while UInt(bitPattern: newcap) < UInt(bitPattern: newLength)
    return newcap <= 0 ? newLength : newcap
}

/// Go's `roundupsize(size, noscan)`: the bytes `mallocgc` gives a request of
/// `size` bytes, minus the malloc header a pointer-holding object above
/// 512 bytes carries.
@usableFromInline
internal func _goRoundUpSize(_ size: Int, noscan: Bool) -> Int {
    let mallocHeaderSize = 8
    let minSizeForMallocHeader = 512  // exclusive: 8-byte pointers × 64 bits
    var reqSize = size
    if reqSize <= Int(SA_MAX_SMALL_SIZE) - mallocHeaderSize {
        if !noscan && reqSize > minSizeForMallocHeader {
            reqSize += mallocHeaderSize
        }
        let classSize = Int(sa_class_size(sa_size_to_class(reqSize)))
        return classSize - (reqSize - size)
    }
    // Large object: whole 8 KiB pages (unsigned, as Go checks the overflow).
    let page = UInt(SA_PAGE_SIZE)
    let up = UInt(bitPattern: reqSize) &+ (page - 1)
    if up < UInt(bitPattern: size) { return size }
    return Int(bitPattern: up & ~(page - 1))
}

/// The capacity Go's `growslice` gives a slice of elements of `stride` bytes
/// (pointer-free when `noscan`) that must grow from `oldCapacity` to hold
/// `newLength` elements. Traps with "growslice: len out of range".
@usableFromInline
internal func _goGrowCapacity(newLength: Int, oldCapacity: Int, stride: Int, noscan: Bool) -> Int {
    if newLength < 0 { _goPanic("growslice: len out of range") }
    if stride == 0 { return newLength }  // zero-size elements: zerobase, cap = len
    let newcap = _goNextSliceCap(newLength: newLength, oldCapacity: oldCapacity)
    let (capmem, overflow) = stride.multipliedReportingOverflow(by: newcap)
    // maxAlloc is page-aligned, so rounding cannot carry a size past it.
    if overflow || capmem > _goMaxAlloc { _goPanic("growslice: len out of range") }
    return _goRoundUpSize(capmem, noscan: noscan) / stride
}

/// Whether the zero value of `T` is the all-zero bit pattern of its size,
/// so that zeroed memory holds it. Folds to a constant for a specialized
/// type; the unprotected form keeps a stack-protector check out of the
/// append path it is inlined into.
@inlinable
internal func _goIsZeroBits<T: GoZeroValue>(_: T.Type) -> Bool {
    _withUnprotectedUnsafeBytes(of: T.goZeroValue) { $0.allSatisfy { $0 == 0 } }
}

// MARK: - append

extension GoSlice {
    /// Go's `s = append(s, x)`.
    ///
    /// When the length is below the capacity the element is written into the
    /// backing array at index `count`, where any other slice sharing the
    /// array sees it (and a value it showed there is replaced). Otherwise the
    /// slice moves to a new backing array with Go 1.27's growth: the new
    /// capacity is `nextslicecap(count + 1, capacity)` rounded up to a size
    /// class by `roundupsize` and converted back to elements (see the file
    /// comment of `GoSlice+Growth.swift`). The old array stays with the
    /// slices that still refer to it.
    ///
    /// Complexity: O(1) when it fits; amortized O(1).
    @inlinable
    public mutating func append(_ newElement: Element) {
        let n = _count
        if _fastPath(n < _capacity) {
            _put(newElement, at: n)
            _count = n &+ 1
        } else {
            _appendGrowing(newElement)
        }
    }

    @inlinable @inline(never)
    internal mutating func _appendGrowing(_ newElement: Element) {
        let (newLength, overflow) = _count.addingReportingOverflow(1)
        if overflow { _goPanic("growslice: len out of range") }
        _grow(newLength: newLength)
        _put(newElement, at: _count)
        _count = newLength
        _checkInvariants()
    }

    /// Go's `s = append(s, xs...)`: appends all of `newElements`, growing
    /// at most once, to the capacity Go computes for the final length.
    ///
    /// The elements may come from this slice's own backing array (Go's
    /// `append(s[:i], s[j:]...)`); they are copied as if by `memmove`.
    @inlinable
    public mutating func append<C: Collection>(contentsOf newElements: C) where C.Element == Element {
        let n = newElements.count
        if n == 0 { return }
        let (newLength, overflow) = _count.addingReportingOverflow(n)
        if overflow { _goPanic("growslice: len out of range") }
        if newLength > _capacity { _grow(newLength: newLength) }
        let done: Void? = newElements.withContiguousStorageIfAvailable { src in
            _putAll(src, at: _count)
        }
        if done == nil {
            var i = _count
            for e in newElements {
                precondition(i < newLength, "GoSlice.append: collection has more elements than its count")
                _put(e, at: i)
                i &+= 1
            }
            precondition(i == newLength, "GoSlice.append: collection has fewer elements than its count")
        }
        _count = newLength
        _checkInvariants()
    }

    /// Go's `s = append(s, xs...)` for any sequence.
    @inlinable
    public mutating func append<S: Sequence>(contentsOf newElements: S) where S.Element == Element {
        append(contentsOf: ContiguousArray(newElements))
    }

    /// Go's `append(s, xs...)` returning the result, as Go writes it.
    @inlinable
    public func appending(_ newElements: Element...) -> GoSlice {
        var s = self
        s.append(contentsOf: newElements)
        return s
    }

    /// Writes `x` into slot `i` (`count <= i < capacity`): assigns when the
    /// slot holds a value, initializes it otherwise.
    @inlinable @inline(__always)
    internal func _put(_ x: Element, at i: Int) {
        let p = _base.unsafelyUnwrapped + i
        if GoSlice._zeroFilledTrivial {
            p.initialize(to: x)
            return
        }
        _putTracked(x, at: i)
    }

    /// ``_put(_:at:)`` for storage that tracks its initialized prefix (not
    /// ``_zeroFilledTrivial``; `i < capacity`, so the slice has an owner).
    @inlinable @inline(__always)
    internal func _putTracked(_ x: Element, at i: Int) {
        let p = _base.unsafelyUnwrapped + i
        let t = unsafeDowncast(_owner.unsafelyUnwrapped, to: _GoSliceTypedStorage<Element>.self)
        let slot = _offset &+ i
        if slot < t._initialized {
            p.pointee = x
        } else {
            p.initialize(to: x)
            t._initialized = slot &+ 1
        }
    }

    /// Writes `src` into slots `i ..< i + src.count` (within the capacity)
    /// with `memmove` semantics: `src` may lie in this backing array.
    @inlinable
    internal func _putAll(_ src: UnsafeBufferPointer<Element>, at i: Int) {
        guard let from = src.baseAddress, src.count > 0 else { return }
        let to = _base.unsafelyUnwrapped + i
        if GoSlice._zeroFilledTrivial {
            UnsafeMutableRawPointer(to).copyMemory(
                from: from, byteCount: src.count * GoSlice._elementSize)
            return
        }
        // A source inside the destination range would be overwritten while
        // it is read: take a copy first (only possible when it aliases).
        if UnsafeRawPointer(from) < UnsafeRawPointer(to + src.count)
            && UnsafeRawPointer(to) < UnsafeRawPointer(from + src.count) {
            let snapshot = ContiguousArray(src)
            snapshot.withUnsafeBufferPointer { _putAll($0, at: i) }
            return
        }
        for k in 0 ..< src.count {
            _putTracked(from[k], at: i &+ k)
        }
    }

    /// Moves the slice to a new backing array that holds at least
    /// `newLength` (> `capacity`) elements, with Go's capacity. The first
    /// `count` elements are copied; when `Element` has a ``GoZeroValue``,
    /// the new slots hold it (zeroed memory for zero-filled trivial
    /// elements, from `newLength` on), as Go zeroes a grown array. For
    /// other elements the new slots stay outside the initialized prefix.
    @inlinable
    internal mutating func _grow(newLength: Int) {
        let stride = GoSlice._elementSize
        let pod = GoSlice._zeroFilledTrivial
        let newCapacity = _goGrowCapacity(
            newLength: newLength, oldCapacity: _capacity, stride: stride, noscan: _isPOD(Element.self))
        if stride == 0 {
            _base = _goZeroBase(Element.self)
            _capacity = newCapacity
            return
        }
        // Nobody else can see this array: resize it in place (same capacity
        // as Go's fresh array; SpanAlloc may grow a large span in place, and
        // either way copies only once).
        if pod && MemoryLayout<Element>.alignment <= 8 && _offset == 0
            && _owner != nil && isKnownUniquelyReferenced(&_owner) {
            let owner = _owner.unsafelyUnwrapped
            guard let block = sa_realloc(owner._block, newCapacity * stride) else {
                _goOutOfMemory(newCapacity * stride)
            }
            (block + newLength * stride).initializeMemory(
                as: UInt8.self, repeating: 0, count: (newCapacity - newLength) * stride)
            owner._block = block
            _base = block.bindMemory(to: Element.self, capacity: newCapacity)
            _capacity = newCapacity
            return
        }
        let owner = _GoSliceStorage._make(Element.self, byteCount: newCapacity * stride, zeroed: false)
        let newBase = owner._block.assumingMemoryBound(to: Element.self)
        if _count > 0 {
            if pod {
                owner._block.copyMemory(from: _base.unsafelyUnwrapped, byteCount: _count * stride)
            } else {
                newBase.initialize(from: _base.unsafelyUnwrapped, count: _count)
                unsafeDowncast(owner, to: _GoSliceTypedStorage<Element>.self)._initialized = _count
            }
        }
        if !pod, let zero = GoSlice._zeroValue {
            // The zero value goes to every new slot, as Go zeroes a grown array.
            (newBase + _count).initialize(repeating: zero, count: newCapacity - _count)
            unsafeDowncast(owner, to: _GoSliceTypedStorage<Element>.self)._initialized = newCapacity
        }
        if pod {
            (owner._block + newLength * stride).initializeMemory(
                as: UInt8.self, repeating: 0, count: (newCapacity - newLength) * stride)
        }
        _owner = owner
        _base = newBase
        _capacity = newCapacity
    }
}
