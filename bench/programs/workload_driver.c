/*
 * workload_driver.c — bench's newer workloads as a plain C program, for
 * `bench preload --programs driver`: it allocates with the process's own
 * malloc/free, so LD_PRELOAD decides which allocator serves it, and it links
 * nothing but libc and pthreads (no Swift runtime under the allocator).
 *
 *     cc -std=c11 -O2 -pthread workload_driver.c -o workload_driver
 *     LD_PRELOAD=libjemalloc.so.2 ./workload_driver churn-2t [--quick]
 *
 * Workloads (the same as bench's native rows, Sources/CBenchKit/workloads.c,
 * with the same parameters, seeds and random sequences):
 *   churn-1t, churn-2t   each of 1 or 2 threads keeps 10,000 live blocks of
 *                        16-2048 B and replaces a random one per operation
 *                        (10^7 operations in all)
 *   cache-scratch        2 threads first free 64 blocks each that the main
 *                        thread allocated side by side, then malloc 8-64 B,
 *                        write every byte 50 times, free
 *   cache-thrash         2 threads each malloc 8-64 B, write every byte 50
 *                        times, free
 *   idle-threads         64 threads each allocate 64 blocks of every size
 *                        16 B-32 KiB (steps of one eighth), write, free, 4
 *                        rounds, then stay blocked; RSS above the pre-thread
 *                        baseline after the frees, after 5 s idle, after exit
 *   idle-gaps            14 random-batch bursts (500,000 allocations of
 *                        8-1024 B in batches of 100,000) with 1.5 s idle gaps;
 *                        mean RSS after a burst and at the end of a gap
 *
 * bench passes every parameter explicitly (--ops, --size-min, --size-max,
 * --batch, --threads, --seed, --rounds, --writes, --idle-seconds), taken
 * from the same table as its native rows; the built-in defaults are the full
 * run's, and --quick selects the quick run's. --warmup N untimed runs, then
 * --repetitions N timed ones. --params prints the parameters it would run
 * with ({"workload": ..., "params": {...}}) and exits.
 *
 * Output: one JSON line on stdout, the shape `bench run-one` prints:
 *   {"workload": "...", "samples": [wall ns/op per repetition],
 *    "cpuSamples": [process CPU ns/op], "ops": N, "checksum": N,
 *    "peakRSSBytes": VmHWM, "probes": [[bytes, ...] per repetition],
 *    "probeNames": [...], "params": {...}}
 * RSS probes are /proc/self/statm's resident pages minus the same reading
 * taken before the workload started (clamped at 0). Exit status 1 (and a
 * message on stderr) when an allocation returns NULL or set-up fails, 2 on
 * bad arguments.
 *
 * Harness memory (live-set arrays, random tables, thread records) comes
 * from mmap, never from the allocator under test, and is touched before any
 * baseline is read.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- clocks, memory readings, harness memory ------------------------------ */

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Resident bytes from /proc/self/statm (its second field, in pages). */
static size_t current_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Peak resident bytes (VmHWM of /proc/self/status). */
static long peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

static double rss_above(size_t base) {
    size_t now = current_rss();
    return now > base ? (double)(now - base) : 0.0;
}

