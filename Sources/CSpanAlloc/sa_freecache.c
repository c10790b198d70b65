/*
 * sa_freecache.c — the free side of a thread cache: bins of objects the
 * thread freed into its own spans, which its next allocations of the class
 * reuse at once (Go's runtimefreegc reuse list, jemalloc's tcache bins), and
 * the buffer of its frees into spans it does not own, handed to those spans
 * in batches (snmalloc's and mimalloc's remote frees), with one atomic OR
 * per bitmap word and one count per word instead of two per object.
 *
 * Owns: the bins, the remote buffer and the budget fields of every mcache
 * (written only by the cache's thread; counts read by statistics with
 * relaxed loads), the cookie key, the budget configuration and the
 * process-wide reservation of bin bytes. No lock of its own: handing a
 * batch back takes an mcentral lock only for spans no thread caches
 * (sa_central_free_fixup), as a single remote free does.
 *
 * Invariants (the span's bitmaps stay the truth about every slot):
 *   - a pointer in c's bin for spanClass spc is a slot of class spc, taken
 *     in its span's bitmaps and in neither freeBits nor remoteBits, of any
 *     span (c's own frees, and other threads' objects it freed, which it
 *     reuses first as jemalloc's and tcmalloc's thread caches do); it
 *     counts as freed in the statistics (nfree). Flushed, it goes to
 *     freeBits when c owns its span, to the remote buffer otherwise;
 *   - a pointer in c's remote buffer is a taken slot, in neither freeBits
 *     nor remoteBits, of a span c did not own when the object was freed or
 *     flushed; it counts as freed; the slot is reused only after the batch
 *     reaches the span's remoteBits and its owner sweeps it;
 *   - word 0 of every freed object holds its cookie (object ^ key) from
 *     the free until the slot is handed out again (a pop, or allocCache
 *     after a sweep, clears it), so a second free finds it wherever the
 *     first one put the object. Nothing else of a freed object is written:
 *     a bin is a stack of pointers in the cache's bin store;
 *   - a bin holds at most cap pointers, in slotcap slots of the store that
 *     it keeps until the cache is flushed; the caps of c's bins reserve
 *     bin_reserved bytes, at most 3/4 of the thread budget, and all caches'
 *     reservations together at most the total budget; the remote buffer
 *     holds at most SA_REMOTE_BATCH objects and 1/8 of the thread budget,
 *     and the emptied spans the thread keeps (sa_mcache.c) the last 1/8.
 */
#include "sa_internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

uintptr_t sa_cookie_key;
_Atomic uint64_t sa_exit_flushes;

/* ---- configuration --------------------------------------------------------- */

#define SA_BIN_BYTES (16u << 10) /* a bin's capacity in bytes, before the budget */
#define SA_BIN_MAX 128u          /* and in objects */
#define SA_GC_INTERVAL 256u      /* allocation slow-path events between cold-bin passes */

static _Atomic size_t cfg_thread_bytes = (size_t)1 << 20;
static _Atomic size_t cfg_total_bytes = (size_t)64 << 20;
static _Atomic uint64_t reserved_total; /* all caches' bin_reserved */

void sa_cache_configure(sa_cache_config *get, const sa_cache_config *set) {
    if (set) {
        atomic_store(&cfg_thread_bytes, set->thread_bytes);
        atomic_store(&cfg_total_bytes, set->total_bytes);
    }
    if (get) {
        get->thread_bytes = atomic_load(&cfg_thread_bytes);
        get->total_bytes = atomic_load(&cfg_total_bytes);
    }
}

size_t sa_freecache_empty_budget(void) { return atomic_load_explicit(&cfg_thread_bytes, SA_RELAXED) / 8; }

