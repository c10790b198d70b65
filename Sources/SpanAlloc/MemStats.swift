import CSpanAlloc

/// The heap's statistics: the quantities of Go's `runtime.MemStats` plus
/// counters for each step of the allocation climb.
///
/// Where SpanAlloc keeps the quantity a field of Go's `runtime.MemStats`
/// names, the property has that field's name in lower camel case: `Alloc`,
/// `TotalAlloc`, `Sys`, `Mallocs`, `Frees`, `HeapAlloc`, `HeapSys`,
/// `HeapIdle`, `HeapInuse`, `HeapReleased`, `HeapObjects`, `BySize`; the
/// span counts follow the same spelling (``spansInuse`` as Go's
/// `MSpanInuse`, counted in spans rather than bytes). Go's stack, GC and
/// `MCache` fields have no counterpart here.
///
/// `Codable`: the keys are the property names, so a snapshot encodes to
/// JSON as `{"heapInuse": …, "spansInuse": …, "bySize": [{"size": 8, …}]}`
/// and decodes back to an equal value.
///
/// Counters are kept per thread and merged when read, so reading is cheap
/// and allocation pays nothing for them.
public struct MemStats: Sendable, Hashable, Codable {
    /// Allocations and frees of one size class (Go's `MemStats.BySize`).
    public struct ClassStats: Sendable, Hashable, Codable {
        /// Object size of the class.
        public var size: Int
        /// Objects allocated, cumulative.
        public var mallocs: UInt64
        /// Objects freed, cumulative.
        public var frees: UInt64
    }

    /// Bytes of live objects (same as ``heapAlloc``).
    public var alloc: UInt64
    /// Bytes allocated over the heap's life.
    public var totalAlloc: UInt64
    /// Bytes obtained from the OS: heap arenas plus metadata.
    public var sys: UInt64
    /// Objects allocated over the heap's life.
    public var mallocs: UInt64
    /// Objects freed over the heap's life.
    public var frees: UInt64
    /// Bytes of live objects.
    public var heapAlloc: UInt64
    /// Bytes of heap memory mapped from the OS.
    public var heapSys: UInt64
    /// Bytes in free page runs, released or not.
    public var heapIdle: UInt64
    /// Bytes in spans that hold objects.
    public var heapInuse: UInt64
    /// Bytes of idle pages returned to the OS.
    public var heapReleased: UInt64
    /// Live objects.
    public var heapObjects: UInt64
    /// Bytes mapped for span structures, bitmaps and the arena index.
    public var metadataSys: UInt64

    /// Small objects served by a thread cache.
    public var cacheAllocs: UInt64
    /// Large objects (over 32 KiB) allocated straight from the page heap.
    public var largeAllocs: UInt64
    /// Large objects freed.
    public var largeFrees: UInt64
    /// Times a thread cache took a span from mcentral or mheap.
    public var cacheRefills: UInt64
    /// Times a thread cache swept its own exhausted span and kept using it.
    public var cacheSweeps: UInt64
    /// Times mcentral had no partial span and got a new one from mheap.
    public var centralGrows: UInt64
    /// Spans made from pages never used before.
    public var spansFresh: UInt64
    /// Spans made from pages that an earlier span had used (span reuse).
    public var spansReused: UInt64
    /// Spans whose pages went back to the page heap.
    public var spansReturned: UInt64
    /// Spans currently in use (Go's `MSpanInuse` counts the bytes of their
    /// structures; this counts the spans).
    public var spansInuse: UInt64
    /// 64 MiB arenas mapped from the OS.
    public var arenasMapped: UInt64
    /// Frees made by a thread that did not cache the object's span.
    public var remoteFrees: UInt64
    /// Pages (8 KiB) returned to the OS, cumulative.
    public var pagesScavenged: UInt64
    /// Times the scavenger released memory.
    public var scavengeRuns: UInt64
    /// Thread caches handed back at thread exit.
    public var threadsExited: UInt64
    /// Emptied spans the central lists keep for reuse (counted in ``heapInuse``).
    public var centralEmptySpans: UInt64
    /// Bytes of those spans.
    public var centralEmptyBytes: UInt64
    /// Kept empty spans a thread cache took instead of a new span from the
    /// page heap, cumulative.
    public var centralEmptyReuses: UInt64
    /// Allocations served from a thread's free-cache bin (an object the
    /// thread freed, reused at once), cumulative.
    public var freeCacheHits: UInt64
    /// Freed objects waiting in bins and remote buffers now (counted in ``frees``).
    public var freeCacheObjects: UInt64
    /// Bytes of those objects.
    public var freeCacheBytes: UInt64
    /// Frees that found their bin full and went to the span's bitmap, cumulative.
    public var freeCacheFlushes: UInt64
    /// Cold bins emptied by the periodic pass on the allocation slow path, cumulative.
    public var freeCacheGCFlushes: UInt64
    /// Buffers of frees into other threads' spans handed back, cumulative.
    public var remoteBatches: UInt64
    /// Threads whose free caches held objects when they exited, cumulative.
    public var exitFlushes: UInt64
    /// The most one live thread holds now in free caches and kept empty spans.
    public var threadHeldMax: UInt64
    /// Pages the background scavenger released, cumulative (the four
    /// `pagesReleased…` counters add up to ``pagesScavenged``).
    public var pagesReleasedBackground: UInt64
    /// Pages released on the page heap's slow path (`SPANALLOC=scavenge=on`), cumulative.
    public var pagesReleasedPacer: UInt64
    /// Pages released because the heap reached its memory limit, cumulative.
    public var pagesReleasedLimit: UInt64
    /// Pages released by ``SpanHeap/scavenge(byteCount:)`` (C `sa_scavenge`, `malloc_trim`), cumulative.
    public var pagesReleasedDemand: UInt64
    /// CPU time of the background scavenger thread, in nanoseconds, cumulative.
    public var scavengerCPUNanoseconds: UInt64
    /// Whether the background scavenger thread exists now.
    public var scavengerRunning: Bool
    /// Caches of idle threads that the scavenger handed back, cumulative.
    public var idleCacheFlushes: UInt64
    /// The memory limit in bytes; `nil` when there is none.
    public var memoryLimit: UInt64?
    /// Whether the limit is hard (requests past it fail).
    public var memoryLimitIsHard: Bool
    /// Bytes counted toward the memory limit now: heap pages mapped, used
    /// and not released, plus metadata.
    public var memoryCounted: UInt64
    /// Times the heap reached its limit and released memory, cumulative.
    public var memoryLimitHits: UInt64
    /// Mappings made past a soft limit, cumulative.
    public var memoryLimitOvershoots: UInt64
    /// Requests a hard limit refused, cumulative.
    public var memoryLimitRefusals: UInt64
    /// Per size class counts; index = size class (index 0 is unused).
    public var bySize: [ClassStats]

