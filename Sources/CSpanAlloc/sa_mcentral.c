/*
 * sa_mcentral.c — the central span lists, one per spanClass (Go's
 * mcentral.go): spans that no thread caches.
 *
 * Owns: sa_central[]. Each mcentral's lock guards its lists and, for every
 * span on them, the span's list links, allocBits, freeindex and allocCount.
 *
 * Invariants:
 *   - a span is on its class's partial or full list iff its owner is NULL;
 *   - a span on the full list had every slot allocated when it was put
 *     there; the first remote free after that moves it to partial
 *     (sa_central_free_fixup), so a span with a free slot is never stranded
 *     on the full list;
 *   - a span whose objects are all freed while uncached is swept by the free
 *     that made it empty (or by sa_central_reclaim) and kept on the empty
 *     list, up to SA_CENTRAL_EMPTY_PAGES pages per spanClass, or released to
 *     mheap; mheap takes the kept ones back before it maps more memory, and
 *     sa_scavenge releases them all;
 * Lock order (sa_fork_prepare takes them all in it): the mcache registry,
 * then the heap, then the mcentrals in spanClass order. No path takes the
 * heap lock while holding an mcentral lock: spans go to and come from mheap
 * after the central lock is dropped. The heap checker, and mheap taking the
 * kept empty spans back, take one central lock at a time under the heap lock.
 */
#include "sa_internal.h"

#include <stdio.h>

sa_mcentral sa_central[SA_NUM_SPAN_CLASSES] = {[0 ... SA_NUM_SPAN_CLASSES - 1] = {.lock = SA_LOCK_INIT}};

static inline sa_mcentral *central_of(int spc) { return &sa_central[spc]; }

static sa_mspan **list_head(sa_mcentral *c, int which) {
    return which == SA_LIST_FULL ? &c->full : which == SA_LIST_EMPTY ? &c->empty : &c->partial;
}

static uint64_t *list_count(sa_mcentral *c, int which) {
    return which == SA_LIST_FULL ? &c->nfull : which == SA_LIST_EMPTY ? &c->nempty : &c->npartial;
}

static void list_push(sa_mcentral *c, sa_mspan *s, int which) {
    sa_mspan **head = list_head(c, which);
    s->list = (uint8_t)which;
    s->prev = NULL;
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
    (*list_count(c, which))++;
}

static void list_remove(sa_mcentral *c, sa_mspan *s) {
    sa_mspan **head = list_head(c, s->list);
    if (s->prev) s->prev->next = s->next; else *head = s->next;
    if (s->next) s->next->prev = s->prev;
    (*list_count(c, s->list))--;
    s->next = s->prev = NULL;
    s->list = SA_LIST_NONE;
}

/* A span leaving mcentral's protection to be released: its id goes to 0
 * under the central lock, so a late sa_central_free_fixup (which checks the
 * id first, under the same lock) leaves it alone before the page heap
 * reuses the struct. */
static inline void retire_locked(sa_mspan *s) { atomic_store_explicit(&s->id, 0, SA_RELAXED); }
/* Empty spans the mcentrals keep for reuse, all classes together: up to
 * this many pages. Beyond it an emptied span's pages go back to mheap,
 * where any class or a large object can use them; mheap takes the kept
 * ones back before it maps more memory, the scavenger counts them as idle
 * memory, and sa_scavenge releases them all. */
#define SA_CENTRAL_EMPTY_PAGES 4096 /* 32 MiB, all classes together */
static _Atomic uint64_t empty_pages, empty_spans; /* on every mcentral's empty list */
static _Atomic uint64_t empty_reuses;              /* kept empty spans a cache took */
static inline bool keeps_empty(const sa_mcentral *c, const sa_mspan *s) {
    (void)c;
    return atomic_load_explicit(&empty_pages, SA_RELAXED) + s->npages <= SA_CENTRAL_EMPTY_PAGES;
}

/* Every object of an uncached span is free: check the bitmaps agree (a
 * remote free of an unallocated slot would show here), then keep it on the
 * empty list or release it to mheap. */
static void release_empty(sa_mspan *s, bool swept) {
    /* Swept by its owner just before, with no remote free since: nothing to fold. */
    uint32_t left = swept && atomic_load_explicit(&s->remoteFreed, SA_ACQUIRE) == 0 ? s->nelems : sa_span_sweep(s);
    if (left != s->nelems)
        sa_fatal("span %p released with %u live objects", (void *)s->base, s->nelems - left);
    sa_mcentral *c = central_of(s->spanclass);
    sa_lock(&c->lock);
    if (keeps_empty(c, s)) {
        list_push(c, s, SA_LIST_EMPTY);
        sa_stat_add(&empty_pages, s->npages);
        sa_stat_add(&empty_spans, 1);
        sa_unlock(&c->lock);
        /* Idle memory here too: the background scavenger decays it to the
         * floor once the program is idle, so it must exist. */
        if (SA_UNLIKELY(!sa_scavenger_running()) &&
            atomic_load_explicit(&empty_pages, SA_RELAXED) << SA_PAGE_SHIFT > SA_SCAVENGE_START_BYTES)
            sa_scavenger_poke();
        return;
    }
    sa_unlock(&c->lock);
    sa_heap_free_span(s);
}

