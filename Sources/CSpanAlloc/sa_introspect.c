/*
 * sa_introspect.c — what the heap tells its users about spans: sa_span_of
 * and sa_owns, and the alloc/free hook, which reports each event with the
 * span's description.
 *
 * Owns: the hook and its context (atomics; each cache's gate says whether
 * one is installed), and the per-thread flag that keeps the hook's own
 * allocations from being reported. No lock of its own:
 * a span's live count takes its mcentral's lock when no thread caches it.
 */
#include "sa_fastpath.h"

_Atomic(sa_hook_fn) sa_hook;
static _Atomic(void *) hook_ctx;

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
 * the central lock); the count as of the last sweep otherwise. Objects in
 * the calling thread's free caches are not live. */
static size_t live_count(sa_mspan *s) {
    if (atomic_load_explicit(&s->state, SA_RELAXED) != SA_SPAN_SMALL) return 1;
    sa_mcache *me = sa_tls_cache;
    size_t cached = me == &sa_emptycache ? 0 : sa_freecache_in_span(me, s);
    sa_mcache *owner = atomic_load_explicit(&s->owner, SA_ACQUIRE);
    if (owner == me) return sa_span_count_allocated(s) - cached;
    if (owner == NULL) {
        sa_mcentral *c = &sa_central[s->spanclass];
        sa_lock(&c->lock);
        size_t n = atomic_load_explicit(&s->owner, SA_ACQUIRE) == NULL
                       ? sa_span_count_allocated(s)
                       : atomic_load_explicit(&s->allocCount, SA_RELAXED);
        sa_unlock(&c->lock);
        return n >= cached ? n - cached : 0;
    }
    size_t n = sa_span_count_taken(s);
    return n >= cached ? n - cached : 0;
}

bool sa_span_of(const void *ptr, sa_span_info *out) {
    sa_mspan *s = sa_span_of_addr((uintptr_t)ptr);
    if (!s) return false;
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    if (st != SA_SPAN_SMALL && st != SA_SPAN_LARGE) return false;
    sa_hold_enter(); /* live_count reads the thread's own cache */
    fill_info(s, out, live_count(s));
    sa_hold_exit();
    return true;
}

bool sa_owns(const void *ptr) {
    sa_mspan *s = sa_span_of_addr((uintptr_t)ptr);
    if (!s) return false;
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    return st == SA_SPAN_SMALL || st == SA_SPAN_LARGE;
}

/* ---- hook ----------------------------------------------------------------- */

/* The fast paths see the hook through their cache's gate. */
void sa_set_hook(sa_hook_fn fn, void *ctx) {
    atomic_store(&hook_ctx, ctx);
    atomic_store(&sa_hook, fn);
    sa_cache_set_gate_all(SA_GATE_HOOK, fn != NULL);
}

static __thread int in_hook __attribute__((tls_model("initial-exec")));

/* The hook may allocate; allocations it makes are not reported to it. */
void sa_call_hook(int event, void *p, size_t size, const sa_mspan *s) {
    sa_hook_fn fn = atomic_load(&sa_hook);
    if (!fn || !s || in_hook) return;
    sa_span_info info;
    fill_info(s, &info, atomic_load_explicit(&s->allocCount, SA_RELAXED));
    in_hook = 1;
    sa_hold_inc(); /* the hook's own allocations end operations of their own */
    fn(event, p, size, &info, atomic_load(&hook_ctx));
    sa_hold_dec();
    in_hook = 0;
}

