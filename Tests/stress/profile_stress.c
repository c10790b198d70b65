/*
 * profile_stress.c — the heap profiler under concurrency (docs/profiling.md):
 * NT workers allocate (malloc-like, calloc, aligned, large), resize (in place
 * and moving) and free blocks of 8 B to 300 KiB while a writer thread writes
 * profiles (both formats, to /dev/null and to memory) and changes the rate
 * among 1, 256, 4096 and 0. Workers hand blocks to their neighbour, who frees
 * them (remote frees of sampled objects), and exit in generations, leaving
 * their live blocks to the next generation (threads that exit with sampled
 * objects live). Midway, the process forks: the child allocates, frees and
 * writes a profile with profiling on, and must end with the live samples it
 * inherited.
 * Every block carries a pattern checked before its free; at the end every
 * block is freed, the quiescent heap checker runs, and the profiler must hold
 * no live sample.
 *
 *   PROFILE_STRESS_SECONDS=N (default 3), PROFILE_STRESS_FORK=0 skips the fork
 */
#include "spanalloc.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NT 4
#define LIVE 256
#define SHARED 64
#define GENERATIONS 4

typedef struct block { unsigned char *p; size_t n; } block;
static block leftovers[NT][LIVE];            /* a finished generation's live blocks */
static unsigned char *_Atomic shared[NT][SHARED];
static _Atomic bool stop;
static double seconds = 3;

static void fail(const char *what, const void *p) {
    fprintf(stderr, "profile_stress: %s (block %p)\n", what, p);
    abort();
}

static unsigned char pattern(size_t n) { return (unsigned char)(n * 131 + 7); }
static void fill(unsigned char *p, size_t n) { memset(p, pattern(n), n < 64 ? n : 64); }
static void check(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < (n < 64 ? n : 64); i++)
        if (p[i] != pattern(n)) fail("pattern overwritten", p);
}
static void release(block *b) {
    if (!b->p) return;
    check(b->p, b->n);
    sa_free(b->p);
    b->p = NULL;
}

static unsigned rnd(unsigned *s) { *s = *s * 1103515245u + 12345u; return *s >> 8; }

static size_t pick_size(unsigned *s) {
    unsigned r = rnd(s) % 1000;
    if (r < 700) return 8 + rnd(s) % 504;
    if (r < 950) return 512 + rnd(s) % 32000;
    return 40000 + rnd(s) % 260000; /* large objects */
}

typedef struct worker { long id; unsigned seed; double until; } worker;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *work(void *arg) {
    worker *w = arg;
    long t = w->id;
    block *live = leftovers[t];
    unsigned s = w->seed;
    while (!atomic_load(&stop) && now() < w->until) {
        for (int k = 0; k < 64; k++) {
            unsigned i = rnd(&s) % LIVE;
            block *b = &live[i];
            unsigned op = rnd(&s) % 10;
            if (b->p && op < 2) { /* resize: in place (same class, large shrink) or moving */
                size_t n = op == 0 ? b->n : pick_size(&s);
                check(b->p, b->n);
                unsigned char *q = sa_realloc(b->p, n);
                if (!q) fail("realloc failed", b->p);
                b->p = q;
                b->n = n;
                fill(q, n);
                continue;
            }
            release(b);
            size_t n = pick_size(&s);
            unsigned char *p;
            if (op == 2) p = sa_calloc(1, n, 0);
            else if (op == 3) p = sa_alloc_aligned(n, (size_t)64 << (rnd(&s) % 4), 0);
            else p = sa_alloc(n, 0);
            if (!p) fail("allocation failed", NULL);
            if (op == 2)
                for (size_t j = 0; j < (n < 64 ? n : 64); j++)
                    if (p[j]) fail("calloc block not zero", p);
            fill(p, n);
            b->p = p;
            b->n = n;
        }
        /* Hand one block to the neighbour; free what it handed here. */
        unsigned i = rnd(&s) % LIVE, j = rnd(&s) % SHARED;
        long next = (t + 1) % NT;
        if (live[i].p && !atomic_load(&shared[next][j])) {
            check(live[i].p, live[i].n);
            atomic_store(&shared[next][j], live[i].p);
            live[i].p = NULL;
        }
        for (unsigned k = 0; k < SHARED; k++) {
            unsigned char *p = atomic_exchange(&shared[t][k], NULL);
            if (p) sa_free(p); /* checked by the thread that handed it over */
        }
    }
    return NULL; /* live[] stays for the next generation: sampled objects outlive their thread */
}

