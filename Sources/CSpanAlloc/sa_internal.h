/*
 * sa_internal.h — the structures shared by the allocator's components.
 * See include/spanalloc.h for the overview. Each .c file says which part of
 * these structures it owns.
 */
#ifndef SA_INTERNAL_H
#define SA_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spanalloc.h"
#include "sa_sizeclasses.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SA_LIKELY(x) __builtin_expect(!!(x), 1)
#define SA_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Fast paths are inlined into their callers; slow paths stay out of line so
 * the fast path's code stays small (snmalloc's convention). */
#define SA_FAST_PATH static inline __attribute__((always_inline))
#define SA_SLOW_PATH __attribute__((noinline, cold))
#define SA_HIDDEN __attribute__((visibility("hidden")))

/* freeindex and allocBits are written only by the span's owner (or under
 * its mcentral's lock) but read by remote frees to validate the pointer:
 * writes go through SA_STORE (a plain mov on x86-64), remote reads through
 * atomic loads; the owner's own reads stay plain. */
#define SA_STORE(lv, v) __atomic_store_n(&(lv), (v), __ATOMIC_RELAXED)
#define SA_RELAXED memory_order_relaxed
#define SA_ACQUIRE memory_order_acquire
#define SA_RELEASE memory_order_release
#define SA_SEQCST memory_order_seq_cst
#define SA_ACQ_REL memory_order_acq_rel

/* ---- geometry ----------------------------------------------------------- */

#define SA_PAGE_SHIFT 13                         /* Go's _PageShift: 8 KiB span pages */
#define SA_ARENA_SHIFT 26                        /* 64 MiB arenas, Go's heapArenaBytes on 64-bit Linux */
#define SA_ARENA_BYTES ((uintptr_t)1 << SA_ARENA_SHIFT)
#define SA_PAGES_PER_ARENA (SA_ARENA_BYTES >> SA_PAGE_SHIFT) /* 8192 */
#define SA_ADDR_BITS 48                          /* x86-64 / arm64 user address space */
/* Arena index, as Go's on linux/amd64 (arenaL1Bits = 0, arenaL2Bits = 22):
 * a one-entry L1 and a 4M-entry L2 (32 MiB of address space, committed only
 * where arenas exist), so a lookup is two loads that depend on the pointer. */
#define SA_L2_BITS 22
#define SA_L1_BITS (SA_ADDR_BITS - SA_ARENA_SHIFT - SA_L2_BITS)
#define SA_L1_ENTRIES ((size_t)1 << SA_L1_BITS)
#define SA_L2_ENTRIES ((size_t)1 << SA_L2_BITS)
/* Largest request served (spanalloc.h's SA_MAX_SIZE). A span's page count
 * is 32 bits, and a served span writes one page-map entry per 8 KiB page, so
 * the bound keeps the page map of the largest span at 256 MiB. */
#define SA_MAX_ALLOC ((size_t)SA_MAX_SIZE)
_Static_assert((SA_MAX_ALLOC >> SA_PAGE_SHIFT) + ((size_t)1 << 30 >> SA_PAGE_SHIFT) < UINT32_MAX,
               "a span's page count, alignment padding included, fits its 32-bit npages");

/* ---- os (sa_os.c) -------------------------------------------------------- */

SA_HIDDEN size_t sa_os_page_size(void);
/* Maps `size` bytes aligned to `align` (a power of two), zero-filled, or NULL. */
SA_HIDDEN void *sa_os_map_aligned(size_t size, size_t align);
SA_HIDDEN void *sa_os_map(size_t size);
SA_HIDDEN void sa_os_unmap(void *p, size_t size);
/* Returns the physical pages of the whole OS pages inside [p, p+size) to
 * the OS; they read as zero later. Returns the bytes released, from *start
 * (0 when nothing was: the range holds no whole OS page, or madvise failed). */
SA_HIDDEN size_t sa_os_release(void *p, size_t size, uintptr_t *start);
SA_HIDDEN uint64_t sa_os_now_ns(void);
/* CPU time of the calling thread. */
SA_HIDDEN uint64_t sa_os_thread_cpu_ns(void);
/* membarrier(PRIVATE_EXPEDITED): registration (once per process, again in a
 * fork child), then a full memory barrier on every running thread of the
 * process. False when the kernel has none. */
SA_HIDDEN bool sa_os_membarrier_register(void);
SA_HIDDEN bool sa_os_membarrier(void);
/* Stops the process with a message (no allocation). */
__attribute__((noreturn, format(printf, 1, 2))) SA_HIDDEN void sa_fatal(const char *fmt, ...);
/* Writes a line to stderr without allocating. */
__attribute__((format(printf, 1, 2))) SA_HIDDEN void sa_log(const char *fmt, ...);

/* ---- configuration (sa_config.c) ----------------------------------------- */

/* Reads SPANALLOC once (a no-op afterwards); called before the heap's first
 * cache or large span and by the configuration getters, never under a lock. */
SA_HIDDEN void sa_config_load(void);
/* Whether the core prints the stats=1 report at exit (the override prints
 * its own instead). */
SA_HIDDEN void sa_env_report_native(bool yes);

/* ---- locks --------------------------------------------------------------- */

/* Lock order (rank): the stats lock, the scavenger's claim lock, the mcache
 * registry, the heap, then the mcentrals in spanClass order. Debug builds (NDEBUG undefined) check
 * every acquisition against the ranks the thread already holds and stop
 * on an inversion. */
typedef pthread_mutex_t sa_lock_t;
#define SA_LOCK_INIT PTHREAD_MUTEX_INITIALIZER
#ifndef NDEBUG
SA_HIDDEN void sa_lockrank_acquire(const sa_lock_t *l);
SA_HIDDEN void sa_lockrank_release(const sa_lock_t *l);
SA_HIDDEN void sa_lockrank_reset(void);
#else
#define sa_lockrank_acquire(l) ((void)0)
#define sa_lockrank_release(l) ((void)0)
#define sa_lockrank_reset() ((void)0)
#endif
static inline void sa_lock(sa_lock_t *l) { sa_lockrank_acquire(l); pthread_mutex_lock(l); }
static inline void sa_unlock(sa_lock_t *l) { pthread_mutex_unlock(l); sa_lockrank_release(l); }

