/*
 * SpanAlloc — a native allocator built on the design of the Go runtime's
 * allocator (src/runtime/malloc.go), with explicit free from any thread.
 *
 * OVERVIEW
 *
 * The heap is made of four layers; each .c file owns one of them and includes
 * only the layers below it:
 *
 *   sa_os.c       the only file that calls the OS: mmap, madvise, page size.
 *   sa_mheap.c    the page heap (Go's mheap): 8 KiB span pages carved from
 *                 64 MiB arenas, a two-level arena index whose heapArena.spans
 *                 maps every page to its mspan in O(1), free page runs kept in
 *                 size-binned lists and coalesced on free, the span pool, and
 *                 the release of idle pages to the OS with madvise.
 *   sa_scavenger.c the background scavenger (Go's bgscavenge): one thread
 *                 that releases idle memory above a goal at ~1% of a CPU,
 *                 hands back the caches of idle threads, and lets retained
 *                 memory decay to a floor once the program is idle; and the
 *                 memory limit (Go's GOMEMLIMIT).
 *   sa_mspan.c    a span (Go's mspan): a run of pages holding objects of one
 *                 spanClass, with allocBits, freeindex and the 64-bit
 *                 allocCache (the complement of allocBits, read with
 *                 count-trailing-zeros), plus two bitmaps Go does not need:
 *                 freeBits (frees by the owning thread) and remoteBits (frees
 *                 by any other thread, set with an atomic OR).
 *   sa_mcentral.c one central list per spanClass (Go's mcentral): partial and
 *                 full spans that no thread caches, one lock each.
 *   sa_mcache.c   the per-thread cache (Go's mcache): one current span per
 *                 spanClass, plus the spans the thread filled earlier, which it
 *                 keeps (partial and full lists of its own) until it exits.
 *   sa_freecache.c the free side of the thread cache: per-spanClass bins of
 *                 objects the thread freed (reused by its next allocations of
 *                 the class) and the buffer of its frees into other threads'
 *                 spans, handed back in batches; the thread budget.
 *   sa_malloc.c, sa_free.c, sa_stats.c, sa_introspect.c, sa_check.c
 *                 the public entry points below: allocation, the free path's
 *                 slow parts, statistics, introspection and the hook, locks,
 *                 fork and the heap checker.
 *
 * THE ALLOCATION CLIMB (each step amortizes the one above it)
 *
 *   1. mcache: pop the thread's free-cache bin for the spanClass (an object
 *      it freed, reused at once), else take the next free slot of its span
 *      for the spanClass (ctz of allocCache). No lock, no atomic
 *      read-modify-write. ~1 ns.
 *   2. the current span is exhausted: sweep it (fold the frees recorded in
 *      freeBits/remoteBits into allocBits) and keep using it if that
 *      recovered a quarter of its slots; otherwise keep it aside and sweep
 *      the thread's oldest partial span (no lock).
 *   3. the thread has no span worth sweeping: take a partial span from
 *      mcentral, else an emptied span mcentral keeps (one lock per span,
 *      i.e. per 1..1024 objects).
 *   4. mcentral has neither: mheap allocates a run of pages for a new span
 *      (heap lock), preferring pages freed by earlier spans ("span reuse")
 *      to pages never touched, and taking back mcentral's emptied spans
 *      before it maps more.
 *   5. mheap has no free run large enough: map a new arena from the OS.
 *
 * Sizes above 32 KiB skip steps 1 and 2: a large object is a span of its
 * own (class 0) allocated from mheap under the heap lock.
 *
 * THE FREE PATH
 *
 *   Go frees by garbage collection; SpanAlloc frees explicitly. free(p)
 *   checks that p is the start of a live object (a wrong pointer stops the
 *   process with a message naming it; so does a second free, unless the
 *   slot was handed out again in between, which makes it a valid free of
 *   the new object: docs/reliability.md lists what is detected). Every
 *   freed object carries a cookie in its first word until its slot is
 *   handed out again; a free that finds it is a double free. Then:
 *     - the object the thread allocated last skips the page-map walk (the
 *       LIFO shortcut) and goes on its bin;
 *     - the thread that owns p's span pushes p on its bin for the class, the
 *       next allocation of the class pops it. A full bin (or a class without
 *       bin capacity: 8-byte objects, an exhausted budget) sets p's bit in
 *       the span's freeBits instead, a plain store; a span of its own that
 *       it empties stays on its lists within the thread's budget, and goes
 *       to mcentral beyond it;
 *     - any other thread buffers p (64 objects); the buffer goes to the
 *       spans in a batch, one atomic OR into remoteBits and one count per
 *       bitmap word. When a span is owned by no thread, the batch that makes
 *       it non-full moves it to mcentral's partial list and the one that
 *       makes it empty puts it on mcentral's empty list, for the next refill
 *       of the class without a trip through mheap (mheap takes those back
 *       before it maps more memory, and on sa_thread_flush and sa_scavenge).
 *   The owner sweeps both bitmaps into allocBits when its cache runs dry, as
 *   Go's sweeper turns gcmarkBits into the next allocBits. Bins, buffers and
 *   kept spans go back at thread exit, on sa_thread_flush and sa_scavenge,
 *   and cold bins on a periodic pass (see sa_cache_config).
 *
 * All functions are thread-safe. Sizes are in bytes.
 */
