import CSpanAlloc
import Foundation

/// A span as the allocator described it at one moment (from `sa_span_info`).
public struct ObservedSpan: Codable, Sendable, Hashable {
    /// Unique span id (never reused).
    public var id: UInt64
    /// Go's spanClass: `sizeClass << 1 | noscan`.
    public var spanClass: Int
    /// Size class 1...67, 0 for a large object.
    public var sizeClass: Int
    /// Whether the span holds pointer-free objects.
    public var noscan: Bool
    /// Address of the span's first byte.
    public var base: UInt
    /// Length in 8 KiB pages.
    public var pages: Int
    /// Object size in bytes.
    public var elementSize: Int
    /// Object slots in the span.
    public var elementCount: Int
    /// Objects allocated and not freed when it was read.
    public var allocatedCount: Int

    init(_ s: sa_span_info) {
        id = s.id
        spanClass = Int(s.span_class)
        sizeClass = Int(s.size_class)
        noscan = s.noscan
        base = UInt(s.base)
        pages = s.npages
        elementSize = s.elemsize
        elementCount = s.nelems
        allocatedCount = s.alloc_count
    }

    /// The span holding `pointer` now, or `nil` if no in-use span holds it.
    public static func of(_ pointer: UnsafeRawPointer) -> ObservedSpan? {
        var info = sa_span_info()
        guard sa_span_of(pointer, &info) else { return nil }
        return ObservedSpan(info)
    }

    /// `0x…` of the base address.
    public var baseHex: String { "0x" + String(base, radix: 16) }
}

/// One allocation or free seen by the hook.
public struct RecordedEvent: Sendable, Hashable {
    /// True for an allocation, false for a free.
    public var isAlloc: Bool
    /// Address of the block.
    public var address: UInt
    /// Requested size (allocations) or block size (frees), in bytes.
    public var size: Int
    /// The block's span when the event happened.
    public var span: ObservedSpan
    /// The tag that was current when the event happened (see ``AllocationRecorder/tag``).
    public var tag: Int
}

/// Records, through SpanAlloc's alloc/free hook (`sa_set_hook`), the blocks
/// the **calling thread** allocates and frees while ``record(_:)`` runs.
///
/// This is how the experiments see the blocks that `GoChan` and `GoSlice`
/// allocate without reaching into them: Go's makechan and makeslice are
/// observed from the allocator's side, as a Go programmer would with a
/// runtime hook. Events from other threads are ignored. The hook writes into
/// a fixed buffer (no allocation inside the hook); events past its capacity
/// are counted in ``dropped``.
///
/// Only one recorder can be installed at a time in a process (the allocator
/// has one hook); ``record(_:)`` waits for any other recording to end.
public final class AllocationRecorder {
    /// Serializes recorders: the allocator has a single hook.
    private static let installLock = NSLock()

    private let capacity: Int
    private let buffer: UnsafeMutablePointer<RecordedEvent>
    fileprivate var count = 0
    /// Events that did not fit in the buffer.
    public fileprivate(set) var dropped = 0
    fileprivate var thread = pthread_self()
    /// A number stored with every event recorded from now on, to say which
    /// Go operation caused it (e.g. 1 = make a slice, 2 = make a channel).
    public var tag = 0

    /// A recorder with room for `capacity` events.
    public init(capacity: Int = 1 << 16) {
        self.capacity = capacity
        buffer = .allocate(capacity: capacity)
    }

    deinit {
        buffer.deinitialize(count: count)
        buffer.deallocate()
    }

    /// The events recorded so far, oldest first.
    public var events: [RecordedEvent] { Array(UnsafeBufferPointer(start: buffer, count: count)) }

    /// Allocations recorded so far, oldest first.
    public var allocations: [RecordedEvent] { events.filter(\.isAlloc) }

    /// Runs `body` with the hook installed and returns its result; events of
    /// the calling thread are appended to ``events``.
    public func record<R>(_ body: () throws -> R) rethrows -> R {
        Self.installLock.lock()
        defer { Self.installLock.unlock() }
        thread = pthread_self()
        sa_set_hook(recorderHook, Unmanaged.passUnretained(self).toOpaque())
        defer { sa_set_hook(nil, nil) }
        return try body()
    }

    fileprivate func append(_ event: RecordedEvent) {
        guard count < capacity else {
            dropped += 1
            return
        }
        (buffer + count).initialize(to: event)
        count += 1
    }
}

/// The C hook: appends the event to the recorder in `ctx` when it comes from
/// the recording thread. It allocates nothing.
private let recorderHook: sa_hook_fn = { event, ptr, size, span, ctx in
    guard let ctx else { return }
    let recorder = Unmanaged<AllocationRecorder>.fromOpaque(ctx).takeUnretainedValue()
    guard pthread_equal(recorder.thread, pthread_self()) != 0 else { return }
    recorder.append(RecordedEvent(isAlloc: event == Int32(SA_EVENT_ALLOC), address: UInt(bitPattern: ptr),
                                  size: size, span: ObservedSpan(span.pointee), tag: recorder.tag))
}

/// Records the SpanAlloc allocations `body` makes on the calling thread.
public func recordAllocations<R>(_ body: () throws -> R) rethrows -> (result: R, allocations: [RecordedEvent]) {
    let recorder = AllocationRecorder(capacity: 4096)
    let r = try recorder.record(body)
    return (r, recorder.allocations)
}
