/*
 * sa_fastpath.h — the allocation and free fast paths, inline, for
 * sa_malloc.c (sa_alloc, sa_free) and for the malloc override, which would
 * otherwise pay a second call on every malloc and free. Everything they do
 * not handle is one tail call into the out-of-line slow paths.
 *
 * Allocation: pop the thread's free-cache bin for the spanClass (an object
 * the thread freed, reused at once, as Go's runtimefreegc reuse list and
 * jemalloc's tcache do), else the next slot of the current span's
 * allocCache (ctz). Free: the page map gives the span (two dependent
 * loads); the owner checks the slot is live (taken in the bitmaps, not in
 * freeBits or remoteBits, no cookie in its word 1) and pushes it on the
 * bin; any other thread hands it to sa_free_remote, which buffers it.
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

/* A cached object if the bin has one, else the next free slot of the
 * thread's span for the class (Go's nextFreeFast). One branch leaves it:
 * neither has one, or the hook is installed. */
SA_FAST_PATH void *sa_alloc_small(int cls, size_t size, unsigned flags) {
    int spc = (cls << 1) | (int)(flags & SA_NOSCAN);
    sa_mcache *c = sa_get_cache();
    bool hooked = atomic_load_explicit(&sa_hook, SA_RELAXED) != NULL;
    sa_freebin *b = &c->bins[spc];
    void *p = b->head;
    if (SA_LIKELY(p != NULL && !hooked)) {
        b->head = (void *)sa_word_load(p, 0);
        SA_STORE(b->n, b->n - 1);
        sa_word_store(p, 1, 0); /* the cookie: p is live again */
        sa_counter_inc(&c->nmalloc[cls]);
        SA_UNPOISON(p, size);
        if (flags & SA_ZERO) memset(p, 0, size);
        return p;
    }
    sa_mspan *s = c->alloc[spc];
    uint64_t cache = s->allocCache;
    if (SA_LIKELY(cache != 0 && !hooked)) {
        unsigned bit = (unsigned)__builtin_ctzll(cache);
        uint32_t idx = s->freeindex + bit;
        s->allocCache = cache >> bit >> 1;
        SA_STORE(s->freeindex, idx + 1);
        sa_counter_inc(&c->nmalloc[cls]);
        p = (void *)(s->base + (uintptr_t)idx * s->elemsize);
        SA_UNPOISON(p, size);
        if (flags & SA_ZERO) memset(p, 0, size);
        return p;
    }
    return sa_alloc_small_slow(cls, size, flags);
}

/* `class8` maps (size + 7) / 8 to the class for sizes up to 1024 bytes:
 * sa_size_to_class8, or the malloc override's sa_size_to_class8_libc. */
SA_FAST_PATH void *sa_alloc_inline_with(size_t size, unsigned flags, const uint8_t *class8) {
    if (SA_LIKELY(size <= SA_SMALL_SIZE_MAX)) return sa_alloc_small(class8[(size + 7) >> 3], size, flags);
    return sa_alloc_medium_or_large(size, flags);
}

SA_FAST_PATH void *sa_alloc_inline(size_t size, unsigned flags) {
    return sa_alloc_inline_with(size, flags, sa_size_to_class8);
}

/* The size of the calling thread's last request that returned NULL (the
 * override's verbose log names it without keeping it across the call). */
extern __thread size_t sa_failed_size __attribute__((tls_model("initial-exec")));

/* ---- free -------------------------------------------------------------------- */

/* A small object in span s, freed by the thread that owns s: checked live,
 * then pushed on the bin (word 0 the link, word 1 the cookie). */
SA_FAST_PATH void sa_free_owned_slot(sa_mcache *c, sa_mspan *s, uint32_t idx, void *p) {
    uint32_t w = idx >> 6;
    uint64_t m = (uint64_t)1 << (idx & 63);
    /* Live: taken (below freeindex or in allocBits), in neither freeBits nor remoteBits. */
    uint64_t taken = s->allocBits[w] | (idx < s->freeindex ? m : 0);
    uint64_t gone = s->freeBits[w] | __atomic_load_n(&SA_SPAN_REMOTE(s)[w], __ATOMIC_RELAXED);
    if (SA_UNLIKELY(!(taken & ~gone & m))) {
        sa_free_twice(p);
        return;
    }
    sa_freebin *b = &c->bins[s->spanclass];
    uintptr_t cookie = sa_cookie(s, p);
    uint32_t n = b->n;
    /* n < cap implies a class of 16 bytes or more: word 1 is p's. */
    if (SA_UNLIKELY(n >= b->cap || sa_word_load(p, 1) == cookie)) {
        sa_free_owned_slow(c, s, idx, p);
        return;
    }
    sa_word_store(p, 0, (uintptr_t)b->head);
    sa_word_store(p, 1, cookie);
    b->head = p;
    SA_STORE(b->n, n + 1);
    sa_counter_inc(&c->nfree[s->sizeclass]);
    SA_POISON(p, s->elemsize);
}

/* The free path. `ours_only`: return false, doing nothing, for a pointer
 * outside every arena (the malloc override hands those to glibc); a pointer
 * inside an arena that is not a live object still stops the process. */
SA_FAST_PATH bool sa_free_path(void *p, bool ours_only) {
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
    sa_mcache *c = sa_get_cache();
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
