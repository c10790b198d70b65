/*
 * sa_mheap.c — the page heap (Go's mheap.go): arenas, the arena index and
 * page map, free page runs, span structures, and the scavenger.
 *
 * Owns: sa_heap, the free-run bins, the span-struct fixallocs, the chunk list.
 * Lock: sa_heap.lock guards all of it; the page map is written under the
 * lock and read without it (atomic loads) by the free path.
 *
 * The background scavenger (sa_scavenger.c) releases through
 * sa_heap_release: a run is carved out of the bins as RELEASING, its
 * resident pages are released with the lock dropped, and it goes back as
 * a free run, coalescing with what was freed meanwhile.
 *
 * Invariants (checked by sa_heap_check):
 *   - every page of every mapped chunk belongs to exactly one span or free run;
 *   - every page of an in-use span maps to it; a free run's first and last
 *     pages map to it and its interior pages map to NULL;
 *   - no two free runs are adjacent (runs coalesce on free);
 *   - a free run of n pages is on bin n (n < SA_BINS) or on the last bin;
 *   - pages_inuse + pages_free = pages mapped; pages_released counts the
 *     scavenged bits of free pages, pages_unused the free pages never used;
 *     a released page was used (released ⊆ used).
 */
#include "sa_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

sa_mheap sa_heap = {.lock = SA_LOCK_INIT};

#define SA_BINS 128 /* bins[1..127]: runs of exactly n pages; bins[128]: 128 pages or more */
#define SA_MAX_CHUNKS 8192

static sa_mspan *bins[SA_BINS + 1];
static uint64_t binmask[(SA_BINS + 1 + 63) / 64];
static struct { uintptr_t base; size_t npages; } chunks[SA_MAX_CHUNKS];
static size_t nchunks;
static _Atomic uint64_t next_span_id = 1;

uint64_t sa_heap_new_span_id(void) { return atomic_fetch_add_explicit(&next_span_id, 1, SA_RELAXED); }
static uint64_t arenas_indexed; /* arena index entries set */
static uint64_t last_pace_ns;

static sa_scavenge_config scav_cfg = {
    /* Page faults cost microseconds on these VMs: while the program
     * allocates, keep up to 64 MiB, or a tenth of the in-use heap (Go's
     * retained-heap margin is 10%), of idle memory mapped, and release only
     * runs idle for a second; once it is idle, down to the floor. */
    .retain_bytes = (size_t)64 << 20,
    .retain_percent = 10,
    .delay_ms = 1000,
    .mode = SA_SCAVENGE_BACKGROUND,
    .floor_bytes = (size_t)4 << 20,
    .idle_ms = 1000,
    .cpu_percent = 1,
};
/* Set under the heap lock when the background scavenger has work (idle
 * memory over the goal, the limit reached); the thread that set it pokes
 * the scavenger once it has dropped the lock. */
static _Atomic bool scavenger_wanted;

static inline void sa_scavenger_poke_after_unlock(void) {
    if (SA_UNLIKELY(atomic_load_explicit(&scavenger_wanted, SA_RELAXED)) &&
        atomic_exchange_explicit(&scavenger_wanted, false, SA_RELAXED))
        sa_scavenger_poke();
}

/* ---- fixalloc ------------------------------------------------------------ */

#define SA_FIXALLOC_CHUNK ((size_t)256 << 10)

void *sa_fixalloc_alloc(sa_fixalloc *f) {
    if (f->freelist) {
        void *p = f->freelist;
        f->freelist = *(void **)p;
        return p;
    }
    if (f->left < f->size) {
        char *c = sa_os_map(SA_FIXALLOC_CHUNK);
        if (!c) return NULL;
        sa_stat_add(&sa_heap.metadata_sys, SA_FIXALLOC_CHUNK);
        f->chunk = c;
        f->left = SA_FIXALLOC_CHUNK;
    }
    void *p = f->chunk;
    f->chunk += f->size;
    f->left -= f->size;
    return p;
}

void sa_fixalloc_free(sa_fixalloc *f, void *p) {
    *(void **)p = f->freelist;
    f->freelist = p;
}

/* Span structs come in sizes of whole cache lines: a header of three lines
 * plus the three bitmaps for the class. Bucket = size / 64. They live in
 * 256 KiB chunks (the span pool), each with a header of its own: a chunk
 * whose structs are all free goes on the empty list, and the scavenger
 * releases empty chunks (sa_heap_release_metadata), so the metadata of a
 * heap that shrank goes back to the OS too. A freed or released struct
 * reads as DEAD (state 0, id 0) to a thread that still holds a stale
 * pointer to it. Heap lock. */
#define SA_SPAN_BUCKETS 16
#define SA_POOL_CHUNK ((size_t)256 << 10)

typedef struct pool_chunk {
    struct pool_chunk *next, *prev; /* on its bucket's partial list, or the empty list */
    void *freelist;
    uint32_t bump;     /* offset of the first struct never handed out */
    uint32_t live;     /* structs handed out */
    uint16_t size;     /* struct size of its bucket */
    uint8_t list;      /* POOL_NONE (full), POOL_PARTIAL, POOL_EMPTY */
    uint8_t released;  /* its body is returned to the OS */
} pool_chunk;
enum { POOL_NONE, POOL_PARTIAL, POOL_EMPTY };
#define SA_POOL_HEADER 64 /* the header's line; structs follow, 64-aligned */

static pool_chunk *pool_partial[SA_SPAN_BUCKETS], *pool_empty;
static _Atomic uint64_t pool_released_bytes; /* metadata released, in empty chunks */

static void pool_link(pool_chunk **head, pool_chunk *c, uint8_t list) {
    c->list = list;
    c->prev = NULL;
    c->next = *head;
    if (*head) (*head)->prev = c;
    *head = c;
}

static void pool_unlink(pool_chunk **head, pool_chunk *c) {
    if (c->prev) c->prev->next = c->next; else *head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = c->prev = NULL;
    c->list = POOL_NONE;
}

static size_t span_struct_size(int cls) {
    size_t words = 0;
    if (cls) {
        size_t nw = (sa_class_nelems_tab[cls] + 63u) / 64u;
        size_t ralloc = ((nw + 1 + 7) & ~(size_t)7) - 1;
        words = ralloc + 2 * nw;
    }
    size_t sz = offsetof(sa_mspan, words) + words * sizeof(uint64_t);
    return (sz + 63) & ~(size_t)63;
}

