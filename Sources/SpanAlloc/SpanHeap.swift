import CSpanAlloc

/// The SpanAlloc heap: Go's allocator (mheap → mcentral → mcache → mspan)
/// with explicit deallocation from any thread.
///
/// There is one heap per process, ``SpanHeap/default``; the type is a thin,
/// `Sendable` handle over the C allocator in `CSpanAlloc`.
///
/// ```swift
/// let heap = SpanHeap.default
/// let p = heap.allocate(byteCount: 48, noscan: true)
/// print(heap.span(containing: p)!.spanClass)   // 11: class 5 (48 B), noscan
/// heap.deallocate(p)
/// ```
///
/// Freeing memory the heap does not own, an interior pointer or the same
/// object twice stops the process with a message naming the pointer.
public struct SpanHeap: Sendable {
    /// The process heap.
    public static let `default` = SpanHeap()

    @usableFromInline init() {}

    // MARK: Raw allocation

    /// Allocates `byteCount` bytes, or returns `nil` when the heap cannot
    /// serve the size (the C layer sets `errno` to `ENOMEM`).
    ///
    /// - Parameters:
    ///   - byteCount: bytes to allocate; 0 returns a unique pointer.
    ///   - alignment: a power of two; the natural alignment of the size class
    ///     is used when it is at least this.
    ///   - noscan: the memory will hold no pointers (Go's noscan spans).
    ///   - zeroed: return zero-filled memory.
    @inlinable
    public func allocateIfPossible(
        byteCount: Int, alignment: Int = 8, noscan: Bool = false, zeroed: Bool = false
    ) -> UnsafeMutableRawPointer? {
        precondition(byteCount >= 0, "SpanHeap: negative byte count")
        let flags = (noscan ? UInt32(SA_NOSCAN) : 0) | (zeroed ? UInt32(SA_ZERO) : 0)
        if alignment <= 8 {
            return sa_alloc(byteCount, flags)
        }
        return sa_alloc_aligned(byteCount, alignment, flags)
    }

    /// Allocates `byteCount` bytes; traps when the heap is out of memory.
    ///
    /// See ``allocateIfPossible(byteCount:alignment:noscan:zeroed:)``.
    @inlinable
    public func allocate(
        byteCount: Int, alignment: Int = 8, noscan: Bool = false, zeroed: Bool = false
    ) -> UnsafeMutableRawPointer {
        guard let p = allocateIfPossible(byteCount: byteCount, alignment: alignment,
                                         noscan: noscan, zeroed: zeroed) else {
            fatalError("SpanHeap: out of memory allocating \(byteCount) bytes")
        }
        return p
    }

    /// Returns a block to the heap, from any thread.
    @inlinable
    public func deallocate(_ pointer: UnsafeMutableRawPointer) {
        sa_free(pointer)
    }

    /// Resizes a block (in place when it fits its size class); `nil` when
    /// out of memory, in which case `pointer` is still valid.
    @inlinable
    public func reallocate(_ pointer: UnsafeMutableRawPointer?, byteCount: Int) -> UnsafeMutableRawPointer? {
        sa_realloc(pointer, byteCount)
    }

    /// The usable size of a live block: its size class's object size for
    /// small objects, the span's size for large ones.
    @inlinable
    public func usableSize(of pointer: UnsafeRawPointer) -> Int {
        sa_usable_size(pointer)
    }

    // MARK: Typed allocation

    /// Allocates uninitialized memory for `capacity` values of `type`.
    /// Trivial (pointer-free) types go to noscan spans, all others to scan
    /// spans, as Go's spanClass does.
    @inlinable
    public func allocate<T>(_ type: T.Type, capacity: Int) -> UnsafeMutablePointer<T> {
        precondition(capacity >= 0, "SpanHeap: negative capacity")
        let (bytes, overflow) = MemoryLayout<T>.stride.multipliedReportingOverflow(by: capacity)
        precondition(!overflow, "SpanHeap: allocation size overflows")
        let raw = allocate(byteCount: bytes, alignment: MemoryLayout<T>.alignment,
                           noscan: SpanHeap.isPointerFree(T.self))
        return raw.bindMemory(to: T.self, capacity: capacity)
    }

