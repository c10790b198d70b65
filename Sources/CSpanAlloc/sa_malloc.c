/*
 * sa_malloc.c — the allocation entry points of include/spanalloc.h:
 * sa_alloc and its slow paths (refill, large objects), calloc, aligned
 * allocation, realloc, usable size, and the scavenger, cache and
 * configuration calls. The fast paths are inline in sa_fastpath.h; the
 * free path is sa_free.c and sa_freecache.c, statistics sa_stats.c, the
 * hook and introspection sa_introspect.c, locks, fork and the checker
 * sa_check.c.
 *
 * Owns: the per-thread size of the last refused request. Takes locks only
 * through the layers below (mcache registry, mcentral, mheap).
 */
#include "sa_fastpath.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

__thread size_t sa_failed_size __attribute__((tls_model("initial-exec")));

/* ---- size classes --------------------------------------------------------- */

int sa_size_to_class(size_t size) { return size > SA_MAX_SMALL_SIZE ? 0 : sa_size_class(size); }
size_t sa_class_size(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_size_tab[c] : 0; }
size_t sa_class_pages(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_npages_tab[c] : 0; }
size_t sa_class_objects(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_nelems_tab[c] : 0; }

/* ---- allocation ----------------------------------------------------------- */

SA_SLOW_PATH SA_PROF_SKIP static void *alloc_large(size_t size, size_t align_pages, unsigned flags) {
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
    if (SA_UNLIKELY(atomic_load_explicit(&sa_hook, SA_RELAXED))) sa_call_hook(SA_EVENT_ALLOC, p, size, s);
    if (SA_UNLIKELY(sa_prof_countdown(size))) sa_prof_due_object(p, size);
    return p;
}

/* An allocation due for sampling: made and recorded by the profiler. */
SA_PROF_SKIP void *sa_alloc_small_sampled(int cls, size_t size, unsigned flags) {
    sa_op_end();
    return sa_prof_alloc_small(cls, size, flags);
}

/* Everything but the plain fast path: the profiler's countdown, refilling
 * the span, zeroing, the hook. */
SA_PROF_SKIP void *sa_alloc_small_slow(int cls, size_t size, unsigned flags) {
#if SA_PROFILE_SAMPLING
    if (SA_UNLIKELY(sa_prof_countdown(size))) return sa_alloc_small_sampled(cls, size, flags);
    /* A rate change reaches a thread at its next refill too. */
    if (SA_UNLIKELY(sa_tls.prof_gen != atomic_load_explicit(&sa_prof_gen, SA_RELAXED))) sa_tls.prof_left = 0;
#endif
    int spc = (cls << 1) | (int)(flags & SA_NOSCAN);
    if (SA_UNLIKELY(sa_gate(sa_get_cache()) & SA_GATE_CLAIM)) sa_claim_wait();
    sa_mcache *c = sa_get_cache();
    if (c->last != SA_NO_LAST) c->last = SA_NO_LAST; /* sa_emptycache is shared: written only when set */
    void *p = sa_cache_next_free(c, spc);
    sa_op_end(); /* the fast path's operation: the cache is not touched below */
    if (SA_UNLIKELY(!p)) { sa_failed_size = size; return NULL; }
    SA_UNPOISON(p, size);
    if (flags & SA_ZERO) memset(p, 0, size);
    if (SA_UNLIKELY(atomic_load_explicit(&sa_hook, SA_RELAXED)))
        sa_call_hook(SA_EVENT_ALLOC, p, size, sa_span_of_addr((uintptr_t)p));
    return p;
}

SA_PROF_SKIP void *sa_alloc_medium_or_large(size_t size, unsigned flags) {
    if (size <= SA_MAX_SMALL_SIZE) return sa_alloc_small(sa_size_class(size), size, flags);
    return alloc_large(size, 1, flags);
}

SA_PROF_SKIP void *sa_alloc(size_t size, unsigned flags) { return sa_alloc_inline(size, flags); }

SA_PROF_SKIP void *sa_calloc(size_t count, size_t size, unsigned flags) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) { errno = ENOMEM; return NULL; }
    return sa_alloc(total, flags | SA_ZERO);
}

SA_PROF_SKIP void *sa_alloc_aligned(size_t size, size_t alignment, unsigned flags) {
    if (alignment == 0 || (alignment & (alignment - 1)) || alignment > ((size_t)1 << 30)) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment <= 8) return sa_alloc(size, flags);
    if (size <= SA_MAX_SMALL_SIZE && alignment <= SA_PAGE_SIZE) {
        /* Objects sit at base + i * size with base page-aligned: a class
         * whose size is a multiple of the alignment aligns every object. */
        for (int cls = sa_size_class(size); cls < SA_NUM_CLASSES; cls++)
            if (sa_class_size_tab[cls] % alignment == 0) return sa_alloc_small(cls, size, flags);
    }
    size_t align_pages = alignment > SA_PAGE_SIZE ? alignment >> SA_PAGE_SHIFT : 1;
    return alloc_large(size, align_pages, flags);
}

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
    bool live = sa_span_is_mine(s, sa_get_cache()) ? sa_span_slot_allocated(s, idx)
                                                                             : sa_span_slot_live_remote(s, idx);
    return live && !sa_slot_freed(p); /* in a free cache or remote buffer */
}