static inline __attribute__((always_inline)) sa_mspan *span_struct_alloc(int cls) {
    size_t sz = span_struct_size(cls);
    unsigned b = (unsigned)(sz / 64);
    pool_chunk *c = pool_partial[b];
    if (!c) {
        c = pool_empty;
        if (c) {
            pool_unlink(&pool_empty, c);
            if (c->released) {
                c->released = 0;
                sa_stat_sub(&pool_released_bytes, SA_POOL_CHUNK - sa_os_page_size());
            }
        } else {
            c = sa_os_map_aligned(SA_POOL_CHUNK, SA_POOL_CHUNK);
            if (!c) return NULL;
            sa_stat_add(&sa_heap.metadata_sys, SA_POOL_CHUNK);
        }
        c->freelist = NULL;
        c->bump = SA_POOL_HEADER;
        c->live = 0;
        c->size = (uint16_t)sz;
        c->released = 0;
        pool_link(&pool_partial[b], c, POOL_PARTIAL);
    }
    sa_mspan *s;
    if (c->freelist) {
        s = c->freelist;
        c->freelist = *(void **)s;
    } else {
        s = (sa_mspan *)((char *)c + c->bump);
        c->bump += (uint32_t)sz;
    }
    c->live++;
    if (!c->freelist && c->bump + sz > SA_POOL_CHUNK) pool_unlink(&pool_partial[b], c); /* full */
    memset(s, 0, offsetof(sa_mspan, words));
    s->bucket = (uint8_t)b;
    return s;
}

static void span_struct_free(sa_mspan *s) {
    atomic_store_explicit(&s->state, SA_SPAN_DEAD, SA_RELAXED);
    atomic_store_explicit(&s->id, 0, SA_RELAXED);
    atomic_store_explicit(&s->owner, NULL, SA_RELAXED);
    pool_chunk *c = (pool_chunk *)((uintptr_t)s & ~(uintptr_t)(SA_POOL_CHUNK - 1));
    *(void **)s = c->freelist;
    c->freelist = s;
    if (c->list == POOL_NONE) pool_link(&pool_partial[s->bucket], c, POOL_PARTIAL);
    if (--c->live == 0) {
        pool_unlink(&pool_partial[s->bucket], c);
        pool_link(&pool_empty, c, POOL_EMPTY);
    }
}

size_t sa_heap_release_metadata(void) {
    size_t done = 0, os = sa_os_page_size();
    sa_lock(&sa_heap.lock);
    for (pool_chunk *c = pool_empty; c; c = c->next) {
        if (c->released) continue;
        /* The first OS page keeps the header; the structs there are free
         * and handed out again from the bump pointer. */
        uintptr_t rel;
        size_t n = sa_os_release((char *)c + os, SA_POOL_CHUNK - os, &rel);
        if (n != SA_POOL_CHUNK - os) continue;
        c->released = 1;
        c->freelist = NULL;
        c->bump = SA_POOL_HEADER;
        sa_stat_add(&pool_released_bytes, n);
        done += n;
    }
    sa_unlock(&sa_heap.lock);
    return done;
}

/* ---- arena index and page map ------------------------------------------- */

_Atomic(sa_heap_arena *) sa_arena_l2_0[SA_L2_ENTRIES];

static inline sa_heap_arena *arena_of(uintptr_t a) { return sa_arena_of(a); }

static inline size_t page_index(uintptr_t a) { return (a >> SA_PAGE_SHIFT) & (SA_PAGES_PER_ARENA - 1); }

static inline void map_set(uintptr_t a, sa_mspan *s) {
    atomic_store_explicit(&arena_of(a)->spans[page_index(a)], s, SA_RELAXED);
}

static void map_set_range(uintptr_t base, size_t npages, sa_mspan *s) {
    while (npages) {
        sa_heap_arena *ha = arena_of(base);
        size_t i = page_index(base), n = SA_PAGES_PER_ARENA - i;
        if (n > npages) n = npages;
        for (size_t k = 0; k < n; k++) atomic_store_explicit(&ha->spans[i + k], s, SA_RELAXED);
        base += n << SA_PAGE_SHIFT;
        npages -= n;
    }
}

static void run_set_map(sa_mspan *r) {
    map_set(r->base, r);
    map_set(r->base + ((uintptr_t)(r->npages - 1) << SA_PAGE_SHIFT), r);
}

/* Page-range operations on an arena bitmap (used, dirty, scavenged). */
enum { BITS_COUNT, BITS_SET, BITS_CLEAR };
static size_t page_bits(uintptr_t base, size_t npages, size_t field, int op) {
    size_t count = 0;
    while (npages) {
        sa_heap_arena *ha = arena_of(base);
        uint64_t *words = (uint64_t *)((char *)ha + field);
        size_t i = page_index(base), n = SA_PAGES_PER_ARENA - i;
        if (n > npages) n = npages;
        base += n << SA_PAGE_SHIFT;
        npages -= n;
        while (n) {
            size_t w = i / 64, b = i % 64, k = 64 - b < n ? 64 - b : n;
            uint64_t m = (k == 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1)) << b;
            if (op == BITS_COUNT) count += (size_t)__builtin_popcountll(words[w] & m);
            else if (op == BITS_SET) { count += (size_t)__builtin_popcountll(~words[w] & m); words[w] |= m; }
            else { count += (size_t)__builtin_popcountll(words[w] & m); words[w] &= ~m; }
            i += k;
            n -= k;
        }
    }
    return count;
}
#define F_USED offsetof(sa_heap_arena, used)
#define F_DIRTY offsetof(sa_heap_arena, dirty)
#define F_SCAV offsetof(sa_heap_arena, scavenged)

/* ---- free-run bins -------------------------------------------------------- */

static inline unsigned bin_of(size_t npages) { return npages < SA_BINS ? (unsigned)npages : SA_BINS; }

static void bin_insert(sa_mspan *r) {
    unsigned b = bin_of(r->npages);
    r->list = SA_LIST_BIN;
    r->prev = NULL;
    r->next = bins[b];
    if (bins[b]) bins[b]->prev = r;
    bins[b] = r;
    binmask[b / 64] |= (uint64_t)1 << (b % 64);
}

static void bin_remove(sa_mspan *r) {
    unsigned b = bin_of(r->npages);
    if (r->prev) r->prev->next = r->next; else bins[b] = r->next;
    if (r->next) r->next->prev = r->prev;
    if (!bins[b]) binmask[b / 64] &= ~((uint64_t)1 << (b % 64));
    r->next = r->prev = NULL;
    r->list = SA_LIST_NONE;
}

/* A run of at least `npages` pages: the smallest exact bin that fits, else
 * best fit among the big runs. Never scans in-use spans. */
static sa_mspan *find_run(size_t npages) {
    if (npages < SA_BINS) {
        for (unsigned w = (unsigned)npages / 64; w < sizeof binmask / sizeof binmask[0]; w++) {
            uint64_t m = binmask[w];
            if (w == npages / 64) m &= ~(uint64_t)0 << (npages % 64);
            if (m) {
                unsigned b = w * 64 + (unsigned)__builtin_ctzll(m);
                if (b < SA_BINS) return bins[b];
                break;
            }
        }
    }
    sa_mspan *best = NULL;
    for (sa_mspan *r = bins[SA_BINS]; r; r = r->next)
        if (r->npages >= npages && (!best || r->npages < best->npages || (r->npages == best->npages && r->base < best->base)))
            best = r;
    return best;
}