#ifndef SPANALLOC_H
#define SPANALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if !__has_feature(nullability)
#define _Nullable
#define _Nonnull
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- constants --------------------------------------------------------- */

/** Go's span page: 8 KiB, independent of the OS page size. */
#define SA_PAGE_SIZE 8192u
/** Number of small size classes (1...67); class 0 means "large object". */
#define SA_NUM_CLASSES 68
/** Largest small object. Requests above this are large objects. */
#define SA_MAX_SMALL_SIZE 32768u
/** Number of span classes: class << 1 | noscan. */
#define SA_NUM_SPAN_CLASSES (SA_NUM_CLASSES * 2)
/**
 * Largest request served: 256 GiB (with alignment padding). Larger requests
 * return NULL with errno = ENOMEM, as do requests the OS refuses. The page
 * map costs 8 bytes per 8 KiB page of a span, 256 MiB for the largest.
 */
#define SA_MAX_SIZE ((size_t)1 << 38)

/** Allocation flags. */
enum {
    /** The object holds no pointers (Go's noscan): it goes to a noscan span. */
    SA_NOSCAN = 1u << 0,
    /** Return zeroed memory. */
    SA_ZERO = 1u << 1,
};

/* ---- allocation -------------------------------------------------------- */

/**
 * Allocates `size` bytes with `flags` (SA_NOSCAN, SA_ZERO). Size 0 returns a
 * unique pointer. Small objects are aligned to the largest power of two that
 * divides their class size (at least 8); large objects to 8 KiB.
 * Returns NULL with errno = ENOMEM when the size cannot be served (above
 * SA_MAX_SIZE, or the OS refuses memory).
 */
void *_Nullable sa_alloc(size_t size, unsigned flags);

/** Allocates `count * size` zeroed bytes; NULL with ENOMEM on overflow. */
void *_Nullable sa_calloc(size_t count, size_t size, unsigned flags);

/**
 * Allocates `size` bytes aligned to `alignment`, a power of two (up to 1 GiB).
 * Returns NULL with errno = EINVAL for a bad alignment, ENOMEM when out of memory.
 */
void *_Nullable sa_alloc_aligned(size_t size, size_t alignment, unsigned flags);

/**
 * Resizes a block, in place when the new size fits the block's class (or a
 * large span can shrink or grow in place); otherwise allocates, copies and
 * frees. The noscan bit of the block is kept. realloc(NULL, n) = alloc(n);
 * realloc(p, 0) frees p and returns NULL. On failure returns NULL and p is
 * untouched.
 */
void *_Nullable sa_realloc(void *_Nullable ptr, size_t size);

/**
 * Frees a block from any thread. NULL is ignored. A pointer the heap does not
 * own, an interior pointer or a second free (of a slot not handed out again
 * in between) stops the process with a message that names the pointer and
 * the fault, also when the first free was by another thread (every freed
 * object carries a cookie until its slot is handed out again;
 * docs/reliability.md lists what cannot be detected).
 */
