/*
 * sa_mcache.c — per-thread caches (Go's mcache.go): one span per spanClass,
 * used without locks by the thread that owns the cache.
 *
 * Owns: the thread-local cache pointer, the registry of caches and the
 * counters of exited threads. The registry lock guards the registry list,
 * the exited totals and the cache fixalloc; a cache's spans and counters
 * are written only by its thread.
 *
 * A thread starts with sa_emptycache, whose every span is sa_emptyspan
 * (allocCache == 0), so the allocation fast path needs no "first use"
 * branch: its first miss lands in sa_cache_next_free, which creates the
 * thread's real cache. At thread exit a pthread key destructor sweeps each
 * cached span and hands it back to mcentral.
 */
#include "sa_internal.h"

#include <errno.h>
#include <string.h>

sa_mspan sa_emptyspan; /* allocCache 0, nelems 0: never allocates */
sa_mcache sa_emptycache = {.alloc = {[0 ... SA_NUM_SPAN_CLASSES - 1] = &sa_emptyspan}};
__thread sa_mcache *sa_tls_cache __attribute__((tls_model("initial-exec"))) = &sa_emptycache;

sa_lock_t sa_registry_lock_v = SA_LOCK_INIT;
#define registry_lock sa_registry_lock_v
static sa_mcache *registry;
static sa_fixalloc cache_alloc = {.size = (sizeof(sa_mcache) + 63) & ~(size_t)63};
static sa_cache_totals exited; /* counters of threads that exited */
static pthread_key_t cache_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void cache_thread_exit(void *arg);
static void make_key(void) { pthread_key_create(&cache_key, cache_thread_exit); }

void sa_registry_lock(void) { sa_lock(&registry_lock); }
void sa_registry_unlock(void) { sa_unlock(&registry_lock); }
void sa_registry_reinit(void) { pthread_mutex_init(&registry_lock, NULL); }

sa_mcache *sa_cache_create(void) {
    pthread_once(&key_once, make_key);
    sa_lock(&registry_lock);
    sa_mcache *c = sa_fixalloc_alloc(&cache_alloc);
    if (!c) {
        sa_unlock(&registry_lock);
        return NULL;
    }
    memset(c, 0, sizeof *c);
    for (int i = 0; i < SA_NUM_SPAN_CLASSES; i++) c->alloc[i] = &sa_emptyspan;
    c->live = true;
    c->rnext = registry;
    if (registry) registry->rprev = c;
    registry = c;
    sa_unlock(&registry_lock);
    sa_tls_cache = c;
    pthread_setspecific(cache_key, c);
    return c;
}

void *sa_cache_next_free(sa_mcache *c, int spc) {
    if (c == &sa_emptycache) {
        c = sa_cache_create();
        if (!c) { errno = ENOMEM; return NULL; }
    }
    sa_mspan *s = c->alloc[spc];
    uint32_t idx;
    if (s != &sa_emptyspan) {
        idx = sa_span_next_free_index(s);
        if (idx < s->nelems) goto got;
        /* Exhausted: sweep the frees it collected since the last sweep and
         * keep the span if that freed anything. */
        uint32_t nfree = sa_span_sweep(s);
        if (nfree) {
            sa_counter_inc(&c->nsweep);
            idx = sa_span_next_free_index(s);
            goto got;
        }
        c->alloc[spc] = &sa_emptyspan;
        sa_central_uncache_span(s, s->nelems);
    }
    s = sa_central_cache_span(spc, c);
    if (!s) { errno = ENOMEM; return NULL; }
    c->alloc[spc] = s;
    sa_counter_inc(&c->nrefill);
    idx = sa_span_next_free_index(s);
got:
    sa_counter_inc(&c->nmalloc[spc >> 1]);
    return (void *)(s->base + (uintptr_t)idx * s->elemsize);
}

void sa_cache_flush(sa_mcache *c) {
    if (c == &sa_emptycache) return;
    c->last = NULL;
    for (int spc = 0; spc < SA_NUM_SPAN_CLASSES; spc++) {
        sa_mspan *s = c->alloc[spc];
        if (s == &sa_emptyspan) continue;
        c->alloc[spc] = &sa_emptyspan;
        uint32_t nfree = sa_span_sweep(s);
        sa_central_uncache_span(s, s->nelems - nfree);
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
}

static void cache_thread_exit(void *arg) {
    sa_mcache *c = arg;
    sa_cache_flush(c);
    sa_tls_cache = &sa_emptycache;
    sa_lock(&registry_lock);
    add_totals(&exited, c);
    exited.nexited++;
    if (c->rprev) c->rprev->rnext = c->rnext; else registry = c->rnext;
    if (c->rnext) c->rnext->rprev = c->rprev;
    c->live = false;
    sa_fixalloc_free(&cache_alloc, c);
    sa_unlock(&registry_lock);
}

void sa_cache_totals_read(sa_cache_totals *t) {
    memset(t, 0, sizeof *t);
    sa_lock(&registry_lock);
    *t = exited;
    for (sa_mcache *c = registry; c; c = c->rnext) add_totals(t, c);
    sa_unlock(&registry_lock);
}

/* Number of live caches other than the caller's (registry lock held). */
int sa_registry_other_caches(void) {
    int n = 0;
    for (sa_mcache *c = registry; c; c = c->rnext) if (c != sa_tls_cache) n++;
    return n;
}