static void *map(size_t bytes) {
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static void unmap(void *p, size_t bytes) { if (p) munmap(p, bytes ? bytes : 1); }

static void sleep_seconds(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}

/* ---- randomness: splitmix64, as bench's native workloads ------------------ */

static inline uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

/* First and last byte of every object are written. */
static inline void touch(void *p, size_t size, uint64_t v) {
    volatile unsigned char *c = p;
    c[0] = (unsigned char)v;
    c[size - 1] = (unsigned char)(v >> 8);
}

/* Spin politely (2 shared cores), then yield. */
static inline void backoff(unsigned *spins) {
    if (++*spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        *spins = 0;
        sched_yield();
    }
}

/* Start line: the clock starts once every worker is ready. */
typedef struct gate {
    _Atomic int ready, go;
} gate;
static void gate_wait(gate *g) {
    atomic_fetch_add(&g->ready, 1);
    unsigned spins = 0;
    while (!atomic_load(&g->go)) backoff(&spins);
}
static void gate_open(gate *g, int n) {
    unsigned spins = 0;
    while (atomic_load(&g->ready) < n) backoff(&spins);
    atomic_store(&g->go, 1);
}

/* ---- parameters and one run's result --------------------------------------- */

typedef struct params {
    uint64_t ops;
    size_t size_min, size_max, batch;
    int threads;
    uint64_t seed;
    int rounds;
    uint64_t writes;
    double idle_seconds;
} params;

typedef struct result {
    double elapsed_ns, cpu_ns;
    uint64_t ops, checksum;
    int failed;
    int nprobes;
    double probes[4];
} result;

#define TABLE_LEN (1u << 16) /* precomputed random choices per thread, cycled */

/* ---- working-set churn ----------------------------------------------------- */

typedef struct churn_worker {
    size_t live;
    uint64_t ops;
    void **blocks;
    uint32_t *slot_choice, *size_choice;
    gate *g;
    uint64_t checksum;
    int failed;
    pthread_t thread;
} churn_worker;

static void *churn_thread(void *arg) {
    churn_worker *w = arg;
    for (size_t i = 0; i < w->live; i++) { /* the live set, filled by this thread, untimed */
        size_t size = w->size_choice[i & (TABLE_LEN - 1)];
        void *q = malloc(size);
        if (!q) { w->failed = 1; break; }
        touch(q, size, i);
        w->blocks[i] = q;
    }
    uint64_t sum = 0;
    gate_wait(w->g);
    for (uint64_t i = 0; i < w->ops && !w->failed; i++) {
        uint32_t k = (uint32_t)(i & (TABLE_LEN - 1));
        uint32_t slot = w->slot_choice[k];
        void *old = w->blocks[slot];
        if (old) { sum += *(volatile unsigned char *)old; free(old); }
        size_t size = w->size_choice[(k * 7 + 3) & (TABLE_LEN - 1)];
        void *q = malloc(size);
        if (!q) { w->failed = 1; w->blocks[slot] = NULL; break; }
        touch(q, size, i);
        w->blocks[slot] = q;
    }
    w->checksum = sum;
    return NULL;
}

static int run_churn(const params *p, result *r) {
    int threads = p->threads > 0 ? p->threads : 1;
    size_t live = p->batch ? p->batch : 10000;
    churn_worker *w = map(sizeof *w * (size_t)threads);
    gate *g = map(sizeof *g);
    if (!w || !g) return -1;
    uint64_t s = p->seed;
    for (int t = 0; t < threads; t++) {
        w[t].live = live;
        w[t].g = g;
        w[t].ops = p->ops / (uint64_t)threads;
        w[t].blocks = map(sizeof(void *) * live);
        w[t].slot_choice = map(sizeof(uint32_t) * TABLE_LEN);
        w[t].size_choice = map(sizeof(uint32_t) * TABLE_LEN);
        if (!w[t].blocks || !w[t].slot_choice || !w[t].size_choice) return -1;
        for (size_t i = 0; i < TABLE_LEN; i++) {
            w[t].slot_choice[i] = (uint32_t)(rng_next(&s) % live);
            w[t].size_choice[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
        }
    }
    for (int t = 0; t < threads; t++)
        if (pthread_create(&w[t].thread, NULL, churn_thread, &w[t]) != 0) return -1;
    gate_open(g, threads);
    double t0 = now_ns(), c0 = cpu_ns();
    for (int t = 0; t < threads; t++) pthread_join(w[t].thread, NULL);
    r->elapsed_ns = now_ns() - t0;
    r->cpu_ns = cpu_ns() - c0;
    for (int t = 0; t < threads; t++) {
        r->ops += w[t].ops;
        r->checksum += w[t].checksum;
        r->failed |= w[t].failed;
        for (size_t i = 0; i < live; i++) free(w[t].blocks[i]);
        unmap(w[t].blocks, sizeof(void *) * live);
        unmap(w[t].slot_choice, sizeof(uint32_t) * TABLE_LEN);
        unmap(w[t].size_choice, sizeof(uint32_t) * TABLE_LEN);
    }
    unmap(w, sizeof *w * (size_t)threads);
    unmap(g, sizeof *g);
    return 0;
}

/* ---- false sharing: cache-scratch and cache-thrash -------------------------- */

#define HANDOFF 64 /* cache-scratch: blocks the main thread allocates for each worker */
#define CACHE_THREADS 2

typedef struct cache_worker {
    uint64_t ops, writes;
    uint32_t *sizes;
    void **given;
    size_t ngiven;
    gate *g;
    uint64_t checksum;
    int failed;
    pthread_t thread;
} cache_worker;

static void *cache_thread(void *arg) {
    cache_worker *w = arg;
    gate_wait(w->g);
    for (size_t i = 0; i < w->ngiven; i++) free(w->given[i]);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < w->ops; i++) {
        size_t size = w->sizes[i & (TABLE_LEN - 1)];
        volatile unsigned char *q = malloc(size);
        if (!q) { w->failed = 1; break; }
        for (uint64_t k = 0; k < w->writes; k++)
            for (size_t b = 0; b < size; b++) q[b] = (unsigned char)(k + b);
        sum += q[size - 1];
        free((void *)q);
    }
    w->checksum = sum;
    return NULL;
}

static int run_cache(const params *p, result *r, bool scratch) {
    enum { T = CACHE_THREADS };
    cache_worker *w = map(sizeof *w * T);
    gate *g = map(sizeof *g);
    void **given = map(sizeof(void *) * HANDOFF * T);
    if (!w || !g || !given) return -1;
    uint64_t s = p->seed;
    for (int t = 0; t < T; t++) {
        w[t].sizes = map(sizeof(uint32_t) * TABLE_LEN);
        if (!w[t].sizes) return -1;
        for (size_t i = 0; i < TABLE_LEN; i++) w[t].sizes[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
        w[t].g = g;
        w[t].ops = p->ops / T;
        w[t].writes = p->writes ? p->writes : 100;
        w[t].given = given + (size_t)t * HANDOFF;
        w[t].ngiven = 0;
    }
    if (scratch) {
        /* Neighbouring blocks dealt out in turn: each worker frees blocks
         * that share cache lines with the other worker's. */
        for (size_t i = 0; i < HANDOFF * T; i++) {
            size_t size = w[i % T].sizes[i / T];
            void *q = malloc(size);
            if (!q) return -1;
            touch(q, size, i);
            w[i % T].given[w[i % T].ngiven++] = q;
        }
    }
    for (int t = 0; t < T; t++)
        if (pthread_create(&w[t].thread, NULL, cache_thread, &w[t]) != 0) return -1;
    gate_open(g, T);
    double t0 = now_ns(), c0 = cpu_ns();
    for (int t = 0; t < T; t++) pthread_join(w[t].thread, NULL);
    r->elapsed_ns = now_ns() - t0;
    r->cpu_ns = cpu_ns() - c0;
    for (int t = 0; t < T; t++) {
        r->ops += w[t].ops;
        r->checksum += w[t].checksum;
        r->failed |= w[t].failed;
        unmap(w[t].sizes, sizeof(uint32_t) * TABLE_LEN);
    }
    unmap(given, sizeof(void *) * HANDOFF * T);
    unmap(w, sizeof *w * T);
    unmap(g, sizeof *g);
    return 0;
}

/* ---- many idle threads ---------------------------------------------------- */

#define IDLE_BLOCKS 64 /* blocks of each size per thread per round */
#define IDLE_MAX_SIZES 96

/* 16 B to 32 KiB, each size one eighth above the last, rounded up to 8 B. */
static size_t idle_sizes(size_t *out, size_t cap) {
    size_t n = 0;
    for (size_t sz = 16; sz <= 32768 && n < cap;) {
        out[n++] = sz;
        size_t next = (sz + sz / 8 + 7) & ~(size_t)7;
        sz = next > sz ? next : sz + 8;
    }
    return n;
}

typedef struct idle_ctx {
    size_t sizes[IDLE_MAX_SIZES], nsizes;
    int rounds;
    gate g;
    _Atomic int done, release, failed;
} idle_ctx;

typedef struct idle_worker {
    idle_ctx *c;
    void **ptrs; /* nsizes * IDLE_BLOCKS */
    pthread_t thread;
} idle_worker;

static void *idle_thread(void *arg) {
    idle_worker *w = arg;
    idle_ctx *c = w->c;
    gate_wait(&c->g);
    size_t n = c->nsizes * IDLE_BLOCKS;
    for (int round = 0; round < c->rounds; round++) {
        for (size_t i = 0; i < n; i++) {
            size_t size = c->sizes[i / IDLE_BLOCKS];
            unsigned char *q = malloc(size);
            if (!q) { atomic_store(&c->failed, 1); w->ptrs[i] = NULL; continue; }
            for (size_t off = 0; off < size; off += 4096) q[off] = (unsigned char)i;
            q[size - 1] = (unsigned char)round;
            w->ptrs[i] = q;
        }
        for (size_t i = 0; i < n; i++) free(w->ptrs[i]);
    }
    atomic_fetch_add(&c->done, 1);
    while (!atomic_load(&c->release)) { /* blocked, caches and all, until released */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static int run_idle_threads(const params *p, result *r) {
    int threads = p->threads > 0 ? p->threads : 64;
    idle_ctx *c = map(sizeof *c);
    idle_worker *w = map(sizeof *w * (size_t)threads);
    if (!c || !w) return -1;
    c->nsizes = idle_sizes(c->sizes, IDLE_MAX_SIZES);
    c->rounds = p->rounds > 0 ? p->rounds : 4;
    size_t n = c->nsizes * IDLE_BLOCKS;
    for (int t = 0; t < threads; t++) {
        w[t].c = c;
        w[t].ptrs = map(sizeof(void *) * n);
        if (!w[t].ptrs) return -1;
        memset(w[t].ptrs, 0, sizeof(void *) * n); /* resident before the baseline */
    }
    size_t base = current_rss();
    for (int t = 0; t < threads; t++)
        if (pthread_create(&w[t].thread, NULL, idle_thread, &w[t]) != 0) return -1;
    gate_open(&c->g, threads);
    double t0 = now_ns(), c0 = cpu_ns();
    unsigned spins = 0;
    while (atomic_load(&c->done) < threads) backoff(&spins);
    r->elapsed_ns = now_ns() - t0;
    r->cpu_ns = cpu_ns() - c0;
    r->ops = (uint64_t)threads * (uint64_t)c->rounds * n;
    r->probes[0] = rss_above(base); /* right after the frees, threads alive */
    sleep_seconds(p->idle_seconds);
    r->probes[1] = rss_above(base); /* after the idle time */
    atomic_store(&c->release, 1);
    for (int t = 0; t < threads; t++) pthread_join(w[t].thread, NULL);
    r->probes[2] = rss_above(base); /* after the threads exited */
    r->nprobes = 3;
    r->failed = atomic_load(&c->failed);
    r->checksum = n;
    for (int t = 0; t < threads; t++) unmap(w[t].ptrs, sizeof(void *) * n);
    unmap(w, sizeof *w * (size_t)threads);
    unmap(c, sizeof *c);
    return 0;
}

/* ---- idle gaps: random-batch bursts separated by idle time --------------- */

#define BATCH_VARIANTS 4 /* size/permutation sets cycled through the batches */

static void shuffle_u32(uint32_t *a, size_t n, uint64_t *s) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(s) % i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* One burst: batches of `batch` random sizes, each freed in a random order. */
static int random_batch(const params *p, uint64_t seed, result *r) {
    size_t batch = p->batch ? p->batch : 100000;
    uint64_t nbatches = p->ops / batch;
    if (nbatches == 0) nbatches = 1;
    size_t table = sizeof(uint32_t) * batch * BATCH_VARIANTS;
    uint32_t *sizes = map(table), *perm = map(table);
    void **ptrs = map(sizeof(void *) * batch);
    if (!sizes || !perm || !ptrs) return -1;
    uint64_t s = seed;
    for (int v = 0; v < BATCH_VARIANTS; v++) {
        uint32_t *sz = sizes + (size_t)v * batch, *pm = perm + (size_t)v * batch;
        for (size_t i = 0; i < batch; i++) {
            sz[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
            pm[i] = (uint32_t)i;
        }
        shuffle_u32(pm, batch, &s);
    }
    memset(ptrs, 0, sizeof(void *) * batch);
    uint64_t sum = 0;
    double t0 = now_ns(), c0 = cpu_ns();
    for (uint64_t b = 0; b < nbatches && !r->failed; b++) {
        const uint32_t *sz = sizes + (size_t)(b % BATCH_VARIANTS) * batch;
        const uint32_t *pm = perm + (size_t)(b % BATCH_VARIANTS) * batch;
        for (size_t i = 0; i < batch; i++) {
            void *q = malloc(sz[i]);
            if (!q) { r->failed = 1; break; }
            touch(q, sz[i], i);
            ptrs[i] = q;
        }
        for (size_t i = 0; i < batch; i++) {
            void *q = ptrs[pm[i]];
            if (q) { sum += *(volatile unsigned char *)q; free(q); ptrs[pm[i]] = NULL; }
        }
    }
    r->elapsed_ns = now_ns() - t0;
    r->cpu_ns = cpu_ns() - c0;
    r->ops = nbatches * batch;
    r->checksum = sum;
    unmap(sizes, table);
    unmap(perm, table);
    unmap(ptrs, sizeof(void *) * batch);
    return 0;
}

static int run_idle_gaps(const params *p, result *r) {
    int bursts = p->rounds > 0 ? p->rounds : 14;
    size_t base = current_rss();
    double after_burst = 0, after_gap = 0;
    for (int b = 0; b < bursts; b++) {
        if (b > 0) {
            sleep_seconds(p->idle_seconds);
            after_gap += rss_above(base);
        }
        result one;
        memset(&one, 0, sizeof one);
        if (random_batch(p, p->seed + (uint64_t)b, &one) != 0) return -1;
        if (one.failed) { r->failed = 1; break; }
        r->elapsed_ns += one.elapsed_ns; /* the bursts only: ns/op leaves the gaps out */
        r->cpu_ns += one.cpu_ns;
        r->ops += one.ops;
        r->checksum += one.checksum;
        after_burst += rss_above(base);
    }
    r->probes[0] = after_burst / bursts;                      /* mean RSS right after a burst */
    r->probes[1] = bursts > 1 ? after_gap / (bursts - 1) : 0; /* mean RSS at the end of a gap */
    r->nprobes = 2;
    return 0;
}

/* ---- the workload table ---------------------------------------------------- */

typedef enum { CHURN, CACHE_SCRATCH, CACHE_THRASH, IDLE_THREADS, IDLE_GAPS } kind;

typedef struct workload {
    const char *name;
    kind kind;
    params full, quick;  /* the native rows' parameters (Sources/bench/Workloads.swift) */
    const char *probes;  /* JSON array of the probe names */
} workload;

/* bench's seeds: 0x5EED0000 + the length of the workload's name. */
#define SEED(name) (0x5EED0000ull + sizeof(name) - 1)

static const workload workloads[] = {
    {"churn-1t", CHURN, {10000000, 16, 2048, 10000, 1, SEED("churn-1t"), 0, 0, 0},
     {1000000, 16, 2048, 10000, 1, SEED("churn-1t"), 0, 0, 0}, "[]"},
    {"churn-2t", CHURN, {10000000, 16, 2048, 10000, 2, SEED("churn-2t"), 0, 0, 0},
     {1000000, 16, 2048, 10000, 2, SEED("churn-2t"), 0, 0, 0}, "[]"},
    {"cache-scratch", CACHE_SCRATCH, {400000, 8, 64, 0, 2, SEED("cache-scratch"), 0, 50, 0},
     {100000, 8, 64, 0, 2, SEED("cache-scratch"), 0, 50, 0}, "[]"},
    {"cache-thrash", CACHE_THRASH, {400000, 8, 64, 0, 2, SEED("cache-thrash"), 0, 50, 0},
     {100000, 8, 64, 0, 2, SEED("cache-thrash"), 0, 50, 0}, "[]"},
    {"idle-threads", IDLE_THREADS, {1, 0, 0, 0, 64, SEED("idle-threads"), 4, 0, 5},
     {1, 0, 0, 0, 64, SEED("idle-threads"), 2, 0, 0.5},
     "[\"RSS after frees\", \"RSS after idle\", \"RSS after exit\"]"},
    {"idle-gaps", IDLE_GAPS, {500000, 8, 1024, 100000, 1, SEED("idle-gaps"), 14, 0, 1.5},
     {100000, 8, 1024, 100000, 1, SEED("idle-gaps"), 4, 0, 0.2},
     "[\"RSS after bursts\", \"RSS after gaps\"]"},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

static int run(const workload *w, const params *p, result *r) {
    memset(r, 0, sizeof *r);
    switch (w->kind) {
    case CHURN: return run_churn(p, r);
    case CACHE_SCRATCH: return run_cache(p, r, true);
    case CACHE_THRASH: return run_cache(p, r, false);
    case IDLE_THREADS: return run_idle_threads(p, r);
    case IDLE_GAPS: return run_idle_gaps(p, r);
    }
    return -1;
}

/* ---- command line and output ----------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f, "usage: workload_driver WORKLOAD [--quick] [--params] [--warmup N] [--repetitions N] [--ops N]\n"
               "       [--size-min N] [--size-max N] [--batch N] [--threads N] [--seed N] [--rounds N]\n"
               "       [--writes N] [--idle-seconds S]\n"
               "workloads:");
    for (size_t i = 0; i < NWORKLOADS; i++) fprintf(f, " %s", workloads[i].name);
    fprintf(f, "\n");
}

static bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    if (!s || !*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end) return false;
    *out = v;
    return true;
}

static void print_params(const params *p, uint64_t warmup, uint64_t repetitions) {
    printf("\"params\": {\"ops\": %llu, \"sizeMin\": %zu, \"sizeMax\": %zu, \"batch\": %zu, \"threads\": %d, "
           "\"seed\": %llu, \"rounds\": %d, \"writes\": %llu, \"idleSeconds\": %g, \"warmup\": %llu, "
           "\"repetitions\": %llu}",
           (unsigned long long)p->ops, p->size_min, p->size_max, p->batch, p->threads, (unsigned long long)p->seed,
           p->rounds, (unsigned long long)p->writes, p->idle_seconds, (unsigned long long)warmup,
           (unsigned long long)repetitions);
}

/* Prints the values of one field of every repetition as a JSON array. */
static void print_array(const double *v, int n) {
    printf("[");
    for (int i = 0; i < n; i++) printf("%s%.17g", i ? ", " : "", v[i]);
    printf("]");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const workload *w = NULL;
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (strcmp(argv[1], workloads[i].name) == 0) w = &workloads[i];
    if (!w) {
        fprintf(stderr, "workload_driver: unknown workload %s\n", argv[1]);
        usage(stderr);
        return 2;
    }
    bool quick = false, only_params = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        if (strcmp(argv[i], "--params") == 0) only_params = true;
    }
    params p = quick ? w->quick : w->full;
    uint64_t warmup = 0, repetitions = 1;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--quick") == 0 || strcmp(opt, "--params") == 0) continue;
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t v = 0;
        bool ok = true;
        if (strcmp(opt, "--idle-seconds") == 0) {
            char *end;
            double d = val ? strtod(val, &end) : -1;
            ok = val && !*end && d >= 0;
            p.idle_seconds = d;
        } else if ((ok = parse_u64(val, &v))) {
            if (strcmp(opt, "--ops") == 0) p.ops = v;
            else if (strcmp(opt, "--size-min") == 0) p.size_min = (size_t)v;
            else if (strcmp(opt, "--size-max") == 0) p.size_max = (size_t)v;
            else if (strcmp(opt, "--batch") == 0) p.batch = (size_t)v;
            else if (strcmp(opt, "--threads") == 0) p.threads = (int)v;
            else if (strcmp(opt, "--seed") == 0) p.seed = v;
            else if (strcmp(opt, "--rounds") == 0) p.rounds = (int)v;
            else if (strcmp(opt, "--writes") == 0) p.writes = v;
            else if (strcmp(opt, "--warmup") == 0) warmup = v;
            else if (strcmp(opt, "--repetitions") == 0) repetitions = v;
            else ok = false;
        }
        if (!ok) {
            fprintf(stderr, "workload_driver: bad option %s %s\n", opt, val ? val : "");
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (p.ops == 0 || repetitions == 0 || repetitions > 64 || p.size_min > p.size_max ||
        p.threads < 1 || p.threads > 1024) {
        fprintf(stderr, "workload_driver: parameters out of range\n");
        return 2;
    }
    if (only_params) {
        printf("{\"workload\": \"%s\", ", w->name);
        print_params(&p, warmup, repetitions);
        printf("}\n");
        return 0;
    }

    /* The records of the timed repetitions, from mmap like every harness array. */
    result *runs = map(sizeof(result) * (size_t)repetitions);
    if (!runs) { fprintf(stderr, "workload_driver: cannot map the result records\n"); return 1; }
    uint64_t checksum = 0;
    for (uint64_t i = 0; i < warmup + repetitions; i++) {
        result r;
        if (run(w, &p, &r) != 0 || r.failed || r.ops == 0) {
            fprintf(stderr, "workload_driver: %s failed (%s)\n", w->name,
                    r.failed ? "an allocation returned NULL" : "set-up failed");
            return 1;
        }
        if (i >= warmup) {
            runs[i - warmup] = r;
            checksum += r.checksum;
        }
    }
    int n = (int)repetitions;
    double wall[64], cpu[64];
    for (int i = 0; i < n; i++) {
        wall[i] = runs[i].elapsed_ns / (double)runs[i].ops;
        cpu[i] = runs[i].cpu_ns / (double)runs[i].ops;
    }
    printf("{\"workload\": \"%s\", \"samples\": ", w->name);
    print_array(wall, n);
    printf(", \"cpuSamples\": ");
    print_array(cpu, n);
    printf(", \"ops\": %llu, \"checksum\": %llu, \"peakRSSBytes\": %ld",
           (unsigned long long)runs[n - 1].ops, (unsigned long long)checksum, peak_rss());
    if (runs[0].nprobes > 0) {
        printf(", \"probes\": [");
        for (int i = 0; i < n; i++) {
            printf("%s", i ? ", " : "");
            print_array(runs[i].probes, runs[i].nprobes);
        }
        printf("]");
    }
    printf(", \"probeNames\": %s, ", w->probes);
    print_params(&p, warmup, repetitions);
    printf("}\n");
    return 0;
}