void sa_free(void *_Nullable ptr);

/**
 * Frees `ptr` when it lies in one of SpanAlloc's arenas and returns true
 * (NULL too). Returns false, doing nothing, for memory outside every arena,
 * such as a pointer from another allocator. A pointer inside an arena that
 * is not a live object stops the process, as sa_free does.
 */
bool sa_free_if_ours(void *_Nullable ptr);

/** Usable size of a live block (its class size for small objects), O(1). */
size_t sa_usable_size(const void *_Nullable ptr);

/** True when `ptr` points into a span that holds live objects of this heap. */
bool sa_owns(const void *_Nullable ptr);

/**
 * True when `ptr` lies in one of the heap's arenas, whatever is there now
 * (a live object, a freed one, a free page run). A pointer for which this is
 * false cannot have come from SpanAlloc: the malloc override hands only
 * those to glibc.
 */
bool sa_in_heap(const void *_Nullable ptr);

/**
 * Usable size of the live block `ptr` (its class size for small objects);
 * stops the process with a message naming the pointer when `ptr` is not the
 * start of a live block of this heap (freed, interior, or not SpanAlloc's).
 */
size_t sa_usable_size_checked(const void *_Nonnull ptr);

/* ---- size classes ------------------------------------------------------ */

/** Size class for a request of `size` bytes: 1...67, or 0 for a large object. */
int sa_size_to_class(size_t size);
/** Object size of class `cls` (0 for class 0 or out of range). */
size_t sa_class_size(int cls);
/** Pages per span of class `cls`. */
size_t sa_class_pages(int cls);
/** Objects per span of class `cls`. */
size_t sa_class_objects(int cls);
/** Go's spanClass: class << 1 | noscan. */
static inline int sa_span_class(int cls, bool noscan) { return (cls << 1) | (noscan ? 1 : 0); }

/* ---- introspection ----------------------------------------------------- */

/** What a span looks like (Go's mspan, read at one moment). */
typedef struct sa_span_info {
    uint64_t id;          /**< unique span id; never reused */
    int span_class;       /**< class << 1 | noscan */
    int size_class;       /**< 1...67, 0 for a large object */
    bool noscan;          /**< objects hold no pointers */
    uintptr_t base;       /**< address of the first byte of the span */
    size_t npages;        /**< span length in 8 KiB pages */
    size_t elemsize;      /**< object size in bytes (span size for large) */
    size_t nelems;        /**< objects in the span */
    size_t alloc_count;   /**< objects allocated and not freed; for a span another
                               thread caches, its own frees since its last sweep
                               are not seen yet */
    bool fresh_pages;     /**< pages came from the OS untouched (large spans) */
} sa_span_info;

/**
 * Fills `out` with the span that contains `ptr` (any interior pointer) and
 * returns true; returns false when `ptr` is not inside an in-use span.
 */
bool sa_span_of(const void *_Nullable ptr, sa_span_info *_Nonnull out);

/* ---- statistics -------------------------------------------------------- */

/** Per size class counts, as runtime.MemStats.BySize. */
typedef struct sa_class_stats {
    uint32_t size;        /**< object size of the class */
    uint64_t mallocs;     /**< objects allocated, cumulative */
    uint64_t frees;       /**< objects freed, cumulative */
} sa_class_stats;

/**
 * runtime.MemStats' quantities, plus the allocation-climb counters.
 * Counters are kept per thread and merged on read.
 */