/* Adds [base, base+npages) to the free runs, merging with free neighbours.
 * `r` is a span struct to reuse for the run; NULL only when a neighbour is
 * known to be free (its struct is reused), so this never allocates metadata
 * on a free path, where running out of memory must not be fatal. */
static sa_mspan *insert_free_run(uintptr_t base, size_t npages, sa_mspan *r, uint64_t freed_ns) {
    uintptr_t end = base + (npages << SA_PAGE_SHIFT);
    /* Runs merge while their page count fits a span's 32-bit npages. */
    sa_mspan *prev = sa_span_of_addr(base - SA_PAGE_SIZE);
    if (prev && atomic_load_explicit(&prev->state, SA_RELAXED) == SA_SPAN_FREE &&
        prev->base + ((uintptr_t)prev->npages << SA_PAGE_SHIFT) == base && npages + prev->npages < UINT32_MAX) {
        bin_remove(prev);
        map_set(base - SA_PAGE_SIZE, NULL);
        if (prev->npages == 1) map_set(prev->base, NULL);
        base = prev->base;
        npages += prev->npages;
        if (prev->freed_ns > freed_ns) freed_ns = prev->freed_ns; /* a run is as idle as its newest part */
        if (r) span_struct_free(prev); else r = prev;
    }
    sa_mspan *next = sa_span_of_addr(end);
    if (next && atomic_load_explicit(&next->state, SA_RELAXED) == SA_SPAN_FREE && next->base == end &&
        npages + next->npages < UINT32_MAX) {
        bin_remove(next);
        map_set(end, NULL);
        if (next->npages > 1) map_set(end + ((uintptr_t)(next->npages - 1) << SA_PAGE_SHIFT), NULL);
        npages += next->npages;
        if (next->freed_ns > freed_ns) freed_ns = next->freed_ns;
        if (r) span_struct_free(next); else r = next;
    }
    if (!r) {
        r = span_struct_alloc(0);
        if (!r) sa_fatal("out of memory for span metadata");
    }
    uint8_t bucket = r->bucket; /* a freed span's struct may be larger than a run needs */
    memset(r, 0, offsetof(sa_mspan, words));
    r->bucket = bucket;
    r->base = base;
    r->npages = (uint32_t)npages;
    r->elemsize = npages << SA_PAGE_SHIFT;
    r->freed_ns = freed_ns;
    atomic_store_explicit(&r->state, SA_SPAN_FREE, SA_RELAXED);
    run_set_map(r);
    bin_insert(r);
    return r;
}

/* ---- growing -------------------------------------------------------------- */

#define SA_ARENA_STRUCT_BYTES ((sizeof(sa_heap_arena) + 4095) & ~(size_t)4095)

static bool register_arena(uintptr_t a) {
    size_t i1 = a >> (SA_ARENA_SHIFT + SA_L2_BITS);
    _Atomic(sa_heap_arena *) *l2 = sa_arena_l2(a);
    if (!l2) {
        l2 = sa_os_map(SA_L2_ENTRIES * sizeof(*l2));
        if (!l2) return false;
        sa_stat_add(&sa_heap.metadata_sys, SA_L2_ENTRIES * sizeof(*l2));
        atomic_store_explicit(&sa_heap.l1[i1], l2, SA_RELEASE);
    }
    size_t sz = SA_ARENA_STRUCT_BYTES;
    sa_heap_arena *ha = sa_os_map(sz);
    if (!ha) return false;
    sa_stat_add(&sa_heap.metadata_sys, sz);
    atomic_store_explicit(&l2[(a >> SA_ARENA_SHIFT) & (SA_L2_ENTRIES - 1)], ha, SA_RELEASE);
    arenas_indexed++;
    return true;
}

/* Maps arenas for at least `npages` pages and adds them as one free run. */
static bool grow(size_t npages) {
    if (nchunks == SA_MAX_CHUNKS) return false;
    size_t bytes = npages << SA_PAGE_SHIFT;
    if (bytes >> SA_PAGE_SHIFT != npages || bytes > SA_MAX_ALLOC) return false;
    bytes = (bytes + SA_ARENA_BYTES - 1) & ~(SA_ARENA_BYTES - 1);
    sa_mspan *run = span_struct_alloc(0);
    if (!run) return false;
    char *p = sa_os_map_aligned(bytes, SA_ARENA_BYTES);
    if (!p) { span_struct_free(run); return false; }
    for (size_t off = 0; off < bytes; off += SA_ARENA_BYTES) {
        if (register_arena((uintptr_t)p + off)) continue;
        /* Take back the arenas this grow registered before the memory goes
         * back to the OS: whatever is mapped there later (another
         * allocator's blocks) must not look like SpanAlloc's. */
        for (size_t k = 0; k < off; k += SA_ARENA_BYTES) {
            uintptr_t a = (uintptr_t)p + k;
            _Atomic(sa_heap_arena *) *slot = &sa_arena_l2(a)[(a >> SA_ARENA_SHIFT) & (SA_L2_ENTRIES - 1)];
            sa_heap_arena *ha = atomic_load_explicit(slot, SA_RELAXED);
            atomic_store_explicit(slot, NULL, SA_RELEASE);
            sa_os_unmap(ha, SA_ARENA_STRUCT_BYTES);
            sa_stat_sub(&sa_heap.metadata_sys, SA_ARENA_STRUCT_BYTES);
            arenas_indexed--;
        }
        sa_os_unmap(p, bytes);
        span_struct_free(run);
        return false;
    }
    sa_stat_add(&sa_heap.heap_sys, bytes);
    sa_stat_add(&sa_heap.arenas, bytes / SA_ARENA_BYTES);
    sa_stat_add(&sa_heap.pages_free, bytes >> SA_PAGE_SHIFT);
    sa_stat_add(&sa_heap.pages_unused, bytes >> SA_PAGE_SHIFT);
    SA_POISON(p, bytes); /* free pages; spans unpoison what they hand out */
    chunks[nchunks].base = (uintptr_t)p;
    chunks[nchunks].npages = bytes >> SA_PAGE_SHIFT;
    nchunks++;
    insert_free_run((uintptr_t)p, bytes >> SA_PAGE_SHIFT, run, 0);
    return true;
}

/* ---- span allocation ------------------------------------------------------ */

static size_t scavenge_locked(size_t pages, bool respect_delay, sa_release_cause cause);

/* Bytes counted toward the memory limit (heap lock held, or a relaxed view). */
static uint64_t counted_bytes(void) {
    uint64_t pages = sa_stat(&sa_heap.heap_sys) >> SA_PAGE_SHIFT;
    uint64_t off = sa_stat(&sa_heap.pages_released) + sa_stat(&sa_heap.pages_unused);
    return ((pages > off ? pages - off : 0) << SA_PAGE_SHIFT) + sa_stat(&sa_heap.metadata_sys) - sa_stat(&pool_released_bytes);
}

