/*
 * sa_fastpath.h — the allocation and free fast paths, inline, for
 * sa_malloc.c (sa_alloc, sa_free) and for the malloc override, which would
 * otherwise pay a second call on every malloc and free. Everything they do
 * not handle is one tail call into the out-of-line slow paths.
 *
 * Both bracket their use of the thread's cache with sa_op_begin/sa_op_end
 * (one store each) and test the cache's gate first: any rare work (the
 * hook, the scavenger claiming the cache of an idle thread) is one branch.
 * The heap profiler adds a thread-local byte countdown to allocation (a
 * subtract and a branch); a free that walks the page map reads the span's
 * profiled flag in the same 16-bit load as its state; the LIFO shortcut
 * never meets a sampled object (sampling clears `last`).
 *
 * Allocation: pop the thread's free-cache bin for the spanClass (an object
 * the thread freed, reused at once, as Go's runtimefreegc reuse list and
 * jemalloc's tcache do), else the next slot of the current span's
 * allocCache (ctz). Free: the object allocated last goes straight back to
 * allocCache (the LIFO shortcut); any other object's span comes from the
 * page map (two dependent loads); the owner checks the slot is live (taken
 * in the bitmaps, no cookie in its word 0) and pushes it on the bin; any
 * other thread hands it to sa_free_remote, which buffers it.
 */
#ifndef SA_FASTPATH_H
#define SA_FASTPATH_H

#include "sa_internal.h"

#include <string.h>

/* 0 compiles the heap profiler's fast-path tests out (instruction-count
 * baselines); sampling then never triggers. */
#ifndef SA_PROFILE_SAMPLING
#define SA_PROFILE_SAMPLING 1
#endif


/* Ends the caller's operation (sa_op_end), so the fast path tail-calls it.
 * Counts the allocation against the profiler's countdown. */
SA_HIDDEN void *sa_alloc_small_slow(int cls, size_t size, unsigned flags);
/* The same for an allocation the fast path counted and found due. */
SA_HIDDEN void *sa_alloc_small_sampled(int cls, size_t size, unsigned flags);

/* The heap profiler's countdown (thread-local, owner only): subtracts the
 * allocation's size and says whether it crossed zero, so the allocation is
 * due for sampling (one subtract and one branch, taken once per sample). */
SA_FAST_PATH bool sa_prof_countdown(size_t size) {
#if SA_PROFILE_SAMPLING
    sa_tls.prof_left -= (int64_t)size;
    return sa_tls.prof_left < 0;
#else
    (void)size;
    return false;
#endif
}
SA_HIDDEN void *sa_alloc_medium_or_large(size_t size, unsigned flags);
/* Validates p (s: its page-map entry, NULL when none) and frees it. */
SA_HIDDEN void sa_free_slow(void *p, sa_mspan *s);
SA_HIDDEN void sa_free_remote(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p);
SA_HIDDEN void sa_free_interior(const void *p, const sa_mspan *s);
SA_HIDDEN void sa_free_twice(const void *p);
/* The free path with the gate set: waits out a claim, then frees (through
 * the hook if it is installed). Ends the operation. */
SA_HIDDEN void sa_free_gated(void *p, void (*foreign)(void *));
/* sa_free_slow, sa_free_remote, sa_free_owned_slow, sa_free_interior and
 * sa_free_twice, ending the operation (see sa_free_owned_bitmap_op). */
SA_HIDDEN void sa_free_slow_end(void *p, sa_mspan *s);
SA_HIDDEN void sa_free_remote_end(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p);
SA_HIDDEN void sa_free_owned_slow_end(sa_mcache *c, sa_mspan *s, uint32_t idx, void *p);
SA_HIDDEN void sa_free_interior_end(const void *p, const sa_mspan *s);
SA_HIDDEN void sa_free_twice_end(const void *p);

/* ---- allocation ------------------------------------------------------------ */

/* A cached object if the bin has one, else the next free slot of the
 * thread's span for the class (Go's nextFreeFast). The gate (hook, claim)
 * and an empty bin with an exhausted allocCache go to the slow path. */
