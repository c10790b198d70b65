/*
 * stress.c — multi-generation stress of SpanAlloc's C API, in the manner of
 * mimalloc's test/test-stress.c (docs/reliability.md, "Stress").
 *
 * A configuration (threads, small-only or mixed with large objects) runs in
 * generations: each generation starts `threads` threads and joins them all
 * before the next one starts. Every thread, from its own seed:
 *
 *   - allocates objects of random sizes across all 67 small classes (a class
 *     chosen uniformly, then a size inside its range) and, in mixed
 *     configurations, large objects (32 KiB + 1 … 4 MiB), scan or noscan,
 *     one in eight zeroed (checked zero before it is written);
 *   - fills each object with a pattern derived from its address and its size
 *     (word 0 holds the size, masked by a hash of the address);
 *   - keeps a live set, frees random members of it, and swaps objects with a
 *     lock-free transfer array shared by all threads of all generations
 *     (atomic exchange): the object it gets back was usually made by another
 *     thread, often of an earlier generation that has exited, and is freed
 *     (a remote free, or a free into a span whose owner is gone) or kept;
 *   - at exit hands a quarter of its live set to the transfer array and frees
 *     the rest, so objects outlive the thread that made them.
 *
 * Every object's pattern is checked before it is freed or handed on. Between
 * generations (all threads joined) the main thread checks that the heap's
 * live-object count is the baseline plus the objects in the transfer array,
 * and runs the heap checker. After the last generation it frees what the
 * transfer array holds, calls sa_thread_flush(), and requires heapObjects,
 * spansInuse (MemStats spans_inuse), heapInuse and heapAlloc back at their
 * values before the configuration, the call counters balanced, and the heap
 * checker (quiescent mode) to pass. Any failure prints a message and exits 1.
 *
 * The free caches: every second configuration runs with a thread budget of
 * 64 KiB instead of the default 1 MiB (bins run out of capacity, frees go
 * to freeBits); at the end of each generation the workers wait for each
 * other with their caches full, and the first checks that no thread holds
 * more than the budget (MemStats thread_held_max). Each configuration must have served
 * allocations from the bins (free_cache_hits), found bins full
 * (free_cache_flushes), handed remote buffers back (remote_batches) and
 * flushed caches of exiting threads that held frees (exit_flushes).
 *
 * While the workers run, two monitor threads read MemStats over and over
 * (what a program's metrics thread does): under ThreadSanitizer every read
 * must be race-free against the frees and against the other reader.
 *
 *   stress                         # CI: every configuration, STRESS_OPS (default 10^6) operations each
 *   STRESS_OPS=200000 stress       # fewer (the ThreadSanitizer build)
 *   STRESS_SECONDS=600 stress      # long mode: the time is shared by the configurations
 *   STRESS_CONFIGS=2s,4m stress    # a subset: <threads><s|m> (s: small only, m: mixed with large)
 *   STRESS_SEED=7 stress           # another seed (printed at start)
 *
 * Built by scripts/stress.sh with -O2 -DNDEBUG and with -fsanitize=thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spanalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The quiescent heap checker (every thread's cached spans too, live objects
 * against the statistics always). Weak, so this file also builds against a
 * core that has only sa_check_heap; the run says which one it used. */
int sa_check_heap_quiescent(char *err, size_t errlen) __attribute__((weak));

#define LIVE_MAX 1024             /* live set per thread */
#define TRANSFERS 1024            /* slots of the shared transfer array */
#define OPS_PER_THREAD_GEN 20000  /* operations of one thread in one generation */
#define FULL_FILL (64u << 10)     /* larger objects: first/last 16 KiB and one word per 4 KiB */
#define EDGE (16u << 10)
#define LARGE_MAX ((size_t)4 << 20)

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stress: FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    exit(1);
}

/* ---- random numbers and patterns ---------------------------------------- */

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s; } rng_t;
static inline uint64_t next(rng_t *r) { return mix(r->s += 0x9E3779B97F4A7C15ull); }
static inline uint64_t below(rng_t *r, uint64_t n) { return next(r) % n; }