/* Pages of [base, base + npages) that a span made there adds to the
 * counted memory: never used, or released. */
static size_t uncounted_pages(uintptr_t base, size_t npages) {
    return npages - page_bits(base, npages, F_USED, BITS_COUNT) + page_bits(base, npages, F_SCAV, BITS_COUNT);
}

/* The memory limit, before a span of `npages` is made (heap lock held):
 * over it, mcentral's empty spans come back and idle pages are released
 * (the scavenger is asked for idle caches too); still over, a hard limit
 * refuses (false), a soft one lets the heap pass and counts it. */
static bool within_limit(size_t npages) {
    size_t limit = sa_memlimit_bytes();
    if (SA_LIKELY(limit == SIZE_MAX)) return true;
    uint64_t add = (uint64_t)npages << SA_PAGE_SHIFT;
    if (counted_bytes() + add <= limit) return true;
    sa_memlimit_count(SA_LIMIT_HIT);
    sa_central_reclaim_empty_heap_locked();
    uint64_t total = counted_bytes() + add, over = total > limit ? total - limit : 0;
    /* Release a sixteenth of the limit more than needed, so the next spans
     * do not each come back here. */
    if (over) scavenge_locked((size_t)((over + limit / 16) >> SA_PAGE_SHIFT) + 1, false, SA_RELEASE_LIMIT);
    atomic_store_explicit(&scavenger_wanted, true, SA_RELAXED);
    if (counted_bytes() + add <= limit) return true;
    if (sa_memlimit_is_hard()) { sa_memlimit_count(SA_LIMIT_REFUSAL); return false; }
    sa_memlimit_count(SA_LIMIT_OVERSHOOT);
    return true;
}

sa_mspan *sa_heap_alloc_span(size_t npages, size_t align_pages, int spanclass, sa_mcache *owner) {
    int cls = spanclass >> 1;
    size_t need = npages + (align_pages > 1 ? align_pages - 1 : 0);
    if (need < npages || need > (SA_MAX_ALLOC >> SA_PAGE_SHIFT)) return NULL;
    sa_lock(&sa_heap.lock);
    sa_mspan *run = find_run(need);
    /* Before mapping more, take back the empty spans mcentral keeps. */
    if (!run && sa_central_reclaim_empty_heap_locked()) run = find_run(need);
    if (SA_UNLIKELY(sa_memlimit_bytes() != SIZE_MAX)) {
        /* The limit counts what the span adds: its pages that are not
         * resident yet (a new mapping's, or released ones). */
        size_t adds = run ? uncounted_pages(run->base, npages < run->npages ? npages : run->npages) : npages;
        if (adds && !within_limit(adds)) {
            sa_unlock(&sa_heap.lock);
            sa_scavenger_poke_after_unlock();
            return NULL;
        }
        if (adds) run = find_run(need); /* the limit's reclaim may have merged runs */
    }
    if (!run) {
        if (!grow(need)) { sa_unlock(&sa_heap.lock); return NULL; }
        run = find_run(need);
    }
    sa_mspan *s = span_struct_alloc(cls);
    sa_mspan *extra = span_struct_alloc(0);
    if (!s || !extra) {
        if (s) span_struct_free(s);
        if (extra) span_struct_free(extra);
        sa_unlock(&sa_heap.lock);
        return NULL;
    }
    bin_remove(run);
    uintptr_t align_bytes = (uintptr_t)(align_pages ? align_pages : 1) << SA_PAGE_SHIFT;
    uintptr_t start = (run->base + align_bytes - 1) & ~(align_bytes - 1);
    size_t front = (start - run->base) >> SA_PAGE_SHIFT;
    size_t back = run->npages - front - npages;
    uintptr_t run_end = run->base + ((uintptr_t)run->npages << SA_PAGE_SHIFT);
    uint64_t freed_ns = run->freed_ns;
    if (front) {
        run->npages = (uint32_t)front;
        run->elemsize = front << SA_PAGE_SHIFT;
        run_set_map(run);
        bin_insert(run);
        run = NULL;
    }
    if (back) {
        sa_mspan *b = run ? run : extra;
        if (b == extra) extra = NULL;
        uint8_t bucket = b->bucket; /* the run's struct may be a freed span's, larger */
        memset(b, 0, offsetof(sa_mspan, words));
        b->bucket = bucket;
        b->base = run_end - ((uintptr_t)back << SA_PAGE_SHIFT);
        b->npages = (uint32_t)back;
        b->elemsize = back << SA_PAGE_SHIFT;
        b->freed_ns = freed_ns;
        atomic_store_explicit(&b->state, SA_SPAN_FREE, SA_RELAXED);
        run_set_map(b);
        bin_insert(b);
        if (b == run) run = NULL;
    }
    if (run) span_struct_free(run);
    if (extra) span_struct_free(extra);

    s->base = start;
    s->npages = (uint32_t)npages;
    atomic_store_explicit(&s->id, sa_heap_new_span_id(), SA_RELAXED);
    size_t used = page_bits(start, npages, F_USED, BITS_COUNT);
    s->fresh = used == 0;
    sa_stat_sub(&sa_heap.pages_unused, npages - used);
    s->needzero = page_bits(start, npages, F_DIRTY, BITS_SET) != npages; /* some page was dirty */
    page_bits(start, npages, F_USED, BITS_SET);
    size_t released = page_bits(start, npages, F_SCAV, BITS_CLEAR);
    if (released) sa_stat_sub(&sa_heap.pages_released, released);
    if (cls) {
        sa_span_init_small(s, spanclass);
        atomic_store_explicit(&s->owner, owner, SA_RELAXED);
        atomic_store_explicit(&s->state, SA_SPAN_SMALL, SA_RELAXED);
    } else {
        s->spanclass = (uint8_t)spanclass;
        s->sizeclass = 0;
        s->elemsize = npages << SA_PAGE_SHIFT;
        s->nelems = 1;
        atomic_store_explicit(&s->allocCount, 1, SA_RELAXED);
        atomic_store_explicit(&s->state, SA_SPAN_LARGE, SA_RELAXED);
        sa_stat_add(&sa_heap.large_allocs, 1);
        sa_stat_add(&sa_heap.large_bytes_alloc, s->elemsize);
        sa_stat_add(&sa_heap.large_live_bytes, s->elemsize);
    }
    map_set_range(start, npages, s);
    sa_stat_add(&sa_heap.pages_inuse, npages);
    sa_stat_sub(&sa_heap.pages_free, npages);
    sa_stat_add(&sa_heap.spans_inuse, 1);
    sa_stat_add(s->fresh ? &sa_heap.spans_fresh : &sa_heap.spans_reused, 1);
    sa_unlock(&sa_heap.lock);
    return s;
}

static void pace_scavenger_locked(void);