typedef struct sa_mem_stats {
    uint64_t alloc;            /**< bytes of live objects (= heap_alloc) */
    uint64_t total_alloc;      /**< bytes allocated, cumulative */
    uint64_t sys;              /**< bytes obtained from the OS (heap + metadata) */
    uint64_t mallocs;          /**< objects allocated, cumulative */
    uint64_t frees;            /**< objects freed, cumulative */
    uint64_t heap_alloc;       /**< bytes of live objects */
    uint64_t heap_sys;         /**< bytes of heap memory mapped from the OS */
    uint64_t heap_idle;        /**< bytes in free page runs (incl. released) */
    uint64_t heap_inuse;       /**< bytes in in-use spans */
    uint64_t heap_released;    /**< bytes of idle pages returned to the OS */
    uint64_t heap_objects;     /**< live objects */
    uint64_t metadata_sys;     /**< bytes mapped for spans, bitmaps, arena index */
    /* the allocation climb */
    uint64_t cache_allocs;     /**< small objects served by a thread cache */
    uint64_t large_allocs;     /**< large objects allocated (straight from mheap) */
    uint64_t large_frees;      /**< large objects freed */
    uint64_t cache_refills;    /**< a thread cache took a span from mcentral or mheap */
    uint64_t cache_sweeps;     /**< a thread cache swept its own span and kept it */
    uint64_t central_grows;    /**< mcentral had no partial span: new span from mheap */
    uint64_t spans_fresh;      /**< spans made from pages never used before */
    uint64_t spans_reused;     /**< spans made from pages a freed span had used */
    uint64_t spans_returned;   /**< spans whose pages went back to mheap */
    uint64_t spans_inuse;      /**< spans currently in use (small and large) */
    uint64_t arenas_mapped;    /**< 64 MiB arenas mapped from the OS */
    uint64_t remote_frees;     /**< frees made by a thread that did not cache the span */
    uint64_t pages_scavenged;  /**< pages returned to the OS, cumulative */
    uint64_t scavenge_runs;    /**< times the scavenger released memory */
    uint64_t threads_exited;   /**< thread caches handed back */
    uint64_t central_empty_spans;  /**< emptied spans mcentral keeps for reuse (in heap_inuse) */
    uint64_t central_empty_bytes;  /**< their bytes */
    uint64_t central_empty_reuses; /**< kept empty spans a thread cache took, cumulative */
    /* the free side of the thread caches */
    uint64_t free_cache_hits;      /**< allocations served from a free-cache bin, cumulative */
    uint64_t free_cache_objects;   /**< freed objects in bins and remote buffers now (counted in frees) */
    uint64_t free_cache_bytes;     /**< their bytes */
    uint64_t free_cache_flushes;   /**< frees that found their bin full (to the span's bitmaps), cumulative */
    uint64_t free_cache_gc_flushes; /**< cold bins flushed by the periodic pass, cumulative */
    uint64_t remote_batches;       /**< remote buffers handed to their spans, cumulative */
    uint64_t exit_flushes;         /**< thread caches flushed at thread exit that held cached frees */
    uint64_t thread_held_max;      /**< the most one live thread holds now: cached frees + kept empty spans */
    /* memory return: pages_scavenged = the four pages_released_* below */
    uint64_t pages_released_background; /**< pages the background scavenger released, cumulative */
    uint64_t pages_released_pacer;      /**< pages released on the page heap's slow path (SA_SCAVENGE_ON), cumulative */
    uint64_t pages_released_limit;      /**< pages released because the heap reached its memory limit, cumulative */
    uint64_t pages_released_demand;     /**< pages released by sa_scavenge / malloc_trim, cumulative */
    uint64_t scavenger_cpu_ns;          /**< CPU time of the background scavenger thread, cumulative */
    uint64_t scavenger_running;         /**< 1 while the background scavenger thread exists */
    uint64_t idle_cache_flushes;        /**< caches of idle threads the scavenger handed back, cumulative */
    uint64_t memory_limit;              /**< the limit (SIZE_MAX: none) */
    uint64_t memory_limit_hard;         /**< 1 when the limit is hard */
    uint64_t memory_counted;            /**< bytes counted toward the limit now */
    uint64_t memory_limit_hits;         /**< times the heap reached the limit and released memory, cumulative */
    uint64_t memory_limit_overshoots;   /**< soft limit: mappings made past it anyway, cumulative */
    uint64_t memory_limit_refusals;     /**< hard limit: requests refused with ENOMEM, cumulative */
    sa_class_stats by_size[SA_NUM_CLASSES]; /**< index = size class (0 unused) */
} sa_mem_stats;

/** Reads the statistics. */
void sa_read_mem_stats(sa_mem_stats *_Nonnull out);