void sa_freecache_init(sa_mcache *c) {
    if (!sa_cookie_key) {
        /* Written once, under the registry lock, before any object is cached. */
        uintptr_t k = (uintptr_t)sa_os_now_ns() * 0x9E3779B97F4A7C15ull;
        k ^= (uintptr_t)&k * 0xBF58476D1CE4E5B9ull ^ (uintptr_t)getpid() << 32;
        __atomic_store_n(&sa_cookie_key, k | 7u, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < SA_NUM_SPAN_CLASSES; i++) {
        c->bins[i] = (sa_freebin){0};
        c->slotcap[i] = 0;
        c->gc_mark[i] = NULL;
    }
    c->binstore_used = 0;
    c->nrbuf = c->rbuf_bytes = 0;
    atomic_store_explicit(&c->bin_reserved, 0, SA_RELAXED);
    atomic_store_explicit(&c->empty_bytes, 0, SA_RELAXED);
    c->gc_countdown = SA_GC_INTERVAL;
    c->gc_cursor = 0;
}

#if SA_ASAN
__attribute__((no_sanitize("address"), noinline)) uintptr_t sa_word_load(const void *p, int i) {
    return ((const uintptr_t *)p)[i];
}
__attribute__((no_sanitize("address"), noinline)) void sa_word_store(void *p, int i, uintptr_t v) {
    ((uintptr_t *)p)[i] = v;
}
#endif

static inline size_t class_bytes(int spc) { return sa_class_size_tab[spc >> 1]; }


static inline uint32_t slot_of(const sa_mspan *s, const void *p) {
    return (uint32_t)(((uint64_t)((uintptr_t)p - s->base) * s->divmul) >> 32);
}

/* Gives bin spc its capacity from the thread's budget; false when none is left. */
static bool grant(sa_mcache *c, int spc) {
    size_t size = class_bytes(spc);
    size_t thread = atomic_load_explicit(&cfg_thread_bytes, SA_RELAXED);
    if (thread == 0) return false;
    uint32_t cap = (uint32_t)(SA_BIN_BYTES / size);
    if (cap > SA_BIN_MAX) cap = SA_BIN_MAX;
    if (cap < 2) cap = 2;
    /* Slots: the ones the bin had (kept when a cold bin was ungranted), or
     * new ones from the store. */
    sa_freebin *b = &c->bins[spc];
    if (b->slots) {
        if (cap > c->slotcap[spc]) cap = c->slotcap[spc];
    } else if (c->binstore_used + cap > SA_BIN_STORE) {
        cap = SA_BIN_STORE - c->binstore_used;
        if (cap < 2) return false;
    }
    uint64_t have = atomic_load_explicit(&c->bin_reserved, SA_RELAXED), limit = thread / 4 * 3;
    if (have + (uint64_t)cap * size > limit) {
        cap = have >= limit ? 0 : (uint32_t)((limit - have) / size);
        if (cap < 2) return false;
    }
    uint64_t bytes = (uint64_t)cap * size;
    if (atomic_fetch_add_explicit(&reserved_total, bytes, SA_RELAXED) + bytes >
        atomic_load_explicit(&cfg_total_bytes, SA_RELAXED)) {
        atomic_fetch_sub_explicit(&reserved_total, bytes, SA_RELAXED);
        return false;
    }
    atomic_store_explicit(&c->bin_reserved, have + bytes, SA_RELAXED);
    if (!b->slots) {
        b->slots = &c->binstore[c->binstore_used];
        c->binstore_used += cap;
        c->slotcap[spc] = (uint16_t)cap;
    }
    b->cap = cap;
    return true;
}

static void ungrant(sa_mcache *c, int spc) {
    sa_freebin *b = &c->bins[spc];
    if (!b->cap) return;
    uint64_t bytes = (uint64_t)b->cap * class_bytes(spc);
    atomic_fetch_sub_explicit(&reserved_total, bytes, SA_RELAXED);
    atomic_store_explicit(&c->bin_reserved, atomic_load_explicit(&c->bin_reserved, SA_RELAXED) - bytes, SA_RELAXED);
    b->cap = 0;
}

/* ---- owner frees --------------------------------------------------------------- */

static void remote_flush(sa_mcache *c);

/* Moves n cached objects into their spans: freeBits for the cache's own
 * spans, the remote buffer (handed back in batches) for the others'. */
static void flush_slots(sa_mcache *c, void **q, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        void *p = q[i];
        sa_mspan *s = sa_span_of_addr((uintptr_t)p); /* the cookie stays until the slot is handed out again */
        if (SA_LIKELY(sa_span_is_mine(s, c))) {
            sa_free_owned_bitmap(c, s, slot_of(s, p));
        } else {
            if (c->nrbuf == SA_REMOTE_BATCH) remote_flush(c);
            c->rbuf[c->nrbuf] = p;
            SA_STORE(c->nrbuf, c->nrbuf + 1);
            SA_STORE(c->rbuf_bytes, c->rbuf_bytes + (uint32_t)s->elemsize);
        }
    }
    sa_counter_add(&c->nflushed, n);
    if (c->nrbuf) remote_flush(c);
}