sa_mspan *sa_central_cache_span(int spc, sa_mcache *owner) {
    sa_mcentral *c = central_of(spc);
    sa_lock(&c->lock);
    sa_mspan *s;
    while ((s = c->partial) != NULL) {
        list_remove(c, s);
        atomic_store_explicit(&s->owner, owner, SA_SEQCST);
        uint32_t nfree = sa_span_sweep(s);
        if (nfree) {
            sa_unlock(&c->lock);
            return s;
        }
        /* Raced with nothing freed after all: park it on full. */
        atomic_store_explicit(&s->owner, NULL, SA_SEQCST);
        if (atomic_load_explicit(&s->remoteFreed, SA_SEQCST) > 0) list_push(c, s, SA_LIST_PARTIAL);
        else list_push(c, s, SA_LIST_FULL);
        if (c->partial == s) break; /* only this one: avoid spinning */
    }
    if ((s = c->empty) != NULL) {
        /* Swept and empty: allocCache already covers every slot. It was
         * retired (id 0) when it emptied: a new life, a new id. */
        list_remove(c, s);
        atomic_store_explicit(&s->id, sa_heap_new_span_id(), SA_RELAXED);
        sa_stat_sub(&empty_pages, s->npages);
        sa_stat_sub(&empty_spans, 1);
        sa_stat_add(&empty_reuses, 1);
        atomic_store_explicit(&s->owner, owner, SA_SEQCST);
        sa_unlock(&c->lock);
        return s;
    }
    sa_unlock(&c->lock);
    /* Objects are aligned to the largest power of two dividing their size:
     * page alignment gives that except for the 16 KiB and 32 KiB classes,
     * whose spans are aligned to the object size. */
    size_t size = sa_class_size_tab[spc >> 1], align_pages = 1;
    if (size > SA_PAGE_SIZE && (size & (size - 1)) == 0) align_pages = size / SA_PAGE_SIZE;
    s = sa_heap_alloc_span(sa_class_npages_tab[spc >> 1], align_pages, spc, owner);
    if (s) sa_counter_inc(&owner->ngrow);
    return s;
}

void sa_central_uncache_span(sa_mspan *s, uint32_t allocated) {
    sa_mcentral *c = central_of(s->spanclass);
    sa_lock(&c->lock);
    atomic_store_explicit(&s->allocCount, allocated, SA_RELAXED);
    atomic_store_explicit(&s->owner, NULL, SA_SEQCST);
    int32_t pending = atomic_load_explicit(&s->remoteFreed, SA_SEQCST);
    if (pending >= (int32_t)allocated) {
        retire_locked(s);
        sa_unlock(&c->lock);
        release_empty(s, true);
        return;
    }
    list_push(c, s, (allocated == s->nelems && pending == 0) ? SA_LIST_FULL : SA_LIST_PARTIAL);
    sa_unlock(&c->lock);
}

void sa_central_free_fixup(sa_mspan *s, uint64_t id, int spanclass) {
    /* spanclass was read before the free was published (the span may be
     * reused with another class by now). */
    sa_mcentral *c = central_of(spanclass);
    sa_lock(&c->lock);
    /* The span may have been cached, emptied and released, even reused for
     * another span, since the caller's free: the id tells (a span on its way
     * to mheap has id 0, set under this lock), and only a span on this
     * mcentral's partial or full list is acted on. Span structs are never
     * unmapped, so reading them is safe. */
    if (atomic_load_explicit(&s->id, SA_RELAXED) != id ||
        atomic_load_explicit(&s->state, SA_RELAXED) != SA_SPAN_SMALL ||
        atomic_load_explicit(&s->owner, SA_SEQCST) != NULL ||
        (s->list != SA_LIST_PARTIAL && s->list != SA_LIST_FULL)) {
        sa_unlock(&c->lock);
        return;
    }
    int32_t pending = atomic_load_explicit(&s->remoteFreed, SA_SEQCST);
    uint32_t allocated = atomic_load_explicit(&s->allocCount, SA_RELAXED);
    if (pending >= (int32_t)allocated) {
        list_remove(c, s);
        retire_locked(s);
        sa_unlock(&c->lock);
        release_empty(s, false);
        return;
    }
    if (pending > 0 && s->list == SA_LIST_FULL) {
        list_remove(c, s);
        list_push(c, s, SA_LIST_PARTIAL);
    }
    sa_unlock(&c->lock);
}

void sa_central_empty_stats(uint64_t *spans, uint64_t *pages, uint64_t *reuses) {
    *spans = sa_stat(&empty_spans);
    *pages = sa_stat(&empty_pages);
    *reuses = sa_stat(&empty_reuses);
}

