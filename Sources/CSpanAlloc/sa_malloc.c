/*
 * sa_malloc.c — the public entry points (include/spanalloc.h): allocation
 * and its fast path, the free path, realloc and aligned allocation,
 * statistics, introspection, the hook, the heap checker and fork support.
 *
 * Owns: the hook and the fallback counters. Takes locks only through the
 * layers below (mcache registry, mcentral, mheap).
 *
 * Cost of the fast paths (x86-64, -O2): allocation is a class lookup, a TLS
 * load, the span's allocCache, ctz and four stores, with one branch to the
 * slow path; a free by the owning thread is the page-map walk (three
 * dependent loads), a multiply for the slot, the double-free check against
 * the span's bitmaps and one store. Statistics are per-thread counters
 * written with plain stores.
 */
#include "sa_fastpath.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Atomic(sa_hook_fn) sa_hook;
#define hook sa_hook
static _Atomic(void *) hook_ctx;
__thread size_t sa_failed_size __attribute__((tls_model("initial-exec")));
static _Atomic uint64_t orphan_frees[SA_NUM_CLASSES]; /* frees by a thread with no cache (OOM) */

void sa_orphan_free(int cls) { atomic_fetch_add_explicit(&orphan_frees[cls], 1, SA_RELAXED); }

/* ---- size classes --------------------------------------------------------- */

SA_FAST_PATH int size_to_class(size_t size) {
    if (SA_LIKELY(size <= SA_SMALL_SIZE_MAX)) return sa_size_to_class8[(size + 7) >> 3];
    return sa_size_to_class128[(size - SA_SMALL_SIZE_MAX + SA_LARGE_SIZE_DIV - 1) >> 7];
}

int sa_size_to_class(size_t size) { return size > SA_MAX_SMALL_SIZE ? 0 : size_to_class(size); }
size_t sa_class_size(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_size_tab[c] : 0; }
size_t sa_class_pages(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_npages_tab[c] : 0; }
size_t sa_class_objects(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_nelems_tab[c] : 0; }

/* ---- introspection -------------------------------------------------------- */

static void fill_info(const sa_mspan *s, sa_span_info *out, size_t alloc_count) {
    out->id = atomic_load_explicit(&s->id, SA_RELAXED);
    out->span_class = s->spanclass;
    out->size_class = s->sizeclass;
    out->noscan = s->spanclass & 1;
    out->base = s->base;
    out->npages = s->npages;
    out->elemsize = s->elemsize;
    out->nelems = s->nelems;
    out->alloc_count = alloc_count;
    out->fresh_pages = s->fresh;
}

/* Live objects of a span: exact for the owner and for uncached spans (under
 * the central lock); the count as of the last sweep otherwise. */
static size_t live_count(sa_mspan *s) {
    if (atomic_load_explicit(&s->state, SA_RELAXED) != SA_SPAN_SMALL) return 1;
    sa_mcache *owner = atomic_load_explicit(&s->owner, SA_ACQUIRE);
    if (owner == sa_tls_cache) return sa_span_count_allocated(s) - sa_freecache_in_span(owner, s);
    if (owner == NULL) {
        sa_mcentral *c = &sa_central[s->spanclass];
        sa_lock(&c->lock);
        size_t n = atomic_load_explicit(&s->owner, SA_ACQUIRE) == NULL
                       ? sa_span_count_allocated(s)
                       : atomic_load_explicit(&s->allocCount, SA_RELAXED);
        sa_unlock(&c->lock);
        return n;
    }
    return sa_span_count_taken(s);
}

bool sa_span_of(const void *ptr, sa_span_info *out) {
    sa_mspan *s = sa_span_of_addr((uintptr_t)ptr);
    if (!s) return false;
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    if (st != SA_SPAN_SMALL && st != SA_SPAN_LARGE) return false;
    fill_info(s, out, live_count(s));
    return true;
}

bool sa_owns(const void *ptr) {
    sa_mspan *s = sa_span_of_addr((uintptr_t)ptr);
    if (!s) return false;
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    return st == SA_SPAN_SMALL || st == SA_SPAN_LARGE;
}

/* ---- hook ----------------------------------------------------------------- */

void sa_set_hook(sa_hook_fn fn, void *ctx) {
    atomic_store(&hook_ctx, ctx);
    atomic_store(&hook, fn);
}

static __thread int in_hook __attribute__((tls_model("initial-exec")));

