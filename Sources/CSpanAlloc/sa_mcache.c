/*
 * sa_mcache.c — per-thread caches (Go's mcache.go): one current span per
 * spanClass, used without locks by the thread that owns the cache, and the
 * thread's own lists of spans it filled earlier (partial: FIFO, full: stack).
 *
 * Owns: the thread-local cache pointer, the registry of caches and the
 * counters of exited threads. The registry lock guards the registry list,
 * the exited totals and the cache fixalloc; a cache's spans, lists and
 * counters are written only by its thread, except remote_hint[], which
 * remote frees set atomically.
 *
 * Invariants: every span on c's lists has owner == c and list == CPARTIAL
 * or CFULL; c's current spans have list == NONE; npartial[] counts partial[].
 *
 * A thread starts with sa_emptycache, whose every span is sa_emptyspan
 * (allocCache == 0), so the allocation fast path needs no "first use"
 * branch: its first miss lands in sa_cache_next_free, which creates the
 * thread's real cache. At thread exit a pthread key destructor sweeps each
 * cached span and hands it back to mcentral.
 */
#include "sa_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

sa_mspan sa_emptyspan; /* allocCache 0, nelems 0: never allocates */
sa_mcache sa_emptycache = {.alloc = {[0 ... SA_NUM_SPAN_CLASSES - 1] = &sa_emptyspan}, .last = SA_NO_LAST};
__thread sa_thread_state sa_tls __attribute__((tls_model("initial-exec"))) = {.cache = &sa_emptycache};

sa_lock_t sa_registry_lock_v = SA_LOCK_INIT;
#define registry_lock sa_registry_lock_v
static sa_mcache *registry;
static sa_fixalloc cache_alloc = {.size = (sizeof(sa_mcache) + 63) & ~(size_t)63};
static sa_cache_totals exited; /* counters of threads that exited */
static pthread_key_t cache_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static bool key_ok; /* written once under key_once */
/* Set when the thread's cache was handed back at thread exit: later calls
 * on the thread (glibc frees its own buffers after the TSD destructors) get
 * no new cache, which nothing would hand back. */
static __thread bool tls_cache_gone __attribute__((tls_model("initial-exec")));
/* The owner of a span taken for one allocation by a thread without a cache
 * (see alloc_uncached); its counters are updated with atomic adds. */
static sa_mcache uncached_owner;

static void cache_thread_exit(void *arg);
static void make_key(void) {
    key_ok = pthread_key_create(&cache_key, cache_thread_exit) == 0;
    if (!key_ok) sa_log("pthread_key_create failed: no thread caches, every allocation takes a central lock");
}

void sa_registry_lock(void) { sa_lock(&registry_lock); }
void sa_registry_unlock(void) { sa_unlock(&registry_lock); }
void sa_registry_reinit(void) { pthread_mutex_init(&registry_lock, NULL); }

sa_mcache *sa_cache_create(void) {
    sa_fork_register();
    sa_config_load();
    pthread_once(&key_once, make_key);
    /* Without the key, a cache would never be handed back at thread exit. */
    if (!key_ok || tls_cache_gone) return NULL;
    sa_lock(&registry_lock);
    sa_mcache *c = sa_fixalloc_alloc(&cache_alloc);
    if (!c) {
        sa_unlock(&registry_lock);
        return NULL;
    }
    /* remote_hint may still be written by a late remote free aimed at the
     * cache this memory held before: clear it with atomic stores. */
    memset(c, 0, offsetof(sa_mcache, remote_hint));
    memset((char *)c + offsetof(sa_mcache, remote_hint) + sizeof c->remote_hint, 0,
           sizeof *c - offsetof(sa_mcache, remote_hint) - sizeof c->remote_hint);
    for (int i = 0; i < SA_NUM_SPAN_CLASSES; i++) {
        c->alloc[i] = &sa_emptyspan;
        atomic_store_explicit(&c->remote_hint[i], 0, SA_RELAXED);
    }
    sa_freecache_init(c);
    c->last = SA_NO_LAST;
    c->live = true;
    c->thread = &sa_tls;
    /* Under the registry lock, as sa_cache_set_gate_all: the hook installed
     * before is seen here, one installed after finds the cache registered. */
    atomic_store_explicit(&c->gate, atomic_load(&sa_hook) ? SA_GATE_HOOK : 0, memory_order_release);
    c->rnext = registry;
    if (registry) registry->rprev = c;
    registry = c;
    bool second = registry->rnext != NULL;
    sa_unlock(&registry_lock);
    sa_tls_cache = c;
    pthread_setspecific(cache_key, c);
    /* A second thread: its caches may go idle, the scavenger watches them. */
    if (second) sa_scavenger_poke();
    return c;
}

