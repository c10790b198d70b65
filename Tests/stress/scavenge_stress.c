/*
 * scavenge_stress.c — the background scavenger releasing page runs (outside
 * the heap lock) while other threads allocate from the same runs, split and
 * merge them (docs/reliability.md, "Stress").
 *
 * The scavenger runs with nothing retained, no delay, a 5 ms idle time and
 * its whole CPU budget (retain 0, delay_ms 0, floor 0, idle_ms 5,
 * cpu_percent 100): every page run freed is released at once, so the
 * workers' next large allocations land on runs that are being released or
 * just were, and the caches of workers that pause are claimed while they
 * hold live blocks. For each configuration (2 and 4 workers), the workers:
 *
 *   - allocate blocks of random sizes: five in six small (16 B-32 KiB,
 *     log-uniform), one in six large (32 KiB-1 MiB, one in 32 up to 4 MiB),
 *     so page runs split and merge all the time; one in eight SA_ZERO
 *     (checked zero);
 *   - fill every block with words derived from its address (every byte up to
 *     64 KiB; above, the first and last 4 KiB and one word per 4 KiB page, so
 *     every page is touched) and check them before every free: a page the
 *     scavenger released under a live block reads as zero, a run handed out
 *     twice shows another block's words;
 *   - grow and shrink large blocks with sa_realloc (in place when the run
 *     next to it is free: a run the scavenger may hold) and check the prefix;
 *   - hand blocks to each other through a shared array (remote frees);
 *   - pause 10-30 ms now and then (longer than idle_ms), so the scavenger
 *     claims their caches, and go on with the claimed cache.
 *
 * A monitor thread reads MemStats throughout. After the workers are joined
 * the main thread frees what is left, and the live objects must be back at
 * the baseline, the quiescent heap checker must pass, and the scavenger must
 * have released pages and claimed idle caches during the run.
 *
 * The checker phase: spans emptied by remote frees wait on mcentral's empty
 * lists while the scavenger moves them to mheap, and the quiescent checker,
 * run over and over meanwhile, must pass (no other thread allocates).
 *
 * Then the fork phase: a 64 MiB burst is freed and the process forks while
 * the scavenger releases it (4 times); each child runs the heap checker,
 * frees a burst of its own, waits for its own scavenger to start and release
 * it, and exits 0. Under ThreadSanitizer it needs
 * TSAN_OPTIONS=die_after_fork=0 (the child's new scavenger thread aborts it
 * otherwise) and detect_deadlocks=0 (sa_fork_prepare holds every allocator
 * lock, more than TSan's deadlock detector can track: it fails a CHECK and
 * hangs): scripts/stress.sh runs the TSan build twice, the workers with the
 * detector on and the fork phase alone with those options.
 *
 *   scavenge_stress                              # CI: 2 + 2 seconds, then the fork phase
 *   SCAVENGE_STRESS_SECONDS=60 scavenge_stress   # longer (shared by the configurations)
 *   SCAVENGE_STRESS_FORK=0 scavenge_stress       # without the fork phase
 *   SCAVENGE_STRESS_FORK=only scavenge_stress    # the fork phase alone
 *   STRESS_SEED=7 scavenge_stress                # another seed (printed at start)
 *
 * Built by scripts/stress.sh with -O2 -DNDEBUG and with -fsanitize=thread.
 * Any failure prints a message and exits 1.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LIVE 128                /* live blocks per worker */
#define SHARED 64               /* slots of the hand-over array */
#define FULL_FILL (64u << 10)   /* above: edges and one word per 4 KiB */
#define EDGE 4096u

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "scavenge_stress: FAILED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s; } rng_t;
static inline uint64_t next(rng_t *r) { return mix(r->s += 0x9E3779B97F4A7C15ull); }
static inline uint64_t below(rng_t *r, uint64_t n) { return next(r) % n; }

static uint64_t seed = 1;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {}
}

/* ---- blocks and their words ----------------------------------------------- */

typedef struct { unsigned char *p; size_t size; } block;

static inline uint64_t word(uintptr_t a, size_t o) { return mix(a ^ (o * 0x9E3779B97F4A7C15ull) ^ seed); }

/* Calls body(o) for every 8-byte word offset o the pattern covers. */
#define FOR_EACH_WORD(size, o, body) do { \
        size_t n_ = (size) & ~(size_t)7; \
        if ((size) <= FULL_FILL) { for (size_t o = 0; o < n_; o += 8) { body; } } \
        else { \
            for (size_t o = 0; o < EDGE; o += 8) { body; } \
            for (size_t o = EDGE; o + 8 <= n_ - EDGE; o += 4096) { body; } \
            for (size_t o = n_ - EDGE; o < n_; o += 8) { body; } \
        } \
    } while (0)