/* ---- AddressSanitizer ---------------------------------------------------- */

/* Built with ASan, SpanAlloc poisons free memory and the tail of each block
 * past the requested size, so use-after-free and overflows on its memory are
 * reported. sa_usable_size still answers the class size. */
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define SA_ASAN 1
#define SA_POISON(p, n) ASAN_POISON_MEMORY_REGION((const void *)(p), (n))
#define SA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((const void *)(p), (n))
#else
#define SA_ASAN 0
#define SA_POISON(p, n) ((void)(p), (void)(n))
#define SA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* ---- spans (sa_mspan.c) -------------------------------------------------- */

enum {
    SA_SPAN_DEAD = 0,  /* the struct is on a fixalloc free list */
    SA_SPAN_FREE = 1,  /* a free run of pages in mheap's bins */
    SA_SPAN_SMALL = 2, /* holds objects of one small spanClass */
    SA_SPAN_LARGE = 3, /* holds one large object */
    SA_SPAN_RELEASING = 4, /* a free run the scavenger took out of the bins to release it outside the heap lock */
};

/* Which list a span is on: NONE (a cache's current span, or in transit),
 * mcentral's PARTIAL / FULL, mheap's BIN, or its owning cache's CPARTIAL /
 * CFULL (spans the cache still owns but does not allocate from). */
enum { SA_LIST_NONE = 0, SA_LIST_PARTIAL = 1, SA_LIST_FULL = 2, SA_LIST_BIN = 3,
       SA_LIST_CPARTIAL = 4, SA_LIST_CFULL = 5, SA_LIST_EMPTY = 6 };

struct sa_mcache;

/*
 * An mspan. Invariants (for a small span, slot i of nelems):
 *   taken(i)     = i < freeindex || allocBits[i]
 *   allocated(i) = taken(i) && !freeBits[i] && !remoteBits[i]
 *   allocCache   = ~allocBits >> (freeindex % 64) for the window holding
 *                  freeindex, with bits past nelems cleared; bit 0 is slot
 *                  freeindex. allocCache == 0 means "look at the next window".
 *   freeBits ⊆ taken, remoteBits ⊆ taken, freeBits ∩ remoteBits = ∅
 *   freeBits, allocBits and freeindex are written by the owner (or under the
 *                  central lock) with atomic stores, so other threads may
 *                  read them; a sweep rewrites them between two increments
 *                  of sweepgen.
 *   remoteFreed  = popcount(remoteBits) once every remote free has finished
 *                  (a free sets the bit first, then counts it).
 *   owner == NULL  ⇔ the span is on mcentral's partial or full list, and
 *                  then freeBits is empty (the owner swept it when uncaching).
 *   owner == c     ⇔ the span is c's current span for its spanClass, or on
 *                  c's own partial or full list. A thread keeps the spans it
 *                  filled, so its frees into them are plain stores (mimalloc
 *                  keeps pages per thread heap the same way); they go back to
 *                  mcentral when the thread exits or flushes, and to mheap as
 *                  soon as the thread frees their last object.
 * A free run (state FREE) uses only base, npages, the list links and the
 * free-run fields; its first and last page map to it, interior pages map to NULL.
 */
typedef struct sa_mspan {
    /* line 0: set when the span is made (heap lock), read by any thread */
    uintptr_t base;                      /* first byte */
    size_t elemsize;                     /* object size; span bytes for large */
    _Atomic uint64_t id;                 /* unique, never reused; 0 for free runs */
    uint32_t npages;                     /* length in 8 KiB pages */
    uint32_t nelems;                     /* slots (1 for large) */
    uint32_t divmul;                     /* Go's divMagic: slot = off * divmul >> 32 */
    uint8_t spanclass;                   /* class << 1 | noscan */
    uint8_t sizeclass;                   /* 0 for large */
    _Atomic uint8_t profiled;            /* 1 while some bit of profbits is set (the profiler's lock
                                            writes); read with state as one 16-bit word by the free path */
    _Atomic uint8_t state;               /* SA_SPAN_* */
    _Atomic(struct sa_mcache *) owner;   /* cache that holds it, NULL when uncached */
    uint64_t *allocBits;                 /* = words + ralloc */
    uint64_t *freeBits;                  /* = allocBits + nwords */
    uint16_t nwords;                     /* 64-bit words per bitmap */
    uint16_t ralloc;                     /* index of allocBits in words[] */
    uint8_t bucket;                      /* fixalloc bucket of this struct */
    _Atomic(uint64_t *) profbits;        /* the heap profiler's sampled slots (sa_profile.c, its lock),
                                            NULL when none: a set bit is a live sampled object */

    /* line 1: owner thread while cached, mcentral lock while uncached,
     * heap lock for free runs */
    alignas(64) uint64_t allocCache;     /* see above */
    uint32_t freeindex;                  /* slots below are taken */
    _Atomic uint32_t allocCount;         /* allocated objects as of the last sweep */
    uint8_t list;                        /* SA_LIST_* */
    uint8_t needzero;                    /* large: pages may hold old data */
    uint8_t fresh;                       /* pages were never used by an earlier span */
    uint8_t kept_empty;                  /* emptied, kept on its owner's partial list (owner's budget) */
    uint32_t nlocalfree;                 /* owner's frees since the last sweep (non-current spans) */
    _Atomic uint32_t sweepgen;           /* odd while a sweep rewrites the bitmaps (a seqlock for
                                            the remote readers of sa_span_slot_live_remote) */
    struct sa_mspan *next, *prev;        /* central list or heap bin */
    uint64_t freed_ns;                   /* free run: when it last grew */

    /* line 2: written by remote freeing threads */
    alignas(64) _Atomic int32_t remoteFreed; /* remote frees not yet swept */
    /* words[0 .. nwords) = remoteBits (atomic); words[ralloc ..) = allocBits,
     * then freeBits. allocBits starts on its own cache line. */
    uint64_t words[];
} sa_mspan;

