/*
 * sa_stats.c — MemStats (sa_read_mem_stats, sa_mem_stats_json): the sum of
 * every thread cache's counters, live and exited, and the page heap's.
 *
 * Owns: the stats lock (rank 0: it serializes readers, whose totals buffer
 * is static) and the count of frees by threads that have no cache.
 * Counters are read with relaxed loads, so a reading is exact only while no
 * other thread allocates or frees.
 */
#include "sa_internal.h"

#include <stdio.h>
#include <string.h>

static _Atomic uint64_t orphan_frees[SA_NUM_CLASSES]; /* frees by a thread with no cache */

void sa_orphan_free(int cls) { atomic_fetch_add_explicit(&orphan_frees[cls], 1, SA_RELAXED); }

/* ---- statistics ------------------------------------------------------------ */

sa_lock_t sa_stats_lock = SA_LOCK_INIT;
#define stats_lock sa_stats_lock

void sa_read_mem_stats(sa_mem_stats *out) {
    static sa_cache_totals t; /* large: keep it off the stack of small threads */
    sa_fork_register(); /* every entry point that takes a lock registers the fork handlers first */
    sa_lock(&stats_lock);
    sa_cache_totals_read(&t);
    memset(out, 0, sizeof *out);
    uint64_t small_mallocs = 0, small_frees = 0, small_bytes = 0, small_live = 0, orphans = 0;
    for (int c = 1; c < SA_NUM_CLASSES; c++) {
        uint64_t orphan = atomic_load_explicit(&orphan_frees[c], SA_RELAXED), frees = t.nfree[c] + orphan;
        orphans += orphan;
        uint64_t mallocs = t.nmalloc[c];
        if (frees > mallocs) mallocs = frees; /* counters read a moment apart */
        out->by_size[c].size = sa_class_size_tab[c];
        out->by_size[c].mallocs = mallocs;
        out->by_size[c].frees = frees;
        small_mallocs += mallocs;
        small_frees += frees;
        small_bytes += mallocs * sa_class_size_tab[c];
        small_live += (mallocs - frees) * sa_class_size_tab[c];
    }
    uint64_t la = sa_stat(&sa_heap.large_allocs), lf = sa_stat(&sa_heap.large_frees);
    out->mallocs = small_mallocs + la;
    out->frees = small_frees + lf;
    out->total_alloc = small_bytes + sa_stat(&sa_heap.large_bytes_alloc);
    out->heap_alloc = small_live + sa_stat(&sa_heap.large_live_bytes);
    out->alloc = out->heap_alloc;
    out->heap_objects = out->mallocs - out->frees;
    out->heap_sys = sa_stat(&sa_heap.heap_sys);
    out->metadata_sys = sa_stat(&sa_heap.metadata_sys);
    out->sys = out->heap_sys + out->metadata_sys;
    out->heap_inuse = sa_stat(&sa_heap.pages_inuse) << SA_PAGE_SHIFT;
    out->heap_idle = sa_stat(&sa_heap.pages_free) << SA_PAGE_SHIFT;
    out->heap_released = sa_stat(&sa_heap.pages_released) << SA_PAGE_SHIFT;
    out->cache_allocs = small_mallocs;
    out->large_allocs = la;
    out->large_frees = lf;
    out->cache_refills = t.nrefill;
    out->cache_sweeps = t.nsweep;
    out->central_grows = t.ngrow;
    out->spans_fresh = sa_stat(&sa_heap.spans_fresh);
    out->spans_reused = sa_stat(&sa_heap.spans_reused);
    out->spans_returned = sa_stat(&sa_heap.spans_returned);
    out->spans_inuse = sa_stat(&sa_heap.spans_inuse);
    out->arenas_mapped = sa_stat(&sa_heap.arenas);
    out->remote_frees = t.nremote;
    out->pages_scavenged = sa_stat(&sa_heap.pages_scavenged);
    out->scavenge_runs = sa_stat(&sa_heap.scavenge_runs);
    out->threads_exited = t.nexited;
    uint64_t kept_pages;
    sa_central_empty_stats(&out->central_empty_spans, &kept_pages, &out->central_empty_reuses);
    out->central_empty_bytes = kept_pages << SA_PAGE_SHIFT;
    /* A bin push is a free that neither went to the span's bitmaps at once
     * (no bin capacity, the LIFO shortcut's undo, a full bin) nor was a
     * remote free left out of a bin or a free by a thread without a cache;
     * what left the bins was flushed or popped. */
    uint64_t pushes = small_frees - orphans - t.nremote - t.ndirect - t.nflushes + t.nremotebin;
    uint64_t out_of_bins = t.nflushed + t.bin_objects;
    out->free_cache_hits = pushes > out_of_bins ? pushes - out_of_bins : 0;
    out->free_cache_objects = t.cached_objects;
    out->free_cache_bytes = t.cached_bytes;
    out->free_cache_flushes = t.nflushes;
    out->free_cache_gc_flushes = t.ngcflushes;
    out->remote_batches = t.nrbatches;
    out->exit_flushes = sa_stat(&sa_exit_flushes);
    out->thread_held_max = t.held_max;
    out->pages_released_background = sa_stat(&sa_heap.pages_released_by[SA_RELEASE_BACKGROUND]);
    out->pages_released_pacer = sa_stat(&sa_heap.pages_released_by[SA_RELEASE_PACER]);
    out->pages_released_limit = sa_stat(&sa_heap.pages_released_by[SA_RELEASE_LIMIT]);
    out->pages_released_demand = sa_stat(&sa_heap.pages_released_by[SA_RELEASE_DEMAND]);
    /* The sum of the four, not the counter read above: a release between
     * the reads (the background scavenger counts outside every lock the
     * reader holds) would break the equation the header states. */
    out->pages_scavenged = out->pages_released_background + out->pages_released_pacer +
                           out->pages_released_limit + out->pages_released_demand;
    sa_scavenger_stats(out);
    sa_unlock(&stats_lock);
}