static void fill(block b) {
    uintptr_t a = (uintptr_t)b.p;
    FOR_EACH_WORD(b.size, o, memcpy(b.p + o, &(uint64_t){word(a, o)}, 8));
}

/* Checks the pattern of b in its first `limit` bytes. */
static void check(block b, size_t limit, const char *when) {
    uintptr_t a = (uintptr_t)b.p;
    FOR_EACH_WORD(b.size, o, {
        if (o + 8 > limit) break;
        uint64_t v;
        memcpy(&v, b.p + o, 8);
        if (v != word(a, o)) {
            bool zero_page = true;
            size_t page = o & ~(size_t)4095;
            for (size_t k = page; k < page + 4096 && k < b.size; k++) if (b.p[k]) { zero_page = false; break; }
            fail("%s: block %p of %zu bytes: word at offset %zu is %#llx, expected %#llx%s", when, (void *)b.p,
                 b.size, o, (unsigned long long)v, (unsigned long long)word(a, o),
                 zero_page ? " (its 4 KiB page reads as zero: released while live?)" : "");
        }
    });
}

static void check_zero(block b) {
    FOR_EACH_WORD(b.size, o, {
        uint64_t v;
        memcpy(&v, b.p + o, 8);
        if (v) fail("SA_ZERO block %p of %zu bytes: %#llx at offset %zu", (void *)b.p, b.size, (unsigned long long)v, o);
    });
}

static size_t random_size(rng_t *r) {
    if (below(r, 6) != 0) { /* small, log-uniform 16 B-32 KiB */
        unsigned shift = 4 + (unsigned)below(r, 11);
        return ((size_t)1 << shift) + below(r, (size_t)1 << shift);
    }
    size_t top = below(r, 32) == 0 ? (size_t)4 << 20 : (size_t)1 << 20;
    return (32u << 10) + 1 + below(r, top - (32u << 10));
}

/* ---- workers ---------------------------------------------------------------- */

static _Atomic(unsigned char *) shared_p[SHARED];
static _Atomic size_t shared_size[SHARED];
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool stop;
static _Atomic uint64_t n_ops, n_allocs, n_large, n_frees, n_reallocs, n_handed, n_pauses;

static void release_block(block b, const char *when) {
    check(b, b.size, when);
    sa_free(b.p);
}

static void *worker(void *arg) {
    rng_t r = {seed ^ (uint64_t)(uintptr_t)arg * 0x5851F42D4C957F2Dull};
    block live[LIVE] = {{0}};
    uint64_t ops = 0, allocs = 0, large = 0, frees = 0, reallocs = 0, handed = 0, pauses = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        ops++;
        size_t i = below(&r, LIVE);
        uint64_t what = below(&r, 1000);
        if (what == 0) { /* pause: the cache goes idle and is claimed */
            sleep_ms(10 + (long)below(&r, 21));
            pauses++;
            continue;
        }
        if (what < 40 && live[i].p) { /* hand over: swap with the shared array */
            check(live[i], live[i].size, "before a hand-over");
            size_t k = below(&r, SHARED);
            pthread_mutex_lock(&shared_lock);
            block got = {atomic_load(&shared_p[k]), atomic_load(&shared_size[k])};
            atomic_store(&shared_p[k], live[i].p);
            atomic_store(&shared_size[k], live[i].size);
            pthread_mutex_unlock(&shared_lock);
            live[i] = got;
            if (got.p) check(got, got.size, "after a hand-over");
            handed++;
            continue;
        }
        if (what < 80 && live[i].p && live[i].size > (32u << 10)) { /* realloc a large block */
            size_t ns = below(&r, 2) ? live[i].size + (size_t)below(&r, 1u << 20) + 1 : live[i].size / 2 + 1;
            if (ns <= (32u << 10)) ns = (32u << 10) + 1;
            unsigned char *q = sa_realloc(live[i].p, ns);
            if (!q) fail("sa_realloc(%p, %zu) failed: errno %d", (void *)live[i].p, ns, errno);
            size_t kept = ns < live[i].size ? ns : live[i].size;
            /* the old words at the old address (realloc keeps the bytes, not the address) */
            block moved = {q, live[i].size};
            uintptr_t old = (uintptr_t)live[i].p;
            FOR_EACH_WORD(moved.size, o, {
                if (o + 8 > kept) break;
                uint64_t v;
                memcpy(&v, q + o, 8);
                if (v != word(old, o))
                    fail("sa_realloc %p -> %p (%zu -> %zu bytes): word at offset %zu lost", (void *)old, (void *)q,
                         live[i].size, ns, o);
            });
            live[i] = (block){q, ns};
            fill(live[i]);
            reallocs++;
            continue;
        }
        if (live[i].p) {
            release_block(live[i], "before free");
            live[i].p = NULL;
            frees++;
            continue;
        }
        size_t size = random_size(&r);
        bool zero = below(&r, 8) == 0;
        unsigned char *p = sa_alloc(size, zero ? SA_ZERO : (below(&r, 2) ? SA_NOSCAN : 0));
        if (!p) fail("sa_alloc(%zu) failed: errno %d", size, errno);
        live[i] = (block){p, size};
        if (zero) check_zero(live[i]);
        fill(live[i]);
        allocs++;
        if (size > (32u << 10)) large++;
    }
    for (size_t i = 0; i < LIVE; i++)
        if (live[i].p) { release_block(live[i], "free at exit"); frees++; }
    atomic_fetch_add(&n_ops, ops);
    atomic_fetch_add(&n_allocs, allocs);
    atomic_fetch_add(&n_large, large);
    atomic_fetch_add(&n_frees, frees);
    atomic_fetch_add(&n_reallocs, reallocs);
    atomic_fetch_add(&n_handed, handed);
    atomic_fetch_add(&n_pauses, pauses);
    return NULL;
}