static void flush_bin(sa_mcache *c, int spc) {
    sa_freebin *b = &c->bins[spc];
    uint32_t n = b->n;
    SA_STORE(b->n, 0);
    flush_slots(c, b->slots, n);
}

void sa_free_owned_slow(sa_mcache *c, sa_mspan *s, uint32_t idx, void *p) {
    if (sa_slot_freed(p)) sa_free_twice(p);
    int spc = s->spanclass;
    sa_freebin *b = &c->bins[spc];
    sa_counter_inc(&c->nfree[s->sizeclass]);
    if (b->cap == 0 && (c == &sa_emptycache || !grant(c, spc))) {
        sa_counter_inc(&c->ndirect);
        sa_word_store(p, SA_WORD_COOKIE, sa_cookie(p));
        SA_POISON(p, s->elemsize);
        if (s == c->alloc[spc] && idx + 1 == s->freeindex && !(s->allocCache >> 63) &&
            !(s->allocBits[idx >> 6] & (uint64_t)1 << (idx & 63))) {
            /* The slot the current span's allocCache handed out last (not a
             * slot live since the last sweep): undo that step, so an
             * alloc/free pair of 8-byte objects (or of a class without bin
             * capacity) reuses one warm slot. The slot is untaken again. */
            s->allocCache = (s->allocCache << 1) | 1;
            SA_STORE(s->freeindex, idx);
            return;
        }
        sa_free_owned_bitmap(c, s, idx);
        return;
    }
    sa_word_store(p, SA_WORD_COOKIE, sa_cookie(p));
    b->slots[b->n] = p;
    SA_STORE(b->n, b->n + 1);
    SA_POISON(p, s->elemsize);
}

/* ---- remote frees ------------------------------------------------------------------ */

/* Publishes the remote frees `mask` of bitmap word w of span s: one atomic
 * OR into remoteBits (a bit already set is a double free), one count, and
 * the owner told, or mcentral's lists fixed for a span no thread caches.
 * The id and spanClass are read before the word is published: from then on
 * the owner may sweep the span empty and give it back, and the heap may
 * reuse it. */
static void publish_remote(sa_mspan *s, uint32_t w, uint64_t mask) {
    uint64_t id = atomic_load_explicit(&s->id, SA_RELAXED);
    int spanclass = s->spanclass;
    uint64_t old = __atomic_fetch_or(&SA_SPAN_REMOTE(s)[w], mask, __ATOMIC_SEQ_CST);
    if (SA_UNLIKELY(old & mask)) {
        uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(old & mask);
        sa_fatal("double free of pointer %p", (void *)(s->base + (uintptr_t)idx * s->elemsize));
    }
    int32_t k = __builtin_popcountll(mask);
    int32_t n = atomic_fetch_add_explicit(&s->remoteFreed, k, SA_SEQCST) + k;
    sa_mcache *owner = atomic_load_explicit(&s->owner, SA_SEQCST);
    if (owner == NULL) {
        int32_t allocated = (int32_t)atomic_load_explicit(&s->allocCount, SA_RELAXED);
        if (n == k || n >= allocated) sa_central_free_fixup(s, id, spanclass);
    } else if (n == k) {
        /* Tell the owner one of its spans has frees to sweep. Caches are never
         * unmapped, so a stale owner only gets a spurious look. */
        atomic_store_explicit(&owner->remote_hint[spanclass], 1, SA_RELEASE);
    }
}

void sa_free_remote_now(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p) {
    int cls = s->sizeclass;
    /* Poison before the bit is published: once it is set, the owner may
     * sweep the slot and hand it out again. */
    SA_POISON(p, s->elemsize);
    publish_remote(s, idx >> 6, (uint64_t)1 << (idx & 63));
    if (SA_LIKELY(c != &sa_emptycache)) {
        sa_counter_inc(&c->nfree[cls]);
        sa_counter_inc(&c->nremote);
    } else {
        sa_orphan_free(cls);
    }
}

/* One (span, bitmap word) of a batch. */
typedef struct remote_word {
    sa_mspan *s;
    uint64_t mask;
    uint32_t w;
} remote_word;

#define SA_REMOTE_SLOTS (2 * SA_REMOTE_BATCH) /* open addressing, at most half full */

/* Hands the buffer to its spans: objects grouped by span and bitmap word,
 * each word published with one atomic OR and one count. */