_Static_assert(SA_NUM_SPAN_CLASSES <= 256, "a spanClass fits its byte");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "sa_span_small_unprofiled reads state as the high byte");
_Static_assert(offsetof(sa_mspan, state) == offsetof(sa_mspan, profiled) + 1 &&
                   offsetof(sa_mspan, profiled) % 2 == 0 && offsetof(sa_mspan, state) < 64,
               "profiled and state form one aligned 16-bit word on the span's first line");
/* The free path's one test for "a small span without sampled objects":
 * state and profiled in one load (little-endian: state is the high byte). */
#define SA_SMALL_UNPROFILED ((uint16_t)(SA_SPAN_SMALL << 8))
static inline bool sa_span_small_unprofiled(const sa_mspan *s) {
    uint16_t w = __atomic_load_n((const uint16_t *)(const void *)&s->profiled, __ATOMIC_RELAXED);
    return w == SA_SMALL_UNPROFILED;
}

#define SA_SPAN_REMOTE(s) ((s)->words)
#define SA_SPAN_ALLOC(s) ((s)->allocBits)
#define SA_SPAN_FREEW(s) ((s)->freeBits)

SA_HIDDEN void sa_span_init_small(sa_mspan *s, int spanclass);
/* Consumes and returns the next free slot, or nelems when the span is full. */
SA_HIDDEN uint32_t sa_span_next_free_index(sa_mspan *s);
/* Folds freeBits and remoteBits into allocBits, restarts at slot 0 and
 * returns the number of free slots. Caller owns the span. */
SA_HIDDEN uint32_t sa_span_sweep(sa_mspan *s);
/* Allocated objects right now (exact for the owner or under the central lock). */
SA_HIDDEN uint32_t sa_span_count_allocated(const sa_mspan *s);
SA_HIDDEN bool sa_span_slot_allocated(const sa_mspan *s, uint32_t idx);
/* For a span another thread owns: objects handed out and not freed by a
 * remote thread, read with atomic loads (the owner's own recent frees are
 * not visible until its next sweep). */
SA_HIDDEN uint32_t sa_span_count_taken(const sa_mspan *s);
/* Whether slot idx holds a live object (taken, and in neither freeBits nor
 * remoteBits), for a thread that does not own the span: the bitmaps are
 * read as one snapshot between two reads of sweepgen, so a sweep running
 * meanwhile cannot make a freed slot look live. */
SA_HIDDEN bool sa_span_slot_live_remote(const sa_mspan *s, uint32_t idx);
/* The span's bitmap invariants (above); the caller can read the span
 * (owns it, holds its mcentral's lock, or the heap is quiescent). */
SA_HIDDEN int sa_span_check(const sa_mspan *s, char *err, size_t errlen);

/* ---- page heap (sa_mheap.c) ---------------------------------------------- */

/* Who released pages (the MemStats counters pages_released_*). */
typedef enum sa_release_cause {
    SA_RELEASE_BACKGROUND, SA_RELEASE_PACER, SA_RELEASE_LIMIT, SA_RELEASE_DEMAND, SA_RELEASE_CAUSES
} sa_release_cause;

typedef struct sa_heap_arena {
    _Atomic(sa_mspan *) spans[SA_PAGES_PER_ARENA]; /* page → span (heap lock writes) */
    uint64_t used[SA_PAGES_PER_ARENA / 64];        /* page has served a span since mapped */
    uint64_t dirty[SA_PAGES_PER_ARENA / 64];       /* page may hold non-zero data */
    uint64_t scavenged[SA_PAGES_PER_ARENA / 64];   /* page is returned to the OS */
} sa_heap_arena;

typedef struct sa_mheap {
    sa_lock_t lock;
    _Atomic(_Atomic(sa_heap_arena *) *) l1[SA_L1_ENTRIES];
    /* statistics, written under the lock, read with relaxed loads */
    _Atomic uint64_t pages_inuse, pages_free, pages_released;
    _Atomic uint64_t heap_sys, metadata_sys, arenas;
    _Atomic uint64_t spans_fresh, spans_reused, spans_returned, spans_inuse;
    _Atomic uint64_t pages_scavenged, scavenge_runs;
    _Atomic uint64_t pages_unused;       /* free pages never used since they were mapped (not resident) */
    _Atomic uint64_t pages_released_by[SA_RELEASE_CAUSES];
    _Atomic uint64_t large_allocs, large_frees, large_bytes_alloc, large_bytes_freed, large_live_bytes;
} sa_mheap;

SA_HIDDEN extern sa_mheap sa_heap;

/* With SA_L1_BITS == 0 the single L2 table is a static array (zero pages of
 * BSS cost nothing until an arena is registered), so no load is spent on L1. */
SA_HIDDEN extern _Atomic(sa_heap_arena *) sa_arena_l2_0[SA_L2_ENTRIES];

SA_FAST_PATH _Atomic(sa_heap_arena *) *sa_arena_l2(uintptr_t a) {
#if SA_L1_BITS == 0
    (void)a;
    return sa_arena_l2_0;
#else
    return atomic_load_explicit(&sa_heap.l1[a >> (SA_ARENA_SHIFT + SA_L2_BITS)], SA_RELAXED);
#endif
}