/**
 * Writes the statistics as one JSON object into `buf` (NUL-terminated when
 * `cap` > 0) and returns the length the full text needs, like snprintf.
 */
size_t sa_mem_stats_json(char *_Nullable buf, size_t cap);

/* ---- hook -------------------------------------------------------------- */

enum { SA_EVENT_ALLOC = 1, SA_EVENT_FREE = 2 };

/** Called after every allocation and before every free while installed. */
typedef void (*sa_hook_fn)(int event, void *_Nonnull ptr, size_t size,
                           const sa_span_info *_Nonnull span, void *_Nullable ctx);

/** Installs (or with NULL removes) the one alloc/free hook. */
void sa_set_hook(sa_hook_fn _Nullable hook, void *_Nullable ctx);

/* ---- the scavenger, thread caches, checking ---------------------------- */

/**
 * Returns idle pages to the OS, at least `bytes` of them when that many are
 * idle (SIZE_MAX: all). Returns the bytes released. First, as Go's
 * debug.FreeOSMemory, hands the calling thread's cached spans back and
 * returns spans that became empty in mcentral to mheap.
 */
size_t sa_scavenge(size_t bytes);

/** Who releases idle memory besides explicit sa_scavenge calls. */
typedef enum sa_scavenge_mode {
    /** Nobody: only sa_scavenge (and malloc_trim) release pages. */
    SA_SCAVENGE_OFF = 0,
    /** The thread that frees a span to the page heap releases what exceeds
     * the retained amount, on that slow path (no thread of the heap's own). */
    SA_SCAVENGE_ON = 1,
    /** The default: a background thread, started when there is something to
     * release, paced to cpu_percent of one CPU. It releases idle pages above
     * the retained amount, lets the retained amount decay to floor_bytes once
     * the program has been idle for idle_ms, and hands back the caches of
     * threads idle that long, so their memory can be released too. */
    SA_SCAVENGE_BACKGROUND = 2,
} sa_scavenge_mode;

/** Scavenger tuning. */
typedef struct sa_scavenge_config {
    /** Idle memory kept mapped while the program allocates (default 64 MiB). */
    size_t retain_bytes;
    /** Or this share of in-use memory (percent, default 10), whichever is more. */
    unsigned retain_percent;
    /** A free page run must be idle this long before the pacer releases it (default 1000). */
    unsigned delay_ms;
    /** SA_SCAVENGE_* (default SA_SCAVENGE_BACKGROUND). */
    sa_scavenge_mode mode;
    /** Background: what stays retained once the program is idle (default 4 MiB). */
    size_t floor_bytes;
    /** Background: how long without allocation makes the program, or a
     * thread, idle (default 1000). */
    unsigned idle_ms;
    /** Background: the CPU budget, percent of one CPU (default 1; it may use
     * up to ten times that while idle memory is over twice its goal or the
     * heap is over its memory limit). */
    unsigned cpu_percent;
} sa_scavenge_config;

void sa_get_scavenge_config(sa_scavenge_config *_Nonnull out);
void sa_set_scavenge_config(const sa_scavenge_config *_Nonnull config);

/** What the memory limit does when the heap reaches it. */
typedef enum sa_memlimit_mode {
    /** As Go's GOMEMLIMIT: near the limit the heap hands back idle caches and
     * releases idle pages before it maps more; allocation still succeeds past
     * it (counted in memory_limit_overshoots). */
    SA_MEMLIMIT_SOFT = 0,
    /** A request that would take the counted memory past the limit, after
     * that, fails with ENOMEM. */
    SA_MEMLIMIT_HARD = 1,
} sa_memlimit_mode;

/**
 * Sets the memory limit (SIZE_MAX: none, the default) and its mode; returns
 * the previous limit, as Go's debug.SetMemoryLimit. Counted toward it, as Go
 * counts mapped memory minus what was released: the heap's pages that are
 * resident or may be (mapped, used at least once, not released since) plus
 * the metadata mapped for spans, bitmaps and the arena index.
 */
