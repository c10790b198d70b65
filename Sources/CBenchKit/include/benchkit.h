/*
 * CBenchKit — the C half of `bench`.
 *
 * Every allocator under comparison sits behind one table of function
 * pointers (bk_allocator), and every workload is a C function that takes
 * such a table, so SpanAlloc, jemalloc, glibc, mimalloc and tcmalloc run
 * byte-for-byte the same code; only the pointers differ.
 *
 * Allocators are reached without taking over the process malloc:
 *   SpanAlloc  sa_alloc(size, 0) / sa_free (linked statically);
 *   glibc      __libc_malloc / __libc_free;
 *   jemalloc   dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL) + dlsym
 *              (needs GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384
 *              at process start: Debian's build uses initial-exec TLS);
 *   mimalloc   dlopen("libmimalloc.so.2"), mi_malloc / mi_free;
 *   tcmalloc   dlopen("libtcmalloc_minimal.so.4"), tc_malloc / tc_free;
 *   process    the process's own malloc/free (whatever LD_PRELOAD chose).
 *
 * Workloads precompute their random sizes and permutations before the
 * clock starts and report the time of the timed region only.
 */
#ifndef BENCHKIT_H
#define BENCHKIT_H

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

/* ---- the allocator table ------------------------------------------------ */

typedef void *_Nullable (*bk_malloc_fn)(size_t size);
typedef void (*bk_free_fn)(void *_Nullable ptr);
typedef void *_Nullable (*bk_realloc_fn)(void *_Nullable ptr, size_t size);
typedef size_t (*bk_usable_size_fn)(void *_Nullable ptr);
typedef int (*bk_mallctl_fn)(const char *_Nonnull name, void *_Nullable oldp,
                             size_t *_Nullable oldlenp, void *_Nullable newp, size_t newlen);

/** Which allocator a table holds. */
typedef enum bk_allocator_kind {
    BK_SPANALLOC = 0,
    BK_JEMALLOC = 1,
    BK_GLIBC = 2,
    BK_MIMALLOC = 3,
    BK_TCMALLOC = 4,
    BK_PROCESS = 5,   /**< the process malloc (for LD_PRELOAD runs) */
    BK_CUSTOM = 6,    /**< any library exporting malloc/free/realloc (bk_allocator_load_custom) */
    BK_KIND_COUNT = 7
} bk_allocator_kind;

/**
 * One allocator: the same four operations for everyone, plus optional extras.
 * name, malloc, free, realloc and usable_size are set whenever
 * bk_allocator_load succeeded (nullable only so Swift can zero-initialize).
 */
typedef struct bk_allocator {
    bk_allocator_kind kind;
    const char *_Nullable name;             /**< "SpanAlloc", "jemalloc", ... */
    bk_malloc_fn _Nullable malloc;
    bk_free_fn _Nullable free;
    bk_realloc_fn _Nullable realloc;
    bk_usable_size_fn _Nullable usable_size;
    bk_mallctl_fn _Nullable mallctl;        /**< jemalloc only */
    void (*_Nullable release)(void);        /**< return free memory to the OS, if it can */
    char version[96];                       /**< version text, "" when unknown */
    char error[256];                        /**< why loading failed */
} bk_allocator;

/**
 * Fills `out` for `kind`. Returns true on success; on failure returns false
 * with the reason in out->error (library not installed, TLS problem, ...).
 */
bool bk_allocator_load(bk_allocator_kind kind, bk_allocator *_Nonnull out);

/**
 * Fills `out` with a library given by path that exports malloc, free and
 * realloc (malloc_usable_size when it has one; otherwise usable_size returns
 * 0), loaded with dlopen(path, RTLD_NOW | RTLD_LOCAL) + dlsym. Fails when the
 * library does not define malloc itself (dlsym would otherwise find glibc's
 * through its dependencies and the row would measure glibc). `name` must stay
 * valid while the table is used.
 */
bool bk_allocator_load_custom(const char *_Nonnull name, const char *_Nonnull path, bk_allocator *_Nonnull out);