static void *writer(void *arg) {
    (void)arg;
    static const size_t rates[] = {1, 256, 4096, 0, 4096};
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    unsigned n = 0;
    while (!atomic_load(&stop)) {
        sa_profile_set_rate(rates[n % 5]);
        if (sa_profile_write_fd(devnull, n % 2 ? SA_PROFILE_FOLDED : SA_PROFILE_PPROF) != 0) fail("profile write", NULL);
        size_t len;
        void *b = sa_profile_write_buffer(SA_PROFILE_PPROF, &len);
        if (!b || len < 18 || ((unsigned char *)b)[0] != 0x1f) fail("profile buffer", b);
        sa_profile_buffer_free(b, len);
        n++;
        usleep(20000);
    }
    close(devnull);
    return NULL;
}

static void free_all(void) {
    for (int t = 0; t < NT; t++) {
        for (int i = 0; i < LIVE; i++) release(&leftovers[t][i]);
        for (int k = 0; k < SHARED; k++) {
            unsigned char *p = atomic_exchange(&shared[t][k], NULL);
            if (p) sa_free(p);
        }
    }
}

static void no_live_samples(const char *who) {
    sa_profile_counts c;
    sa_profile_read_counts(&c);
    if (c.live != 0) {
        fprintf(stderr, "profile_stress: %s: %llu sampled objects still live after every free\n", who,
                (unsigned long long)c.live);
        abort();
    }
    printf("profile_stress: %s: %llu samples, %llu stacks, %llu dropped\n", who, (unsigned long long)c.samples,
           (unsigned long long)c.buckets, (unsigned long long)c.dropped);
}

/* The fork child: one thread, profiling on, allocates, writes, frees. */
static void child(void) {
    sa_profile_counts before;
    sa_profile_read_counts(&before); /* the parent's sampled objects, inherited */
    sa_profile_set_rate(64);
    block bs[200];
    unsigned s = 99;
    for (int i = 0; i < 200; i++) {
        bs[i].n = pick_size(&s);
        bs[i].p = sa_alloc(bs[i].n, 0);
        fill(bs[i].p, bs[i].n);
    }
    int devnull = open("/dev/null", O_WRONLY);
    if (sa_profile_write_fd(devnull, SA_PROFILE_PPROF) != 0) _exit(3);
    for (int i = 0; i < 200; i++) release(&bs[i]);
    /* The parent's blocks stay: its workers were stopped mid-operation, so
     * their arrays are not a consistent list of live blocks. */
    sa_profile_counts c;
    sa_profile_read_counts(&c);
    if (c.samples <= before.samples) _exit(5); /* rate 64 samples some of 200 blocks */
    _exit(c.live == before.live ? 0 : 4);
}

int main(void) {
    const char *e = getenv("PROFILE_STRESS_SECONDS");
    if (e) seconds = atof(e);
    const char *f = getenv("PROFILE_STRESS_FORK");
    bool do_fork = !f || strcmp(f, "0") != 0;
    pthread_t wt;
    pthread_create(&wt, NULL, writer, NULL);
    double start = now();
    for (int g = 0; g < GENERATIONS; g++) {
        pthread_t th[NT];
        worker ws[NT];
        for (long t = 0; t < NT; t++) {
            ws[t] = (worker){t, (unsigned)(t * 7919 + g * 104729 + 1), start + seconds * (g + 1) / GENERATIONS};
            pthread_create(&th[t], NULL, work, &ws[t]);
        }
        if (do_fork && g == GENERATIONS / 2) {
            usleep(50000);
            pid_t pid = fork();
            if (pid == 0) child();
            int status = -1;
            if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "profile_stress: fork child failed (status %d)\n", status);
                abort();
            }
            printf("profile_stress: fork child passed\n");
        }
        for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    }
    atomic_store(&stop, true);
    pthread_join(wt, NULL);
    sa_profile_set_rate(0);
    free_all();
    char err[512];
    if (sa_check_heap_quiescent(err, sizeof err) != 0) {
        fprintf(stderr, "profile_stress: heap check: %s\n", err);
        abort();
    }
    no_live_samples("parent");
    return 0;
}