static void remote_flush(sa_mcache *c) {
    remote_word t[SA_REMOTE_SLOTS];
    uint8_t used[SA_REMOTE_SLOTS];
    memset(used, 0, sizeof used);
    uint32_t order[SA_REMOTE_BATCH], nw = 0, h = 0;
    for (uint32_t i = 0; i < c->nrbuf; i++) {
        void *q = c->rbuf[i];
        /* Frees often come in address order (a consumer freeing what one
         * producer made): the same span and word as the last object skips
         * the page map and the table. */
        if (nw && (uintptr_t)q - (uintptr_t)t[h].s->base < ((uintptr_t)t[h].s->npages << SA_PAGE_SHIFT)) {
            uint32_t idx = slot_of(t[h].s, q);
            if (idx >> 6 == t[h].w) {
                t[h].mask |= (uint64_t)1 << (idx & 63);
                continue;
            }
        }
        sa_mspan *s = sa_span_of_addr((uintptr_t)q);
        uint32_t idx = slot_of(s, q), w = idx >> 6;
        h = (uint32_t)((((uintptr_t)s >> 6) ^ w) * 0x9E3779B1u) >> 25; /* 7 bits */
        while (used[h] && (t[h].s != s || t[h].w != w)) h = (h + 1) & (SA_REMOTE_SLOTS - 1);
        if (!used[h]) {
            used[h] = 1;
            t[h] = (remote_word){.s = s, .w = w, .mask = 0};
            order[nw++] = h;
        }
        t[h].mask |= (uint64_t)1 << (idx & 63);
    }
    SA_STORE(c->nrbuf, 0);
    SA_STORE(c->rbuf_bytes, 0);
    for (uint32_t k = 0; k < nw; k++) publish_remote(t[order[k]].s, t[order[k]].w, t[order[k]].mask);
    sa_counter_inc(&c->nrbatches);
}

void sa_free_remote(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p) {
    /* The object must be live: taken (below freeindex or in allocBits) and
     * without its cookie. The owner's sweep rewrites allocBits and then
     * publishes freeindex 0 with a release store: read freeindex first
     * (acquire), and a slot that is live through the sweep reads taken in
     * every interleaving. Freed slots are told by their cookie, not by
     * freeBits/remoteBits, which the sweep clears. */
    uint32_t fi = __atomic_load_n(&s->freeindex, __ATOMIC_ACQUIRE);
    uint64_t a = __atomic_load_n(&s->allocBits[idx >> 6], __ATOMIC_RELAXED);
    if (SA_UNLIKELY(!(idx < fi || ((a >> (idx & 63)) & 1)) || (sa_slot_maybe_freed(p) && sa_slot_freed(p))))
        sa_free_twice(p);
    sa_word_store((void *)p, SA_WORD_COOKIE, sa_cookie(p));
    /* A thread without a cache makes one, unless it is exiting. */
    if (SA_UNLIKELY(c == &sa_emptycache)) {
        c = sa_cache_create();
        if (!c) {
            sa_free_remote_now(&sa_emptycache, s, idx, p);
            return;
        }
    }
    SA_POISON(p, s->elemsize);
    sa_counter_inc(&c->nfree[s->sizeclass]);
    sa_counter_inc(&c->nremote);
    /* Reused here first, as jemalloc's and tcmalloc's thread caches reuse
     * any thread's frees: the slot stays taken in its span until the bin
     * hands it back. */
    sa_freebin *b = &c->bins[s->spanclass];
    if (SA_LIKELY(b->n < b->cap)) {
        b->slots[b->n] = (void *)p;
        SA_STORE(b->n, b->n + 1);
        sa_counter_inc(&c->nremotebin);
        return;
    }
    c->rbuf[c->nrbuf] = (void *)p;
    SA_STORE(c->nrbuf, c->nrbuf + 1);
    SA_STORE(c->rbuf_bytes, c->rbuf_bytes + (uint32_t)s->elemsize);
    if (c->nrbuf == SA_REMOTE_BATCH || c->rbuf_bytes > atomic_load_explicit(&cfg_thread_bytes, SA_RELAXED) / 8)
        remote_flush(c);
}

/* ---- flushing ------------------------------------------------------------------- */