size_t sa_mem_stats_json(char *buf, size_t cap) {
    sa_mem_stats s;
    sa_read_mem_stats(&s);
    char tmp[8192];
    size_t n = 0;
#define EMIT(...) do { int k = snprintf(tmp + n, sizeof tmp - n, __VA_ARGS__); if (k > 0) n += (size_t)k; if (n >= sizeof tmp) n = sizeof tmp - 1; } while (0)
#define FIELD(name, v) EMIT("\"%s\":%llu,", name, (unsigned long long)(v))
    EMIT("{");
    FIELD("Alloc", s.alloc); FIELD("TotalAlloc", s.total_alloc); FIELD("Sys", s.sys);
    FIELD("Mallocs", s.mallocs); FIELD("Frees", s.frees); FIELD("HeapAlloc", s.heap_alloc);
    FIELD("HeapSys", s.heap_sys); FIELD("HeapIdle", s.heap_idle); FIELD("HeapInuse", s.heap_inuse);
    FIELD("HeapReleased", s.heap_released); FIELD("HeapObjects", s.heap_objects);
    FIELD("MetadataSys", s.metadata_sys); FIELD("CacheAllocs", s.cache_allocs);
    FIELD("LargeAllocs", s.large_allocs); FIELD("LargeFrees", s.large_frees);
    FIELD("CacheRefills", s.cache_refills); FIELD("CacheSweeps", s.cache_sweeps);
    FIELD("CentralGrows", s.central_grows); FIELD("SpansFresh", s.spans_fresh);
    FIELD("SpansReused", s.spans_reused); FIELD("SpansReturned", s.spans_returned);
    FIELD("SpansInuse", s.spans_inuse); FIELD("ArenasMapped", s.arenas_mapped);
    FIELD("RemoteFrees", s.remote_frees); FIELD("PagesScavenged", s.pages_scavenged);
    FIELD("ScavengeRuns", s.scavenge_runs); FIELD("ThreadsExited", s.threads_exited);
    FIELD("CentralEmptySpans", s.central_empty_spans); FIELD("CentralEmptyBytes", s.central_empty_bytes);
    FIELD("CentralEmptyReuses", s.central_empty_reuses);
    FIELD("FreeCacheHits", s.free_cache_hits); FIELD("FreeCacheObjects", s.free_cache_objects);
    FIELD("FreeCacheBytes", s.free_cache_bytes); FIELD("FreeCacheFlushes", s.free_cache_flushes);
    FIELD("FreeCacheGCFlushes", s.free_cache_gc_flushes); FIELD("RemoteBatches", s.remote_batches);
    FIELD("ExitFlushes", s.exit_flushes); FIELD("ThreadHeldMax", s.thread_held_max);
    FIELD("PagesReleasedBackground", s.pages_released_background); FIELD("PagesReleasedPacer", s.pages_released_pacer);
    FIELD("PagesReleasedLimit", s.pages_released_limit); FIELD("PagesReleasedDemand", s.pages_released_demand);
    FIELD("ScavengerCPUNanoseconds", s.scavenger_cpu_ns); FIELD("ScavengerRunning", s.scavenger_running);
    FIELD("IdleCacheFlushes", s.idle_cache_flushes); FIELD("MemoryLimit", s.memory_limit);
    FIELD("MemoryLimitIsHard", s.memory_limit_hard); FIELD("MemoryCounted", s.memory_counted);
    FIELD("MemoryLimitHits", s.memory_limit_hits); FIELD("MemoryLimitOvershoots", s.memory_limit_overshoots);
    FIELD("MemoryLimitRefusals", s.memory_limit_refusals);
    EMIT("\"BySize\":[");
    for (int c = 1; c < SA_NUM_CLASSES; c++)
        EMIT("%s{\"Size\":%u,\"Mallocs\":%llu,\"Frees\":%llu}", c > 1 ? "," : "", s.by_size[c].size,
             (unsigned long long)s.by_size[c].mallocs, (unsigned long long)s.by_size[c].frees);
    EMIT("]}");
#undef FIELD
#undef EMIT
    if (cap) {
        size_t k = n < cap - 1 ? n : cap - 1;
        memcpy(buf, tmp, k);
        buf[k] = 0;
    }
    return n;
}