static _Atomic uint64_t monitor_reads;

static void *monitor(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        sa_mem_stats s;
        sa_read_mem_stats(&s);
        if (s.pages_scavenged != s.pages_released_background + s.pages_released_pacer + s.pages_released_limit +
                                     s.pages_released_demand)
            fail("monitor: pages_scavenged %llu is not the sum of the four release counters",
                 (unsigned long long)s.pages_scavenged);
        atomic_fetch_add(&monitor_reads, 1);
        sleep_ms(1);
    }
    return NULL;
}

static void heap_check(const char *when) {
    char err[512];
    if (sa_check_heap_quiescent(err, sizeof err) != 0) fail("heap checker %s: %s", when, err);
}

static void run(int threads, double seconds) {
    sa_mem_stats s0, s1;
    sa_read_mem_stats(&s0);
    atomic_store(&stop, false);
    atomic_store(&n_ops, 0); atomic_store(&n_allocs, 0); atomic_store(&n_large, 0); atomic_store(&n_frees, 0);
    atomic_store(&n_reallocs, 0); atomic_store(&n_handed, 0); atomic_store(&n_pauses, 0);
    pthread_t th[8], mon;
    double t0 = now_s();
    for (int t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)(intptr_t)(t + 1))) fail("pthread_create");
    if (pthread_create(&mon, NULL, monitor, NULL)) fail("pthread_create");
    sleep_ms((long)(seconds * 1000));
    atomic_store(&stop, true);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    pthread_join(mon, NULL);
    double elapsed = now_s() - t0;
    uint64_t left = 0;
    for (size_t k = 0; k < SHARED; k++) {
        block b = {atomic_load(&shared_p[k]), atomic_load(&shared_size[k])};
        if (b.p) { release_block(b, "free of a handed-over block"); left++; }
        atomic_store(&shared_p[k], NULL);
    }
    sa_thread_flush();
    sa_read_mem_stats(&s1);
    printf("scavenge_stress: %d workers, %.1f s: %llu operations (%llu allocations, %llu large, %llu reallocs, "
           "%llu frees, %llu hand-overs, %llu pauses), %llu stats reads; released by the background scavenger "
           "%llu pages, idle caches claimed %llu, scavenger CPU %.1f ms\n",
           threads, elapsed, (unsigned long long)atomic_load(&n_ops), (unsigned long long)atomic_load(&n_allocs),
           (unsigned long long)atomic_load(&n_large), (unsigned long long)atomic_load(&n_reallocs),
           (unsigned long long)(atomic_load(&n_frees) + left), (unsigned long long)atomic_load(&n_handed),
           (unsigned long long)atomic_load(&n_pauses), (unsigned long long)atomic_load(&monitor_reads),
           (unsigned long long)(s1.pages_released_background - s0.pages_released_background),
           (unsigned long long)(s1.idle_cache_flushes - s0.idle_cache_flushes),
           (double)(s1.scavenger_cpu_ns - s0.scavenger_cpu_ns) / 1e6);
    fflush(stdout);
    if (s1.heap_objects != s0.heap_objects)
        fail("%d workers: heapObjects %llu after the run, %llu before", threads, (unsigned long long)s1.heap_objects,
             (unsigned long long)s0.heap_objects);
    if (s1.pages_released_background == s0.pages_released_background)
        fail("%d workers: the background scavenger released nothing while they ran", threads);
    if (s1.idle_cache_flushes == s0.idle_cache_flushes)
        fail("%d workers: no paused worker's cache was claimed (idle_cache_flushes unchanged)", threads);
    heap_check("after the workers were joined");
}

/* ---- the quiescent checker while the scavenger reclaims ------------------------ */

/* A thread allocates 100,000 blocks of 64 classes and exits; the main thread
 * frees them 2048 at a time (remote frees: their spans empty onto
 * mcentral's empty lists) and runs the quiescent checker for 15 ms after
 * each batch, while the scavenger moves the kept empty spans to mheap. No
 * other thread allocates: the checker must pass every time. */