    /// Deallocates memory from ``allocate(_:capacity:)``; the values must
    /// already be deinitialized.
    @inlinable
    public func deallocate<T>(_ pointer: UnsafeMutablePointer<T>) {
        sa_free(UnsafeMutableRawPointer(pointer))
    }

    /// Whether values of `type` hold no references (Swift's trivial types),
    /// which is what Go calls noscan.
    @inlinable
    public static func isPointerFree<T>(_ type: T.Type) -> Bool {
        _isPOD(type)
    }

    // MARK: Introspection

    /// The span that holds `pointer` (any address inside a live span), or
    /// `nil` when the address is not in a span of this heap.
    public func span(containing pointer: UnsafeRawPointer) -> SpanInfo? {
        var info = sa_span_info()
        guard sa_span_of(pointer, &info) else { return nil }
        return SpanInfo(info)
    }

    /// Whether `pointer` lies inside an in-use span of this heap.
    public func owns(_ pointer: UnsafeRawPointer) -> Bool { sa_owns(pointer) }

    /// The statistics, merged from every thread's counters.
    public var memStats: MemStats {
        var s = sa_mem_stats()
        sa_read_mem_stats(&s)
        return MemStats(s)
    }

    /// The statistics as one JSON object.
    public var memStatsJSON: String {
        let n = sa_mem_stats_json(nil, 0)
        var buf = [CChar](repeating: 0, count: n + 1)
        _ = sa_mem_stats_json(&buf, buf.count)
        return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: Size classes

    /// Go's size class for a request: 1...67, or 0 for a large object.
    public func sizeClass(forByteCount byteCount: Int) -> Int {
        Int(sa_size_to_class(byteCount))
    }

    /// All 67 small size classes, in order.
    public var sizeClasses: [SizeClass] {
        (1..<Int(SA_NUM_CLASSES)).map(SizeClass.init(index:))
    }

    // MARK: Maintenance

    /// Returns idle pages to the OS: at least `byteCount` when that many are
    /// idle (`Int.max`: all). Returns the number of bytes released.
    @discardableResult
    public func scavenge(byteCount: Int = .max) -> Int {
        Int(truncatingIfNeeded: sa_scavenge(byteCount == .max ? .max : byteCount))
    }

    /// Hands back what the calling thread caches, as happens when it exits:
    /// the objects in its free-cache bins and remote buffer to their spans,
    /// its spans to the central lists.
    public func flushThreadCache() { sa_thread_flush() }

    /// Checks every heap invariant. Returns `nil` when the heap is
    /// consistent, or a description of the first violation. Other threads
    /// must not allocate or free while it runs.
    ///
    /// - Parameter quiescent: the caller guarantees that no other thread
    ///   allocates or frees during the call; the checker then also reads the
    ///   spans other threads cache and always matches the live objects it
    ///   counts against ``memStats``.
    public func checkInvariants(quiescent: Bool = false) -> String? {
        var buf = [CChar](repeating: 0, count: 512)
        let rc = quiescent ? sa_check_heap_quiescent(&buf, buf.count) : sa_check_heap(&buf, buf.count)
        if rc == 0 { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One of Go's 67 small size classes.
public struct SizeClass: Sendable, Hashable, CustomStringConvertible {
    /// The class number, 1...67.
    public let index: Int
    /// Object size in bytes.
    public var objectSize: Int { Int(sa_class_size(Int32(index))) }
    /// Pages (8 KiB) per span.
    public var pageCount: Int { Int(sa_class_pages(Int32(index))) }
    /// Objects per span.
    public var objectsPerSpan: Int { Int(sa_class_objects(Int32(index))) }
    /// Go's spanClass for this class: `index << 1 | noscan`.
    public func spanClass(noscan: Bool) -> Int { index << 1 | (noscan ? 1 : 0) }

    /// The size class numbered `index`; traps unless `index` is in 1...67.
    public init(index: Int) {
        precondition((1..<Int(SA_NUM_CLASSES)).contains(index), "size class out of range")
        self.index = index
    }

    /// The class, its object size, pages per span and objects per span:
    /// `class 5: 48 B, 1 page(s), 170 objects`.
    public var description: String {
        "class \(index): \(objectSize) B, \(pageCount) page(s), \(objectsPerSpan) objects"
    }
}