size_t sa_set_memory_limit(size_t bytes, sa_memlimit_mode mode);
/** The memory limit (SIZE_MAX: none); its mode in *mode when mode is not NULL. */
size_t sa_memory_limit(sa_memlimit_mode *_Nullable mode);

/**
 * The thread caches' budget. A thread's free side holds: the bins of
 * objects it freed into its own spans (reused by its next allocations of
 * the class), the buffer of its frees into other threads' spans (handed
 * back in batches) and emptied spans it keeps for reuse. Together they stay
 * under thread_bytes; all threads' bins together under total_bytes. A bin
 * gets its capacity on the thread's first free of the class, as far as the
 * budget allows; bins left unused are flushed by a periodic pass on the
 * allocation slow path, and everything is flushed at thread exit, by
 * sa_thread_flush and by sa_scavenge.
 */
typedef struct sa_cache_config {
    size_t thread_bytes; /**< per thread (default 1 MiB); 0 disables the free caches */
    size_t total_bytes;  /**< all threads' bins together (default 64 MiB) */
} sa_cache_config;

void sa_get_cache_config(sa_cache_config *_Nonnull out);
/** Applies to bins sized from now on (existing bins keep their capacity until flushed). */
void sa_set_cache_config(const sa_cache_config *_Nonnull config);

/**
 * The SPANALLOC environment variable configures the heap, natively and under
 * the malloc override alike: it is read once, when the heap starts (its
 * first thread cache or large object, or the first configuration call), so
 * a later sa_set_scavenge_config wins. Options: scavenge=off|on|background,
 * scavenge_retain=SIZE, scavenge_percent=N, scavenge_delay_ms=N,
 * scavenge_floor=SIZE, scavenge_idle_ms=N, scavenge_cpu_percent=N (the
 * sa_scavenge_config fields), memlimit=SIZE and memlimit_mode=soft|hard
 * (sa_set_memory_limit), thread_cache=SIZE, thread_cache_total=SIZE
 * (the sa_cache_config fields), stats=1 (MemStats as JSON on stderr at exit),
 * verbose=1 and foreign=glibc|abort (the override's). Bad items are reported
 * on stderr and ignored. See docs/malloc.md.
 */
typedef struct sa_env_options {
    bool stats;          /**< stats=1 */
    bool verbose;        /**< verbose=1 */
    bool foreign_abort;  /**< foreign=abort */
} sa_env_options;

/** The reporting options SPANALLOC set (reading the variable if it was not yet). */
void sa_env_options_read(sa_env_options *_Nonnull out);

/**
 * Hands back what the calling thread caches (as at thread exit): its bins
 * and remote buffer to their spans, its spans to mcentral; then the emptied
 * spans mcentral keeps for reuse to mheap.
 */
void sa_thread_flush(void);

/**
 * Checks every heap invariant (page map, free runs, span bitmaps, central
 * lists, counters). Returns 0 when the heap is consistent; otherwise writes
 * the first violation into `err` and returns -1. Other threads must not
 * allocate or free during the check.
 */
int sa_check_heap(char *_Nullable err, size_t errlen);

/**
 * As sa_check_heap, for a caller that guarantees that no other thread
 * allocates or frees during the call (an exit-test child, a fuzzer between
 * inputs, a stress test after joining its workers): it then also validates
 * the spans and bitmaps that other threads' caches hold, checks that every
 * small span is cached or on a central list, and always cross-checks the
 * live objects in the spans against the statistics.
 */
int sa_check_heap_quiescent(char *_Nullable err, size_t errlen);

/* ---- fork support ------------------------------------------------------- */
/* The heap registers these with pthread_atfork itself, before its first
 * thread cache or large object exists: a program that forks needs nothing.
 * In the child, the caches of the parent's other threads are handed back. */

/** Take every allocator lock in a fixed order (pthread_atfork prepare). */
void sa_fork_prepare(void);
/** Release them in the parent. */
void sa_fork_parent(void);
/** Reinitialize them in the child. */
void sa_fork_child(void);

/* ---- fault injection (tests) ------------------------------------------- */

/**
 * Makes the OS layer fail every mmap after `n` more successful calls
 * (n < 0 turns injection off). For testing out-of-memory handling.
 */