void sa_heap_free_span(sa_mspan *s) {
    sa_lock(&sa_heap.lock);
    sa_heap_free_span_locked(s);
    pace_scavenger_locked();
    sa_unlock(&sa_heap.lock);
    sa_scavenger_poke_after_unlock();
}

void sa_heap_free_span_locked(sa_mspan *s) {
    uintptr_t base = s->base;
    size_t npages = s->npages;
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    if (SA_UNLIKELY(st != SA_SPAN_SMALL && st != SA_SPAN_LARGE))
        sa_fatal("double free of pointer %p (span already freed)", (void *)base);
    if (st == SA_SPAN_LARGE) {
        sa_stat_add(&sa_heap.large_frees, 1);
        sa_stat_add(&sa_heap.large_bytes_freed, s->elemsize);
        sa_stat_sub(&sa_heap.large_live_bytes, s->elemsize);
    }
    map_set_range(base, npages, NULL);
    SA_POISON(base, npages << SA_PAGE_SHIFT);
    if (atomic_load_explicit(&s->profbits, SA_RELAXED)) sa_prof_span_released(s);
    atomic_store_explicit(&s->id, 0, SA_RELAXED);
    atomic_store_explicit(&s->owner, NULL, SA_RELAXED);
    sa_stat_sub(&sa_heap.pages_inuse, npages);
    sa_stat_add(&sa_heap.pages_free, npages);
    sa_stat_sub(&sa_heap.spans_inuse, 1);
    sa_stat_add(&sa_heap.spans_returned, 1);
    insert_free_run(base, npages, s, sa_os_now_ns());
}

bool sa_heap_resize_large(sa_mspan *s, size_t npages) {
    if (npages == s->npages) return true;
    bool ok = false;
    sa_lock(&sa_heap.lock);
    uintptr_t end = s->base + ((uintptr_t)s->npages << SA_PAGE_SHIFT);
    if (npages < s->npages) {
        size_t tail = s->npages - npages;
        sa_mspan *run = span_struct_alloc(0);
        if (!run) { sa_unlock(&sa_heap.lock); return false; }
        map_set_range(end - (tail << SA_PAGE_SHIFT), tail, NULL);
        SA_POISON(end - (tail << SA_PAGE_SHIFT), tail << SA_PAGE_SHIFT);
        s->npages = (uint32_t)npages;
        s->elemsize = npages << SA_PAGE_SHIFT;
        sa_stat_sub(&sa_heap.large_live_bytes, tail << SA_PAGE_SHIFT);
        sa_stat_sub(&sa_heap.pages_inuse, tail);
        sa_stat_add(&sa_heap.pages_free, tail);
        insert_free_run(end - (tail << SA_PAGE_SHIFT), tail, run, sa_os_now_ns());
        ok = true;
    } else {
        size_t more = npages - s->npages;
        sa_mspan *next = sa_span_of_addr(end);
        if (next && atomic_load_explicit(&next->state, SA_RELAXED) == SA_SPAN_FREE && next->base == end &&
            next->npages >= more) {
            bin_remove(next);
            size_t rest = next->npages - more;
            map_set(end, NULL);
            map_set(end + ((uintptr_t)(next->npages - 1) << SA_PAGE_SHIFT), NULL);
            sa_stat_sub(&sa_heap.pages_unused, page_bits(end, more, F_USED, BITS_SET));
            page_bits(end, more, F_DIRTY, BITS_SET);
            size_t released = page_bits(end, more, F_SCAV, BITS_CLEAR);
            if (released) sa_stat_sub(&sa_heap.pages_released, released);
            map_set_range(end, more, s);
            if (rest) insert_free_run(end + (more << SA_PAGE_SHIFT), rest, next, next->freed_ns);
            else span_struct_free(next);
            s->npages = (uint32_t)npages;
            s->elemsize = npages << SA_PAGE_SHIFT;
            sa_stat_add(&sa_heap.large_live_bytes, more << SA_PAGE_SHIFT);
            sa_stat_add(&sa_heap.large_bytes_alloc, more << SA_PAGE_SHIFT);
            sa_stat_add(&sa_heap.pages_inuse, more);
            sa_stat_sub(&sa_heap.pages_free, more);
            ok = true;
        }
    }
    sa_unlock(&sa_heap.lock);
    return ok;
}

/* ---- the scavenger -------------------------------------------------------- */

/* Whether page p of a free run may be resident: used and not released
 * (pages never used since they were mapped are not resident). */
static inline bool page_resident(uintptr_t p) {
    return page_bits(p, 1, F_USED, BITS_COUNT) && !page_bits(p, 1, F_SCAV, BITS_COUNT);
}

/* Releases the resident pages of run r, trying up to `want` pages; returns
 * the pages released. */
static size_t scavenge_run(sa_mspan *r, size_t want) {
    size_t done = 0, tried = 0;
    uintptr_t p = r->base, end = r->base + ((uintptr_t)r->npages << SA_PAGE_SHIFT);
    while (p < end && tried < want) {
        /* find the next unscavenged page, then the extent of the stretch */
        while (p < end && !page_resident(p)) p += SA_PAGE_SIZE;
        uintptr_t q = p;
        while (q < end && tried + ((q - p) >> SA_PAGE_SHIFT) < want && page_resident(q)) q += SA_PAGE_SIZE;
        if (q > p) {
            /* Only the 8 KiB pages inside the OS pages that madvise really
             * released read as zero now (OS pages may be larger, and madvise
             * fails under mlockall): only they become released and clean. */
            uintptr_t rel = 0;
            size_t len = sa_os_release((void *)p, q - p, &rel);
            uintptr_t lo = (rel + SA_PAGE_SIZE - 1) & ~(uintptr_t)(SA_PAGE_SIZE - 1);
            uintptr_t hi = (rel + len) & ~(uintptr_t)(SA_PAGE_SIZE - 1);
            if (len && hi > lo) {
                size_t n = (hi - lo) >> SA_PAGE_SHIFT;
                page_bits(lo, n, F_SCAV, BITS_SET);
                page_bits(lo, n, F_DIRTY, BITS_CLEAR);
                done += n;
            }
            /* `want` counts pages tried, so a run that cannot be released
             * does not keep the loop going. */
            tried += (q - p) >> SA_PAGE_SHIFT;
        }
        p = q;
    }
    return done;
}

static void count_released(size_t pages, sa_release_cause cause) {
    if (!pages) return;
    sa_stat_add(&sa_heap.pages_released, pages);
    sa_stat_add(&sa_heap.pages_scavenged, pages);
    sa_stat_add(&sa_heap.pages_released_by[cause], pages);
    sa_stat_add(&sa_heap.scavenge_runs, 1);
}

/* Releases with the heap lock held (sa_scavenge, the limit, the pacer of
 * SA_SCAVENGE_ON): madvise under the lock. */