/* ---- the cache's own span lists (owner thread only) ---------------------- */

/* A span the thread empties by its own frees stays on its partial list for
 * reuse while the emptied spans it keeps fit its budget (1/8 of
 * thread_cache, sa_freecache.c); beyond that it goes to mcentral, which
 * keeps it on its empty list for any thread's next refill of the class
 * (mheap takes those back before it maps more memory). A thread's kept
 * spans go back when it exits or calls sa_thread_flush / sa_scavenge. */
static inline bool own_keeps_empty(const sa_mcache *c, const sa_mspan *s) {
    return atomic_load_explicit(&c->empty_bytes, SA_RELAXED) + ((uint64_t)s->npages << SA_PAGE_SHIFT) <=
           sa_freecache_empty_budget();
}

static inline void empty_bytes_add(sa_mcache *c, const sa_mspan *s, int64_t sign) {
    uint64_t bytes = (uint64_t)s->npages << SA_PAGE_SHIFT;
    atomic_store_explicit(&c->empty_bytes, atomic_load_explicit(&c->empty_bytes, SA_RELAXED) + (uint64_t)sign * bytes,
                          SA_RELAXED);
}

/* The partial list is FIFO: a span is swept again only after the others, so
 * it has had the longest to collect frees. The full list is a stack. */
static void own_push(sa_mcache *c, int spc, sa_mspan *s, int which) {
    s->list = (uint8_t)which;
    s->next = NULL;
    if (which == SA_LIST_CPARTIAL) {
        c->npartial[spc]++;
        s->prev = c->partial_tail[spc];
        if (s->prev) s->prev->next = s; else c->partial[spc] = s;
        c->partial_tail[spc] = s;
        return;
    }
    s->prev = NULL;
    s->next = c->full[spc];
    if (s->next) s->next->prev = s;
    c->full[spc] = s;
}

static void own_remove(sa_mcache *c, int spc, sa_mspan *s) {
    if (s->kept_empty) { /* taken for allocation or handed back: no longer kept */
        s->kept_empty = 0;
        empty_bytes_add(c, s, -1);
    }
    if (s->list == SA_LIST_CPARTIAL) {
        c->npartial[spc]--;
        if (s->prev) s->prev->next = s->next; else c->partial[spc] = s->next;
        if (s->next) s->next->prev = s->prev; else c->partial_tail[spc] = s->prev;
    } else {
        if (s->prev) s->prev->next = s->next; else c->full[spc] = s->next;
        if (s->next) s->next->prev = s->prev;
    }
    s->next = s->prev = NULL;
    s->list = SA_LIST_NONE;
}

/* Hands a span the cache owns back to mcentral (mheap if it is empty). */
static void own_release(sa_mspan *s) {
    uint32_t nfree = sa_span_sweep(s);
    sa_central_uncache_span(s, s->nelems - nfree);
}

void sa_cache_free_owned(sa_mcache *c, sa_mspan *s) {
    int spc = s->spanclass;
    int32_t remote = atomic_load_explicit(&s->remoteFreed, SA_RELAXED);
    if ((int64_t)atomic_load_explicit(&s->allocCount, SA_RELAXED) - s->nlocalfree - (remote > 0 ? remote : 0) <= 0 &&
        !s->kept_empty) {
        /* Its last object: kept within the budget, else to mcentral. */
        if (!own_keeps_empty(c, s)) {
            own_remove(c, spc, s);
            own_release(s);
            return;
        }
        s->kept_empty = 1;
        empty_bytes_add(c, s, +1);
    }
    if (s->list == SA_LIST_CFULL) {
        own_remove(c, spc, s);
        own_push(c, spc, s, SA_LIST_CPARTIAL);
    }
}