void sa_debug_fail_mmap_after(long n);

/** How the OS layer releases pages (sa_debug_set_release_mode). */
enum {
    /** madvise(MADV_DONTNEED) on the whole OS pages of the range. */
    SA_DEBUG_RELEASE_NORMAL = 0,
    /** Every release fails, as madvise does in a process that called mlockall. */
    SA_DEBUG_RELEASE_FAILS = 1,
    /** Releases round to 64 KiB OS pages, as on a 64 KiB-page kernel. */
    SA_DEBUG_RELEASE_64K_PAGES = 2,
};

/** Fault injection for page release (tests): one of SA_DEBUG_RELEASE_*. */
void sa_debug_set_release_mode(int mode);

/**
 * Corrupts the calling thread's free cache (tests of the heap checker):
 * pushes `ptr`, an object of a span the thread owns, on its bin again
 * without any check. Returns false when the bin has no room.
 */
bool sa_debug_push_cached(void *_Nonnull ptr);

/* ---- heap profiler ------------------------------------------------------ */

/**
 * Heap profiling as Go's runtime.MemProfileRate and pprof.WriteHeapProfile
 * (docs/profiling.md). Each thread counts down an exponentially distributed
 * number of bytes with mean `rate`; the allocation that crosses zero is
 * sampled: its stack (frame pointers, up to 64 frames) is kept with it until
 * it is freed. Profiles report, per stack, alloc_objects, alloc_space,
 * inuse_objects and inuse_space, each sample scaled by 1 / (1 - exp(-size /
 * rate)) to an unbiased estimate.
 */
#define SA_PROFILE_DEFAULT_RATE ((size_t)512 * 1024)
/** A gzipped profile.proto message, as `go tool pprof` reads. */
#define SA_PROFILE_PPROF 0
/** Folded stacks: one line per stack, callers first, `;`-separated, then the bytes in use. */
#define SA_PROFILE_FOLDED 1

/**
 * Sets the sampling rate in bytes: 0 turns sampling off, 1 samples every
 * allocation (exact figures). The calling thread switches at once, other
 * threads at their next sample or within 16 MiB of allocation. Returns the
 * previous rate. Sampling is off until this call or SPANALLOC=profile=…,
 * profile_rate=… or profile_signal=… turns it on (at 512 KiB by default).
 */
size_t sa_profile_set_rate(size_t rate);
/** The sampling rate in bytes (0: off). */
size_t sa_profile_rate(void);
/**
 * Writes the heap profile of the sampled objects to `path` (created or
 * truncated; `%p` becomes the process id) in `format` (SA_PROFILE_*).
 * Returns 0, or an errno value after one message on stderr. Does not
 * allocate from the profiled heap while it holds the profiler's lock; may
 * allocate (symbol lookup, demangling) outside it.
 */
int sa_profile_write(const char *_Nonnull path, int format);
/** The same to an open file descriptor (not closed). */
int sa_profile_write_fd(int fd, int format);
/**
 * The profile in memory: a buffer from mmap (release it with
 * sa_profile_buffer_free) holding *len bytes, or NULL with errno set.
 */
void *_Nullable sa_profile_write_buffer(int format, size_t *_Nonnull len);
void sa_profile_buffer_free(void *_Nullable buf, size_t len);
/** The profiler's counts (tests). */
typedef struct sa_profile_counts {
    uint64_t samples;   /* objects sampled so far */
    uint64_t live;      /* sampled objects not yet freed */
    uint64_t buckets;   /* distinct stacks */
    uint64_t dropped;   /* samples lost for lack of profiler memory */
} sa_profile_counts;
void sa_profile_read_counts(sa_profile_counts *_Nonnull out);

/* ---- spin-wait hint (used by GoChan's spin-then-park waits) ------------- */

/**
 * The CPU's spin-wait hint (x86 `pause`, arm64 `yield`): slows a spin loop's
 * loads so the partner core gets the cache line it writes, and lets an SMT
 * sibling run. Swift has no spelling for it.
 */
static inline void sa_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#ifdef __cplusplus
}
#endif
#endif /* SPANALLOC_H */