static size_t scavenge_locked(size_t pages, bool respect_delay, sa_release_cause cause) {
    uint64_t now = sa_os_now_ns(), delay = (uint64_t)scav_cfg.delay_ms * 1000000u;
    size_t done = 0;
    /* Largest runs first: they cost the fewest madvise calls per page. */
    for (int b = SA_BINS; b >= 1 && done < pages; b--) {
        for (sa_mspan *r = bins[b]; r && done < pages; r = r->next) {
            if (respect_delay && now - r->freed_ns < delay) continue;
            done += scavenge_run(r, pages - done);
        }
    }
    count_released(done, cause);
    return done;
}

/* The pacer, on the page heap's slow path after a free: in SA_SCAVENGE_ON
 * it releases what exceeds the retained amount itself (at most once per
 * quarter of the delay); in SA_SCAVENGE_BACKGROUND it only asks the
 * background scavenger, so a free never waits for madvise. */
static void pace_scavenger_locked(void) {
    if (scav_cfg.mode == SA_SCAVENGE_OFF) return;
    uint64_t kept_spans, kept_pages, reuses;
    sa_central_empty_stats(&kept_spans, &kept_pages, &reuses);
    /* Empty spans mcentral keeps are idle memory too. */
    uint64_t idle = (sa_stat(&sa_heap.pages_free) - sa_stat(&sa_heap.pages_released) -
                     sa_stat(&sa_heap.pages_unused) + kept_pages) << SA_PAGE_SHIFT;
    uint64_t inuse = (sa_stat(&sa_heap.pages_inuse) - kept_pages) << SA_PAGE_SHIFT;
    uint64_t limit = inuse / 100 * scav_cfg.retain_percent;
    if (limit < scav_cfg.retain_bytes) limit = scav_cfg.retain_bytes;
    if (scav_cfg.mode == SA_SCAVENGE_BACKGROUND && !sa_scavenger_failed()) {
        /* Over the goal, or over the floor with no scavenger yet (once the
         * program is idle, the goal is the floor, and only the thread can
         * see that it went idle). */
        bool running = sa_scavenger_running();
        if (idle > limit || (idle > scav_cfg.floor_bytes && !running)) {
            /* A running scavenger looks again within a quarter of the
             * delay anyway: wake it no more often than that. */
            uint64_t now = sa_os_now_ns();
            if (running && now - last_pace_ns < (uint64_t)scav_cfg.delay_ms * 250000u) return;
            last_pace_ns = now;
            atomic_store_explicit(&scavenger_wanted, true, SA_RELAXED);
        }
        return;
    }
    if (idle <= limit) return;
    uint64_t now = sa_os_now_ns();
    if (now - last_pace_ns < (uint64_t)scav_cfg.delay_ms * 250000u) return;
    last_pace_ns = now;
    /* Over the limit: the kept empty spans go first (into free runs, to be
     * released once they have been idle for the delay). */
    if (kept_pages) sa_central_reclaim_empty_heap_locked();
    scavenge_locked((size_t)((idle - limit) >> SA_PAGE_SHIFT), true, SA_RELEASE_PACER);
}

size_t sa_heap_scavenge(size_t bytes, bool respect_delay, sa_release_cause cause) {
    sa_lock(&sa_heap.lock);
    size_t pages = bytes == SIZE_MAX ? SIZE_MAX : (bytes + SA_PAGE_SIZE - 1) >> SA_PAGE_SHIFT;
    size_t done = scavenge_locked(pages, respect_delay, cause);
    sa_unlock(&sa_heap.lock);
    return done << SA_PAGE_SHIFT;
}

/* ---- release outside the lock (the background scavenger) ------------------ */

/* Pages released per trip out of the bins: a bounded time (about a
 * quarter of a millisecond of madvise here) during which the run's pages
 * are out of reach of allocation. */
#define SA_RELEASE_CHUNK 512
/* Stretches of resident pages one trip releases. */
#define SA_RELEASE_STRETCHES 32

/* Splits free run r (taken out of its bin) so that [base, base + npages)
 * becomes a run of its own, returned; the parts before and after go back
 * on the bins with r's age. NULL, with r back on its bin, when no span
 * struct can be had. */
static sa_mspan *carve_run(sa_mspan *r, uintptr_t base, size_t npages) {
    uintptr_t end = r->base + ((uintptr_t)r->npages << SA_PAGE_SHIFT), cend = base + (npages << SA_PAGE_SHIFT);
    size_t front = (base - r->base) >> SA_PAGE_SHIFT, back = (end - cend) >> SA_PAGE_SHIFT;
    sa_mspan *f = front ? span_struct_alloc(0) : NULL, *b = back ? span_struct_alloc(0) : NULL;
    if ((front && !f) || (back && !b)) {
        if (f) span_struct_free(f);
        if (b) span_struct_free(b);
        return NULL;
    }
    uint64_t age = r->freed_ns;
    bin_remove(r);
    sa_mspan *parts[2] = {f, b};
    uintptr_t bases[2] = {r->base, cend};
    size_t lens[2] = {front, back};
    for (int i = 0; i < 2; i++) {
        sa_mspan *x = parts[i];
        if (!x) continue;
        x->base = bases[i];
        x->npages = (uint32_t)lens[i];
        x->elemsize = lens[i] << SA_PAGE_SHIFT;
        x->freed_ns = age;
        atomic_store_explicit(&x->state, SA_SPAN_FREE, SA_RELAXED);
        run_set_map(x);
        bin_insert(x);
    }
    r->base = base;
    r->npages = (uint32_t)npages;
    r->elemsize = npages << SA_PAGE_SHIFT;
    run_set_map(r);
    return r;
}

/* A run worth releasing: the largest whose pages idled for the delay and
 * hold resident ones; the oldest among equals. Sets *first to its first
 * resident page. */
static sa_mspan *pick_release_run(bool respect_delay, uint64_t now, uintptr_t *first) {
    uint64_t delay = (uint64_t)scav_cfg.delay_ms * 1000000u;
    for (int b = SA_BINS; b >= 1; b--) {
        sa_mspan *best = NULL;
        uintptr_t best_first = 0;
        for (sa_mspan *r = bins[b]; r; r = r->next) {
            if (respect_delay && now - r->freed_ns < delay) continue;
            if (best && (r->npages < best->npages || (r->npages == best->npages && r->freed_ns >= best->freed_ns)))
                continue;
            if (page_bits(r->base, r->npages, F_USED, BITS_COUNT) == page_bits(r->base, r->npages, F_SCAV, BITS_COUNT))
                continue; /* nothing resident */
            uintptr_t p = r->base;
            while (!page_resident(p)) p += SA_PAGE_SIZE;
            best = r;
            best_first = p;
        }
        if (best) {
            *first = best_first;
            return best;
        }
    }
    return NULL;
}

