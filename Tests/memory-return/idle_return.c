/*
 * idle_return.c — the resident-memory goals of memory return under the LD_PRELOAD
 * library: malloc and free are SpanAlloc's, the scavenger runs with its
 * defaults (or what SPANALLOC says). Built and run by the ReliabilityTests
 * suite ScavengerTests (Tests/ReliabilityTests/ScavengerResidentTests.swift
 * and ScavengerConfigTests.swift), not linked with SpanAlloc: its sa_*
 * functions are weak references the preloaded library resolves.
 *
 *   idle_return peak          two threads allocate 1.2 GiB (2.4 million blocks
 *                             of 64-512 B, 200 of 256 KiB-4 MiB, every page
 *                             written), each frees the other's, joined; then
 *                             no allocator call: resident memory must fall to
 *                             max(10% of the peak, floor + 8 MiB) above the
 *                             level before within 10 s of the last free
 *   idle_return idle-threads  64 threads, 64 blocks of every size 16 B-32 KiB
 *                             (steps of 1/8), written, freed, 4 rounds, then
 *                             blocked alive: floor + 16 MiB within 5 s of
 *                             the last one blocking, and after they exit
 *   idle_return config        prints the scavenger configuration and the limit
 *
 * Resident memory is read from /proc/self/statm with open/read (no
 * allocation), every 100 ms; a check passes as soon as it holds. Prints one
 * "idle return (...): pass|FAIL ..." line per check with the figures; exits
 * 0 when every check passed, 1 otherwise, 2 when malloc is not SpanAlloc's.
 */
#include "spanalloc.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#pragma weak sa_owns
#pragma weak sa_read_mem_stats
#pragma weak sa_get_scavenge_config
#pragma weak sa_memory_limit
#pragma weak sa_check_heap_quiescent

#define MIB(x) ((double)(x) / 1048576.0)

static int failures;

static long resident(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    long size = 0, res = 0;
    if (sscanf(buf, "%ld %ld", &size, &res) != 2) return -1;
    return res * sysconf(_SC_PAGESIZE);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {}
}

/* Polls statm every 100 ms for up to `timeout` seconds until resident
 * memory is at most base + bound; returns the seconds it took, or -1. */
static double wait_resident(long base, long bound, double timeout, long *last) {
    double t0 = now_s();
    for (;;) {
        *last = resident() - base;
        if (*last <= bound) return now_s() - t0;
        if (now_s() - t0 >= timeout) return -1;
        sleep_ms(100);
    }
}

static void summary(char *out, size_t cap) {
    sa_mem_stats s;
    sa_read_mem_stats(&s);
    snprintf(out, cap,
             "released background %llu, pacer %llu, limit %llu, demand %llu pages; scavenger running %llu, "
             "CPU %llu us; idle cache flushes %llu; heap released %.1f MiB, in use %.1f MiB, metadata %.1f MiB",
             (unsigned long long)s.pages_released_background, (unsigned long long)s.pages_released_pacer,
             (unsigned long long)s.pages_released_limit, (unsigned long long)s.pages_released_demand,
             (unsigned long long)s.scavenger_running, (unsigned long long)(s.scavenger_cpu_ns / 1000),
             (unsigned long long)s.idle_cache_flushes, MIB(s.heap_released), MIB(s.heap_inuse),
             MIB(s.metadata_sys));
}

static size_t floor_bytes(void) {
    sa_scavenge_config c;
    sa_get_scavenge_config(&c);
    return c.floor_bytes;
}

static void *map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    memset(p, 0, bytes); /* resident before the baseline */
    return p;
}