/** Path of the shared library used for `kind` with LD_PRELOAD, or NULL (glibc, SpanAlloc, process). */
const char *_Nullable bk_allocator_soname(bk_allocator_kind kind);

/**
 * Writes jemalloc's configuration (opt.* and config.* settings that matter
 * for speed and memory) as "key=value" pairs separated by spaces into buf.
 */
void bk_jemalloc_config(const bk_allocator *_Nonnull a, char *_Nonnull buf, size_t cap);

/** jemalloc statistics after an "epoch" refresh, bins summed over every size class. */
typedef struct bk_jemalloc_stats {
    uint64_t allocated, active, resident, mapped, retained, metadata;
    uint64_t nslabs;     /**< slabs created, cumulative (sum over bins of arena 0) */
    uint64_t nreslabs;   /**< times a bin reused a slab (sum) */
    uint64_t curslabs;   /**< slabs in use now (sum) */
    uint64_t large_curruns; /**< large extents in use now (arena 0) */
    uint64_t background_threads; /**< background purging threads running (stats.background_thread.num_threads) */
} bk_jemalloc_stats;

/** Reads the statistics of a loaded jemalloc; false when mallctl fails. */
bool bk_jemalloc_read_stats(const bk_allocator *_Nonnull a, bk_jemalloc_stats *_Nonnull out);

/* ---- workloads ---------------------------------------------------------- */

/** The parameters of one run of a workload. */
typedef struct bk_params {
    uint64_t ops;        /**< operations in the timed region (meaning per workload) */
    size_t size;         /**< fixed object size, when the workload has one */
    size_t size_min;     /**< smallest random size */
    size_t size_max;     /**< largest random size */
    size_t batch;        /**< objects per batch / pool size per thread */
    int threads;         /**< worker threads */
    uint64_t seed;       /**< for every random choice */
    int rounds;          /**< rounds per thread (idle-threads) or bursts (idle-gaps) */
    uint64_t writes;     /**< writes per object (cache-scratch, cache-thrash) */
    double idle_seconds; /**< idle time (idle-threads: after the frees; idle-gaps: each gap) */
} bk_params;

/** What a run measured. */
typedef struct bk_result {
    double elapsed_ns;   /**< wall time of the timed region */
    double cpu_ns;       /**< CPU time of the whole process (all threads) during the timed region */
    uint64_t ops;        /**< operations done (ns/op = elapsed_ns / ops) */
    uint64_t checksum;   /**< keeps the work observable; also a sanity check */
    int failed;          /**< nonzero when an allocation returned NULL */
    int nprobes;         /**< how many of probes[] the workload filled */
    double probes[4];    /**< workload-specific readings, e.g. resident bytes at chosen moments */
} bk_result;

typedef enum bk_workload_kind {
    BK_W_LIFO = 0,          /**< malloc(size); touch; free — `ops` pairs */
    BK_W_RANDOM_BATCH = 1,  /**< batches of `batch` random sizes, freed in random order */
    BK_W_PRODCONS = 2,      /**< producer allocates, consumer frees, through an SPSC ring */
    BK_W_LARSON = 3,        /**< `threads` threads replace random objects of shared pools */
    BK_W_REALLOC = 4,       /**< buffers grown by realloc from size_min to size_max */
    BK_W_LARGE = 5,         /**< random large objects (size_min..size_max), every page touched */
    BK_W_SCALING = 6,       /**< `threads` independent threads doing random batches */
    BK_W_CHURN = 7,         /**< `threads` threads each keep `batch` live blocks, replace a random one per op */
    BK_W_CACHE_SCRATCH = 8, /**< 2 threads write blocks after freeing blocks the other thread allocated */
    BK_W_CACHE_THRASH = 9,  /**< 2 threads each malloc, write `writes` times, free small blocks */
    BK_W_IDLE_THREADS = 10, /**< many threads alloc/free all small sizes, then idle; RSS probes */
    BK_W_IDLE_GAPS = 11,    /**< random-batch bursts separated by idle gaps; RSS probes */
    BK_W_COUNT = 12
} bk_workload_kind;

