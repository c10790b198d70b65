import CSpanAlloc

extension SpanHeap {
    /// The encoding of a heap profile.
    public enum HeapProfileFormat: Sendable, Hashable {
        /// A gzipped `profile.proto` message, as Go's `pprof.WriteHeapProfile`
        /// writes and `go tool pprof` reads.
        case pprof
        /// Folded stacks for flame-graph tools: one line per stack, callers
        /// first and `;`-separated, then the bytes in use.
        case folded

        var code: Int32 { self == .pprof ? Int32(SA_PROFILE_PPROF) : Int32(SA_PROFILE_FOLDED) }
    }

    /// A heap profile could not be written; `code` is the `errno` value
    /// (the C layer also printed one line on stderr).
    public struct HeapProfileError: Error, Sendable, Hashable {
        /// The `errno` value: `ENOENT`, `EACCES`, `ENOSPC`, `ENOMEM`, ….
        public var code: Int32

        /// An error for the `errno` value `code`.
        public init(code: Int32) { self.code = code }
    }

    /// The heap profiler's mean sampling interval in bytes, as Go's
    /// `runtime.MemProfileRate`: 0 turns sampling off, 1 samples every
    /// allocation (exact figures, for tests), 524288 (512 KiB) is Go's
    /// default.
    ///
    /// Sampling is off until this is set or `SPANALLOC=profile=…`,
    /// `profile_rate=…` or `profile_signal=…` turns it on. The setting thread
    /// switches at once; other threads at their next sample or within 16 MiB
    /// of allocation. Objects sampled before a change keep the weight of the
    /// rate they were sampled at.
    public var heapProfileRate: Int {
        get { Int(bitPattern: UInt(sa_profile_rate())) }
        nonmutating set {
            precondition(newValue >= 0, "SpanHeap.heapProfileRate: negative rate")
            _ = sa_profile_set_rate(newValue)
        }
    }

    /// Writes the heap profile of the sampled objects to `path` (created or
    /// truncated; `%p` in it becomes the process id).
    ///
    /// Each stack reports `alloc_objects`, `alloc_space`, `inuse_objects`
    /// and `inuse_space`, scaled to unbiased estimates; Swift function names
    /// are demangled. Safe while other threads allocate and free.
    ///
    /// - Throws: ``HeapProfileError`` when the file cannot be written.
    public func writeHeapProfile(to path: String, format: HeapProfileFormat = .pprof) throws {
        let err = sa_profile_write(path, format.code)
        if err != 0 { throw HeapProfileError(code: err) }
    }

    /// The heap profile as bytes, as Go's `pprof.WriteHeapProfile(w)` for a
    /// `/debug/pprof/heap` endpoint. See ``writeHeapProfile(to:format:)``.
    ///
    /// - Throws: ``HeapProfileError`` (`ENOMEM`) when the profiler could not
    ///   map memory for the encoding.
    public func heapProfile(format: HeapProfileFormat = .pprof) throws -> [UInt8] {
        var len = 0
        guard let buf = sa_profile_write_buffer(format.code, &len) else {
            throw HeapProfileError(code: 12) // ENOMEM
        }
        defer { sa_profile_buffer_free(buf, len) }
        return Array(UnsafeRawBufferPointer(start: buf, count: len))
    }

    /// The profiler's own counts: objects sampled, sampled objects still
    /// live, distinct stacks, and samples dropped for lack of memory.
    public var heapProfileCounts: (samples: Int, live: Int, stacks: Int, dropped: Int) {
        var c = sa_profile_counts()
        sa_profile_read_counts(&c)
        return (Int(c.samples), Int(c.live), Int(c.buckets), Int(c.dropped))
    }
}
