/*
 * sa_fastpath.h — the allocation and free fast paths, inline, for
 * sa_malloc.c (sa_alloc, sa_free) and for the malloc override, which would
 * otherwise pay a second call on every malloc and free. Everything they do
 * not handle is one tail call into sa_malloc.c's out-of-line slow paths.
 *
 * Cost (x86-64, clang -O2): an allocation is a class lookup, a TLS load, the
 * span's allocCache, ctz and five stores, with one branch to the slow path;
 * freeing the object allocated last (the LIFO shortcut) is about 25
 * instructions; any other free by the owning thread walks the page map
 * (two dependent loads), divides by the object size with a multiply, checks
 * the span's bitmaps for a double free and sets one bit.
 */
#ifndef SA_FASTPATH_H
#define SA_FASTPATH_H

#include "sa_internal.h"

#include <string.h>

SA_HIDDEN extern _Atomic(sa_hook_fn) sa_hook;

SA_HIDDEN void *sa_alloc_small_slow(int cls, size_t size, unsigned flags);
SA_HIDDEN void *sa_alloc_medium_or_large(size_t size, unsigned flags);
SA_HIDDEN void sa_free_slow(void *p);
SA_HIDDEN void sa_free_remote(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p);
SA_HIDDEN void sa_free_interior(const void *p, const sa_mspan *s);
SA_HIDDEN void sa_free_twice(const void *p);

/* ---- allocation ------------------------------------------------------------ */

/* The next free slot of the thread's span for the class (Go's nextFreeFast).
 * One branch leaves it: no free slot in the current 64-slot window, or the
 * hook is installed. */
SA_FAST_PATH void *sa_alloc_small(int cls, size_t size, unsigned flags) {
    int spc = (cls << 1) | (int)(flags & SA_NOSCAN);
    sa_mcache *c = sa_get_cache();
    sa_mspan *s = c->alloc[spc];
    uint64_t cache = s->allocCache;
    if (SA_LIKELY(cache != 0 && !atomic_load_explicit(&sa_hook, SA_RELAXED))) {
        unsigned bit = (unsigned)__builtin_ctzll(cache);
        uint32_t idx = s->freeindex + bit;
        s->allocCache = cache >> bit >> 1;
        SA_STORE(s->freeindex, idx + 1);
        sa_counter_inc(&c->nmalloc[cls]);
        void *p = (void *)(s->base + (uintptr_t)idx * s->elemsize);
        c->last = p;
        c->lastspan = s;
        SA_UNPOISON(p, size);
        if (flags & SA_ZERO) memset(p, 0, size);
        return p;
    }
    return sa_alloc_small_slow(cls, size, flags);
}

SA_FAST_PATH void *sa_alloc_inline(size_t size, unsigned flags) {
    if (SA_LIKELY(size <= SA_SMALL_SIZE_MAX)) return sa_alloc_small(sa_size_to_class8[(size + 7) >> 3], size, flags);
    return sa_alloc_medium_or_large(size, flags);
}

/* ---- free -------------------------------------------------------------------- */

/* Frees the object the thread allocated last, when that is p (Go has no
 * explicit free; this is SpanAlloc's LIFO shortcut, which makes an
 * alloc/free pair reuse one warm slot as a free list would). p == last
 * proves p is live, small, in the thread's current span and was the slot at
 * freeindex - 1 that the allocCache handed out, so giving the slot back is
 * undoing that step: shift its bit back into allocCache. It is refused when
 * the bit would fall off the window, when another thread already freed p
 * (a remote double free, reported by the next sweep), or with a hook. */
SA_FAST_PATH bool sa_free_last(sa_mcache *c, void *p) {
    sa_mspan *s = c->lastspan;
    c->last = NULL;
    uint32_t idx = s->freeindex - 1;
    uint64_t cache = s->allocCache;
    uint64_t remote = __atomic_load_n(&SA_SPAN_REMOTE(s)[idx >> 6], __ATOMIC_RELAXED);
    if (SA_UNLIKELY((cache >> 63) | ((remote >> (idx & 63)) & 1) | (uintptr_t)atomic_load_explicit(&sa_hook, SA_RELAXED)))
        return false;
    s->allocCache = (cache << 1) | 1;
    SA_STORE(s->freeindex, idx);
    sa_counter_inc(&c->nfree[s->sizeclass]);
    SA_POISON(p, s->elemsize);
    return true;
}

/* A small object in span s, freed by the thread that owns s. */
SA_FAST_PATH void sa_free_owned_slot(sa_mcache *c, sa_mspan *s, uint32_t idx, void *p) {
    /* A remote free of the same object shows up as an overlap at the sweep. */
    uint32_t w = idx >> 6;
    uint64_t m = (uint64_t)1 << (idx & 63);
    uint64_t *freew = s->freeBits;
    bool taken = idx < s->freeindex || (s->allocBits[w] & m);
    if (SA_UNLIKELY(!taken || (freew[w] & m))) {
        sa_free_twice(p);
        return;
    }
    SA_STORE(freew[w], freew[w] | m); /* read by other threads' frees and reallocs */
    sa_counter_inc(&c->nfree[s->sizeclass]);
    SA_POISON(p, s->elemsize);
    /* Not the current span but one the thread filled earlier. */
    if (SA_UNLIKELY(s->list != SA_LIST_NONE)) sa_cache_free_owned(c, s);
}

/* The free path. `ours_only`: return false, doing nothing, for a pointer
 * outside every arena (the malloc override hands those to glibc); a pointer
 * inside an arena that is not a live object still stops the process. */
SA_FAST_PATH bool sa_free_path(void *p, bool ours_only) {
    sa_mcache *c = sa_get_cache();
    if (p == c->last && p != NULL && sa_free_last(c, p)) return true;
    uintptr_t a = (uintptr_t)p;
    sa_mspan *s = sa_span_of_addr(a); /* NULL for p == NULL and for tagged pointers too */
    if (SA_UNLIKELY(!s || atomic_load_explicit(&s->state, SA_RELAXED) != SA_SPAN_SMALL)) {
        if (ours_only && p != NULL && !s && ((a >> SA_ADDR_BITS) || !sa_arena_of(a))) return false;
        sa_free_slow(p);
        return true;
    }
    uintptr_t off = a - s->base;
    uint32_t idx = (uint32_t)(((uint64_t)off * s->divmul) >> 32);
    /* idx == nelems (an address in the span's tail) passes this test but
     * finds its slot not taken, so it is refused there; no class has both a
     * tail and nelems % 64 == 0. */
    if (SA_UNLIKELY((uintptr_t)idx * s->elemsize != off)) {
        sa_free_interior(p, s);
        return true;
    }
    if (SA_UNLIKELY(atomic_load_explicit(&sa_hook, SA_RELAXED))) {
        sa_free_slow(p);
        return true;
    }
    if (atomic_load_explicit(&s->owner, SA_RELAXED) != c) {
        sa_free_remote(c, s, idx, p);
        return true;
    }
    sa_free_owned_slot(c, s, idx, p);
    return true;
}

SA_FAST_PATH void sa_free_inline(void *p) { (void)sa_free_path(p, false); }
SA_FAST_PATH bool sa_free_inline_if_ours(void *p) { return sa_free_path(p, true); }

#endif