/* The hook may allocate; allocations it makes are not reported to it. */
SA_SLOW_PATH static void call_hook(int event, void *p, size_t size) {
    sa_hook_fn fn = atomic_load(&hook);
    sa_mspan *s = sa_span_of_addr((uintptr_t)p);
    if (!fn || !s || in_hook) return;
    sa_span_info info;
    fill_info(s, &info, atomic_load_explicit(&s->allocCount, SA_RELAXED));
    in_hook = 1;
    fn(event, p, size, &info, atomic_load(&hook_ctx));
    in_hook = 0;
}

/* ---- allocation ----------------------------------------------------------- */

SA_SLOW_PATH static void *alloc_large(size_t size, size_t align_pages, unsigned flags) {
    if (size > SA_MAX_ALLOC) { errno = ENOMEM; sa_failed_size = size; return NULL; }
    sa_fork_register();
    sa_config_load();
    size_t npages = (size + SA_PAGE_SIZE - 1) >> SA_PAGE_SHIFT;
    if (npages == 0) npages = 1;
    sa_mspan *s = sa_heap_alloc_span(npages, align_pages, (int)(flags & SA_NOSCAN), NULL);
    if (!s) { errno = ENOMEM; sa_failed_size = size; return NULL; }
    void *p = (void *)s->base;
    SA_UNPOISON(p, size);
    if ((flags & SA_ZERO) && s->needzero) memset(p, 0, size);
    if (SA_UNLIKELY(atomic_load_explicit(&hook, SA_RELAXED))) call_hook(SA_EVENT_ALLOC, p, size);
    return p;
}

/* Everything but the plain fast path: refilling the span, zeroing, the hook. */
void *sa_alloc_small_slow(int cls, size_t size, unsigned flags) {
    int spc = (cls << 1) | (int)(flags & SA_NOSCAN);
    sa_mcache *c = sa_get_cache();
    if (c->last) c->last = NULL; /* sa_emptycache is shared: written only when set */
    void *p = sa_cache_next_free(c, spc);
    if (SA_UNLIKELY(!p)) { sa_failed_size = size; return NULL; }
    SA_UNPOISON(p, size);
    if (flags & SA_ZERO) memset(p, 0, size);
    if (SA_UNLIKELY(atomic_load_explicit(&hook, SA_RELAXED))) call_hook(SA_EVENT_ALLOC, p, size);
    return p;
}

void *sa_alloc_medium_or_large(size_t size, unsigned flags) {
    if (size <= SA_MAX_SMALL_SIZE) return sa_alloc_small(size_to_class(size), size, flags);
    return alloc_large(size, 1, flags);
}

void *sa_alloc(size_t size, unsigned flags) { return sa_alloc_inline(size, flags); }

void *sa_calloc(size_t count, size_t size, unsigned flags) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) { errno = ENOMEM; return NULL; }
    return sa_alloc(total, flags | SA_ZERO);
}

void *sa_alloc_aligned(size_t size, size_t alignment, unsigned flags) {
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment > ((size_t)1 << 30)) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment <= 8) return sa_alloc(size, flags);
    if (size <= SA_MAX_SMALL_SIZE && alignment <= SA_PAGE_SIZE) {
        /* Objects sit at base + i * size with base page-aligned: a class
         * whose size is a multiple of the alignment aligns every object. */
        for (int cls = size_to_class(size); cls < SA_NUM_CLASSES; cls++)
            if (sa_class_size_tab[cls] % alignment == 0) return sa_alloc_small(cls, size, flags);
    }
    size_t align_pages = alignment > SA_PAGE_SIZE ? alignment >> SA_PAGE_SHIFT : 1;
    return alloc_large(size, align_pages, flags);
}

/* ---- free ------------------------------------------------------------------ */

/* Validates p and returns its span (small or large); stops on a bad pointer. */
SA_FAST_PATH sa_mspan *checked_span(const void *p, const char *op, uint32_t *idx_out) {
    uintptr_t a = (uintptr_t)p;
    sa_mspan *s = sa_span_of_addr(a);
    if (SA_UNLIKELY(!s)) {
        sa_fatal("%s of pointer %p not allocated by SpanAlloc (or already freed)", op, p);
    }
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    if (SA_LIKELY(st == SA_SPAN_SMALL)) {
        uintptr_t off = a - s->base;
        uint32_t idx = (uint32_t)(((uint64_t)off * s->divmul) >> 32);
        if (SA_UNLIKELY((uintptr_t)idx * s->elemsize != off || idx >= s->nelems))
            sa_fatal("%s of interior pointer %p (span %p, object size %zu)", op, p, (void *)s->base, s->elemsize);
        *idx_out = idx;
        return s;
    }
    if (SA_UNLIKELY(st != SA_SPAN_LARGE)) sa_fatal("%s of pointer %p: already freed (double free) or never allocated", op, p);
    if (SA_UNLIKELY(a != s->base))
        sa_fatal("%s of interior pointer %p (large object at %p)", op, p, (void *)s->base);
    *idx_out = 0;
    return s;
}

