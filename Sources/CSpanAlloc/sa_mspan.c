/*
 * sa_mspan.c — one span's slot bookkeeping: allocBits, freeindex and the
 * allocCache window (as Go's mbitmap.go), and the sweep that folds explicit
 * frees back into allocBits (Go's sweeper turns gcmarkBits into the next
 * allocBits; here freeBits and remoteBits play gcmarkBits' part, inverted).
 *
 * Locking: the caller owns the span — it is the thread whose mcache holds
 * it, or holds mcentral's lock while the span is uncached. remoteBits are
 * the only words other threads write (atomic OR, see sa_malloc.c's free
 * path); the sweep takes them with an atomic exchange.
 */
#include "sa_internal.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

static inline uint64_t last_word_mask(const sa_mspan *s, uint32_t w) {
    uint32_t rem = s->nelems & 63;
    if (rem && w == s->nwords - 1u) return ((uint64_t)1 << rem) - 1;
    return ~(uint64_t)0;
}

/* Loads the allocCache window starting at slot w*64. */
static inline void refill_alloc_cache(sa_mspan *s, uint32_t w) {
    s->allocCache = ~SA_SPAN_ALLOC(s)[w] & last_word_mask(s, w);
}

void sa_span_init_small(sa_mspan *s, int spanclass) {
    int cls = spanclass >> 1;
    s->spanclass = (uint8_t)spanclass;
    s->sizeclass = (uint8_t)cls;
    s->elemsize = sa_class_size_tab[cls];
    s->nelems = sa_class_nelems_tab[cls];
    s->kept_empty = 0;
    s->divmul = sa_class_divmul_tab[cls];
    s->nwords = (uint16_t)((s->nelems + 63) / 64);
    s->ralloc = (uint16_t)(((s->nwords + 1 + 7) & ~7u) - 1); /* allocBits on a fresh line */
    s->allocBits = s->words + s->ralloc;
    s->freeBits = s->allocBits + s->nwords;
    memset(s->words, 0, sizeof(uint64_t) * ((size_t)s->ralloc + 2u * s->nwords));
    atomic_store_explicit(&s->remoteFreed, 0, SA_RELAXED);
    atomic_store_explicit(&s->allocCount, 0, SA_RELAXED);
    SA_STORE(s->freeindex, 0);
    refill_alloc_cache(s, 0);
}

uint32_t sa_span_next_free_index(sa_mspan *s) {
    for (;;) {
        uint64_t cache = s->allocCache;
        if (cache) {
            unsigned bit = (unsigned)__builtin_ctzll(cache);
            uint32_t idx = s->freeindex + bit;
            s->allocCache = cache >> bit >> 1;
            SA_STORE(s->freeindex, idx + 1);
            return idx;
        }
        /* The window is used up: move to the next 64-slot window. */
        uint32_t fi = (s->freeindex + 63) & ~63u;
        if (fi >= s->nelems) {
            SA_STORE(s->freeindex, s->nelems);
            return s->nelems;
        }
        SA_STORE(s->freeindex, fi);
        refill_alloc_cache(s, fi / 64);
        if (!s->allocCache) SA_STORE(s->freeindex, fi + 64 < s->nelems ? fi + 64 : s->nelems);
    }
}

/* Slots below freeindex fi in word w: all taken. */
static inline uint64_t below_index(uint32_t fi, uint32_t w) {
    uint32_t lo = w * 64;
    if (fi >= lo + 64) return ~(uint64_t)0;
    if (fi <= lo) return 0;
    return ((uint64_t)1 << (fi - lo)) - 1;
}

static inline uint64_t below_freeindex(const sa_mspan *s, uint32_t w) { return below_index(s->freeindex, w); }

bool sa_span_slot_live_remote(const sa_mspan *s, uint32_t idx) {
    uint32_t w = idx >> 6;
    uint64_t m = (uint64_t)1 << (idx & 63), a, f, r;
    uint32_t fi;
    for (unsigned spins = 0;; spins++) {
        uint32_t g = atomic_load_explicit(&s->sweepgen, SA_ACQUIRE);
        if (!(g & 1)) {
            fi = __atomic_load_n(&s->freeindex, __ATOMIC_ACQUIRE);
            a = __atomic_load_n(&s->allocBits[w], __ATOMIC_RELAXED);
            f = __atomic_load_n(&s->freeBits[w], __ATOMIC_RELAXED);
            r = __atomic_load_n(&SA_SPAN_REMOTE(s)[w], __ATOMIC_RELAXED);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (atomic_load_explicit(&s->sweepgen, SA_RELAXED) == g) break;
        }
        if (spins < 64) sa_cpu_relax(); else sched_yield(); /* the sweeping thread may be descheduled */
    }
    bool taken = idx < fi || (a & m);
    return taken && !((f | r) & m);
}