static uint64_t run_seed = 1;

/* Word 0 of an object: its size, masked by the address. */
static inline uint64_t tag(uintptr_t a) { return mix(a ^ run_seed ^ 0x5A5A5A5A5A5A5A5Aull); }
/* The word at byte offset o (o >= 8, a multiple of 8). */
static inline uint64_t pword(uintptr_t a, size_t size, size_t o) { return mix(a + o * 0x9E3779B97F4A7C15ull ^ size ^ run_seed); }

/* Calls body on each byte range [a, b) of the pattern in an object of `size`. */
#define FOR_EACH_RANGE(size, a, b, body) do { \
        size_t sz_ = (size); \
        if (sz_ <= FULL_FILL) { size_t a = 8, b = sz_; body; } \
        else { \
            { size_t a = 8, b = EDGE; body; } \
            for (size_t m_ = EDGE; m_ + 8 <= sz_ - EDGE; m_ += 4096) { size_t a = m_, b = m_ + 8; body; } \
            { size_t a = sz_ - EDGE, b = sz_; body; } \
        } \
    } while (0)

/* Writes or (verify) compares [a, b); a is a multiple of 8. Returns the first
 * differing offset or SIZE_MAX. */
static size_t prange(unsigned char *p, size_t size, size_t a, size_t b, bool verify) {
    uintptr_t base = (uintptr_t)p;
    size_t o = a;
    for (; o + 8 <= b; o += 8) {
        uint64_t w = pword(base, size, o), have;
        if (verify) { memcpy(&have, p + o, 8); if (have != w) return o; }
        else memcpy(p + o, &w, 8);
    }
    if (o < b) {
        uint64_t w = pword(base, size, o);
        for (; o < b; o++) {
            unsigned char c = (unsigned char)(w >> ((o & 7) * 8));
            if (verify) { if (p[o] != c) return o; } else p[o] = c;
        }
    }
    return SIZE_MAX;
}

static void fill(unsigned char *p, size_t size) {
    uint64_t w0 = size ^ tag((uintptr_t)p);
    memcpy(p, &w0, 8);
    FOR_EACH_RANGE(size, a, b, { prange(p, size, a, b, false); });
}

/* Checks an object's pattern and returns its size. */
static size_t check(unsigned char *p, const char *when) {
    uint64_t w0;
    memcpy(&w0, p, 8);
    size_t size = (size_t)(w0 ^ tag((uintptr_t)p));
    size_t usable = sa_usable_size(p);
    if (size < 8 || size > LARGE_MAX || usable < size)
        fail("%s: object %p: word 0 is %#llx (size %zu decoded, usable %zu): overwritten", when, (void *)p,
             (unsigned long long)w0, size, usable);
    FOR_EACH_RANGE(size, a, b, {
        size_t bad = prange(p, size, a, b, true);
        if (bad != SIZE_MAX) fail("%s: object %p (%zu bytes): byte %zu changed", when, (void *)p, size, bad);
    });
    return size;
}

static void check_zero(const unsigned char *p, size_t size) {
    for (size_t o = 0; o < size; o++)
        if (p[o]) fail("zeroed object %p (%zu bytes): byte %zu is %#x", (const void *)p, size, o, p[o]);
}

/* ---- a configuration ---------------------------------------------------- */

typedef struct {
    int threads;
    bool large;
    char name[8];
} config;

#define SMALL_BUDGET ((size_t)64 << 10) /* thread_bytes of every second configuration */
static size_t thread_budget;            /* this configuration's sa_cache_config.thread_bytes */
/* The workers of a generation meet here before they exit (a generation's
 * thread count): between the two waits no thread allocates or frees. */
static pthread_barrier_t exit_barrier;

/* Monitors: read MemStats until the generation's workers are done. */
#define MONITORS 2
static _Atomic bool workers_done;
static _Atomic uint64_t monitor_reads;