/* A span is worth allocating from again once a sweep recovers a quarter of
 * its slots; with fewer, the thread takes another span and lets frees pile
 * up (FIFO, below). A sweep per recovered slot would make a class whose live
 * objects fill their spans sweep on nearly every allocation. */
static inline uint32_t sweep_worth(const sa_mspan *s) { return (s->nelems + 3) / 4; }

/* Spans looked at per refill, so a long owned list costs a bounded time. */
#define SA_OWN_SCAN 8

/* A span the cache owns, swept, worth allocating from; NULL if none is. */
static sa_mspan *own_take(sa_mcache *c, int spc) {
    if (atomic_load_explicit(&c->remote_hint[spc], SA_RELAXED) &&
        atomic_exchange_explicit(&c->remote_hint[spc], 0, SA_ACQ_REL)) {
        /* Remote frees landed in owned spans: full ones that got some move up. */
        sa_mspan *next;
        for (sa_mspan *s = c->full[spc]; s; s = next) {
            next = s->next;
            if (atomic_load_explicit(&s->remoteFreed, SA_ACQUIRE) > 0) {
                own_remove(c, spc, s);
                own_push(c, spc, s, SA_LIST_CPARTIAL);
            }
        }
    }
    sa_mspan *s, *low = NULL;
    for (int n = 0; n < SA_OWN_SCAN && (s = c->partial[spc]) != NULL; n++) {
        own_remove(c, spc, s);
        uint32_t nfree = sa_span_sweep(s);
        if (nfree >= sweep_worth(s)) {
            while (low) { sa_mspan *l = low; low = l->next; own_push(c, spc, l, SA_LIST_CPARTIAL); }
            return s;
        }
        if (nfree == 0) { own_push(c, spc, s, SA_LIST_CFULL); continue; }
        s->next = low; /* keep it aside while the scan goes on */
        low = s;
    }
    while (low) { sa_mspan *l = low; low = l->next; own_push(c, spc, l, SA_LIST_CPARTIAL); }
    return NULL;
}

/* Out of memory: any owned span with a free slot, swept (a partial span
 * is unswept, so its allocCache says nothing); NULL if none has one. */
static sa_mspan *own_take_any(sa_mcache *c, int spc) {
    sa_mspan *s;
    while ((s = c->partial[spc]) != NULL) {
        own_remove(c, spc, s);
        if (sa_span_sweep(s)) return s;
        own_push(c, spc, s, SA_LIST_CFULL);
    }
    /* Full spans that remote frees reached since (pushed back at the head,
     * behind the walk). */
    sa_mspan *next;
    for (s = c->full[spc]; s; s = next) {
        next = s->next;
        if (atomic_load_explicit(&s->remoteFreed, SA_ACQUIRE) > 0) {
            own_remove(c, spc, s);
            if (sa_span_sweep(s)) return s;
            own_push(c, spc, s, SA_LIST_CFULL);
        }
    }
    return NULL;
}

/* One allocation for a thread that has no cache and may not make one (its
 * cache was handed back at exit, or there is no thread key): a span from
 * mcentral, one slot, and the span straight back. Slow, but nothing stays
 * behind when the thread is gone. */
static void *alloc_uncached(int spc) {
    sa_mspan *s = sa_central_cache_span(spc, &uncached_owner);
    if (!s) { errno = ENOMEM; return NULL; }
    uint32_t idx = sa_span_next_free_index(s);
    void *p = (void *)(s->base + (uintptr_t)idx * s->elemsize);
    sa_word_store(p, SA_WORD_COOKIE, 0);
    own_release(s);
    atomic_fetch_add_explicit(&uncached_owner.nmalloc[spc >> 1], 1, SA_RELAXED);
    return p;
}