static inline uint64_t rng(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void touch(unsigned char *p, size_t size, unsigned char v) {
    for (size_t o = 0; o < size; o += 4096) p[o] = v;
    p[size - 1] = v;
}

/* ---- peak: the 1.2 GiB two-thread peak ------------------------------------ */

#define PEAK_TOTAL (((size_t)12 << 30) / 10)
#define SMALL_PER_THREAD 1200000
#define LARGE_PER_THREAD 100

static void *lists[2];
static pthread_barrier_t barrier;
static long peak_rss;
static _Atomic size_t peak_bytes;

static void *peak_thread(void *arg) {
    int t = (int)(intptr_t)arg;
    void **mine = lists[t];
    uint64_t seed = 0x150000 + (uint64_t)t;
    size_t bytes = 0;
    for (int i = 0; i < SMALL_PER_THREAD; i++) {
        size_t size = 64 + rng(&seed) % 449;
        void *p = malloc(size);
        if (!p) { fprintf(stderr, "malloc(%zu) failed\n", size); exit(1); }
        memset(p, i, size);
        mine[i] = p;
        bytes += size;
    }
    size_t target = PEAK_TOTAL / 2;
    for (int j = 0; j < LARGE_PER_THREAD; j++) {
        size_t even = (target - bytes) / (size_t)(LARGE_PER_THREAD - j);
        long size = (long)even - (1 << 20) + (long)(rng(&seed) % (2u << 20));
        if (size < 256 << 10) size = 256 << 10;
        if (size > 4 << 20) size = 4 << 20;
        unsigned char *p = malloc((size_t)size);
        if (!p) { fprintf(stderr, "malloc(%ld) failed\n", size); exit(1); }
        touch(p, (size_t)size, 0xA5);
        mine[SMALL_PER_THREAD + j] = p;
        bytes += (size_t)size;
    }
    atomic_fetch_add(&peak_bytes, bytes);
    pthread_barrier_wait(&barrier);
    if (t == 0) peak_rss = resident();
    pthread_barrier_wait(&barrier);
    void **other = lists[1 - t];
    for (int i = 0; i < SMALL_PER_THREAD + LARGE_PER_THREAD; i++) free(other[i]);
    return NULL;
}

static void peak(void) {
    size_t per = sizeof(void *) * (SMALL_PER_THREAD + LARGE_PER_THREAD);
    lists[0] = map(per);
    lists[1] = map(per);
    size_t floor = floor_bytes();
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_t th[2];
    long r0 = resident();
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, peak_thread, (void *)(intptr_t)t);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    /* From here: no allocator call until the figure holds or 10 s passed. */
    long above = peak_rss - r0;
    long bound = above / 10 > (long)floor + (8 << 20) ? above / 10 : (long)floor + (8 << 20);
    long last;
    double took = wait_resident(r0, bound, 10, &last);
    char s[512];
    summary(s, sizeof s);
    size_t bytes = atomic_load(&peak_bytes);
    bool ok = took >= 0 && above >= (long)(bytes / 10 * 9) && bytes >= PEAK_TOTAL / 100 * 99;
    printf("idle return (LD_PRELOAD peak): %s: %.1f MiB allocated by 2 threads; resident %.1f MiB before, "
           "+%.1f MiB at the peak, +%.1f MiB %.1f s after the last free (bound +%.1f MiB = max(10%% of the peak, "
           "floor %.1f MiB + 8 MiB)); %s\n",
           ok ? "pass" : "FAIL", MIB(bytes), MIB(r0), MIB(above), MIB(last), took >= 0 ? took : 10.0, MIB(bound),
           MIB(floor), s);
    if (!ok) failures++;
}

/* ---- idle-threads: 64 threads, a batch of every size, then blocked -------- */

#define IDLE_THREADS 64
#define IDLE_BLOCKS 64
#define IDLE_ROUNDS 4
#define IDLE_MAX_SIZES 96

static size_t idle_sizes[IDLE_MAX_SIZES], nidle_sizes;
static void **idle_ptrs[IDLE_THREADS];
static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cond = PTHREAD_COND_INITIALIZER;
static int idle_blocked, idle_release;

static void *idle_thread(void *arg) {
    void **ptrs = arg;
    size_t n = nidle_sizes * IDLE_BLOCKS;
    for (int round = 0; round < IDLE_ROUNDS; round++) {
        for (size_t i = 0; i < n; i++) {
            size_t size = idle_sizes[i / IDLE_BLOCKS];
            unsigned char *q = malloc(size);
            if (!q) { fprintf(stderr, "malloc(%zu) failed\n", size); exit(1); }
            touch(q, size, (unsigned char)round);
            ptrs[i] = q;
        }
        for (size_t i = 0; i < n; i++) free(ptrs[i]);
    }
    pthread_mutex_lock(&idle_lock);
    idle_blocked++;
    pthread_cond_broadcast(&idle_cond);
    while (!idle_release) pthread_cond_wait(&idle_cond, &idle_lock);
    pthread_mutex_unlock(&idle_lock);
    return NULL;
}