static void *monitor(void *arg) {
    (void)arg;
    sa_mem_stats st;
    while (!atomic_load(&workers_done)) {
        sa_read_mem_stats(&st);
        atomic_fetch_add_explicit(&monitor_reads, 1, memory_order_relaxed);
        /* a remote buffer may hold one object past its 1/8 between a free and its flush */
        if (st.thread_held_max > thread_budget + SA_MAX_SMALL_SIZE)
            fail("monitor: a thread holds %llu bytes in its free caches, the budget is %zu",
                 (unsigned long long)st.thread_held_max, thread_budget);
        if (st.free_cache_hits > st.cache_allocs)
            fail("monitor: %llu free-cache hits but %llu small allocations", (unsigned long long)st.free_cache_hits,
                 (unsigned long long)st.cache_allocs);
        struct timespec pause = {0, 50000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static _Atomic(unsigned char *) transfer[TRANSFERS];
/* A few hot slots: an object put there is usually taken within a few
 * operations by another running thread and freed, i.e. a remote free into
 * a span its maker is allocating from (and sweeping) at that moment. */
#define HOT 8
static _Atomic(unsigned char *) hot[HOT];
static _Atomic uint64_t total_ops, total_allocs, total_frees, total_transfers, total_large;
static bool mixed_sizes;

/* Each thread's favourite small class (a third of its allocations): its
 * current span of that class runs dry and is swept often, while the other
 * threads free hot-transferred objects into it. */
static _Thread_local int favourite;

static size_t pick_size(rng_t *r) {
    if (mixed_sizes && below(r, 100) < 2) {
        /* large: mostly up to 512 KiB, one in eight up to 4 MiB */
        size_t top = below(r, 8) == 0 ? LARGE_MAX : (size_t)512 << 10;
        return SA_MAX_SMALL_SIZE + 1 + below(r, top - SA_MAX_SMALL_SIZE);
    }
    /* half the time one of the 16 classes up to 256 B (many objects per span:
     * spans run dry and are swept often), otherwise any of the 67 */
    int cls = below(r, 3) == 0 && favourite ? favourite : 1 + (int)below(r, below(r, 2) ? 16 : 67);
    size_t hi = sa_class_size(cls), lo = cls > 1 ? sa_class_size(cls - 1) + 1 : 1;
    size_t s = lo + below(r, hi - lo + 1);
    return s < 8 ? 8 : s;
}

typedef struct {
    int id, gen;
    uint64_t seed;
} worker_arg;

static void release(unsigned char *p, const char *when) {
    check(p, when);
    sa_free(p);
}

static void *worker(void *arg) {
    worker_arg *wa = arg;
    rng_t r = {mix(wa->seed)};
    favourite = 1 + (int)below(&r, 16);
    unsigned char *live[LIVE_MAX];
    size_t nlive = 0;
    uint64_t ops = 0, allocs = 0, frees = 0, transfers = 0, large = 0;
    for (int i = 0; i < OPS_PER_THREAD_GEN; i++) {
        unsigned k = (unsigned)below(&r, 100);
        if (k < 50 && nlive < LIVE_MAX) {
            size_t size = pick_size(&r);
            unsigned flags = (below(&r, 2) ? SA_NOSCAN : 0) | (below(&r, 8) == 0 ? SA_ZERO : 0);
            errno = 0;
            unsigned char *p = sa_alloc(size, flags);
            if (!p) fail("sa_alloc(%zu, %u) returned NULL (errno %d)", size, flags, errno);
            if ((uintptr_t)p % 8) fail("sa_alloc(%zu) = %p is not 8-byte aligned", size, (void *)p);
            if (sa_usable_size(p) < size) fail("sa_alloc(%zu) = %p: usable size %zu", size, (void *)p, sa_usable_size(p));
            if (flags & SA_ZERO) check_zero(p, size);
            fill(p, size);
            live[nlive++] = p;
            allocs++;
            ops++;
            large += size > SA_MAX_SMALL_SIZE;
        } else if (k < 85) {
            if (!nlive) continue;
            size_t j = below(&r, nlive);
            release(live[j], "before free");
            live[j] = live[--nlive];
            frees++;
            ops++;
        } else if (k < 92) {
            /* hand the newest object over hot, and free whatever was there */
            unsigned char *mine = NULL;
            if (nlive) { mine = live[--nlive]; check(mine, "before a hot transfer"); }
            unsigned char *got = atomic_exchange_explicit(&hot[below(&r, HOT)], mine, memory_order_acq_rel);
            transfers++;
            ops++;
            if (got) { release(got, "free after a hot transfer"); frees++; ops++; }
        } else if (k < 99) {
            /* swap one of ours (or nothing) into a random transfer slot */
            unsigned char *mine = NULL;
            if (nlive && below(&r, 4)) {
                size_t j = below(&r, nlive);
                mine = live[j];
                check(mine, "before transfer");
                live[j] = live[--nlive];
            }
            unsigned char *got = atomic_exchange_explicit(&transfer[below(&r, TRANSFERS)], mine, memory_order_acq_rel);
            transfers++;
            ops++;
            if (got) {
                if (below(&r, 2) && nlive < LIVE_MAX) {
                    check(got, "after transfer");
                    live[nlive++] = got;
                } else {
                    release(got, "free after transfer");
                    frees++;
                    ops++;
                }
            }
        } else if (below(&r, 50) == 0) {
            sa_thread_flush();
            ops++;
        }
    }
    /* a quarter of the live set outlives this thread */
    for (size_t j = 0; j < nlive; j++) {
        ops++;
        if (below(&r, 4) == 0) {
            check(live[j], "before transfer at exit");
            unsigned char *got = atomic_exchange_explicit(&transfer[below(&r, TRANSFERS)], live[j], memory_order_acq_rel);
            transfers++;
            if (got) { release(got, "free after transfer at exit"); frees++; ops++; }
        } else {
            release(live[j], "free at exit");
            frees++;
        }
    }
    /* The budget, every worker's bins and remote buffer as its run left them
     * (bins hold at most 3/4 of it, a remote buffer 1/8 between frees). */
    pthread_barrier_wait(&exit_barrier);
    if (wa->id == 0) {
        sa_mem_stats st;
        sa_read_mem_stats(&st);
        if (st.thread_held_max > thread_budget)
            fail("a thread holds %llu bytes in its free caches, the budget is %zu",
                 (unsigned long long)st.thread_held_max, thread_budget);
        if (st.thread_held_max == 0) fail("no worker holds cached frees before it exits");
    }
    pthread_barrier_wait(&exit_barrier);
    atomic_fetch_add(&total_ops, ops);
    atomic_fetch_add(&total_allocs, allocs);
    atomic_fetch_add(&total_frees, frees);
    atomic_fetch_add(&total_transfers, transfers);
    atomic_fetch_add(&total_large, large);
    return NULL;
}

static bool use_quiescent(void) { return sa_check_heap_quiescent != NULL; }

static void heap_check(const char *when) {
    char err[512];
    int rc = use_quiescent() ? sa_check_heap_quiescent(err, sizeof err) : sa_check_heap(err, sizeof err);
    if (rc != 0) fail("heap checker %s: %s", when, err);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Objects in the transfer arrays, and their usable bytes. */
static uint64_t transfer_count(uint64_t *bytes) {
    uint64_t n = 0, b = 0;
    for (int i = 0; i < HOT; i++) {
        unsigned char *p = atomic_load(&hot[i]);
        if (p) { n++; b += sa_usable_size(p); }
    }
    for (int i = 0; i < TRANSFERS; i++) {
        unsigned char *p = atomic_load(&transfer[i]);
        if (p) { n++; b += sa_usable_size(p); }
    }
    *bytes = b;
    return n;
}

#define RESIDENTS 3000

static void print_stats_line(const char *what, const sa_mem_stats *a, const sa_mem_stats *b) {
    printf("  %s: heapObjects %llu -> %llu, spansInuse %llu -> %llu, heapInuse %llu -> %llu, "
           "heapAlloc %llu -> %llu; mallocs +%llu, frees +%llu; heapSys %llu MiB\n", what,
           (unsigned long long)a->heap_objects, (unsigned long long)b->heap_objects,
           (unsigned long long)a->spans_inuse, (unsigned long long)b->spans_inuse,
           (unsigned long long)a->heap_inuse, (unsigned long long)b->heap_inuse,
           (unsigned long long)a->heap_alloc, (unsigned long long)b->heap_alloc,
           (unsigned long long)(b->mallocs - a->mallocs), (unsigned long long)(b->frees - a->frees),
           (unsigned long long)b->heap_sys >> 20);
}

static void expect_same(const char *name, const char *when, const sa_mem_stats *a, const sa_mem_stats *b) {
    if (b->heap_objects != a->heap_objects) fail("%s: heapObjects not back at its value %s", name, when);
    if (b->heap_alloc != a->heap_alloc) fail("%s: heapAlloc not back at its value %s", name, when);
    if (b->spans_inuse != a->spans_inuse) fail("%s: spansInuse not back at its value %s", name, when);
    if (b->heap_inuse != a->heap_inuse) fail("%s: heapInuse not back at its value %s", name, when);
    if (b->mallocs - a->mallocs != b->frees - a->frees) fail("%s: mallocs and frees do not balance %s", name, when);
}

static uint64_t run_config(const config *c, uint64_t min_ops, double seconds, bool small_budget) {
    mixed_sizes = c->large;
    sa_cache_config cache_default, cache;
    sa_get_cache_config(&cache_default);
    cache = cache_default;
    if (small_budget) cache.thread_bytes = SMALL_BUDGET;
    sa_set_cache_config(&cache);
    thread_budget = cache.thread_bytes;
    atomic_store(&total_ops, 0); atomic_store(&total_allocs, 0); atomic_store(&total_frees, 0);
    atomic_store(&total_transfers, 0); atomic_store(&total_large, 0);
    sa_thread_flush();
    sa_mem_stats start, before, st, after, end;
    sa_read_mem_stats(&start);
    /* Objects the main thread keeps through the run: their spans go to
     * mcentral half full (the flush below), so the workers allocate into
     * spans that hold someone else's live objects, and the baseline is not
     * an empty heap. */
    static unsigned char *resident[RESIDENTS];
    rng_t rr = {mix(run_seed ^ 0xC0FFEEull ^ (uint64_t)c->threads)};
    for (int i = 0; i < RESIDENTS; i++) {
        size_t size = pick_size(&rr);
        resident[i] = sa_alloc(size, below(&rr, 2) ? SA_NOSCAN : 0);
        if (!resident[i]) fail("sa_alloc(%zu) for a resident object returned NULL", size);
        fill(resident[i], size);
    }
    for (int i = 0; i < RESIDENTS; i += 2) { sa_free(resident[i]); resident[i] = NULL; }
    sa_thread_flush();
    sa_read_mem_stats(&before);
    heap_check("before the run");
    double t0 = now_s();
    int gen = 0;
    pthread_t tid[64];
    worker_arg args[64];
    for (;;) {
        pthread_barrier_init(&exit_barrier, NULL, (unsigned)c->threads);
        atomic_store(&workers_done, false);
        pthread_t mon[MONITORS];
        for (int i = 0; i < MONITORS; i++)
            if (pthread_create(&mon[i], NULL, monitor, NULL)) fail("pthread_create");
        for (int i = 0; i < c->threads; i++) {
            args[i] = (worker_arg){i, gen, run_seed * 1000003u + (uint64_t)gen * 64 + (uint64_t)i + (c->large ? 1u << 30 : 0) + ((uint64_t)c->threads << 40)};
            if (pthread_create(&tid[i], NULL, worker, &args[i])) fail("pthread_create");
        }
        for (int i = 0; i < c->threads; i++) pthread_join(tid[i], NULL);
        atomic_store(&workers_done, true);
        for (int i = 0; i < MONITORS; i++) pthread_join(mon[i], NULL);
        pthread_barrier_destroy(&exit_barrier);
        gen++;
        /* quiescent: every thread of the generation has exited */
        uint64_t tbytes, tn = transfer_count(&tbytes);
        sa_read_mem_stats(&st);
        if (st.heap_objects != before.heap_objects + tn)
            fail("after generation %d: heapObjects %llu, expected %llu before + %llu in the transfer array", gen,
                 (unsigned long long)st.heap_objects, (unsigned long long)before.heap_objects, (unsigned long long)tn);
        if (st.heap_alloc != before.heap_alloc + tbytes)
            fail("after generation %d: heapAlloc %llu, expected %llu before + %llu bytes in the transfer array", gen,
                 (unsigned long long)st.heap_alloc, (unsigned long long)before.heap_alloc, (unsigned long long)tbytes);
        if (gen % 8 == 1) heap_check("between generations");
        uint64_t ops = atomic_load(&total_ops);
        if (seconds > 0 ? now_s() - t0 >= seconds && ops >= min_ops : ops >= min_ops) break;
    }
    /* the objects still in the transfer arrays: freed by the main thread */
    for (int i = 0; i < HOT; i++) {
        unsigned char *p = atomic_exchange(&hot[i], NULL);
        if (p) { release(p, "free at the end"); atomic_fetch_add(&total_frees, 1); atomic_fetch_add(&total_ops, 1); }
    }
    for (int i = 0; i < TRANSFERS; i++) {
        unsigned char *p = atomic_exchange(&transfer[i], NULL);
        if (p) { release(p, "free at the end"); atomic_fetch_add(&total_frees, 1); atomic_fetch_add(&total_ops, 1); }
    }
    sa_thread_flush();
    double dt = now_s() - t0;
    sa_read_mem_stats(&after);
    uint64_t ops = atomic_load(&total_ops);
    printf("stress %-3s %d threads, %s, thread cache %zu KiB: %llu operations (%llu allocations, %llu of them large; "
           "%llu frees; %llu transfers) in %d generations, %.2f s (%.1f Mops/s)\n",
           c->name, c->threads, c->large ? "small and large" : "small only", thread_budget >> 10, (unsigned long long)ops,
           (unsigned long long)atomic_load(&total_allocs), (unsigned long long)atomic_load(&total_large),
           (unsigned long long)atomic_load(&total_frees), (unsigned long long)atomic_load(&total_transfers), gen, dt,
           ops / dt / 1e6);
    print_stats_line("before -> after the run (resident objects live)", &before, &after);
    printf("  monitors: %llu MemStats reads while the workers ran\n", (unsigned long long)atomic_exchange(&monitor_reads, 0));
    fflush(stdout);
    if (atomic_load(&total_allocs) != atomic_load(&total_frees))
        fail("%s: %llu allocations but %llu frees by the harness", c->name,
             (unsigned long long)atomic_load(&total_allocs), (unsigned long long)atomic_load(&total_frees));
    if (after.mallocs - before.mallocs != atomic_load(&total_allocs))
        fail("%s: mallocs +%llu, the harness allocated %llu", c->name,
             (unsigned long long)(after.mallocs - before.mallocs), (unsigned long long)atomic_load(&total_allocs));
    if (after.frees - before.frees != atomic_load(&total_frees))
        fail("%s: frees +%llu, the harness freed %llu", c->name,
             (unsigned long long)(after.frees - before.frees), (unsigned long long)atomic_load(&total_frees));
    expect_same(c->name, "before the run", &before, &after);
    if (after.threads_exited - before.threads_exited < (uint64_t)gen * (uint64_t)c->threads)
        fail("%s: %llu thread caches handed back, %d threads exited", c->name,
             (unsigned long long)(after.threads_exited - before.threads_exited), gen * c->threads);
    heap_check("after the run");
    for (int i = 1; i < RESIDENTS; i += 2) release(resident[i], "free of a resident object");
    sa_thread_flush();
    sa_read_mem_stats(&end);
    print_stats_line("start -> end (resident objects freed)", &start, &end);
    expect_same(c->name, "at the start", &start, &end);
    heap_check("at the end");
    /* The free caches were exercised: each counter moved. */
    uint64_t hits = end.free_cache_hits - start.free_cache_hits, flushes = end.free_cache_flushes - start.free_cache_flushes,
             batches = end.remote_batches - start.remote_batches, exits = end.exit_flushes - start.exit_flushes,
             gc = end.free_cache_gc_flushes - start.free_cache_gc_flushes;
    printf("  free caches: hits +%llu, overflow flushes +%llu, remote batches +%llu (remote frees +%llu), "
           "exit flushes +%llu, cold-bin flushes +%llu\n",
           (unsigned long long)hits, (unsigned long long)flushes, (unsigned long long)batches,
           (unsigned long long)(end.remote_frees - start.remote_frees), (unsigned long long)exits, (unsigned long long)gc);
    if (!hits) fail("%s: no allocation was served from a free-cache bin (free_cache_hits +0)", c->name);
    if (!flushes) fail("%s: no free found its bin full (free_cache_flushes +0)", c->name);
    if (!batches) fail("%s: no remote buffer was handed back (remote_batches +0)", c->name);
    if (!exits) fail("%s: no exiting thread held cached frees (exit_flushes +0)", c->name);
    if (end.free_cache_objects != 0) fail("%s: %llu objects left in free caches at the end", c->name,
                                          (unsigned long long)end.free_cache_objects);
    sa_set_cache_config(&cache_default);
    return ops;
}

static bool parse_config(const char *s, size_t n, config *c) {
    if (n < 2 || n > 3 || (s[n - 1] != 's' && s[n - 1] != 'm')) return false;
    int t = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        t = t * 10 + (s[i] - '0');
    }
    if (t < 1 || t > 64) return false;
    c->threads = t;
    c->large = s[n - 1] == 'm';
    memcpy(c->name, s, n);
    c->name[n] = 0;
    return true;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    config configs[16];
    int nconfigs = 0;
    const char *list = getenv("STRESS_CONFIGS");
    if (!list || !*list) list = "2s,4s,2m,4m";
    for (const char *s = list; *s;) {
        size_t n = strcspn(s, ",");
        if (nconfigs == 16 || !parse_config(s, n, &configs[nconfigs]))
            fail("STRESS_CONFIGS: bad item '%.*s' (want e.g. 2s,4m)", (int)n, s);
        nconfigs++;
        s += n;
        if (*s == ',') s++;
    }
    uint64_t min_ops = 1000000;
    double seconds = 0;
    if (getenv("STRESS_OPS")) min_ops = strtoull(getenv("STRESS_OPS"), NULL, 10);
    if (getenv("STRESS_SECONDS")) seconds = strtod(getenv("STRESS_SECONDS"), NULL) / nconfigs;
    if (getenv("STRESS_SEED")) run_seed = strtoull(getenv("STRESS_SEED"), NULL, 10);
    printf("stress: seed %llu, %d configurations, at least %llu operations each%s%s; heap checker: %s\n",
           (unsigned long long)run_seed, nconfigs, (unsigned long long)min_ops, seconds > 0 ? ", for " : "",
           seconds > 0 ? "STRESS_SECONDS / configurations" : "",
           use_quiescent() ? "sa_check_heap_quiescent" : "sa_check_heap (sa_check_heap_quiescent not in this core)");
    double t0 = now_s();
    uint64_t all = 0;
    for (int i = 0; i < nconfigs; i++) all += run_config(&configs[i], min_ops, seconds, i % 2 == 1);
    printf("stress: passed, %llu operations in %.1f s\n", (unsigned long long)all, now_s() - t0);
    return 0;
}