void *sa_cache_next_free(sa_mcache *c, int spc) {
    if (c == &sa_emptycache) {
        c = sa_cache_create();
        if (!c) return alloc_uncached(spc);
    }
    sa_freecache_tick(c);
    sa_freebin *b = &c->bins[spc];
    if (b->n) { /* reached with the hook installed */
        void *p = b->slots[b->n - 1];
        SA_STORE(b->n, b->n - 1);
        sa_word_store(p, SA_WORD_COOKIE, 0);
        sa_counter_inc(&c->nmalloc[spc >> 1]);
        return p;
    }
    sa_mspan *s = c->alloc[spc];
    uint32_t idx;
    if (s != &sa_emptyspan) {
        idx = sa_span_next_free_index(s);
        if (idx < s->nelems) goto got;
        /* Exhausted: sweep the frees it collected since it was last swept
         * (if any) and keep it if that recovered enough slots. */
        uint32_t nfree;
        if (s->nlocalfree || atomic_load_explicit(&s->remoteFreed, SA_RELAXED)) {
            nfree = sa_span_sweep(s);
        } else {
            nfree = 0; /* every slot taken, none freed: what a sweep would find */
            atomic_store_explicit(&s->allocCount, s->nelems, SA_RELAXED);
        }
        if (nfree >= sweep_worth(s)) {
            sa_counter_inc(&c->nsweep);
            idx = sa_span_next_free_index(s);
            goto got;
        }
        c->alloc[spc] = &sa_emptyspan;
        own_push(c, spc, s, nfree ? SA_LIST_CPARTIAL : SA_LIST_CFULL);
    }
    s = own_take(c, spc);
    if (s) {
        sa_counter_inc(&c->nsweep);
    } else {
        s = sa_central_cache_span(spc, c);
        if (!s) {
            s = own_take_any(c, spc);
            if (!s) { errno = ENOMEM; return NULL; }
        } else {
            sa_counter_inc(&c->nrefill);
        }
    }
    c->alloc[spc] = s;
    idx = sa_span_next_free_index(s);
got:
    sa_counter_inc(&c->nmalloc[spc >> 1]);
    void *p = (void *)(s->base + (uintptr_t)idx * s->elemsize);
    sa_word_store(p, SA_WORD_COOKIE, 0); /* a freed slot's old cookie */
    return p;
}

void sa_cache_flush(sa_mcache *c) {
    if (c == &sa_emptycache) return;
    c->last = SA_NO_LAST;
    sa_freecache_flush(c); /* first: cached objects belong to the spans released below */
    for (int spc = 0; spc < SA_NUM_SPAN_CLASSES; spc++) {
        sa_mspan *s = c->alloc[spc];
        if (s != &sa_emptyspan) {
            c->alloc[spc] = &sa_emptyspan;
            own_release(s);
        }
        while ((s = c->partial[spc]) != NULL) { own_remove(c, spc, s); own_release(s); }
        while ((s = c->full[spc]) != NULL) { own_remove(c, spc, s); own_release(s); }
        atomic_store_explicit(&c->remote_hint[spc], 0, SA_RELAXED);
    }
}

static void add_totals(sa_cache_totals *t, const sa_mcache *c) {
    for (int i = 0; i < SA_NUM_CLASSES; i++) {
        t->nmalloc[i] += sa_stat(&c->nmalloc[i]);
        t->nfree[i] += sa_stat(&c->nfree[i]);
    }
    t->nremote += sa_stat(&c->nremote);
    t->nrefill += sa_stat(&c->nrefill);
    t->nsweep += sa_stat(&c->nsweep);
    t->ngrow += sa_stat(&c->ngrow);
    t->ndirect += sa_stat(&c->ndirect);
    t->nflushed += sa_stat(&c->nflushed);
    t->nflushes += sa_stat(&c->nflushes);
    t->nrbatches += sa_stat(&c->nrbatches);
    t->ngcflushes += sa_stat(&c->ngcflushes);
    t->nremotebin += sa_stat(&c->nremotebin);
}

/* Takes a flushed cache out of the registry (registry lock held). */
static void retire_locked(sa_mcache *c) {
    add_totals(&exited, c);
    exited.nexited++;
    if (c->rprev) c->rprev->rnext = c->rnext; else registry = c->rnext;
    if (c->rnext) c->rnext->rprev = c->rprev;
    c->live = false;
    sa_fixalloc_free(&cache_alloc, c);
}