size_t sa_heap_release(size_t pages, bool respect_delay, sa_release_cause cause) {
    size_t done = 0, tried = 0; /* a run madvise refuses counts as tried, so the loop ends */
    while (tried < pages) {
        sa_lock(&sa_heap.lock);
        uintptr_t first;
        sa_mspan *r = pick_release_run(respect_delay, sa_os_now_ns(), &first);
        if (!r) {
            sa_unlock(&sa_heap.lock);
            break;
        }
        uintptr_t end = r->base + ((uintptr_t)r->npages << SA_PAGE_SHIFT);
        size_t n = (end - first) >> SA_PAGE_SHIFT, want = pages - tried;
        if (want > SA_RELEASE_CHUNK) want = SA_RELEASE_CHUNK;
        if (n > want) n = want;
        uint64_t age = r->freed_ns;
        sa_mspan *c = carve_run(r, first, n);
        if (!c) { /* no metadata for the split: release under the lock */
            size_t k = scavenge_run(r, want);
            count_released(k, cause);
            sa_unlock(&sa_heap.lock);
            done += k;
            tried += k ? k : want;
            continue;
        }
        /* Taken out: no allocation or coalescing touches it meanwhile (its
         * state is not FREE), so the plan made here stays true. */
        atomic_store_explicit(&c->state, SA_SPAN_RELEASING, SA_RELAXED);
        typedef struct { uintptr_t lo, hi; } stretch;
        stretch plan[SA_RELEASE_STRETCHES];
        int nplan = 0;
        for (uintptr_t p = c->base, e = c->base + ((uintptr_t)c->npages << SA_PAGE_SHIFT); p < e && nplan < SA_RELEASE_STRETCHES;) {
            while (p < e && !page_resident(p)) p += SA_PAGE_SIZE;
            uintptr_t q = p;
            while (q < e && page_resident(q)) q += SA_PAGE_SIZE;
            if (q > p) plan[nplan++] = (stretch){p, q};
            p = q;
        }
        sa_unlock(&sa_heap.lock);

        uintptr_t rel[SA_RELEASE_STRETCHES];
        size_t len[SA_RELEASE_STRETCHES];
        for (int i = 0; i < nplan; i++) len[i] = sa_os_release((void *)plan[i].lo, plan[i].hi - plan[i].lo, &rel[i]);

        sa_lock(&sa_heap.lock);
        size_t k = 0;
        for (int i = 0; i < nplan; i++) {
            /* Only the 8 KiB pages inside the OS pages madvise released. */
            uintptr_t lo = (rel[i] + SA_PAGE_SIZE - 1) & ~(uintptr_t)(SA_PAGE_SIZE - 1);
            uintptr_t hi = (rel[i] + len[i]) & ~(uintptr_t)(SA_PAGE_SIZE - 1);
            if (len[i] && hi > lo) {
                size_t m = (hi - lo) >> SA_PAGE_SHIFT;
                page_bits(lo, m, F_SCAV, BITS_SET);
                page_bits(lo, m, F_DIRTY, BITS_CLEAR);
                k += m;
            }
        }
        count_released(k, cause);
        /* Back as a free run: its end pages stop mapping to it first, as a
         * freed span's pages do, since a merge makes them interior. */
        map_set(c->base, NULL);
        map_set(c->base + ((uintptr_t)(c->npages - 1) << SA_PAGE_SHIFT), NULL);
        insert_free_run(c->base, c->npages, c, age);
        sa_unlock(&sa_heap.lock);
        done += k;
        tried += k ? k : n;
        if (!k && !nplan) break;
    }
    return done;
}

void sa_heap_usage_read(sa_heap_usage *u) {
    uint64_t kept_spans, kept_pages, reuses;
    sa_central_empty_stats(&kept_spans, &kept_pages, &reuses);
    uint64_t freep = sa_stat(&sa_heap.pages_free), off = sa_stat(&sa_heap.pages_released) + sa_stat(&sa_heap.pages_unused);
    uint64_t inuse = sa_stat(&sa_heap.pages_inuse);
    u->kept_bytes = kept_pages << SA_PAGE_SHIFT;
    u->idle_bytes = ((freep > off ? freep - off : 0) + kept_pages) << SA_PAGE_SHIFT;
    u->inuse_bytes = (inuse > kept_pages ? inuse - kept_pages : 0) << SA_PAGE_SHIFT;
    u->counted_bytes = counted_bytes();
    u->activity = sa_stat(&sa_heap.spans_fresh) + sa_stat(&sa_heap.spans_reused) + sa_stat(&sa_heap.large_allocs) + reuses;
}

void sa_heap_config(sa_scavenge_config *get, const sa_scavenge_config *set) {
    sa_lock(&sa_heap.lock);
    if (get) *get = scav_cfg;
    if (set) scav_cfg = *set;
    sa_unlock(&sa_heap.lock);
}

/* ---- checking ------------------------------------------------------------- */

#define CHECK(cond, ...) do { if (!(cond)) { snprintf(err, errlen, __VA_ARGS__); return -1; } } while (0)

/* Caller holds the heap lock; takes central locks one at a time. */
/* The arena index against the chunks: every arena of every chunk is
 * indexed, and no entry is set beyond those (register_arena counts them). */
static int check_arena_index(char *err, size_t errlen) {
    uint64_t n = 0;
    for (size_t c = 0; c < nchunks; c++) {
        for (uintptr_t a = chunks[c].base; a < chunks[c].base + (chunks[c].npages << SA_PAGE_SHIFT); a += SA_ARENA_BYTES) {
            CHECK(sa_arena_of(a), "chunk %zu: arena %p is not in the arena index", c, (void *)a);
            n++;
        }
    }
    CHECK(n == sa_stat(&sa_heap.arenas) && n == arenas_indexed,
          "arena index: %llu entries set, %llu arenas in chunks, %llu arenas mapped", (unsigned long long)arenas_indexed,
          (unsigned long long)n, (unsigned long long)sa_stat(&sa_heap.arenas));
    return 0;
}

/* A page's used/dirty/scavenged bits: dirty and scavenged pages have been
 * used; a scavenged page is clean; every page of an in-use span is used and
 * dirty (a span may write all of its pages). */
static int check_page_bits(uintptr_t p, size_t npages, bool inuse, char *err, size_t errlen) {
    for (size_t k = 0; k < npages; k++, p += SA_PAGE_SIZE) {
        bool used = page_bits(p, 1, F_USED, BITS_COUNT), dirty = page_bits(p, 1, F_DIRTY, BITS_COUNT);
        bool scav = page_bits(p, 1, F_SCAV, BITS_COUNT);
        CHECK(!(dirty && !used), "page %p is dirty but was never used", (void *)p);
        CHECK(!(scav && dirty), "page %p is both released and dirty", (void *)p);
        CHECK(!inuse || (used && dirty && !scav), "page %p of an in-use span: used %d dirty %d released %d",
              (void *)p, used, dirty, scav);
    }
    return 0;
}