/* The heapArena for an address below 2^48, or NULL. */
SA_FAST_PATH sa_heap_arena *sa_arena_of(uintptr_t a) {
    _Atomic(sa_heap_arena *) *l2 = sa_arena_l2(a);
    if (SA_L1_BITS && SA_UNLIKELY(!l2)) return NULL;
    return atomic_load_explicit(&l2[(a >> SA_ARENA_SHIFT) & (SA_L2_ENTRIES - 1)], SA_RELAXED);
}

/* Span for any address, or NULL. Interior pages of free runs map to NULL.
 * The 2^48 test is not optional: the arena index drops the high bits, so a
 * tagged copy of a heap pointer would otherwise alias its arena. */
SA_FAST_PATH sa_mspan *sa_span_of_addr(uintptr_t a) {
    if (SA_UNLIKELY(a >> SA_ADDR_BITS)) return NULL;
    sa_heap_arena *ha = sa_arena_of(a);
    if (SA_UNLIKELY(!ha)) return NULL;
    return atomic_load_explicit(&ha->spans[(a >> SA_PAGE_SHIFT) & (SA_PAGES_PER_ARENA - 1)], SA_RELAXED);
}

/* Allocates a span of `npages` pages aligned to `align_pages` pages: small
 * (spanclass's class != 0) or large. Returns NULL when the OS refuses memory. */
SA_HIDDEN sa_mspan *sa_heap_alloc_span(size_t npages, size_t align_pages, int spanclass,
                                       struct sa_mcache *owner);
/* Returns a span's pages to the free runs. */
SA_HIDDEN void sa_heap_free_span(sa_mspan *s);
SA_HIDDEN void sa_heap_free_span_locked(sa_mspan *s);
/* A span id: unique, never reused. */
SA_HIDDEN uint64_t sa_heap_new_span_id(void);
/* Large span resize in place; true on success. */
SA_HIDDEN bool sa_heap_resize_large(sa_mspan *s, size_t npages);
/* Releases up to `bytes` of idle pages (SIZE_MAX: all), of runs idle for
 * the delay when respect_delay. Returns the bytes released. */
SA_HIDDEN size_t sa_heap_scavenge(size_t bytes, bool respect_delay, sa_release_cause cause);
/* Releases up to `pages` idle pages, largest runs first: a run at a time is
 * taken out of the bins, released without the heap lock and put back.
 * Returns the pages released. */
SA_HIDDEN size_t sa_heap_release(size_t pages, bool respect_delay, sa_release_cause cause);
/* Returns the span pool's empty chunks to the OS; the bytes released. */
SA_HIDDEN size_t sa_heap_release_metadata(void);
/* The page heap's figures for the scavenger's goal (relaxed reads). */
typedef struct sa_heap_usage {
    uint64_t inuse_bytes;   /* in in-use spans, without the empty spans mcentral keeps */
    uint64_t idle_bytes;    /* free pages that may be resident (used, not released), plus those kept spans */
    uint64_t kept_bytes;    /* the empty spans mcentral keeps */
    uint64_t counted_bytes; /* toward the memory limit: heap pages used and not released, plus metadata */
    uint64_t activity;      /* spans and large objects handed out, cumulative: moves while the program allocates */
} sa_heap_usage;
SA_HIDDEN void sa_heap_usage_read(sa_heap_usage *u);
/* Caller holds the registry and heap locks. `quiescent`: no other thread
 * allocates or frees, so every span's bitmaps can be read and counted. */
SA_HIDDEN int sa_heap_check(char *err, size_t errlen, bool quiescent, uint64_t *live_objects, uint64_t *small_spans);
SA_HIDDEN void sa_heap_config(sa_scavenge_config *get, const sa_scavenge_config *set);

/* ---- mcentral (sa_mcentral.c) -------------------------------------------- */

typedef struct sa_mcentral {
    alignas(64) sa_lock_t lock;
    sa_mspan *partial;  /* uncached spans with free or pending-free slots */
    sa_mspan *full;     /* uncached spans with every slot allocated */
    sa_mspan *empty;    /* swept spans with no object, kept for reuse (Go's mcentral keeps them too) */
    uint64_t npartial, nfull, nempty;
} sa_mcentral;

SA_HIDDEN extern sa_mcentral sa_central[SA_NUM_SPAN_CLASSES];

/* Gives the cache a span with at least one free slot, or NULL (out of memory). */
SA_HIDDEN sa_mspan *sa_central_cache_span(int spanclass, struct sa_mcache *c);
/* Takes back a span from its owner (after the owner swept it). */
SA_HIDDEN void sa_central_uncache_span(sa_mspan *s, uint32_t allocated);
/* Called by a remote free that may have made an uncached span non-full or empty. */
SA_HIDDEN void sa_central_free_fixup(sa_mspan *s, uint64_t id, int spanclass);
/* Releases empty spans still on partial lists, and the empty spans kept
 * for reuse, to mheap. */
SA_HIDDEN void sa_central_reclaim(void);
/* The same for the kept empty spans only, with the heap lock held (mheap
 * takes them back before it maps more memory). Returns the pages freed. */
SA_HIDDEN size_t sa_central_reclaim_empty_heap_locked(void);
/* Spans and pages on the empty lists now; kept empty spans caches took. */
SA_HIDDEN void sa_central_empty_stats(uint64_t *spans, uint64_t *pages, uint64_t *reuses);
/* Adds the spans on the central lists to *nspans. */
SA_HIDDEN int sa_central_check(char *err, size_t errlen, uint64_t *nspans);

/* ---- mcache (sa_mcache.c) and its free side (sa_freecache.c) ------------- */

/* A bin of the free cache: objects the thread freed (into its own spans, or
 * other threads' objects it reuses) of one spanClass, a stack in the
 * cache's bin store, newest on top. The allocation fast path pops it before
 * it looks at allocCache; the free fast path pushes while n < cap. cap is 0
 * until the thread's first free of the class, which reserves the bin's
 * bytes from the thread budget and its slots in the store. */