size_t sa_central_reclaim_empty_heap_locked(void) {
    size_t pages = 0;
    for (int spc = 2; spc < SA_NUM_SPAN_CLASSES; spc++) {
        sa_mcentral *c = central_of(spc);
        sa_lock(&c->lock);
        sa_mspan *s;
        while ((s = c->empty) != NULL) {
            list_remove(c, s);
            sa_stat_sub(&empty_pages, s->npages);
            sa_stat_sub(&empty_spans, 1);
            pages += s->npages;
            sa_heap_free_span_locked(s);
        }
        sa_unlock(&c->lock);
    }
    return pages;
}

void sa_central_reclaim(void) {
    for (int spc = 2; spc < SA_NUM_SPAN_CLASSES; spc++) {
        sa_mcentral *c = central_of(spc);
        for (;;) {
            sa_lock(&c->lock);
            sa_mspan *victim = NULL;
            for (sa_mspan *s = c->partial; s; s = s->next) {
                if (atomic_load_explicit(&s->remoteFreed, SA_SEQCST) >= (int32_t)atomic_load_explicit(&s->allocCount, SA_RELAXED)) {
                    victim = s;
                    break;
                }
            }
            if (victim) { list_remove(c, victim); retire_locked(victim); }
            sa_unlock(&c->lock);
            if (!victim) break;
            release_empty(victim, false);
        }
    }
    sa_lock(&sa_heap.lock);
    sa_central_reclaim_empty_heap_locked();
    sa_unlock(&sa_heap.lock);
}

#define CHECK(cond, ...) do { if (!(cond)) { snprintf(err, errlen, __VA_ARGS__); return -1; } } while (0)

static int check_one(sa_mcentral *c, int spc, char *err, size_t errlen, uint64_t *nspans) {
    {
        uint64_t n[SA_LIST_EMPTY + 1] = {0};
        for (int which = SA_LIST_PARTIAL; which <= SA_LIST_EMPTY; which++) {
            if (which != SA_LIST_PARTIAL && which != SA_LIST_FULL && which != SA_LIST_EMPTY) continue;
            for (sa_mspan *s = *list_head(c, which); s; s = s->next) {
                n[which]++;
                CHECK(s->list == which, "spanClass %d: span %p on the wrong list", spc, (void *)s->base);
                CHECK(s->spanclass == spc, "spanClass %d: span %p has spanClass %d", spc, (void *)s->base, s->spanclass);
                CHECK(atomic_load_explicit(&s->state, SA_RELAXED) == SA_SPAN_SMALL, "central span %p not in use", (void *)s->base);
                CHECK(atomic_load_explicit(&s->owner, SA_RELAXED) == NULL, "central span %p has an owner", (void *)s->base);
                CHECK(sa_span_of_addr(s->base) == s, "central span %p not in the page map", (void *)s->base);
                if (sa_span_check(s, err, errlen)) return -1;
                uint32_t live = sa_span_count_allocated(s);
                if (which == SA_LIST_EMPTY) {
                    CHECK(live == 0, "span %p on the empty list holds %u objects", (void *)s->base, live);
                    continue;
                }
                CHECK(live > 0, "empty span %p left on mcentral's list", (void *)s->base);
                if (which == SA_LIST_FULL)
                    CHECK(live == s->nelems, "span %p on the full list has %u free slots", (void *)s->base, s->nelems - live);
            }
        }
        CHECK(n[SA_LIST_PARTIAL] == c->npartial && n[SA_LIST_FULL] == c->nfull && n[SA_LIST_EMPTY] == c->nempty,
              "spanClass %d: list counts wrong", spc);
        *nspans += n[SA_LIST_PARTIAL] + n[SA_LIST_FULL] + n[SA_LIST_EMPTY];
    }
    return 0;
}

/* Takes each central lock in turn. */
int sa_central_check(char *err, size_t errlen, uint64_t *nspans) {
    uint64_t kept_pages = 0, kept_spans = 0;
    for (int spc = 2; spc < SA_NUM_SPAN_CLASSES; spc++) {
        sa_lock(&sa_central[spc].lock);
        for (sa_mspan *s = sa_central[spc].empty; s; s = s->next) { kept_pages += s->npages; kept_spans++; }
        sa_unlock(&sa_central[spc].lock);
    }
    CHECK(kept_pages == sa_stat(&empty_pages) && kept_spans == sa_stat(&empty_spans),
          "kept empty spans: %llu (%llu pages) on the lists, counters say %llu (%llu pages)",
          (unsigned long long)kept_spans, (unsigned long long)kept_pages, (unsigned long long)sa_stat(&empty_spans),
          (unsigned long long)sa_stat(&empty_pages));
    for (int spc = 2; spc < SA_NUM_SPAN_CLASSES; spc++) {
        sa_lock(&sa_central[spc].lock);
        int rc = check_one(&sa_central[spc], spc, err, errlen, nspans);
        sa_unlock(&sa_central[spc].lock);
        if (rc) return rc;
    }
    return 0;
}