static void idle_threads(void) {
    for (size_t sz = 16; sz <= 32768 && nidle_sizes < IDLE_MAX_SIZES;) {
        idle_sizes[nidle_sizes++] = sz;
        size_t next = (sz + sz / 8 + 7) & ~(size_t)7;
        sz = next > sz ? next : sz + 8;
    }
    for (int t = 0; t < IDLE_THREADS; t++) idle_ptrs[t] = map(sizeof(void *) * nidle_sizes * IDLE_BLOCKS);
    size_t floor = floor_bytes();
    long strict = (long)floor + (16 << 20);
    sa_mem_stats m0;
    sa_read_mem_stats(&m0);
    pthread_t th[IDLE_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    long r0 = resident();
    for (int t = 0; t < IDLE_THREADS; t++)
        if (pthread_create(&th[t], &attr, idle_thread, idle_ptrs[t]) != 0) { perror("pthread_create"); exit(1); }
    pthread_mutex_lock(&idle_lock);
    while (idle_blocked < IDLE_THREADS) pthread_cond_wait(&idle_cond, &idle_lock);
    pthread_mutex_unlock(&idle_lock);
    long at_block = resident() - r0, last;
    /* The metadata mapped for the peak (span structures) is released once
     * the program is idle, like the pages: the bound holds it too. */
    sa_mem_stats st;
    sa_read_mem_stats(&st);
    long metadata = (long)(st.metadata_sys - m0.metadata_sys), bound = strict;
    double took = wait_resident(r0, strict, 5, &last);
    char s[512];
    summary(s, sizeof s);
    sa_read_mem_stats(&st);
    bool ok = last <= bound && st.idle_cache_flushes > 0;
    printf("idle return (LD_PRELOAD idle threads): %s: %d threads blocked: resident %.1f MiB before, +%.1f MiB "
           "when the last blocked, +%.1f MiB %.1f s later (bound +%.1f MiB = floor %.1f MiB + 16 MiB; %.1f MiB of "
           "metadata mapped for the peak); %s\n",
           ok ? "pass" : "FAIL", IDLE_THREADS, MIB(r0), MIB(at_block), MIB(last), took >= 0 ? took : 5.0,
           MIB(bound), MIB(floor), MIB(metadata), s);
    if (!ok) failures++;
    pthread_mutex_lock(&idle_lock);
    idle_release = 1;
    pthread_cond_broadcast(&idle_cond);
    pthread_mutex_unlock(&idle_lock);
    for (int t = 0; t < IDLE_THREADS; t++) pthread_join(th[t], NULL);
    took = wait_resident(r0, strict, 5, &last);
    summary(s, sizeof s);
    ok = last <= bound;
    printf("idle return (LD_PRELOAD idle threads): %s: threads exited: +%.1f MiB %.1f s after the join "
           "(bound +%.1f MiB = floor + 16 MiB); %s\n",
           ok ? "pass" : "FAIL", MIB(last), took >= 0 ? took : 5.0, MIB(bound), s);
    if (!ok) failures++;
}

/* ---- config: what SPANALLOC set ------------------------------------------- */

static void config(void) {
    sa_scavenge_config c;
    sa_get_scavenge_config(&c);
    sa_memlimit_mode m;
    size_t limit = sa_memory_limit(&m);
    printf("config: mode=%d retain=%zu percent=%u delay_ms=%u floor=%zu idle_ms=%u cpu_percent=%u "
           "memlimit=%zu memlimit_mode=%s\n",
           (int)c.mode, c.retain_bytes, c.retain_percent, c.delay_ms, c.floor_bytes, c.idle_ms, c.cpu_percent,
           limit, m == SA_MEMLIMIT_HARD ? "hard" : "soft");
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    void *probe = malloc(1);
    if (!sa_owns || !sa_read_mem_stats || !sa_get_scavenge_config || !sa_memory_limit || !sa_owns(probe)) {
        fprintf(stderr, "idle_return: malloc is not SpanAlloc's: run with "
                        "LD_PRELOAD=.build/spanalloc-preload/libspanalloc.so\n");
        return 2;
    }
    free(probe);
    if (strcmp(mode, "peak") == 0) peak();
    else if (strcmp(mode, "idle-threads") == 0) idle_threads();
    else if (strcmp(mode, "config") == 0) config();
    else {
        fprintf(stderr, "idle_return: unknown mode '%s' (peak, idle-threads, config)\n", mode);
        return 2;
    }
    if (sa_check_heap_quiescent) {
        char err[512];
        if (sa_check_heap_quiescent(err, sizeof err) != 0) {
            printf("heap check FAILED: %s\n", err);
            failures++;
        }
    }
    fflush(stdout);
    return failures ? 1 : 0;
}
