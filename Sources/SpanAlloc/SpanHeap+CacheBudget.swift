import CSpanAlloc

extension SpanHeap {
    /// What the thread caches' free side may hold (C `sa_cache_config`,
    /// `SPANALLOC=thread_cache=…,thread_cache_total=…`).
    ///
    /// A thread keeps the objects it frees in bins, one per size class and
    /// kind, which its next allocations of the class reuse at once; it
    /// buffers its frees into other threads' spans and hands them back in
    /// batches; and it keeps spans it emptied. Together these stay under
    /// ``bytesPerThread``; all threads' bins together under ``totalBytes``.
    /// Everything goes back when the thread exits or calls
    /// ``SpanHeap/flushThreadCache()``.
    public struct CacheBudget: Sendable, Hashable {
        /// Per thread: 1 MiB by default; 0 turns the bins off.
        public var bytesPerThread: Int
        /// All threads' bins together: 64 MiB by default.
        public var totalBytes: Int

        /// A budget of `bytesPerThread` per thread and `totalBytes` for all
        /// threads' bins (the defaults are the C library's).
        ///
        /// Traps when either is negative.
        public init(bytesPerThread: Int = 1 << 20, totalBytes: Int = 64 << 20) {
            precondition(bytesPerThread >= 0 && totalBytes >= 0, "SpanHeap.CacheBudget: negative byte count")
            self.bytesPerThread = bytesPerThread
            self.totalBytes = totalBytes
        }
    }

    /// The budget in effect. Setting it applies to bins sized from then on
    /// (a bin gets its capacity on a thread's first free of its class, and
    /// again after it was flushed).
    public var cacheBudget: CacheBudget {
        get {
            var c = sa_cache_config()
            sa_get_cache_config(&c)
            return CacheBudget(bytesPerThread: Int(c.thread_bytes), totalBytes: Int(c.total_bytes))
        }
        nonmutating set {
            var c = sa_cache_config(thread_bytes: newValue.bytesPerThread, total_bytes: newValue.totalBytes)
            sa_set_cache_config(&c)
        }
    }
}