static void cache_thread_exit(void *arg) {
    sa_mcache *c = arg;
    sa_hold_enter(); /* no claim while the thread flushes and retires its cache */
    sa_cache_totals held = {0};
    sa_freecache_totals(c, &held);
    if (held.cached_objects) sa_stat_add(&sa_exit_flushes, 1);
    sa_cache_flush(c);
    sa_tls_cache = &sa_emptycache;
    tls_cache_gone = true;
    sa_lock(&registry_lock);
    retire_locked(c);
    sa_unlock(&registry_lock);
    sa_hold_exit();
}

void sa_cache_fork_child(void) {
    sa_mcache *next;
    for (sa_mcache *c = registry; c; c = next) {
        next = c->rnext;
        if (c == sa_tls_cache) continue;
        sa_cache_flush(c); /* takes central and heap locks: not under the registry lock */
        sa_lock(&registry_lock);
        retire_locked(c);
        sa_unlock(&registry_lock);
    }
}

void sa_cache_set_gate_all(uint8_t bit, bool on) {
    sa_lock(&registry_lock);
    for (sa_mcache *c = registry; c; c = c->rnext) {
        if (on) atomic_fetch_or_explicit(&c->gate, bit, memory_order_release);
        else atomic_fetch_and_explicit(&c->gate, (uint8_t)~bit, memory_order_release);
    }
    /* Threads without a cache share sa_emptycache: written only here. */
    if (on) atomic_fetch_or_explicit(&sa_emptycache.gate, bit, memory_order_release);
    else atomic_fetch_and_explicit(&sa_emptycache.gate, (uint8_t)~bit, memory_order_release);
    sa_unlock(&registry_lock);
}

/* The cache's allocations and frees so far: unchanged while its thread is idle. */
static uint64_t cache_ops(const sa_mcache *c) {
    uint64_t n = 0;
    for (int i = 0; i < SA_NUM_CLASSES; i++) n += sa_stat(&c->nmalloc[i]) + sa_stat(&c->nfree[i]);
    return n;
}

/* The claim: CLAIM in the gate, then a barrier on every thread, then the
 * owner's busy and hold. The owner stores busy (or hold) before it loads
 * the gate; the barrier orders those for the owner's CPU too, so either
 * the owner's store is seen here (the claim is dropped), or its next load
 * of the gate sees CLAIM and it waits on the claim lock, which the
 * scavenger holds until it has flushed the cache and cleared CLAIM. */
static bool claim(sa_mcache *c, bool (*barrier)(void)) {
    atomic_fetch_or_explicit(&c->gate, SA_GATE_CLAIM, memory_order_seq_cst);
    if (barrier() && atomic_load_explicit(&c->thread->busy, memory_order_acquire) == 0 &&
        atomic_load_explicit(&c->thread->hold, memory_order_acquire) == 0)
        return true;
    atomic_fetch_and_explicit(&c->gate, (uint8_t)~SA_GATE_CLAIM, memory_order_release);
    return false;
}

unsigned sa_cache_flush_idle(uint64_t now, uint64_t idle_ns, bool (*barrier)(void)) {
    unsigned flushed = 0;
    sa_lock(&sa_claim_lock);
    sa_lock(&registry_lock);
again:
    for (sa_mcache *c = registry; c; c = c->rnext) {
        uint64_t ops = cache_ops(c);
        if (ops != c->scav_ops || c->scav_seen_ns == 0) {
            c->scav_ops = ops;
            c->scav_seen_ns = now;
            continue;
        }
        /* Idle long enough, and used since the scavenger last flushed it. */
        if (now - c->scav_seen_ns < idle_ns || ops == c->scav_flushed_ops) continue;
        if (!claim(c, barrier)) {
            c->scav_seen_ns = now;
            continue;
        }
        /* The owner now waits before it touches the cache, and a thread
         * exit waits too, so c stays registered without the registry lock
         * (which must not be held while the flush takes central and heap
         * locks, as at fork). */
        sa_unlock(&registry_lock);
        sa_cache_flush(c);
        c->scav_flushed_ops = c->scav_ops = cache_ops(c);
        atomic_fetch_and_explicit(&c->gate, (uint8_t)~SA_GATE_CLAIM, memory_order_release);
        flushed++;
        sa_lock(&registry_lock);
        goto again;
    }
    sa_unlock(&registry_lock);
    sa_unlock(&sa_claim_lock);
    return flushed;
}