SA_FAST_PATH void *sa_alloc_small(int cls, size_t size, unsigned flags) {
    int spc = (cls << 1) | (int)(flags & SA_NOSCAN);
    sa_mcache *c = sa_get_cache();
    void *p;
    sa_op_begin();
    if (SA_UNLIKELY(sa_gate(c))) return sa_alloc_small_slow(cls, size, flags);
    sa_freebin *b = &c->bins[spc];
    uint32_t n = b->n;
    if (SA_LIKELY(n != 0)) {
        if (SA_UNLIKELY(sa_prof_countdown(size))) return sa_alloc_small_sampled(cls, size, flags);
        p = b->slots[n - 1];
        SA_STORE(b->n, n - 1);
        c->last = p;
        c->lastbin = b;
        sa_word_store(p, SA_WORD_COOKIE, 0); /* live again */
        sa_counter_inc(&c->nmalloc[cls]);
        sa_op_end();
        SA_UNPOISON(p, size);
        if (flags & SA_ZERO) memset(p, 0, size);
        return p;
    }
    sa_mspan *s = c->alloc[spc];
    uint64_t cache = s->allocCache;
    if (SA_LIKELY(cache != 0)) {
        if (SA_UNLIKELY(sa_prof_countdown(size))) return sa_alloc_small_sampled(cls, size, flags);
        unsigned bit = (unsigned)__builtin_ctzll(cache);
        uint32_t idx = s->freeindex + bit;
        s->allocCache = cache >> bit >> 1;
        SA_STORE(s->freeindex, idx + 1);
        sa_counter_inc(&c->nmalloc[cls]);
        p = (void *)(s->base + (uintptr_t)idx * s->elemsize);
        c->last = p;
        c->lastspan = s;
        c->lastbin = NULL;
        sa_word_store(p, SA_WORD_COOKIE, 0); /* a freed slot's old cookie */
        sa_op_end();
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

/* Frees the object the thread allocated last, when that is p (the LIFO
 * shortcut: Go has no explicit free). p == last proves p is a small object
 * the thread allocated and has not freed since (every free of it clears
 * last), and that no allocation came after it, so the page-map walk and the
 * bitmap test are skipped:
 *   - handed out by allocCache, p is the slot at lastspan's freeindex - 1:
 *     giving it back is undoing that step (shift its bit back into
 *     allocCache), which touches only the span's line;
 *   - popped from a bin, p goes back on it.
 * Refused (the full path decides) when the bit would fall off the window
 * or the bin is full, and when p may carry its cookie (another thread
 * freed it: a double free; the full path tells). */
SA_FAST_PATH bool sa_free_last(sa_mcache *c, void *p) {
    c->last = SA_NO_LAST;
    sa_freebin *b = c->lastbin;
    /* No branch hints: a refusal continues on the full path, which must not
     * be laid out as cold. */
    if (b == NULL) {
        sa_mspan *s = c->lastspan;
        uint64_t cache = s->allocCache;
        uint32_t idx = s->freeindex - 1;
        if ((cache >> 63) | sa_slot_maybe_freed(p)) return false;
        s->allocCache = (cache << 1) | 1;
        SA_STORE(s->freeindex, idx);
        sa_counter_inc(&c->nfree[s->sizeclass]);
        sa_counter_inc(&c->ndirect); /* a free no bin took */
        SA_POISON(p, s->elemsize);
        return true;
    }
    uint32_t n = b->n;
    if ((n >= b->cap) | sa_slot_maybe_freed(p)) return false;
    sa_word_store(p, SA_WORD_COOKIE, sa_cookie(p));
    b->slots[n] = p;
    SA_STORE(b->n, n + 1);
    int cls = (int)(b - c->bins) >> 1;
    sa_counter_inc(&c->nfree[cls]);
    SA_POISON(p, sa_class_size_tab[cls]);
    return true;
}

/* A small object in span s, freed by the thread that owns s: checked live
 * (taken, no cookie), then pushed on the bin. `end`: ends the operation
 * (the fast path), else leaves it to the caller (sa_free_validated). */
SA_FAST_PATH void sa_free_owned_slot(sa_mcache *c, sa_mspan *s, uint32_t idx, void *p, bool end) {
    uint64_t m = (uint64_t)1 << (idx & 63);
    uint64_t taken = s->allocBits[idx >> 6] | (idx < s->freeindex ? m : 0);
    uintptr_t cookie = sa_cookie(p);
    if (SA_UNLIKELY(!(taken & m) || (sa_slot_maybe_freed(p) && sa_slot_freed(p)))) {
        sa_free_twice_end(p);
        return;
    }
    sa_freebin *b = &c->bins[s->spanclass];
    uint32_t n = b->n;
    if (SA_UNLIKELY(n >= b->cap)) {
        if (SA_UNLIKELY(b->cap == 0)) {
            if (end) sa_free_owned_slow_end(c, s, idx, p);
            else sa_free_owned_slow(c, s, idx, p);
            return;
        }
        /* Full: this object goes to freeBits; the bin keeps what it has. */
        sa_word_store(p, SA_WORD_COOKIE, cookie);
        sa_counter_inc(&c->nfree[s->sizeclass]);
        sa_counter_inc(&c->nflushes);
        SA_POISON(p, s->elemsize);
        sa_free_owned_bitmap_op(c, s, idx, end);
        return;
    }
    sa_word_store(p, SA_WORD_COOKIE, cookie);
    b->slots[n] = p;
    SA_STORE(b->n, n + 1);
    sa_counter_inc(&c->nfree[s->sizeclass]);
    if (end) sa_op_end();
    SA_POISON(p, s->elemsize);
}

/* The free path's body, inside the operation bracket, which it ends on
 * every path: `hooked` (from the gated path only) sends every object
 * through sa_free_slow, which calls the hook. A pointer outside every
 * arena goes to `foreign` (the malloc override hands those to glibc), or
 * stops the process when it is NULL; a pointer inside an arena that is not
 * a live object always stops it. */
SA_FAST_PATH void sa_free_body(sa_mcache *c, void *p, void (*foreign)(void *), bool hooked) {
    if (!hooked && p == c->last && sa_free_last(c, p)) {
        sa_op_end();
        return;
    }
    uintptr_t a = (uintptr_t)p;
    sa_mspan *s = sa_span_of_addr(a); /* NULL for p == NULL and for tagged pointers too */
    /* A span holding a sampled object (profiled) goes to the slow path too,
     * which drops the object's record. */
#if SA_PROFILE_SAMPLING
    if (SA_UNLIKELY(!s || !sa_span_small_unprofiled(s))) {
#else
    if (SA_UNLIKELY(!s || atomic_load_explicit(&s->state, SA_RELAXED) != SA_SPAN_SMALL)) {
#endif
        if (foreign && p != NULL && !s && ((a >> SA_ADDR_BITS) || !sa_arena_of(a))) {
            sa_op_end();
            foreign(p);
            return;
        }
        sa_free_slow_end(p, s);
        return;
    }
    uintptr_t off = a - s->base;
    uint32_t idx = (uint32_t)(((uint64_t)off * s->divmul) >> 32);
    /* idx == nelems (an address in the span's tail) passes this test but
     * finds its slot not taken, so it is refused there; no class has both a
     * tail and nelems % 64 == 0. */
    if (SA_UNLIKELY((uintptr_t)idx * s->elemsize != off)) {
        sa_free_interior_end(p, s);
        return;
    }
    if (SA_UNLIKELY(hooked)) {
        sa_free_slow_end(p, s);
        return;
    }
    if (!sa_span_is_mine(s, c)) {
        sa_free_remote_end(c, s, idx, p);
        return;
    }
    sa_free_owned_slot(c, s, idx, p, true);
}

/* The free path: the gate, then the body. */
SA_FAST_PATH void sa_free_path(void *p, void (*foreign)(void *)) {
    sa_mcache *c = sa_get_cache();
    sa_op_begin();
    if (SA_UNLIKELY(sa_gate(c))) {
        sa_free_gated(p, foreign);
        return;
    }
    sa_free_body(c, p, foreign, false);
}

SA_FAST_PATH void sa_free_inline(void *p) { sa_free_path(p, NULL); }
/* Frees p, or hands it to `foreign` when it lies outside every arena. */
SA_FAST_PATH void sa_free_inline_or(void *p, void (*foreign)(void *)) { sa_free_path(p, foreign); }

#endif