    init(_ s: sa_mem_stats) {
        alloc = s.alloc
        totalAlloc = s.total_alloc
        sys = s.sys
        mallocs = s.mallocs
        frees = s.frees
        heapAlloc = s.heap_alloc
        heapSys = s.heap_sys
        heapIdle = s.heap_idle
        heapInuse = s.heap_inuse
        heapReleased = s.heap_released
        heapObjects = s.heap_objects
        metadataSys = s.metadata_sys
        cacheAllocs = s.cache_allocs
        largeAllocs = s.large_allocs
        largeFrees = s.large_frees
        cacheRefills = s.cache_refills
        cacheSweeps = s.cache_sweeps
        centralGrows = s.central_grows
        spansFresh = s.spans_fresh
        spansReused = s.spans_reused
        spansReturned = s.spans_returned
        spansInuse = s.spans_inuse
        arenasMapped = s.arenas_mapped
        remoteFrees = s.remote_frees
        pagesScavenged = s.pages_scavenged
        scavengeRuns = s.scavenge_runs
        threadsExited = s.threads_exited
        centralEmptySpans = s.central_empty_spans
        centralEmptyBytes = s.central_empty_bytes
        centralEmptyReuses = s.central_empty_reuses
        freeCacheHits = s.free_cache_hits
        freeCacheObjects = s.free_cache_objects
        freeCacheBytes = s.free_cache_bytes
        freeCacheFlushes = s.free_cache_flushes
        freeCacheGCFlushes = s.free_cache_gc_flushes
        remoteBatches = s.remote_batches
        exitFlushes = s.exit_flushes
        threadHeldMax = s.thread_held_max
        pagesReleasedBackground = s.pages_released_background
        pagesReleasedPacer = s.pages_released_pacer
        pagesReleasedLimit = s.pages_released_limit
        pagesReleasedDemand = s.pages_released_demand
        scavengerCPUNanoseconds = s.scavenger_cpu_ns
        scavengerRunning = s.scavenger_running != 0
        idleCacheFlushes = s.idle_cache_flushes
        memoryLimit = s.memory_limit == UInt64(UInt.max) ? nil : s.memory_limit
        memoryLimitIsHard = s.memory_limit_hard != 0
        memoryCounted = s.memory_counted
        memoryLimitHits = s.memory_limit_hits
        memoryLimitOvershoots = s.memory_limit_overshoots
        memoryLimitRefusals = s.memory_limit_refusals
        var by = s.by_size
        bySize = withUnsafeBytes(of: &by) { raw in
            raw.bindMemory(to: sa_class_stats.self).map {
                ClassStats(size: Int($0.size), mallocs: $0.mallocs, frees: $0.frees)
            }
        }
    }
}

// MARK: - Former names

extension MemStats {
    /// Former name of ``spansInuse``.
    @available(*, deprecated, renamed: "spansInuse")
    public var spansInUse: UInt64 {
        get { spansInuse }
        set { spansInuse = newValue }
    }
}