typedef struct sa_freebin {
    void **slots; /* cap entries in the cache's binstore; NULL until the first grant */
    uint32_t n;   /* objects on the stack (owner writes with SA_STORE, statistics read) */
    uint32_t cap; /* the push bound; 0: frees go to the span's freeBits */
} sa_freebin;

/* Slots of every bin of one cache together (8 bytes each). */
#define SA_BIN_STORE 4096

/* Frees into spans the thread does not own, buffered and handed to the
 * spans in one batch (atomic operations per bitmap word, not per object). */
#define SA_REMOTE_BATCH 64

typedef struct sa_mcache {
    sa_freebin bins[SA_NUM_SPAN_CLASSES];      /* first: the fast paths index it from the cache pointer */
    void *last;                                /* the last allocation, until freed or superseded (LIFO
                                                  shortcut); SA_NO_LAST when none, never NULL, so
                                                  free(NULL) never matches it */
    sa_mspan *lastspan;                        /* its span, when allocCache handed it out */
    sa_freebin *lastbin;                       /* the bin it was popped from; NULL: from allocCache */
    _Atomic uint8_t gate;                      /* SA_GATE_*: rare work the fast paths must not skip */
    sa_mspan *alloc[SA_NUM_SPAN_CLASSES];      /* never NULL: &sa_emptyspan when none */
    sa_mspan *partial[SA_NUM_SPAN_CLASSES];    /* owned spans with frees since they were current (FIFO) */
    sa_mspan *partial_tail[SA_NUM_SPAN_CLASSES];
    sa_mspan *full[SA_NUM_SPAN_CLASSES];       /* owned spans that were full when they stopped being current */
    uint16_t npartial[SA_NUM_SPAN_CLASSES];    /* length of partial[] */
    /* set by a remote free into an owned span of the class: look at full[] */
    _Atomic uint8_t remote_hint[SA_NUM_SPAN_CLASSES];
    /* the remote buffer (owner thread; nrbuf read by statistics) */
    void *rbuf[SA_REMOTE_BATCH];
    uint32_t nrbuf;
    uint32_t rbuf_bytes;
    /* budget: bytes reserved by the bins' caps, bytes of emptied spans kept */
    _Atomic uint64_t bin_reserved, empty_bytes;
    uint32_t gc_countdown;                     /* slow-path events until the next cold-bin pass */
    uint32_t gc_cursor;
    void *gc_mark[SA_NUM_SPAN_CLASSES];        /* each bin's top at the last cold-bin pass */
    uint16_t slotcap[SA_NUM_SPAN_CLASSES];     /* slots of binstore each bin has (kept when ungranted) */
    uint32_t binstore_used;
    void *binstore[SA_BIN_STORE];
    /* counters: written by the owning thread with relaxed stores, read by stats */
    _Atomic uint64_t nmalloc[SA_NUM_CLASSES];
    _Atomic uint64_t nfree[SA_NUM_CLASSES];
    _Atomic uint64_t nremote, nrefill, nsweep, ngrow;
    _Atomic uint64_t ndirect;                  /* owner frees that went to freeBits, not a bin */
    _Atomic uint64_t nflushed;                 /* pointers moved from bins to freeBits */
    _Atomic uint64_t nflushes;                 /* bin overflow flushes */
    _Atomic uint64_t nrbatches;                /* remote buffer batches handed back */
    _Atomic uint64_t ngcflushes;               /* cold bins flushed by the cold-bin pass */
    _Atomic uint64_t nremotebin;               /* remote frees kept in a bin for reuse here */
    struct sa_mcache *rnext, *rprev;           /* registry (registry lock) */
    bool live;
    /* the background scavenger's view (sa_scavenger.c, under its claim lock) */
    struct sa_thread_state *thread;            /* the owner's operation state; valid while registered */
    uint64_t scav_ops, scav_seen_ns, scav_flushed_ops;
} sa_mcache;

/* The gate: one byte of the cache the fast paths load (acquire) and test
 * for zero before they touch the cache; anything set sends them to the
 * slow path. HOOK: the alloc/free hook is installed. CLAIM: the background
 * scavenger is taking the cache of an idle thread (sa_scavenger.c). */
enum { SA_GATE_HOOK = 1, SA_GATE_CLAIM = 2 };

/* What another thread needs to know about a thread's use of its cache
 * (the idle-cache claim, sa_scavenger.c): `busy` while a fast path (and the
 * slow path it called) runs, `hold` while a compound operation (realloc, a
 * flush, a call out to the hook) runs. The cache pointer shares the TLS
 * block, so the fast path's store to `busy` needs no second TLS address. */
typedef struct sa_thread_state {
    struct sa_mcache *cache;
    _Atomic uint8_t busy;
    _Atomic uint32_t hold;
    /* The heap profiler's per-thread sampler (sa_profile.c), touched by the
     * owner thread only. prof_left: bytes until the next sample; every
     * allocation subtracts its size and the one that makes it negative goes
     * to the slow path, which samples it (or, profiling off, re-arms it). */
    int64_t prof_left;
    uint32_t prof_gen;                 /* sa_prof_gen when prof_left was drawn */
    uint8_t prof_busy;                 /* inside the profiler: no sampling */
    uint64_t prof_rng;                 /* xorshift state, 0 until seeded */
    uintptr_t stack_lo, stack_hi;      /* the thread's stack, found at its first sample */
} sa_thread_state;

#define SA_NO_LAST ((void *)1)
SA_HIDDEN extern sa_mspan sa_emptyspan;
SA_HIDDEN extern sa_mcache sa_emptycache;
extern __thread sa_thread_state sa_tls __attribute__((tls_model("initial-exec")));
#define sa_tls_cache (sa_tls.cache)

SA_FAST_PATH sa_mcache *sa_get_cache(void) { return sa_tls_cache; }

