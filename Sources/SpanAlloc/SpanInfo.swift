import CSpanAlloc

/// A span of the heap as seen at one moment (Go's `mspan`).
public struct SpanInfo: Sendable, Hashable, CustomStringConvertible {
    /// Unique id of the span; ids are never reused, so two pointers in spans
    /// with the same id were served by the same span.
    public let id: UInt64
    /// Go's spanClass: `sizeClass << 1 | noscan`.
    public let spanClass: Int
    /// Size class 1...67, or 0 for a large object.
    public let sizeClass: Int
    /// Whether the span holds pointer-free objects.
    public let noscan: Bool
    /// Address of the span's first byte.
    public let base: UInt
    /// Length of the span in 8 KiB pages.
    public let pageCount: Int
    /// Size of each object (the whole span for a large object).
    public let elementSize: Int
    /// Number of object slots.
    public let elementCount: Int
    /// Objects allocated and not yet freed. For a span that another thread
    /// caches, that thread's own frees since its last sweep are not counted
    /// yet.
    public let allocatedCount: Int

    init(_ s: sa_span_info) {
        id = s.id
        spanClass = Int(s.span_class)
        sizeClass = Int(s.size_class)
        noscan = s.noscan
        base = UInt(s.base)
        pageCount = s.npages
        elementSize = s.elemsize
        elementCount = s.nelems
        allocatedCount = s.alloc_count
    }

    /// Whether `pointer` lies inside this span.
    public func contains(_ pointer: UnsafeRawPointer) -> Bool {
        let a = UInt(bitPattern: pointer)
        return a >= base && a < base + UInt(pageCount) * UInt(SA_PAGE_SIZE)
    }

    /// The span in one line: id, spanClass, class, base, pages and
    /// allocated/total slots.
    public var description: String {
        "span #\(id) spanClass \(spanClass) (class \(sizeClass)\(noscan ? ", noscan" : "")) "
            + "base 0x\(String(base, radix: 16)) \(pageCount) page(s) "
            + "\(allocatedCount)/\(elementCount) × \(elementSize) B"
    }
}