void sa_freecache_flush(sa_mcache *c) {
    if (c == &sa_emptycache) return;
    for (int spc = 0; spc < SA_NUM_SPAN_CLASSES; spc++) {
        if (c->bins[spc].n) flush_bin(c, spc);
        ungrant(c, spc);
        c->bins[spc].slots = NULL; /* every bin is empty: the store starts over */
        c->slotcap[spc] = 0;
        c->gc_mark[spc] = NULL;
    }
    c->binstore_used = 0;
    if (c->nrbuf) remote_flush(c);
}

void sa_freecache_tick(sa_mcache *c) {
    if (--c->gc_countdown) return;
    c->gc_countdown = SA_GC_INTERVAL;
    /* A bin untouched since the last pass (same head, same count) is cold:
     * its objects go back to their spans and its capacity to the budget.
     * The pass looks at a quarter of the bins each time. */
    for (int k = 0; k < SA_NUM_SPAN_CLASSES / 4; k++) {
        int spc = (int)c->gc_cursor;
        c->gc_cursor = (c->gc_cursor + 1) % SA_NUM_SPAN_CLASSES;
        sa_freebin *b = &c->bins[spc];
        void *top = b->n ? b->slots[b->n - 1] : NULL;
        void *mark = c->gc_mark[spc];
        c->gc_mark[spc] = top;
        if (b->cap && (top == NULL || top == mark)) {
            if (top) {
                flush_bin(c, spc);
                sa_counter_inc(&c->ngcflushes);
                c->gc_mark[spc] = NULL;
            }
            ungrant(c, spc);
        }
    }
    if (c->nrbuf) remote_flush(c);
}

/* ---- introspection, statistics, checking ------------------------------------------- */

bool sa_debug_push_cached(void *p) {
    sa_hold_enter();
    sa_mcache *c = sa_get_cache();
    sa_mspan *s = sa_span_of_addr((uintptr_t)p);
    bool ok = c != &sa_emptycache && s && atomic_load_explicit(&s->state, SA_RELAXED) == SA_SPAN_SMALL;
    sa_freebin *b = ok ? &c->bins[s->spanclass] : NULL;
    if (ok && b->n < b->cap) {
        b->slots[b->n] = p;
        SA_STORE(b->n, b->n + 1);
    } else {
        ok = false;
    }
    sa_hold_exit();
    return ok;
}

uint32_t sa_freecache_in_span(const sa_mcache *c, const sa_mspan *s) {
    uint32_t n = 0;
    uintptr_t lo = s->base, hi = s->base + ((uintptr_t)s->npages << SA_PAGE_SHIFT);
    const sa_freebin *b = &c->bins[s->spanclass];
    for (uint32_t i = 0; i < b->n; i++)
        if ((uintptr_t)b->slots[i] >= lo && (uintptr_t)b->slots[i] < hi) n++;
    for (uint32_t i = 0; i < c->nrbuf; i++)
        if ((uintptr_t)c->rbuf[i] >= lo && (uintptr_t)c->rbuf[i] < hi) n++;
    return n;
}

void sa_freecache_totals(const sa_mcache *c, sa_cache_totals *t) {
    uint64_t objects = 0, bytes = 0;
    for (int spc = 0; spc < SA_NUM_SPAN_CLASSES; spc++) {
        uint32_t n = __atomic_load_n(&c->bins[spc].n, __ATOMIC_RELAXED);
        objects += n;
        bytes += (uint64_t)n * class_bytes(spc);
    }
    t->bin_objects += objects;
    uint32_t nr = __atomic_load_n(&c->nrbuf, __ATOMIC_RELAXED);
    objects += nr;
    bytes += __atomic_load_n(&c->rbuf_bytes, __ATOMIC_RELAXED);
    t->cached_objects += objects;
    t->cached_bytes += bytes;
    uint64_t held = bytes + atomic_load_explicit(&c->empty_bytes, SA_RELAXED);
    if (held > t->held_max) t->held_max = held;
}

#define CHECK(cond, ...) do { if (!(cond)) { snprintf(err, errlen, __VA_ARGS__); return -1; } } while (0)

/* A cached object's span and slot, validated. */
static int check_cached(const void *q, sa_mspan **out, uint32_t *idx_out, char *err, size_t errlen) {
    sa_mspan *s = sa_span_of_addr((uintptr_t)q);
    CHECK(s && atomic_load_explicit(&s->state, SA_RELAXED) == SA_SPAN_SMALL, "cached pointer %p is not in a small span", q);
    uint32_t idx = slot_of(s, q);
    CHECK(idx < s->nelems && (uintptr_t)idx * s->elemsize == (uintptr_t)q - s->base, "cached pointer %p is not a slot", q);
    CHECK(sa_slot_freed(q), "cached pointer %p has no cookie", q);
    *out = s;
    *idx_out = idx;
    return 0;
}

