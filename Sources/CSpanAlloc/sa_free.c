/*
 * sa_free.c — the free path's out-of-line parts: frees the inline fast path
 * (sa_fastpath.h) hands over with the span its page-map walk found (large
 * objects, the hook, bad pointers), the gated path (hook, claim), and frees
 * of pointers already validated by realloc. The free caches and remote buffers are sa_freecache.c's.
 *
 * Owns nothing; no lock of its own (a large free takes the heap lock in
 * sa_heap_free_span).
 */
#include "sa_fastpath.h"

void sa_bad_pointer(const void *p, const sa_mspan *s, const char *op) {
    uintptr_t a = (uintptr_t)p;
    if (!s) sa_fatal("%s of pointer %p not allocated by SpanAlloc (or already freed)", op, p);
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    if (st == SA_SPAN_SMALL)
        sa_fatal("%s of interior pointer %p (span %p, object size %zu)", op, p, (void *)s->base, s->elemsize);
    if (st != SA_SPAN_LARGE) sa_fatal("%s of pointer %p: already freed (double free) or never allocated", op, p);
    (void)a;
    sa_fatal("%s of interior pointer %p (large object at %p)", op, p, (void *)s->base);
}

void sa_free_validated(void *p, sa_mspan *s, uint32_t idx) {
    sa_mcache *c = sa_get_cache();
    if (c->last == p) c->last = SA_NO_LAST;
    if (SA_UNLIKELY(atomic_load_explicit(&sa_hook, SA_RELAXED))) sa_call_hook(SA_EVENT_FREE, p, s->elemsize, s);
    if (SA_UNLIKELY(atomic_load_explicit(&s->profbits, SA_RELAXED) != NULL)) sa_prof_forget(p, s, idx);
    if (s->sizeclass == 0) {
        sa_heap_free_span(s);
        return;
    }
    if (!sa_span_is_mine(s, c)) {
        sa_free_remote(c, s, idx, p);
        return;
    }
    sa_free_owned_slot(c, s, idx, p, false);
}

void sa_free_slow(void *p, sa_mspan *s) {
    if (!p) return;
    uint32_t idx;
    s = sa_checked_span(p, s, "free", &idx);
    sa_free_validated(p, s, idx);
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

void sa_free_gated(void *p, void (*foreign)(void *)) {
    if (sa_gate(sa_get_cache()) & SA_GATE_CLAIM) sa_claim_wait();
    bool hooked = atomic_load_explicit(&sa_hook, SA_RELAXED) != NULL;
    sa_free_body(sa_get_cache(), p, foreign, hooked);
}

void sa_free_slow_end(void *p, sa_mspan *s) {
    sa_free_slow(p, s);
    sa_op_end();
}

void sa_free_remote_end(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p) {
    sa_free_remote(c, s, idx, p);
    sa_op_end();
}

void sa_free_owned_slow_end(sa_mcache *c, sa_mspan *s, uint32_t idx, void *p) {
    sa_free_owned_slow(c, s, idx, p);
    sa_op_end();
}

void sa_cache_free_owned_end(sa_mcache *c, sa_mspan *s) {
    sa_cache_free_owned(c, s);
    sa_op_end();
}

void sa_free_interior_end(const void *p, const sa_mspan *s) {
    sa_free_interior(p, s);
}

void sa_free_twice_end(const void *p) {
    sa_free_twice(p);
}

void sa_free(void *p) { sa_free_inline(p); }

bool sa_free_if_ours(void *p) {
    uintptr_t a = (uintptr_t)p;
    if (p && !sa_span_of_addr(a) && ((a >> SA_ADDR_BITS) || !sa_arena_of(a))) return false;
    sa_free_inline(p);
    return true;
}