void sa_cache_totals_read(sa_cache_totals *t) {
    memset(t, 0, sizeof *t);
    sa_lock(&registry_lock);
    *t = exited;
    add_totals(t, &uncached_owner);
    for (sa_mcache *c = registry; c; c = c->rnext) {
        add_totals(t, c);
        sa_freecache_totals(c, t);
    }
    sa_unlock(&registry_lock);
}

/* Number of live caches other than the caller's (registry lock held). */
int sa_registry_other_caches(void) {
    int n = 0;
    for (sa_mcache *c = registry; c; c = c->rnext) if (c != sa_tls_cache) n++;
    return n;
}

/* One cache's span lists (heap checker). */
static int check_one_cache(sa_mcache *c, char *err, size_t errlen, uint64_t *nspans, uint64_t *ncached) {
    if (sa_freecache_check(c, err, errlen, ncached)) return -1;
    uint64_t kept = 0;
    for (int spc = 0; spc < SA_NUM_SPAN_CLASSES; spc++) {
        sa_mspan *cur = c->alloc[spc];
        if (cur != &sa_emptyspan) {
            if (!sa_span_is_mine(cur, c) || cur->list != SA_LIST_NONE || cur->spanclass != spc ||
                atomic_load_explicit(&cur->state, SA_RELAXED) != SA_SPAN_SMALL) {
                snprintf(err, errlen, "spanClass %d: the current span %p is not owned by its cache", spc, (void *)cur->base);
                return -1;
            }
            (*nspans)++;
        }
        unsigned n = 0;
        for (int which = SA_LIST_CPARTIAL; which <= SA_LIST_CFULL; which++) {
            sa_mspan *prev = NULL;
            for (sa_mspan *s = which == SA_LIST_CPARTIAL ? c->partial[spc] : c->full[spc]; s; prev = s, s = s->next) {
                if (!sa_span_is_mine(s, c) || s->list != which || s->spanclass != spc ||
                    s->prev != prev || atomic_load_explicit(&s->state, SA_RELAXED) != SA_SPAN_SMALL) {
                    snprintf(err, errlen, "spanClass %d: owned span %p is inconsistent", spc, (void *)s->base);
                    return -1;
                }
                (*nspans)++;
                if (s->kept_empty) {
                    if (which != SA_LIST_CPARTIAL || sa_span_count_allocated(s) != 0) {
                        snprintf(err, errlen, "spanClass %d: kept empty span %p holds objects", spc, (void *)s->base);
                        return -1;
                    }
                    kept += (uint64_t)s->npages << SA_PAGE_SHIFT;
                }
                if (which == SA_LIST_CPARTIAL) n++;
                if (which == SA_LIST_CPARTIAL && !s->next && c->partial_tail[spc] != s) {
                    snprintf(err, errlen, "spanClass %d: partial tail is wrong", spc);
                    return -1;
                }
            }
        }
        if (n != c->npartial[spc]) {
            snprintf(err, errlen, "spanClass %d: %u partial spans, count says %u", spc, n, (unsigned)c->npartial[spc]);
            return -1;
        }
    }
    if (kept != atomic_load_explicit(&c->empty_bytes, SA_RELAXED)) {
        snprintf(err, errlen, "kept empty spans hold %llu bytes, the cache says %llu", (unsigned long long)kept,
                 (unsigned long long)atomic_load_explicit(&c->empty_bytes, SA_RELAXED));
        return -1;
    }
    return 0;
}

int sa_cache_check(char *err, size_t errlen, bool quiescent, uint64_t *nspans, uint64_t *ncached) {
    if (!quiescent) return sa_tls_cache == &sa_emptycache ? 0 : check_one_cache(sa_tls_cache, err, errlen, nspans, ncached);
    for (sa_mcache *c = registry; c; c = c->rnext)
        if (check_one_cache(c, err, errlen, nspans, ncached)) return -1;
    return 0;
}