/* Clears the marks check_bin set in freeBits for the first n objects. */
static void unmark(const sa_mcache *c, void **q, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        sa_mspan *s = sa_span_of_addr((uintptr_t)q[i]);
        if (!sa_span_is_mine(s, c)) continue;
        uint32_t idx = slot_of(s, q[i]);
        SA_STORE(s->freeBits[idx >> 6], s->freeBits[idx >> 6] & ~((uint64_t)1 << (idx & 63)));
    }
}

/* One bin: every object a live slot of the class, none twice. Objects of
 * the cache's own spans are marked in freeBits while the walk goes on (so
 * a second copy shows as free) and the marks cleared afterwards; the caller
 * is the cache's thread, or the heap is quiescent. Another thread's span
 * is not ours to mark: those objects are compared with the ones before. */
static int check_bin(sa_mcache *c, int spc, char *err, size_t errlen) {
    sa_freebin *b = &c->bins[spc];
    uint32_t n = 0;
    int rc = 0;
    if (b->n > b->cap || (b->n && !b->slots)) {
        snprintf(err, errlen, "spanClass %d: bin holds %u objects, capacity %u", spc, b->n, b->cap);
        return -1;
    }
    if (b->slots && (b->slots < c->binstore || b->slots + c->slotcap[spc] > c->binstore + c->binstore_used ||
                     b->cap > c->slotcap[spc])) {
        snprintf(err, errlen, "spanClass %d: bin slots outside the cache's store", spc);
        return -1;
    }
    for (; n < b->n && rc == 0; n++) {
        void *q = b->slots[n];
        sa_mspan *s;
        uint32_t idx;
        if (check_cached(q, &s, &idx, err, errlen)) {
            rc = -1;
        } else if (s->spanclass != spc) {
            snprintf(err, errlen, "cached pointer %p (spanClass %d) in bin %d", q, s->spanclass, spc);
            rc = -1;
        } else if (sa_span_is_mine(s, c) ? !sa_span_slot_allocated(s, idx) : !sa_span_slot_live_remote(s, idx)) {
            snprintf(err, errlen, "cached pointer %p is free in its span's bitmaps, or twice in the bin", q);
            rc = -1;
        } else if (sa_span_is_mine(s, c)) {
            SA_STORE(s->freeBits[idx >> 6], s->freeBits[idx >> 6] | (uint64_t)1 << (idx & 63));
        } else {
            for (uint32_t k = 0; k < n; k++) {
                if (b->slots[k] == q) {
                    snprintf(err, errlen, "cached pointer %p twice in its bin", q);
                    rc = -1;
                    break;
                }
            }
        }
        if (rc) break;
    }
    unmark(c, b->slots, n);
    return rc;
}

int sa_freecache_check(sa_mcache *c, char *err, size_t errlen, uint64_t *ncached) {
    uint64_t reserved = 0;
    for (int spc = 0; spc < SA_NUM_SPAN_CLASSES; spc++) {
        reserved += (uint64_t)c->bins[spc].cap * class_bytes(spc);
        if (check_bin(c, spc, err, errlen)) return -1;
        *ncached += c->bins[spc].n;
    }
    CHECK(reserved == atomic_load_explicit(&c->bin_reserved, SA_RELAXED), "bins reserve %llu bytes, the cache says %llu",
          (unsigned long long)reserved, (unsigned long long)atomic_load_explicit(&c->bin_reserved, SA_RELAXED));
    uint64_t rbytes = 0;
    for (uint32_t i = 0; i < c->nrbuf; i++) {
        const void *q = c->rbuf[i];
        sa_mspan *s;
        uint32_t idx;
        if (check_cached(q, &s, &idx, err, errlen)) return -1;
        CHECK(sa_span_slot_live_remote(s, idx), "buffered remote free %p is free in its span's bitmaps", q);
        for (uint32_t j = 0; j < i; j++) CHECK(c->rbuf[j] != q, "pointer %p twice in the remote buffer", q);
        rbytes += s->elemsize;
    }
    CHECK(rbytes == c->rbuf_bytes, "remote buffer holds %llu bytes, count says %u", (unsigned long long)rbytes, c->rbuf_bytes);
    *ncached += c->nrbuf;
    return 0;
}