int sa_heap_check(char *err, size_t errlen, bool quiescent, uint64_t *live_objects, uint64_t *small_spans) {
    uint64_t inuse = 0, freep = 0, released = 0, unused = 0, live = 0, nsmall = 0, nspans = 0, mapped = 0;
    if (check_arena_index(err, errlen)) return -1;
    for (size_t c = 0; c < nchunks; c++) {
        uintptr_t p = chunks[c].base, end = p + (chunks[c].npages << SA_PAGE_SHIFT);
        mapped += chunks[c].npages;
        while (p < end) {
            sa_mspan *s = sa_span_of_addr(p);
            CHECK(s, "page %p maps to no span", (void *)p);
            CHECK(s->base == p, "page %p maps to span at %p, expected a span starting here", (void *)p, (void *)s->base);
            uintptr_t last = p + ((uintptr_t)(s->npages - 1) << SA_PAGE_SHIFT);
            int st = atomic_load_explicit(&s->state, SA_RELAXED);
            if (st == SA_SPAN_FREE || st == SA_SPAN_RELEASING) {
                /* A run the scavenger took out to release is off the bins
                 * and is not coalesced until it is put back. */
                CHECK(sa_span_of_addr(last) == s, "free run %p: last page does not map to it", (void *)p);
                for (uintptr_t q = p + SA_PAGE_SIZE; q < last; q += SA_PAGE_SIZE)
                    CHECK(sa_span_of_addr(q) == NULL, "free run %p: interior page %p mapped", (void *)p, (void *)q);
                if (st == SA_SPAN_FREE) {
                    CHECK(s->list == SA_LIST_BIN, "free run %p not on a bin", (void *)p);
                    bool found = false;
                    for (sa_mspan *r = bins[bin_of(s->npages)]; r; r = r->next) if (r == s) { found = true; break; }
                    CHECK(found, "free run %p (%u pages) missing from bin %u", (void *)p, s->npages, bin_of(s->npages));
                    sa_mspan *nx = sa_span_of_addr(last + SA_PAGE_SIZE);
                    CHECK(!(nx && nx->base == last + SA_PAGE_SIZE && atomic_load_explicit(&nx->state, SA_RELAXED) == SA_SPAN_FREE),
                          "free runs %p and %p are adjacent (not coalesced)", (void *)p, (void *)nx->base);
                }
                freep += s->npages;
                released += page_bits(p, s->npages, F_SCAV, BITS_COUNT);
                unused += s->npages - page_bits(p, s->npages, F_USED, BITS_COUNT);
                if (check_page_bits(p, s->npages, false, err, errlen)) return -1;
            } else {
                CHECK(st == SA_SPAN_SMALL || st == SA_SPAN_LARGE, "span %p has state %d", (void *)p, st);
                for (uintptr_t q = p; q <= last; q += SA_PAGE_SIZE)
                    CHECK(sa_span_of_addr(q) == s, "span %p: page %p does not map to it", (void *)p, (void *)q);
                CHECK(page_bits(p, s->npages, F_SCAV, BITS_COUNT) == 0, "span %p has scavenged pages", (void *)p);
                if (check_page_bits(p, s->npages, true, err, errlen)) return -1;
                inuse += s->npages;
                nspans++;
                if (st == SA_SPAN_SMALL) {
                    int cls = s->sizeclass;
                    CHECK(cls >= 1 && cls < SA_NUM_CLASSES && s->npages == sa_class_npages_tab[cls] &&
                          s->elemsize == sa_class_size_tab[cls] && s->nelems == sa_class_nelems_tab[cls],
                          "span %p: geometry does not match class %d", (void *)p, cls);
                    nsmall++;
                    /* Spans cached by other threads change under us unless the
                     * caller promised quiescence: count and check only ours and
                     * uncached ones (under their mcentral's lock) otherwise. */
                    sa_mcache *o = atomic_load_explicit(&s->owner, SA_ACQUIRE);
                    if (o == sa_tls_cache || quiescent) {
                        if (sa_span_check(s, err, errlen)) return -1;
                        live += sa_span_count_allocated(s);
                    } else if (o == NULL) {
                        int rc = 0;
                        sa_lock(&sa_central[s->spanclass].lock);
                        if (atomic_load_explicit(&s->owner, SA_ACQUIRE) == NULL) {
                            rc = sa_span_check(s, err, errlen);
                            live += sa_span_count_allocated(s);
                        }
                        sa_unlock(&sa_central[s->spanclass].lock);
                        if (rc) return -1;
                    }
                } else {
                    CHECK(s->nelems == 1 && s->elemsize == (size_t)s->npages << SA_PAGE_SHIFT, "large span %p geometry", (void *)p);
                    live++;
                }
            }
            p = last + SA_PAGE_SIZE;
        }
        CHECK(p == end, "chunk %zu: spans overrun its end", c);
    }
    CHECK(inuse == sa_stat(&sa_heap.pages_inuse), "pages in use: counted %llu, stats say %llu",
          (unsigned long long)inuse, (unsigned long long)sa_stat(&sa_heap.pages_inuse));
    CHECK(freep == sa_stat(&sa_heap.pages_free), "free pages: counted %llu, stats say %llu",
          (unsigned long long)freep, (unsigned long long)sa_stat(&sa_heap.pages_free));
    CHECK(released == sa_stat(&sa_heap.pages_released), "released pages: counted %llu, stats say %llu",
          (unsigned long long)released, (unsigned long long)sa_stat(&sa_heap.pages_released));
    CHECK(unused == sa_stat(&sa_heap.pages_unused), "free pages never used: counted %llu, stats say %llu",
          (unsigned long long)unused, (unsigned long long)sa_stat(&sa_heap.pages_unused));
    CHECK(inuse + freep == mapped, "pages: %llu in use + %llu free, %llu mapped", (unsigned long long)inuse,
          (unsigned long long)freep, (unsigned long long)mapped);
    CHECK(mapped << SA_PAGE_SHIFT == sa_stat(&sa_heap.heap_sys), "heap: %llu pages mapped, HeapSys %llu",
          (unsigned long long)mapped, (unsigned long long)sa_stat(&sa_heap.heap_sys));
    CHECK(nspans == sa_stat(&sa_heap.spans_inuse), "spans in use: counted %llu, stats say %llu",
          (unsigned long long)nspans, (unsigned long long)sa_stat(&sa_heap.spans_inuse));
    for (unsigned b = 1; b <= SA_BINS; b++) {
        CHECK(!bins[b] == !(binmask[b / 64] & ((uint64_t)1 << (b % 64))), "bin %u mask wrong", b);
        for (sa_mspan *r = bins[b]; r; r = r->next)
            CHECK(atomic_load_explicit(&r->state, SA_RELAXED) == SA_SPAN_FREE && bin_of(r->npages) == b &&
                  sa_span_of_addr(r->base) == r, "bin %u holds a stale run", b);
    }
    *live_objects = live;
    *small_spans = nsmall;
    return 0;
}