bool sa_in_heap(const void *p) {
    uintptr_t a = (uintptr_t)p;
    return !(a >> SA_ADDR_BITS) && sa_arena_of(a) != NULL;
}

size_t sa_usable_size_checked(const void *p) {
    uint32_t idx;
    sa_mspan *s = sa_checked_span(p, sa_span_of_addr((uintptr_t)p), "malloc_usable_size", &idx);
    sa_hold_enter(); /* slot_live reads the thread's own spans */
    bool live = !s->sizeclass || slot_live(s, idx);
    sa_hold_exit();
    if (SA_UNLIKELY(!live)) sa_fatal("malloc_usable_size of pointer %p: already freed (or never allocated)", p);
    return s->elemsize;
}

static void *realloc_held(void *p, size_t size);

/* The profiler sees an in-place realloc as a free and a new allocation of
 * `size` bytes: a sampled object's record goes, and the countdown runs. */
static inline void resized_in_place(void *p, sa_mspan *s, uint32_t idx, size_t size) {
#if SA_PROFILE_SAMPLING
    if (SA_UNLIKELY(atomic_load_explicit(&s->profbits, SA_RELAXED) != NULL)) sa_prof_forget(p, s, idx);
    if (SA_UNLIKELY(sa_prof_countdown(size))) sa_prof_due_object(p, size);
#else
    (void)p; (void)s; (void)idx; (void)size;
#endif
}

/* realloc is one operation on the thread's cache (slot_live, then an
 * allocation and a free): held, so no claim lands between its steps. */
SA_PROF_SKIP void *sa_realloc(void *p, size_t size) {
    sa_hold_enter();
    void *q = realloc_held(p, size);
    sa_hold_exit();
    return q;
}

SA_PROF_SKIP static void *realloc_held(void *p, size_t size) {
    if (!p) return sa_alloc(size, 0);
    if (size == 0) { sa_free(p); return NULL; }
    uint32_t idx;
    sa_mspan *s = sa_checked_span(p, sa_span_of_addr((uintptr_t)p), "realloc", &idx);
    unsigned flags = s->spanclass & 1;
    size_t old = s->elemsize;
    if (s->sizeclass) {
        if (SA_UNLIKELY(!slot_live(s, idx)))
            sa_fatal("realloc of pointer %p: already freed (or never allocated)", p);
        if (size <= old && sa_size_class(size) == s->sizeclass) {
            SA_UNPOISON(p, size);
            SA_POISON((char *)p + size, old - size);
            resized_in_place(p, s, idx, size);
            return p;
        }
    } else if (size > SA_MAX_SMALL_SIZE) {
        if (size > SA_MAX_ALLOC) { errno = ENOMEM; return NULL; }
        size_t npages = (size + SA_PAGE_SIZE - 1) >> SA_PAGE_SHIFT;
        if (npages <= s->npages || sa_heap_resize_large(s, npages)) {
            if (npages < s->npages) sa_heap_resize_large(s, npages);
            SA_UNPOISON(p, size);
            SA_POISON((char *)p + size, s->elemsize - size);
            resized_in_place(p, s, idx, size);
            return p;
        }
    }
    void *q = sa_alloc(size, flags);
    if (!q) return NULL;
    SA_UNPOISON(p, old); /* the old block's tail may be poisoned; it is freed next */
    memcpy(q, p, size < old ? size : old);
    sa_free_validated(p, s, idx); /* the span found above: no second page-map walk */
    return q;
}

/* ---- scavenger, thread caches ----------------------------------------------- */

size_t sa_scavenge(size_t bytes) {
    /* As Go's debug.FreeOSMemory: hand back what the caller caches and what
     * sits empty in mcentral, then release idle pages. */
    sa_fork_register();
    sa_hold_enter();
    sa_cache_flush(sa_get_cache());
    sa_hold_exit();
    sa_central_reclaim();
    size_t done = sa_heap_scavenge(bytes, false, SA_RELEASE_DEMAND);
    sa_heap_release_metadata();
    return done;
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
    sa_scavenger_config_changed();
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
    sa_hold_enter();
    sa_cache_flush(sa_get_cache());
    sa_hold_exit();
    /* As before mcentral kept empty spans: an explicit flush leaves them in mheap. */
    sa_lock(&sa_heap.lock);
    sa_central_reclaim_empty_heap_locked();
    sa_unlock(&sa_heap.lock);
}