/* Frees that are not a small object freed by the thread caching its span. */
void sa_free_slow(void *p) {
    if (!p) return;
    if (sa_get_cache()->last == p) sa_get_cache()->last = NULL;
    uint32_t idx;
    sa_mspan *s = checked_span(p, "free", &idx);
    if (SA_UNLIKELY(atomic_load_explicit(&hook, SA_RELAXED))) call_hook(SA_EVENT_FREE, p, s->elemsize);
    if (s->sizeclass == 0) {
        sa_heap_free_span(s);
        return;
    }
    sa_mcache *c = sa_get_cache();
    if (atomic_load_explicit(&s->owner, SA_RELAXED) == c) {
        /* With the hook installed: straight to freeBits, no bin. */
        if (!sa_span_slot_allocated(s, idx)) sa_fatal("double free (or free of an unallocated object) of pointer %p", p);
        if (sa_slot_freed(s, p)) sa_free_twice(p);
        sa_word_store(p, SA_WORD_COOKIE, sa_cookie(s, p));
        sa_counter_inc(&c->nfree[s->sizeclass]);
        sa_counter_inc(&c->ndirect);
        SA_POISON(p, s->elemsize);
        sa_free_owned_bitmap(c, s, idx);
        return;
    }
    sa_free_remote(c, s, idx, p);
}

/* Not noreturn, so the fast path reaches them by a tail jump and needs no
 * stack frame of its own. */
void sa_free_interior(const void *p, const sa_mspan *s) {
    if ((uintptr_t)p >> SA_ADDR_BITS) sa_fatal("free of pointer %p not allocated by SpanAlloc", p);
    sa_fatal("free of interior pointer %p (span %p, object size %zu)", p, (void *)s->base, s->elemsize);
}

void sa_free_twice(const void *p) {
    sa_fatal("double free (or free of an unallocated object) of pointer %p", p);
}

void sa_free(void *p) { sa_free_inline(p); }

bool sa_free_if_ours(void *p) { return sa_free_inline_if_ours(p); }

size_t sa_usable_size(const void *p) {
    if (!p) return 0;
    sa_mspan *s = sa_span_of_addr((uintptr_t)p);
    if (!s) return 0;
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    if (st != SA_SPAN_SMALL && st != SA_SPAN_LARGE) return 0;
    return s->elemsize;
}

/* Whether slot idx holds a live object: read directly by the owner, as one
 * snapshot by any other thread (the remote free's test). */
static bool slot_live(const sa_mspan *s, uint32_t idx) {
    const void *p = (const void *)(s->base + (uintptr_t)idx * s->elemsize);
    bool live = atomic_load_explicit(&s->owner, SA_RELAXED) == sa_get_cache() ? sa_span_slot_allocated(s, idx)
                                                                             : sa_span_slot_live_remote(s, idx);
    return live && !sa_slot_freed(s, p); /* in a free cache or remote buffer */
}

bool sa_in_heap(const void *p) {
    uintptr_t a = (uintptr_t)p;
    return !(a >> SA_ADDR_BITS) && sa_arena_of(a) != NULL;
}

size_t sa_usable_size_checked(const void *p) {
    uint32_t idx;
    sa_mspan *s = checked_span(p, "malloc_usable_size", &idx);
    if (s->sizeclass && SA_UNLIKELY(!slot_live(s, idx)))
        sa_fatal("malloc_usable_size of pointer %p: already freed (or never allocated)", p);
    return s->elemsize;
}

void *sa_realloc(void *p, size_t size) {
    if (!p) return sa_alloc(size, 0);
    if (size == 0) { sa_free(p); return NULL; }
    uint32_t idx;
    sa_mspan *s = checked_span(p, "realloc", &idx);
    unsigned flags = s->spanclass & 1;
    size_t old = s->elemsize;
    if (s->sizeclass) {
        if (SA_UNLIKELY(!slot_live(s, idx)))
            sa_fatal("realloc of pointer %p: already freed (or never allocated)", p);
        if (size <= old && size_to_class(size) == s->sizeclass) {
            SA_UNPOISON(p, size);
            SA_POISON((char *)p + size, old - size);
            return p;
        }
    } else if (size > SA_MAX_SMALL_SIZE) {
        if (size > SA_MAX_ALLOC) { errno = ENOMEM; return NULL; }
        size_t npages = (size + SA_PAGE_SIZE - 1) >> SA_PAGE_SHIFT;
        if (npages <= s->npages || sa_heap_resize_large(s, npages)) {
            if (npages < s->npages) sa_heap_resize_large(s, npages);
            SA_UNPOISON(p, size);
            SA_POISON((char *)p + size, s->elemsize - size);
            return p;
        }
    }
    void *q = sa_alloc(size, flags);
    if (!q) return NULL;
    SA_UNPOISON(p, old); /* the old block's tail may be poisoned; it is freed next */
    memcpy(q, p, size < old ? size : old);
    sa_free(p);
    return q;
}