bool sa_span_slot_allocated(const sa_mspan *s, uint32_t idx) {
    uint32_t w = idx >> 6;
    uint64_t m = (uint64_t)1 << (idx & 63);
    bool taken = idx < s->freeindex || (SA_SPAN_ALLOC(s)[w] & m);
    uint64_t r = __atomic_load_n(&SA_SPAN_REMOTE(s)[w], __ATOMIC_RELAXED);
    return taken && !(SA_SPAN_FREEW(s)[w] & m) && !(r & m);
}

uint32_t sa_span_count_allocated(const sa_mspan *s) {
    uint32_t n = 0;
    for (uint32_t w = 0; w < s->nwords; w++) {
        uint64_t taken = (SA_SPAN_ALLOC(s)[w] | below_freeindex(s, w)) & last_word_mask(s, w);
        uint64_t r = __atomic_load_n(&SA_SPAN_REMOTE(s)[w], __ATOMIC_RELAXED);
        n += (uint32_t)__builtin_popcountll(taken & ~(SA_SPAN_FREEW(s)[w] | r));
    }
    return n;
}

uint32_t sa_span_count_taken(const sa_mspan *s) {
    uint32_t fi = __atomic_load_n(&s->freeindex, __ATOMIC_ACQUIRE), n = 0;
    for (uint32_t w = 0; w < s->nwords; w++) {
        uint32_t lo = w * 64;
        uint64_t below = fi >= lo + 64 ? ~(uint64_t)0 : fi <= lo ? 0 : ((uint64_t)1 << (fi - lo)) - 1;
        uint64_t taken = (__atomic_load_n(&s->allocBits[w], __ATOMIC_RELAXED) | below) & last_word_mask(s, w);
        n += (uint32_t)__builtin_popcountll(taken & ~__atomic_load_n(&SA_SPAN_REMOTE(s)[w], __ATOMIC_RELAXED));
    }
    return n;
}

SA_SLOW_PATH static void bad_free_found_by_sweep(const sa_mspan *s, uint32_t w, uint64_t bad, bool twice) {
    uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(bad);
    sa_fatal("%s of pointer %p (span %llu, class %u, slot %u), detected by the sweep",
             twice ? "double free" : "free of unallocated object",
             (void *)(s->base + (uintptr_t)idx * s->elemsize),
             (unsigned long long)atomic_load(&s->id), (unsigned)s->sizeclass, idx);
}

uint32_t sa_span_sweep(sa_mspan *s) {
    uint64_t *alloc = SA_SPAN_ALLOC(s), *freew = SA_SPAN_FREEW(s), *remote = SA_SPAN_REMOTE(s);
    uint32_t live = 0;
    int32_t nremote = 0;
    /* Seqlock write side: readers that overlap the rewrite retry. The odd
     * value is taken as `| 1` so that a sweep cut short (a fork child
     * handing back a cache its vanished thread was sweeping) cannot leave
     * sweepgen odd for good. */
    uint32_t odd = atomic_load_explicit(&s->sweepgen, SA_RELAXED) | 1u;
    atomic_store_explicit(&s->sweepgen, odd, SA_RELAXED);
    atomic_thread_fence(SA_RELEASE);
    /* A remote free sets its bit before it counts it: with a zero count,
     * bits that are set belong to frees still counting, left for next time. */
    bool remotes = atomic_load_explicit(&s->remoteFreed, SA_ACQUIRE) != 0;
    for (uint32_t w = 0; w < s->nwords; w++) {
        uint64_t r = remotes ? __atomic_load_n(&remote[w], __ATOMIC_RELAXED) : 0;
        if (r) r = __atomic_exchange_n(&remote[w], 0, __ATOMIC_ACQ_REL);
        uint64_t f = freew[w];
        uint64_t taken = (alloc[w] | below_freeindex(s, w)) & last_word_mask(s, w);
        if (SA_UNLIKELY(r & f)) bad_free_found_by_sweep(s, w, r & f, true);
        if (SA_UNLIKELY((r | f) & ~taken)) bad_free_found_by_sweep(s, w, (r | f) & ~taken, false);
        uint64_t now = taken & ~(r | f);
        SA_STORE(alloc[w], now);
        SA_STORE(freew[w], 0);
        nremote += __builtin_popcountll(r);
        live += (uint32_t)__builtin_popcountll(now);
    }
    if (nremote) atomic_fetch_sub_explicit(&s->remoteFreed, nremote, SA_SEQCST);
    atomic_store_explicit(&s->allocCount, live, SA_RELAXED);
    s->nlocalfree = 0;
    /* Release: a remote free that reads the new freeindex sees the new allocBits. */
    __atomic_store_n(&s->freeindex, 0, __ATOMIC_RELEASE);
    atomic_store_explicit(&s->sweepgen, odd + 1, SA_RELEASE);
    refill_alloc_cache(s, 0);
    return s->nelems - live;
}