/** Runs one workload once and fills `out`. Returns 0, or -1 on a setup failure. */
int bk_run(bk_workload_kind kind, const bk_allocator *_Nonnull a,
           const bk_params *_Nonnull p, bk_result *_Nonnull out);

/* ---- the reuse experiment ----------------------------------------------- */

/** Live objects of the reuse experiment; its arrays come from mmap, not from any allocator under test. */
typedef struct bk_reuse bk_reuse;

/** Makes room for up to `capacity` objects. */
bk_reuse *_Nullable bk_reuse_new(size_t capacity, uint64_t seed);
void bk_reuse_destroy(bk_reuse *_Nonnull r);
/**
 * Allocates objects until `bytes` more are live. Sizes come from mix 0
 * (mostly small: 16..512 B) or mix 1 (different classes: 640 B..24 KiB plus
 * some large 40..256 KiB). Every object is written (one byte per 4 KiB and
 * its first and last byte). Returns the objects allocated, or -1 on NULL.
 */
long bk_reuse_fill(bk_reuse *_Nonnull r, const bk_allocator *_Nonnull a, int mix, size_t bytes);
/** Frees a random `fraction` (0...1) of the live objects. Returns the objects freed. */
long bk_reuse_free_fraction(bk_reuse *_Nonnull r, const bk_allocator *_Nonnull a, double fraction);
/** Live bytes (requested sizes) and objects. */
size_t bk_reuse_live_bytes(const bk_reuse *_Nonnull r);
size_t bk_reuse_live_objects(const bk_reuse *_Nonnull r);

/* ---- processes and the environment -------------------------------------- */

/** What wait4 reported about a child: CPU time and page faults. */
typedef struct bk_rusage {
    double user_ns;      /**< user CPU time, ns */
    double sys_ns;       /**< system CPU time, ns */
    long minflt;         /**< minor page faults */
    long majflt;         /**< major page faults */
} bk_rusage;

/**
 * Runs `path` with `argv` and `envp` (NULL-terminated), collects its stdout
 * into a malloc'ed NUL-terminated buffer (*out, to be freed with free()),
 * waits with wait4 and reports the peak RSS (the largest VmHWM of the child
 * and of its descendants, sampled every 2 ms while they run: wait4's
 * ru_maxrss would include the parent's RSS at spawn time), the child's CPU
 * time and page faults (wait4's rusage: the whole child and the descendants
 * it waited for, start-up included), wall time and exit status (status < 0: killed by signal -status). stderr is inherited.
 * When the child ended before the first sample, *rss_upper_bound is set and
 * the peak is wait4's ru_maxrss, which is at least this process's RSS.
 * Returns 0, or -1 when the process could not be started (errno set).
 */
int bk_spawn(const char *_Nonnull path, char *_Nullable const *_Nonnull argv,
             char *_Nullable const *_Nonnull envp, char *_Nullable *_Nonnull out,
             long *_Nonnull peak_rss_bytes, bool *_Nonnull rss_upper_bound, double *_Nonnull wall_ns,
             int *_Nonnull status, bk_rusage *_Nonnull usage);

/** Current resident set of this process in bytes (from /proc/self/statm). */
size_t bk_current_rss(void);
/** Peak resident set of this process in bytes (VmHWM). */
size_t bk_peak_rss(void);
/** Monotonic clock in nanoseconds. */
double bk_now_ns(void);
/** CPU time of this process (all its threads), nanoseconds. */
double bk_cpu_ns(void);
/**
 * Core-to-core cache-line round trip in ns: two threads take turns on one
 * counter `rounds` times (see lineprobe.c). Returns -1 if no thread could be
 * started.
 */
double bk_line_round_trip_ns(long rounds);
/** glibc's version string. */
const char *_Nonnull bk_glibc_version(void);

#ifdef __cplusplus
}
#endif
#endif /* BENCHKIT_H */