#define CHECKER_BLOCKS 100000
static void *checker_blocks[CHECKER_BLOCKS];

static void *checker_maker(void *arg) {
    (void)arg;
    for (int i = 0; i < CHECKER_BLOCKS; i++)
        if (!(checker_blocks[i] = sa_alloc(16 + (size_t)(i % 64) * 128, 0))) fail("checker phase: allocation failed");
    return NULL;
}

static void checker_phase(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, checker_maker, NULL)) fail("pthread_create");
    pthread_join(t, NULL);
    int checks = 0;
    for (int i = 0; i < CHECKER_BLOCKS; i += 2048) {
        for (int j = i; j < i + 2048 && j < CHECKER_BLOCKS; j++) sa_free(checker_blocks[j]);
        double t0 = now_s();
        while (now_s() - t0 < 0.015) {
            heap_check("while the scavenger reclaims emptied spans");
            checks++;
        }
    }
    sa_thread_flush();
    printf("scavenge_stress: checker: %d quiescent checks passed while the scavenger reclaimed emptied spans\n", checks);
}

/* ---- fork while the scavenger releases ---------------------------------------- */

static void fork_child(uint64_t released_at_fork) {
    heap_check("in the fork child, right after the fork");
    unsigned char *burst[32];
    for (int i = 0; i < 32; i++) {
        burst[i] = sa_alloc(1u << 20, SA_NOSCAN);
        if (!burst[i]) fail("fork child: allocation failed");
        memset(burst[i], 0x3C, 1u << 20);
    }
    for (int i = 0; i < 32; i++) sa_free(burst[i]);
    double t0 = now_s();
    sa_mem_stats s;
    bool running = false;
    for (;;) {
        sa_read_mem_stats(&s);
        running = running || s.scavenger_running;
        if (running && s.pages_released_background >= released_at_fork + (16u << 20) / SA_PAGE_SIZE) break;
        if (now_s() - t0 > 20) fail("fork child: its scavenger %s; released %llu pages since the fork",
                                    running ? "ran" : "never ran",
                                    (unsigned long long)(s.pages_released_background - released_at_fork));
        sleep_ms(5);
    }
    heap_check("in the fork child, after its own burst");
    _exit(0);
}

static void fork_phase(void) {
    int forks = 0;
    for (int round = 0; round < 4; round++) {
        unsigned char *burst[64];
        for (int i = 0; i < 64; i++) {
            burst[i] = sa_alloc(1u << 20, SA_NOSCAN);
            if (!burst[i]) fail("allocation failed");
            memset(burst[i], 0x5A, 1u << 20);
        }
        sa_mem_stats s0, s;
        sa_read_mem_stats(&s0);
        for (int i = 0; i < 64; i++) sa_free(burst[i]);
        /* fork as soon as the scavenger is at it */
        double t0 = now_s();
        do {
            sa_read_mem_stats(&s);
        } while (s.pages_released_background == s0.pages_released_background && now_s() - t0 < 5);
        pid_t pid = fork();
        if (pid < 0) fail("fork: errno %d", errno);
        if (pid == 0) fork_child(s.pages_released_background);
        int status = 0;
        double w0 = now_s();
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (now_s() - w0 > 60) { kill(pid, SIGKILL); fail("fork child %d hung (deadlock?)", round); }
            sleep_ms(2);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("fork child %d: status %#x", round, status);
        forks++;
    }
    heap_check("in the parent after the forks");
    printf("scavenge_stress: fork: %d children forked while the scavenger released, each passed\n", forks);
}

int main(void) {
    const char *e = getenv("STRESS_SEED");
    seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
    e = getenv("SCAVENGE_STRESS_SECONDS");
    double seconds = e ? atof(e) : 4;
    if (seconds <= 0) seconds = 4;
    printf("scavenge_stress: seed %llu (STRESS_SEED=%llu to repeat)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    sa_scavenge_config c;
    sa_get_scavenge_config(&c);
    c.mode = SA_SCAVENGE_BACKGROUND;
    c.retain_bytes = 0;
    c.retain_percent = 0;
    c.delay_ms = 0;
    c.floor_bytes = 0;
    c.idle_ms = 5;
    c.cpu_percent = 100;
    sa_set_scavenge_config(&c);
    e = getenv("SCAVENGE_STRESS_FORK");
    bool fork_only = e && strcmp(e, "only") == 0, no_fork = e && strcmp(e, "0") == 0;
    if (!fork_only) {
        run(2, seconds / 2);
        run(4, seconds / 2);
        checker_phase();
    }
    if (!no_fork) fork_phase();
    printf("scavenge_stress: passed\n");
    return 0;
}