/* ---- checking ------------------------------------------------------------- */

#define CHECK(cond, ...) do { if (!(cond)) { snprintf(err, errlen, __VA_ARGS__); return -1; } } while (0)

int sa_span_check(const sa_mspan *s, char *err, size_t errlen) {
    const void *b = (const void *)s->base;
    uint32_t fi = s->freeindex;
    CHECK(fi <= s->nelems, "span %p: freeindex %u past nelems %u", b, fi, s->nelems);
    uint32_t taken_n = 0, alloc_n = 0, free_n = 0, remote_n = 0;
    for (uint32_t w = 0; w < s->nwords; w++) {
        uint64_t mask = last_word_mask(s, w);
        uint64_t a = SA_SPAN_ALLOC(s)[w], f = SA_SPAN_FREEW(s)[w];
        uint64_t r = __atomic_load_n(&SA_SPAN_REMOTE(s)[w], __ATOMIC_RELAXED);
        CHECK(!((a | f | r) & ~mask), "span %p: bitmap bits set past nelems in word %u", b, w);
        uint64_t taken = (a | below_freeindex(s, w)) & mask;
        CHECK(!(f & ~taken), "span %p: freeBits not within taken slots (word %u: %#llx)", b, w,
              (unsigned long long)(f & ~taken));
        CHECK(!(r & ~taken), "span %p: remoteBits not within taken slots (word %u: %#llx)", b, w,
              (unsigned long long)(r & ~taken));
        CHECK(!(f & r), "span %p: a slot is in both freeBits and remoteBits (word %u: %#llx)", b, w,
              (unsigned long long)(f & r));
        taken_n += (uint32_t)__builtin_popcountll(taken);
        alloc_n += (uint32_t)__builtin_popcountll(a);
        free_n += (uint32_t)__builtin_popcountll(f);
        remote_n += (uint32_t)__builtin_popcountll(r);
    }
    int32_t rf = atomic_load_explicit(&s->remoteFreed, SA_ACQUIRE);
    CHECK(rf == (int32_t)remote_n, "span %p: remoteFreed %d, remoteBits hold %u", b, rf, remote_n);
    uint32_t ac = atomic_load_explicit(&s->allocCount, SA_RELAXED);
    CHECK(ac <= taken_n, "span %p: allocCount %u above the %u taken slots", b, ac, taken_n);
    if (s->allocCache) {
        /* The window holding freeindex, shifted so bit 0 is slot freeindex. */
        uint32_t w = fi / 64;
        CHECK(w < s->nwords, "span %p: allocCache set with freeindex %u at the end", b, fi);
        uint64_t want = (~SA_SPAN_ALLOC(s)[w] & last_word_mask(s, w)) >> (fi % 64);
        CHECK(s->allocCache == want, "span %p: allocCache %#llx, allocBits say %#llx (freeindex %u)", b,
              (unsigned long long)s->allocCache, (unsigned long long)want, fi);
    }
    if (atomic_load_explicit(&s->owner, SA_RELAXED) == NULL) {
        CHECK(free_n == 0, "uncached span %p has %u unswept local frees", b, free_n);
        CHECK(fi == 0 && ac == alloc_n, "uncached span %p: freeindex %u, allocCount %u, allocBits hold %u", b, fi,
              ac, alloc_n);
    } else if (s->list == SA_LIST_CPARTIAL || s->list == SA_LIST_CFULL) {
        CHECK(s->nlocalfree == free_n, "owned span %p: %u local frees counted, freeBits hold %u", b, s->nlocalfree,
              free_n);
    }
    return 0;
}