/* The claim protocol, the owner's side (an asymmetric Dekker: the
 * scavenger sets CLAIM, then membarrier() makes every thread's earlier
 * stores visible, then it reads busy and hold; the owner's store to busy
 * and its load of the gate are ordered for the compiler only). A fast path
 * brackets its use of the cache with sa_op_begin/sa_op_end and reads the
 * gate in between; a compound operation brackets itself with
 * sa_hold_enter/sa_hold_exit. */
SA_FAST_PATH void sa_op_begin(void) {
    atomic_store_explicit(&sa_tls.busy, 1, SA_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
}
SA_FAST_PATH void sa_op_end(void) { atomic_store_explicit(&sa_tls.busy, 0, memory_order_release); }
SA_FAST_PATH unsigned sa_gate(const sa_mcache *c) { return atomic_load_explicit(&c->gate, memory_order_acquire); }
/* The gate said CLAIM: returns once the scavenger is done with the cache. */
SA_HIDDEN void sa_claim_wait(void);
/* Counts a call out or a nested operation (inside an operation already). */
SA_FAST_PATH void sa_hold_inc(void) {
    atomic_store_explicit(&sa_tls.hold, atomic_load_explicit(&sa_tls.hold, SA_RELAXED) + 1, SA_RELAXED);
    atomic_signal_fence(memory_order_seq_cst);
}
SA_FAST_PATH void sa_hold_dec(void) {
    atomic_store_explicit(&sa_tls.hold, atomic_load_explicit(&sa_tls.hold, SA_RELAXED) - 1, memory_order_release);
}
/* A compound operation's start: counted, then the gate. */
SA_FAST_PATH void sa_hold_enter(void) {
    sa_hold_inc();
    if (SA_UNLIKELY(sa_gate(sa_tls_cache) & SA_GATE_CLAIM)) sa_claim_wait();
}
SA_FAST_PATH void sa_hold_exit(void) { sa_hold_dec(); }
/* Whether cache c owns span s: its current span or on its lists. Only c's
 * thread changes the answer for c, so it is exact there; another thread
 * may see a stale owner (a remote free then takes the remote path). */
SA_FAST_PATH bool sa_span_is_mine(const sa_mspan *s, const sa_mcache *c) {
    return atomic_load_explicit(&s->owner, SA_RELAXED) == c;
}
/* The calling thread's real cache, created on first use. NULL when out of memory. */
SA_HIDDEN sa_mcache *sa_cache_create(void);
/* Slow path of small allocation: refill the cache's span for spanclass. */
SA_HIDDEN void *sa_cache_next_free(sa_mcache *c, int spanclass);
SA_HIDDEN void sa_cache_flush(sa_mcache *c);
/* Checks the span lists of the calling thread's cache, or (quiescent, with
 * the registry lock held) of every cache; adds the spans found to *nspans. */
SA_HIDDEN int sa_cache_check(char *err, size_t errlen, bool quiescent, uint64_t *nspans, uint64_t *ncached);
/* The owner freed into one of its spans that is not the current one. */
SA_HIDDEN void sa_cache_free_owned(sa_mcache *c, sa_mspan *s);
SA_HIDDEN extern _Atomic(sa_hook_fn) sa_hook;
/* The scavenger's claim lock (sa_scavenger.c): held while it claims and
 * flushes an idle thread's cache; an owner that finds CLAIM waits on it. */
SA_HIDDEN extern sa_lock_t sa_claim_lock;
/* Starts the background scavenger if it is wanted and not running, else
 * wakes it. Takes no allocator lock; never call it holding one. */
SA_HIDDEN void sa_scavenger_poke(void);
/* A configuration change: stops (and joins) the thread when the mode is no
 * longer background. */
SA_HIDDEN void sa_scavenger_config_changed(void);
/* The scavenger's and the limit's MemStats fields. */
SA_HIDDEN void sa_scavenger_stats(sa_mem_stats *out);
/* Idle memory kept by mcentral beyond which a missing scavenger is started. */
#define SA_SCAVENGE_START_BYTES ((uint64_t)4 << 20)
/* Whether the background scavenger thread exists (a relaxed read). */
SA_HIDDEN bool sa_scavenger_running(void);
/* The thread could not be started: the pacer releases instead. */
SA_HIDDEN bool sa_scavenger_failed(void);
/* Fork: the child has no scavenger thread (started again when needed). */
SA_HIDDEN void sa_scavenger_fork_child(void);
/* The memory limit for the page heap: SIZE_MAX when none. */
SA_HIDDEN size_t sa_memlimit_bytes(void);
SA_HIDDEN bool sa_memlimit_is_hard(void);
/* Counts for the limit's statistics. */
enum { SA_LIMIT_HIT, SA_LIMIT_OVERSHOOT, SA_LIMIT_REFUSAL };
SA_HIDDEN void sa_memlimit_count(int what);
/* Hands back the cache of a thread idle for idle_ns (the scavenger: claim
 * lock, then registry lock, taken inside). Returns the caches flushed. */
SA_HIDDEN unsigned sa_cache_flush_idle(uint64_t now_ns, uint64_t idle_ns, bool (*barrier)(void));
/* Sets or clears a gate bit in every registered cache and sa_emptycache
 * (registry lock taken inside). */
SA_HIDDEN void sa_cache_set_gate_all(uint8_t bit, bool on);
/* Sums the counters of every cache, live and exited. */
typedef struct sa_cache_totals {
    uint64_t nmalloc[SA_NUM_CLASSES], nfree[SA_NUM_CLASSES];
    uint64_t nremote, nrefill, nsweep, ngrow, nexited;
    uint64_t ndirect, nflushed, nflushes, nrbatches, ngcflushes, nremotebin;
    uint64_t cached_objects, cached_bytes; /* in bins and remote buffers now */
    uint64_t bin_objects;                  /* in bins now */
    uint64_t held_max;                     /* the most one live thread holds now */
} sa_cache_totals;
SA_HIDDEN void sa_cache_totals_read(sa_cache_totals *t);
SA_HIDDEN extern sa_lock_t sa_registry_lock_v;
SA_HIDDEN extern sa_lock_t sa_stats_lock;
SA_HIDDEN void sa_registry_lock(void);
SA_HIDDEN void sa_registry_unlock(void);
SA_HIDDEN void sa_registry_reinit(void);
/* In a fork child: hands back every cache but the calling thread's. */
SA_HIDDEN void sa_cache_fork_child(void);
/* Registers sa_fork_prepare/parent/child with pthread_atfork, once; called
 * by every entry point that takes a lock (first cache, large span,
 * statistics, scavenge, configuration, checker) before it takes one, and
 * first thing by the malloc override; never under a lock. */
SA_HIDDEN void sa_fork_register(void);
SA_HIDDEN int sa_registry_other_caches(void);

/* ---- free caches (sa_freecache.c) ----------------------------------------- */

/* A freed object's word 0 holds its cookie (object ^ key) from the free
 * until the slot is handed out again, which clears it: a free that finds
 * it is a double free. Never 0: the key's low bits are set and objects are
 * 8-aligned. */
enum { SA_WORD_COOKIE = 0 };
SA_HIDDEN extern uintptr_t sa_cookie_key;
SA_FAST_PATH uintptr_t sa_cookie(const void *p) { return (uintptr_t)p ^ sa_cookie_key; }
/* Words of a freed object. Under AddressSanitizer the object stays
 * poisoned while freed, and only these accessors, built without
 * instrumentation, touch it. */
#if SA_ASAN
SA_HIDDEN uintptr_t sa_word_load(const void *p, int i);
SA_HIDDEN void sa_word_store(void *p, int i, uintptr_t v);
#else
SA_FAST_PATH uintptr_t sa_word_load(const void *p, int i) { return ((const uintptr_t *)p)[i]; }
SA_FAST_PATH void sa_word_store(void *p, int i, uintptr_t v) { ((uintptr_t *)p)[i] = v; }
#endif
/* Whether p, a taken slot by its span's bitmaps, carries its cookie: freed
 * (in a free cache, a remote buffer, or freeBits/remoteBits until swept). */
SA_FAST_PATH bool sa_slot_freed(const void *p) { return sa_word_load(p, SA_WORD_COOKIE) == sa_cookie(p); }
/* Whether p may carry its cookie, from the cookie's first byte alone: a
 * byte load forwards from a narrower store the program just made to p's
 * first bytes, where a word load would wait for it. A match (1 in 256 for
 * unrelated data) is settled by sa_slot_freed. */
SA_FAST_PATH bool sa_slot_maybe_freed(const void *p) {
#if SA_ASAN
    return (uint8_t)sa_word_load(p, SA_WORD_COOKIE) == (uint8_t)sa_cookie(p);
#else
    return *(const uint8_t *)p == (uint8_t)sa_cookie(p);
#endif
}
/* The span of p (page-map entry s, NULL when none), validated as the
 * start of a small slot or of a large object; stops the process naming p
 * otherwise. Sets *idx to the slot. */
SA_HIDDEN __attribute__((noreturn, cold)) void sa_bad_pointer(const void *p, const sa_mspan *s, const char *op);
SA_FAST_PATH sa_mspan *sa_checked_span(const void *p, sa_mspan *s, const char *op, uint32_t *idx_out) {
    uintptr_t a = (uintptr_t)p;
    if (SA_UNLIKELY(!s)) sa_bad_pointer(p, s, op);
    int st = atomic_load_explicit(&s->state, SA_RELAXED);
    if (SA_LIKELY(st == SA_SPAN_SMALL)) {
        uintptr_t off = a - s->base;
        uint32_t idx = (uint32_t)(((uint64_t)off * s->divmul) >> 32);
        if (SA_UNLIKELY((uintptr_t)idx * s->elemsize != off || idx >= s->nelems)) sa_bad_pointer(p, s, op);
        *idx_out = idx;
        return s;
    }
    if (SA_UNLIKELY(st != SA_SPAN_LARGE || a != s->base)) sa_bad_pointer(p, s, op);
    *idx_out = 0;
    return s;
}
/* Frees p, validated by sa_checked_span: large, remote, owner, hooked. */
SA_HIDDEN void sa_free_validated(void *p, sa_mspan *s, uint32_t idx);
/* Reports an event to the hook (sa_introspect.c); s is p's span. */
SA_HIDDEN void sa_call_hook(int event, void *p, size_t size, const sa_mspan *s);
/* The size class of a small size (<= 32 KiB). */
SA_FAST_PATH int sa_size_class(size_t size) {
    if (SA_LIKELY(size <= SA_SMALL_SIZE_MAX)) return sa_size_to_class8[(size + 7) >> 3];
    return sa_size_to_class128[(size - SA_SMALL_SIZE_MAX + SA_LARGE_SIZE_DIV - 1) >> 7];
}
/* Stops the process: p is not a live object (a double free, or a free of
 * an object never allocated). */
SA_HIDDEN void sa_free_twice(const void *p);
/* Sets up a new cache's bins; makes the cookie key on first use. */
SA_HIDDEN void sa_freecache_init(sa_mcache *c);
/* An owner free that the fast path did not push: the bin is full, has no
 * capacity yet, or p carries its cookie (a double free). */
SA_HIDDEN void sa_free_owned_slow(sa_mcache *c, sa_mspan *s, uint32_t idx, void *p);
/* Sets slot idx's bit in freeBits (an owner free that no bin takes); the
 * span-list work (a filled span that gets a free, a span that empties) is
 * sa_cache_free_owned's. */
/* The out-of-line parts of the free path end the caller's operation
 * (sa_op_end) after their work, so the inline free path reaches them by
 * a tail jump and needs no stack frame; each is the last
 * thing its caller does with the cache. `end` (a constant where inlined)
 * selects those forms. */
SA_HIDDEN void sa_cache_free_owned_end(sa_mcache *c, sa_mspan *s);
SA_FAST_PATH void sa_free_owned_bitmap_op(sa_mcache *c, sa_mspan *s, uint32_t idx, bool end) {
    uint32_t w = idx >> 6;
    SA_STORE(s->freeBits[w], s->freeBits[w] | (uint64_t)1 << (idx & 63)); /* read by other threads' frees */
    uint32_t nl = ++s->nlocalfree;
    if (SA_UNLIKELY(s->list != SA_LIST_NONE) &&
        (s->list == SA_LIST_CFULL ||
         (int64_t)atomic_load_explicit(&s->allocCount, SA_RELAXED) - nl -
                 atomic_load_explicit(&s->remoteFreed, SA_RELAXED) <= 0)) {
        if (end) sa_cache_free_owned_end(c, s);
        else sa_cache_free_owned(c, s);
        return;
    }
    if (end) sa_op_end();
}
SA_FAST_PATH void sa_free_owned_bitmap(sa_mcache *c, sa_mspan *s, uint32_t idx) {
    sa_free_owned_bitmap_op(c, s, idx, false);
}
/* A free into a span c does not own: validated, then buffered. */
SA_HIDDEN void sa_free_remote(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p);
/* A remote free published at once (per object): 8-byte objects, hooked frees. */
SA_HIDDEN void sa_free_remote_now(sa_mcache *c, sa_mspan *s, uint32_t idx, const void *p);
/* Empties every bin and the remote buffer into the spans' bitmaps. */
SA_HIDDEN void sa_freecache_flush(sa_mcache *c);
/* Called on the allocation slow path: the periodic cold-bin pass. */
SA_HIDDEN void sa_freecache_tick(sa_mcache *c);
/* Objects of span s in c's bin and remote buffer (introspection: they are
 * taken in the span's bitmaps but freed). */
SA_HIDDEN uint32_t sa_freecache_in_span(const sa_mcache *c, const sa_mspan *s);
/* Validates c's bins and remote buffer; adds the cached objects to *ncached. */
SA_HIDDEN int sa_freecache_check(sa_mcache *c, char *err, size_t errlen, uint64_t *ncached);
/* Adds c's cached objects and bytes, and its holding, to t. */
SA_HIDDEN void sa_freecache_totals(const sa_mcache *c, sa_cache_totals *t);
/* Bytes of emptied spans a thread may keep on its own lists. */
SA_HIDDEN size_t sa_freecache_empty_budget(void);
/* The budget (configuration). */
SA_HIDDEN void sa_cache_configure(sa_cache_config *get, const sa_cache_config *set);
SA_HIDDEN extern _Atomic uint64_t sa_exit_flushes;
/* Counts a free by a thread that has no cache (sa_malloc.c). */
SA_HIDDEN void sa_orphan_free(int cls);

static inline void sa_counter_inc(_Atomic uint64_t *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, SA_RELAXED) + 1, SA_RELAXED);
}
static inline void sa_counter_add(_Atomic uint64_t *c, uint64_t n) {
    atomic_store_explicit(c, atomic_load_explicit(c, SA_RELAXED) + n, SA_RELAXED);
}
static inline void sa_stat_add(_Atomic uint64_t *c, uint64_t n) { atomic_fetch_add_explicit(c, n, SA_RELAXED); }
static inline void sa_stat_sub(_Atomic uint64_t *c, uint64_t n) { atomic_fetch_sub_explicit(c, n, SA_RELAXED); }
static inline uint64_t sa_stat(const _Atomic uint64_t *c) { return atomic_load_explicit(c, SA_RELAXED); }