/* ---- statistics ------------------------------------------------------------ */

sa_lock_t sa_stats_lock = SA_LOCK_INIT;
#define stats_lock sa_stats_lock

void sa_read_mem_stats(sa_mem_stats *out) {
    static sa_cache_totals t; /* large: keep it off the stack of small threads */
    sa_fork_register(); /* every entry point that takes a lock registers the fork handlers first */
    sa_lock(&stats_lock);
    sa_cache_totals_read(&t);
    memset(out, 0, sizeof *out);
    uint64_t small_mallocs = 0, small_frees = 0, small_bytes = 0, small_live = 0;
    for (int c = 1; c < SA_NUM_CLASSES; c++) {
        uint64_t frees = t.nfree[c] + atomic_load_explicit(&orphan_frees[c], SA_RELAXED);
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
    sa_unlock(&stats_lock);
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
    /* A bin push is an owner free that is not remote, not direct (no bin
     * capacity, or the hook) and did not find its bin full; what
     * left the bins was flushed or popped. */
    uint64_t pushes = small_frees - t.nremote - t.ndirect - t.nflushes;
    uint64_t out_of_bins = t.nflushed + t.cached_objects;
    out->free_cache_hits = pushes > out_of_bins ? pushes - out_of_bins : 0;
    out->free_cache_objects = t.cached_objects;
    out->free_cache_bytes = t.cached_bytes;
    out->free_cache_flushes = t.nflushes;
    out->free_cache_gc_flushes = t.ngcflushes;
    out->remote_batches = t.nrbatches;
    out->exit_flushes = sa_stat(&sa_exit_flushes);
    out->thread_held_max = t.held_max;
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

/* ---- scavenger, thread caches ----------------------------------------------- */

size_t sa_scavenge(size_t bytes) {
    /* As Go's debug.FreeOSMemory: hand back what the caller caches and what
     * sits empty in mcentral, then release idle pages. */
    sa_fork_register();
    sa_cache_flush(sa_get_cache());
    sa_central_reclaim();
    return sa_heap_scavenge(bytes, false);
}

void sa_get_scavenge_config(sa_scavenge_config *out) {
    sa_fork_register();
    sa_config_load();
    sa_heap_config(out, NULL);
}

void sa_set_scavenge_config(const sa_scavenge_config *cfg) {
    sa_fork_register();
    sa_config_load(); /* so the variable, read later, cannot undo this call */
    sa_heap_config(NULL, cfg);
}

void sa_get_cache_config(sa_cache_config *out) {
    sa_config_load();
    sa_cache_configure(out, NULL);
}

void sa_set_cache_config(const sa_cache_config *cfg) {
    sa_config_load(); /* so the variable, read later, cannot undo this call */
    sa_cache_configure(NULL, cfg);
}

void sa_thread_flush(void) {
    sa_cache_flush(sa_get_cache());
    /* As before mcentral kept empty spans: an explicit flush leaves them in mheap. */
    sa_lock(&sa_heap.lock);
    sa_central_reclaim_empty_heap_locked();
    sa_unlock(&sa_heap.lock);
}

/* ---- locks: ranks, fork and the checker ---------------------------------------- */

#ifndef NDEBUG
/* Ranks held by this thread, in acquisition order (fork_prepare holds all). */
static __thread int held[SA_NUM_SPAN_CLASSES + 8] __attribute__((tls_model("initial-exec")));
static __thread int nheld __attribute__((tls_model("initial-exec")));

static int lock_rank(const sa_lock_t *l) {
    if (l == &sa_stats_lock) return 0;
    if (l == &sa_registry_lock_v) return 1;
    if (l == &sa_heap.lock) return 2;
    uintptr_t a = (uintptr_t)l, c0 = (uintptr_t)&sa_central[0];
    if (a >= c0 && a < (uintptr_t)&sa_central[SA_NUM_SPAN_CLASSES]) return 3 + (int)((a - c0) / sizeof(sa_mcentral));
    return -1;
}

void sa_lockrank_acquire(const sa_lock_t *l) {
    int r = lock_rank(l);
    if (r < 0) return;
    if (nheld && held[nheld - 1] >= r)
        sa_fatal("lock order violation: taking lock rank %d while holding rank %d", r, held[nheld - 1]);
    if (nheld < (int)(sizeof held / sizeof held[0])) held[nheld++] = r;
}

void sa_lockrank_release(const sa_lock_t *l) {
    int r = lock_rank(l);
    if (r < 0) return;
    for (int i = nheld - 1; i >= 0; i--) {
        if (held[i] == r) {
            for (int j = i; j < nheld - 1; j++) held[j] = held[j + 1];
            nheld--;
            return;
        }
    }
    sa_fatal("lock order: releasing lock rank %d that is not held", r);
}

void sa_lockrank_reset(void) { nheld = 0; }
#endif

/* Every lock, in rank order, so the child of a multithreaded parent finds
 * them all free. */
void sa_fork_prepare(void) {
    sa_lock(&stats_lock);
    sa_registry_lock();
    sa_lock(&sa_heap.lock);
    for (int i = 0; i < SA_NUM_SPAN_CLASSES; i++) sa_lock(&sa_central[i].lock);
}

void sa_fork_parent(void) {
    for (int i = SA_NUM_SPAN_CLASSES - 1; i >= 0; i--) sa_unlock(&sa_central[i].lock);
    sa_unlock(&sa_heap.lock);
    sa_registry_unlock();
    sa_unlock(&stats_lock);
}

/* The child has one thread, the one that forked: the locks start free, and
 * the caches of the parent's other threads, which the child does not have,
 * are handed back (their threads will never exit here). */
void sa_fork_child(void) {
    sa_lockrank_reset();
    pthread_mutex_init(&stats_lock, NULL);
    pthread_mutex_init(&sa_heap.lock, NULL);
    for (int i = 0; i < SA_NUM_SPAN_CLASSES; i++) pthread_mutex_init(&sa_central[i].lock, NULL);
    sa_registry_reinit();
    sa_cache_fork_child();
}

static _Atomic bool fork_handlers;

/* At load time, before the program starts threads: a fork racing another
 * thread's first lock could otherwise snapshot the handler list before the
 * registration and the lock after it. Entry points that run before
 * constructors (the override's first malloc) register lazily. */
__attribute__((constructor)) static void sa_fork_register_at_load(void) { sa_fork_register(); }

void sa_fork_register(void) {
    /* An atomic flag, not pthread_once: pthread_atfork may allocate, and
     * that allocation comes back here. */
    if (atomic_load_explicit(&fork_handlers, SA_RELAXED) || atomic_exchange(&fork_handlers, true)) return;
    pthread_atfork(sa_fork_prepare, sa_fork_parent, sa_fork_child);
}

static int check_heap(char *err, size_t errlen, bool quiescent) {
    char local[256];
    if (!err || errlen == 0) { err = local; errlen = sizeof local; }
    err[0] = 0;
    uint64_t live = 0, nsmall = 0, ncached = 0, ncentral = 0, nfreecached = 0;
    sa_fork_register();
    sa_registry_lock();
    int others = sa_registry_other_caches();
    sa_lock(&sa_heap.lock);
    int rc = sa_heap_check(err, errlen, quiescent, &live, &nsmall);
    sa_unlock(&sa_heap.lock);
    if (rc == 0) rc = sa_cache_check(err, errlen, quiescent, &ncached, &nfreecached);
    sa_registry_unlock();
    if (rc == 0) rc = sa_central_check(err, errlen, &ncentral);
    if (rc == 0 && quiescent && nsmall != ncached + ncentral) {
        /* Every small span is some cache's (current or on its lists) or on a central list. */
        snprintf(err, errlen, "small spans: %llu in the page map, %llu cached + %llu on central lists",
                 (unsigned long long)nsmall, (unsigned long long)ncached, (unsigned long long)ncentral);
        rc = -1;
    }
    if (rc == 0 && (quiescent || others == 0)) {
        /* Every span was counted: the counters must match the heap. */
        sa_mem_stats st;
        sa_read_mem_stats(&st);
        /* Objects in free caches are taken in their spans' bitmaps but freed. */
        if (st.heap_objects + nfreecached != live) {
            snprintf(err, errlen, "live objects: %llu in spans (%llu of them in free caches), statistics say %llu",
                     (unsigned long long)live, (unsigned long long)nfreecached, (unsigned long long)st.heap_objects);
            rc = -1;
        }
    }
    return rc;
}

int sa_check_heap(char *err, size_t errlen) { return check_heap(err, errlen, false); }

int sa_check_heap_quiescent(char *err, size_t errlen) { return check_heap(err, errlen, true); }