/* ---- heap profiler (sa_profile.c, sa_profile_write.c) ---------------------- */

/* The allocation entry points and the sampler live in this section, so the
 * stack walk drops the leading frames inside it (the allocator's own). */
#define SA_PROF_SKIP __attribute__((section("sa_alloc_text")))
/* Bumped by every rate change: a thread whose prof_gen differs draws anew. */
SA_HIDDEN extern _Atomic uint32_t sa_prof_gen;
/* The small allocation whose size made prof_left negative: allocated, and
 * sampled when due. */
SA_HIDDEN void *sa_prof_alloc_small(int cls, size_t size, unsigned flags);
/* A large or resized object of `size` bytes made prof_left negative. */
SA_HIDDEN void sa_prof_due_object(void *p, size_t size);
/* A free (or in-place resize) of p, slot idx of span s whose profbits is
 * set: drops p's record when p is sampled. */
SA_HIDDEN void sa_prof_forget(const void *p, sa_mspan *s, uint32_t idx);
/* The span goes back to the page heap (heap lock held): its bitmap is returned. */
SA_HIDDEN void sa_prof_span_released(sa_mspan *s);
SA_HIDDEN void sa_prof_fork_prepare(void);
SA_HIDDEN void sa_prof_write_fork_prepare(void);
SA_HIDDEN void sa_prof_write_fork_parent(void);
SA_HIDDEN void sa_prof_write_fork_child(void);
SA_HIDDEN void sa_prof_fork_parent(void);
SA_HIDDEN void sa_prof_fork_child(void);
/* Configuration (sa_config.c): profile=, profile_rate=, profile_signal=. */
SA_HIDDEN void sa_prof_configure(const char *path, size_t pathlen, int64_t rate, int signo);

/* ---- fixalloc (sa_mheap.c): fixed-size metadata from mmap, never unmapped ---- */

typedef struct sa_fixalloc {
    size_t size;
    void *freelist;
    char *chunk;
    size_t left;
} sa_fixalloc;
SA_HIDDEN void *sa_fixalloc_alloc(sa_fixalloc *f);
SA_HIDDEN void sa_fixalloc_free(sa_fixalloc *f, void *p);

#endif
