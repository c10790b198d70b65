/*
 * The workloads. Each one takes an allocator table and runs the same code
 * for every allocator; random sizes, orders and slots are precomputed into
 * arrays that come from mmap (never from an allocator under test) before the
 * clock starts. Every object is written so that no allocator gets away with
 * handing out memory nobody touches.
 */
#define _GNU_SOURCE
#include "benchkit.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

double bk_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

double bk_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- harness memory and randomness --------------------------------------- */

static void *harness_alloc(size_t bytes) {
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static void harness_free(void *p, size_t bytes) { if (p) munmap(p, bytes ? bytes : 1); }

/* splitmix64: small, fast, good enough for choosing sizes. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline size_t rng_range(uint64_t *s, size_t lo, size_t hi) {
    return lo + (size_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}
static void shuffle_u32(uint32_t *a, size_t n, uint64_t *s) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(s) % i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static inline void touch(void *p, size_t size, uint64_t v) {
    volatile unsigned char *c = p;
    c[0] = (unsigned char)v;
    c[size - 1] = (unsigned char)(v >> 8);
}

/* Spin politely: these machines have 2 cores shared by several jobs. */
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

/* A start line for worker threads: the timer starts when all are ready. */
typedef struct start_gate {
    _Atomic int ready;
    _Atomic int go;
} start_gate;
static void gate_wait(start_gate *g) {
    atomic_fetch_add_explicit(&g->ready, 1, memory_order_acq_rel);
    unsigned spins = 0;
    while (!atomic_load_explicit(&g->go, memory_order_acquire)) backoff(&spins);
}
static void gate_open(start_gate *g, int n) {
    unsigned spins = 0;
    while (atomic_load_explicit(&g->ready, memory_order_acquire) < n) backoff(&spins);
    atomic_store_explicit(&g->go, 1, memory_order_release);
}

/* ---- LIFO pairs ----------------------------------------------------------- */

static int run_lifo(const bk_allocator *a, const bk_params *p, bk_result *r) {
    size_t size = p->size ? p->size : 16;
    uint64_t sum = 0;
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (uint64_t i = 0; i < p->ops; i++) {
        void *q = a->malloc(size);
        if (q == NULL) { r->failed = 1; break; }
        touch(q, size, i);
        sum += (uintptr_t)q & 0xfff;
        a->free(q);
    }
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = p->ops;
    r->checksum = sum;
    return 0;
}

/* ---- random sizes in batches, freed in random order ---------------------- */

/* Distinct size/permutation sets cycled through the batches. */
#define BATCH_VARIANTS 4

static int run_random_batch(const bk_allocator *a, const bk_params *p, bk_result *r) {
    size_t batch = p->batch ? p->batch : 100000;
    uint64_t nbatches = p->ops / batch;
    if (nbatches == 0) nbatches = 1;
    size_t szb = sizeof(uint32_t) * batch * BATCH_VARIANTS;
    uint32_t *sizes = harness_alloc(szb), *perm = harness_alloc(szb);
    void **ptrs = harness_alloc(sizeof(void *) * batch);
    if (!sizes || !perm || !ptrs) return -1;
    uint64_t s = p->seed;
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
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (uint64_t b = 0; b < nbatches && !r->failed; b++) {
        const uint32_t *sz = sizes + (size_t)(b % BATCH_VARIANTS) * batch;
        const uint32_t *pm = perm + (size_t)(b % BATCH_VARIANTS) * batch;
        for (size_t i = 0; i < batch; i++) {
            void *q = a->malloc(sz[i]);
            if (q == NULL) { r->failed = 1; break; }
            touch(q, sz[i], i);
            ptrs[i] = q;
        }
        for (size_t i = 0; i < batch; i++) {
            void *q = ptrs[pm[i]];
            if (q) { sum += *(volatile unsigned char *)q; a->free(q); ptrs[pm[i]] = NULL; }
        }
    }
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = nbatches * batch;
    r->checksum = sum;
    harness_free(sizes, szb);
    harness_free(perm, szb);
    harness_free(ptrs, sizeof(void *) * batch);
    return 0;
}

/* ---- producer/consumer through a lock-free SPSC ring --------------------- */

#define RING_CAP 1024u /* a power of two: enough slack for both threads to run without waiting */

typedef struct spsc_ring {
    _Alignas(64) _Atomic uint64_t head; /* next slot to read; written by the consumer */
    _Alignas(64) _Atomic uint64_t tail; /* next slot to write; written by the producer */
    _Alignas(64) void *slots[RING_CAP];
} spsc_ring;

typedef struct prodcons_ctx {
    const bk_allocator *a;
    spsc_ring *ring;
    const uint32_t *sizes;
    size_t nsizes;
    uint64_t ops;
    start_gate gate;
    uint64_t checksum;
    _Atomic int failed;
} prodcons_ctx;

static void *producer(void *arg) {
    prodcons_ctx *c = arg;
    spsc_ring *ring = c->ring;
    uint64_t tail = 0, head_cache = 0;
    gate_wait(&c->gate);
    for (uint64_t i = 0; i < c->ops; i++) {
        size_t size = c->sizes[i % c->nsizes];
        void *q = c->a->malloc(size);
        if (q == NULL) { atomic_store(&c->failed, 1); q = NULL; }
        else touch(q, size, i);
        unsigned spins = 0;
        while (tail - head_cache >= RING_CAP) {
            head_cache = atomic_load_explicit(&ring->head, memory_order_acquire);
            if (tail - head_cache >= RING_CAP) backoff(&spins);
        }
        ring->slots[tail & (RING_CAP - 1)] = q;
        atomic_store_explicit(&ring->tail, ++tail, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg) {
    prodcons_ctx *c = arg;
    spsc_ring *ring = c->ring;
    uint64_t head = 0, tail_cache = 0, sum = 0;
    gate_wait(&c->gate);
    while (head < c->ops) {
        unsigned spins = 0;
        while (head == tail_cache) {
            tail_cache = atomic_load_explicit(&ring->tail, memory_order_acquire);
            if (head == tail_cache) backoff(&spins);
        }
        while (head < tail_cache) {
            void *q = ring->slots[head & (RING_CAP - 1)];
            if (q) { sum += *(volatile unsigned char *)q; c->a->free(q); }
            head++;
        }
        atomic_store_explicit(&ring->head, head, memory_order_release);
    }
    c->checksum = sum;
    return NULL;
}

static int run_prodcons(const bk_allocator *a, const bk_params *p, bk_result *r) {
    size_t nsizes = 1u << 16;
    uint32_t *sizes = harness_alloc(sizeof(uint32_t) * nsizes);
    spsc_ring *ring = harness_alloc(sizeof *ring);
    prodcons_ctx *c = harness_alloc(sizeof *c);
    if (!sizes || !ring || !c) return -1;
    uint64_t s = p->seed;
    for (size_t i = 0; i < nsizes; i++) sizes[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
    c->a = a; c->ring = ring; c->sizes = sizes; c->nsizes = nsizes; c->ops = p->ops;
    pthread_t tp, tc;
    if (pthread_create(&tc, NULL, consumer, c) != 0) return -1;
    if (pthread_create(&tp, NULL, producer, c) != 0) return -1;
    gate_open(&c->gate, 2);
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    pthread_join(tp, NULL);
    pthread_join(tc, NULL);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = p->ops;
    r->checksum = c->checksum;
    r->failed = atomic_load(&c->failed);
    harness_free(sizes, sizeof(uint32_t) * nsizes);
    harness_free(ring, sizeof *ring);
    harness_free(c, sizeof *c);
    return 0;
}

/* ---- larson-style server: threads replace random objects of shared pools -- */

#define TABLE_LEN (1u << 16) /* precomputed (slot, size) choices per thread, cycled */

typedef struct larson_ctx {
    const bk_allocator *a;
    _Atomic(void *) *slots;
    uint32_t *sizes;   /* size of the object now in each slot (owned by whoever holds it) */
    size_t nslots;
    uint64_t ops_per_thread;
    start_gate gate;
    _Atomic int failed;
} larson_ctx;

typedef struct larson_worker {
    larson_ctx *c;
    uint32_t *slot_choice;
    uint32_t *size_choice;
    uint64_t checksum;
    pthread_t thread;
} larson_worker;

static void *larson_thread(void *arg) {
    larson_worker *w = arg;
    larson_ctx *c = w->c;
    uint64_t sum = 0;
    gate_wait(&c->gate);
    for (uint64_t i = 0; i < c->ops_per_thread; i++) {
        uint32_t k = (uint32_t)(i & (TABLE_LEN - 1));
        size_t size = w->size_choice[k];
        void *q = c->a->malloc(size);
        if (q == NULL) { atomic_store(&c->failed, 1); break; }
        touch(q, size, i);
        /* The old object may come from any thread: frees cross threads. */
        void *old = atomic_exchange_explicit(&c->slots[w->slot_choice[k]], q, memory_order_acq_rel);
        if (old) { sum += *(volatile unsigned char *)old; c->a->free(old); }
    }
    w->checksum = sum;
    return NULL;
}

static int run_larson(const bk_allocator *a, const bk_params *p, bk_result *r) {
    int threads = p->threads > 0 ? p->threads : 2;
    size_t per = p->batch ? p->batch : 10000;
    size_t nslots = per * (size_t)threads;
    larson_ctx *c = harness_alloc(sizeof *c);
    _Atomic(void *) *slots = harness_alloc(sizeof(void *) * nslots);
    larson_worker *w = harness_alloc(sizeof *w * (size_t)threads);
    if (!c || !slots || !w) return -1;
    c->a = a; c->slots = slots; c->nslots = nslots;
    c->ops_per_thread = p->ops / (uint64_t)threads;
    uint64_t s = p->seed;
    for (int t = 0; t < threads; t++) {
        w[t].c = c;
        w[t].slot_choice = harness_alloc(sizeof(uint32_t) * TABLE_LEN);
        w[t].size_choice = harness_alloc(sizeof(uint32_t) * TABLE_LEN);
        if (!w[t].slot_choice || !w[t].size_choice) return -1;
        for (size_t i = 0; i < TABLE_LEN; i++) {
            w[t].slot_choice[i] = (uint32_t)(rng_next(&s) % nslots);
            w[t].size_choice[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
        }
    }
    /* The pools start full, filled by this thread (untimed). */
    for (size_t i = 0; i < nslots; i++) {
        size_t size = rng_range(&s, p->size_min, p->size_max);
        void *q = a->malloc(size);
        if (q == NULL) return -1;
        touch(q, size, i);
        atomic_store_explicit(&slots[i], q, memory_order_relaxed);
    }
    for (int t = 0; t < threads; t++)
        if (pthread_create(&w[t].thread, NULL, larson_thread, &w[t]) != 0) return -1;
    gate_open(&c->gate, threads);
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (int t = 0; t < threads; t++) pthread_join(w[t].thread, NULL);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = c->ops_per_thread * (uint64_t)threads;
    r->failed = atomic_load(&c->failed);
    for (int t = 0; t < threads; t++) {
        r->checksum += w[t].checksum;
        harness_free(w[t].slot_choice, sizeof(uint32_t) * TABLE_LEN);
        harness_free(w[t].size_choice, sizeof(uint32_t) * TABLE_LEN);
    }
    for (size_t i = 0; i < nslots; i++) a->free(atomic_load_explicit(&slots[i], memory_order_relaxed));
    harness_free(slots, sizeof(void *) * nslots);
    harness_free(w, sizeof *w * (size_t)threads);
    harness_free(c, sizeof *c);
    return 0;
}

/* ---- realloc growth: interleaved buffers grown by small appends ---------- */

#define GROWING_BUFFERS 16 /* grown round-robin, so no buffer always sits at the heap top */

static int run_realloc(const bk_allocator *a, const bk_params *p, bk_result *r) {
    uint32_t *steps = harness_alloc(sizeof(uint32_t) * TABLE_LEN);
    if (!steps) return -1;
    uint64_t s = p->seed;
    for (size_t i = 0; i < TABLE_LEN; i++) steps[i] = (uint32_t)rng_range(&s, 1, 128);
    size_t lo = p->size_min ? p->size_min : 16, hi = p->size_max ? p->size_max : 65536;
    void *buf[GROWING_BUFFERS];
    size_t len[GROWING_BUFFERS];
    uint64_t sum = 0;
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (int b = 0; b < GROWING_BUFFERS; b++) {
        buf[b] = a->malloc(lo);
        if (!buf[b]) { r->failed = 1; return -1; }
        memset(buf[b], b, lo);
        len[b] = lo;
    }
    for (uint64_t i = 0; i < p->ops; i++) {
        int b = (int)(i % GROWING_BUFFERS);
        size_t n = len[b] + steps[i & (TABLE_LEN - 1)];
        if (n > hi) { /* the buffer is done: start a new one */
            sum += ((unsigned char *)buf[b])[len[b] - 1];
            a->free(buf[b]);
            buf[b] = a->malloc(lo);
            if (!buf[b]) { r->failed = 1; break; }
            memset(buf[b], b, lo);
            len[b] = lo;
            continue;
        }
        void *q = a->realloc(buf[b], n);
        if (q == NULL) { r->failed = 1; break; }
        memset((char *)q + len[b], (int)i, n - len[b]); /* append the new bytes */
        buf[b] = q;
        len[b] = n;
    }
    for (int b = 0; b < GROWING_BUFFERS; b++) if (buf[b]) a->free(buf[b]);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = p->ops;
    r->checksum = sum;
    harness_free(steps, sizeof(uint32_t) * TABLE_LEN);
    return 0;
}

/* ---- mixed large objects, every page written ------------------------------ */

#define LARGE_LIVE 4 /* objects alive at once */

static int run_large(const bk_allocator *a, const bk_params *p, bk_result *r) {
    uint64_t *sizes = harness_alloc(sizeof(uint64_t) * TABLE_LEN);
    if (!sizes) return -1;
    uint64_t s = p->seed;
    size_t lo = p->size_min ? p->size_min : 65536, hi = p->size_max ? p->size_max : (64u << 20);
    /* log-uniform between lo and hi: as many 64 KiB-1 MiB objects as 4-64 MiB ones */
    unsigned lglo = 63 - (unsigned)__builtin_clzll(lo), lghi = 63 - (unsigned)__builtin_clzll(hi);
    for (size_t i = 0; i < TABLE_LEN; i++) {
        unsigned lg = lglo + (unsigned)(rng_next(&s) % (lghi - lglo + 1));
        uint64_t base = 1ull << lg;
        uint64_t v = base + rng_next(&s) % base;
        if (v > hi) v = hi;
        if (v < lo) v = lo;
        sizes[i] = v;
    }
    void *live[LARGE_LIVE] = {0};
    size_t live_size[LARGE_LIVE] = {0};
    uint64_t sum = 0;
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (uint64_t i = 0; i < p->ops; i++) {
        int k = (int)(i % LARGE_LIVE);
        if (live[k]) { sum += *(volatile unsigned char *)live[k]; a->free(live[k]); }
        size_t n = (size_t)sizes[i & (TABLE_LEN - 1)];
        unsigned char *q = a->malloc(n);
        if (q == NULL) { r->failed = 1; live[k] = NULL; break; }
        for (size_t off = 0; off < n; off += 4096) q[off] = (unsigned char)i;
        q[n - 1] = 1;
        live[k] = q;
        live_size[k] = n;
    }
    for (int k = 0; k < LARGE_LIVE; k++) if (live[k]) a->free(live[k]);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = p->ops;
    r->checksum = sum + live_size[0];
    harness_free(sizes, sizeof(uint64_t) * TABLE_LEN);
    return 0;
}

/* ---- thread scaling: independent threads doing small random batches ------- */

typedef struct scaling_worker {
    const bk_allocator *a;
    uint32_t *sizes;
    size_t batch;
    uint64_t ops;
    start_gate *gate;
    uint64_t checksum;
    int failed;
    pthread_t thread;
} scaling_worker;

static void *scaling_thread(void *arg) {
    scaling_worker *w = arg;
    void *ptrs[1024];
    size_t batch = w->batch > 1024 ? 1024 : w->batch;
    uint64_t sum = 0, done = 0, k = 0;
    gate_wait(w->gate);
    while (done < w->ops) {
        for (size_t i = 0; i < batch; i++, k++) {
            size_t size = w->sizes[k & (TABLE_LEN - 1)];
            void *q = w->a->malloc(size);
            if (q == NULL) { w->failed = 1; return NULL; }
            touch(q, size, i);
            ptrs[i] = q;
        }
        /* free in a scrambled order (stride coprime to the batch size) */
        for (size_t i = 0, j = 0; i < batch; i++, j = (j + 7) % batch) {
            sum += *(volatile unsigned char *)ptrs[j];
            w->a->free(ptrs[j]);
        }
        done += batch;
    }
    w->checksum = sum;
    w->ops = done;
    return NULL;
}

static int run_scaling(const bk_allocator *a, const bk_params *p, bk_result *r) {
    int threads = p->threads > 0 ? p->threads : 1;
    size_t batch = p->batch ? p->batch : 1000;
    if (batch > 1024) batch = 1024;
    if (batch % 7 == 0) batch++; /* keep the free stride coprime */
    scaling_worker *w = harness_alloc(sizeof *w * (size_t)threads);
    start_gate *gate = harness_alloc(sizeof *gate);
    if (!w || !gate) return -1;
    uint64_t s = p->seed;
    for (int t = 0; t < threads; t++) {
        w[t].a = a; w[t].batch = batch; w[t].gate = gate;
        w[t].ops = p->ops / (uint64_t)threads;
        w[t].sizes = harness_alloc(sizeof(uint32_t) * TABLE_LEN);
        if (!w[t].sizes) return -1;
        for (size_t i = 0; i < TABLE_LEN; i++) w[t].sizes[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
    }
    for (int t = 0; t < threads; t++)
        if (pthread_create(&w[t].thread, NULL, scaling_thread, &w[t]) != 0) return -1;
    gate_open(gate, threads);
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (int t = 0; t < threads; t++) pthread_join(w[t].thread, NULL);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = 0;
    for (int t = 0; t < threads; t++) {
        r->ops += w[t].ops;
        r->checksum += w[t].checksum;
        r->failed |= w[t].failed;
        harness_free(w[t].sizes, sizeof(uint32_t) * TABLE_LEN);
    }
    harness_free(w, sizeof *w * (size_t)threads);
    harness_free(gate, sizeof *gate);
    return 0;
}

/* ---- working-set churn: each thread replaces random blocks of its live set - */

typedef struct churn_worker {
    const bk_allocator *a;
    size_t live;          /* blocks kept alive */
    uint64_t ops;
    void **blocks;        /* live set, from mmap */
    uint32_t *sizes;      /* size of each live block */
    uint32_t *slot_choice, *size_choice; /* TABLE_LEN precomputed choices, cycled */
    start_gate *gate;
    uint64_t checksum;
    int failed;
    pthread_t thread;
} churn_worker;

static void *churn_thread(void *arg) {
    churn_worker *w = arg;
    const bk_allocator *a = w->a;
    /* Fill the live set in this thread, untimed. */
    for (size_t i = 0; i < w->live; i++) {
        size_t size = w->size_choice[i & (TABLE_LEN - 1)];
        void *q = a->malloc(size);
        if (q == NULL) { w->failed = 1; break; }
        touch(q, size, i);
        w->blocks[i] = q;
        w->sizes[i] = (uint32_t)size;
    }
    uint64_t sum = 0;
    gate_wait(w->gate);
    for (uint64_t i = 0; i < w->ops && !w->failed; i++) {
        uint32_t k = (uint32_t)(i & (TABLE_LEN - 1));
        uint32_t slot = w->slot_choice[k];
        void *old = w->blocks[slot];
        if (old) { sum += *(volatile unsigned char *)old; a->free(old); }
        size_t size = w->size_choice[(k * 7 + 3) & (TABLE_LEN - 1)];
        void *q = a->malloc(size);
        if (q == NULL) { w->failed = 1; w->blocks[slot] = NULL; break; }
        touch(q, size, i);
        w->blocks[slot] = q;
        w->sizes[slot] = (uint32_t)size;
    }
    w->checksum = sum;
    return NULL;
}

static int run_churn(const bk_allocator *a, const bk_params *p, bk_result *r) {
    int threads = p->threads > 0 ? p->threads : 1;
    size_t live = p->batch ? p->batch : 10000;
    churn_worker *w = harness_alloc(sizeof *w * (size_t)threads);
    start_gate *gate = harness_alloc(sizeof *gate);
    if (!w || !gate) return -1;
    uint64_t s = p->seed;
    for (int t = 0; t < threads; t++) {
        w[t].a = a; w[t].live = live; w[t].gate = gate;
        w[t].ops = p->ops / (uint64_t)threads;
        w[t].blocks = harness_alloc(sizeof(void *) * live);
        w[t].sizes = harness_alloc(sizeof(uint32_t) * live);
        w[t].slot_choice = harness_alloc(sizeof(uint32_t) * TABLE_LEN);
        w[t].size_choice = harness_alloc(sizeof(uint32_t) * TABLE_LEN);
        if (!w[t].blocks || !w[t].sizes || !w[t].slot_choice || !w[t].size_choice) return -1;
        for (size_t i = 0; i < TABLE_LEN; i++) {
            w[t].slot_choice[i] = (uint32_t)(rng_next(&s) % live);
            w[t].size_choice[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
        }
    }
    for (int t = 0; t < threads; t++)
        if (pthread_create(&w[t].thread, NULL, churn_thread, &w[t]) != 0) return -1;
    gate_open(gate, threads);
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (int t = 0; t < threads; t++) pthread_join(w[t].thread, NULL);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    for (int t = 0; t < threads; t++) {
        r->ops += w[t].ops;
        r->checksum += w[t].checksum;
        r->failed |= w[t].failed;
        for (size_t i = 0; i < live; i++) if (w[t].blocks[i]) a->free(w[t].blocks[i]);
        harness_free(w[t].blocks, sizeof(void *) * live);
        harness_free(w[t].sizes, sizeof(uint32_t) * live);
        harness_free(w[t].slot_choice, sizeof(uint32_t) * TABLE_LEN);
        harness_free(w[t].size_choice, sizeof(uint32_t) * TABLE_LEN);
    }
    harness_free(w, sizeof *w * (size_t)threads);
    harness_free(gate, sizeof *gate);
    return 0;
}

/* ---- false sharing: cache-thrash and cache-scratch (Hoard's tests) -------- */

/* Blocks handed from the allocating thread to each worker in cache-scratch. */
#define SCRATCH_HANDOFF 64

typedef struct cache_worker {
    const bk_allocator *a;
    uint64_t ops, writes;
    const uint32_t *sizes;   /* TABLE_LEN sizes, cycled */
    void **given;            /* cache-scratch: blocks the other thread allocated, freed first */
    size_t ngiven;
    start_gate *gate;
    uint64_t checksum;
    int failed;
    pthread_t thread;
} cache_worker;

/* Each op: malloc a small block, write every byte of it `writes` times, free
 * it. When the allocator puts two threads' blocks on one cache line, the
 * writes bounce the line between the cores (false sharing). */
static void *cache_thread(void *arg) {
    cache_worker *w = arg;
    const bk_allocator *a = w->a;
    gate_wait(w->gate);
    for (size_t i = 0; i < w->ngiven; i++) a->free(w->given[i]);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < w->ops; i++) {
        size_t size = w->sizes[i & (TABLE_LEN - 1)];
        volatile unsigned char *q = a->malloc(size);
        if (q == NULL) { w->failed = 1; break; }
        for (uint64_t k = 0; k < w->writes; k++)
            for (size_t b = 0; b < size; b++) q[b] = (unsigned char)(k + b);
        sum += q[size - 1];
        a->free((void *)q);
    }
    w->checksum = sum;
    return NULL;
}

static int run_cache(const bk_allocator *a, const bk_params *p, bk_result *r, bool scratch) {
    enum { T = 2 };
    cache_worker *w = harness_alloc(sizeof *w * T);
    start_gate *gate = harness_alloc(sizeof *gate);
    void **given = harness_alloc(sizeof(void *) * SCRATCH_HANDOFF * T);
    if (!w || !gate || !given) return -1;
    uint64_t s = p->seed;
    for (int t = 0; t < T; t++) {
        uint32_t *sizes = harness_alloc(sizeof(uint32_t) * TABLE_LEN);
        if (!sizes) return -1;
        for (size_t i = 0; i < TABLE_LEN; i++) sizes[i] = (uint32_t)rng_range(&s, p->size_min, p->size_max);
        w[t].a = a; w[t].sizes = sizes; w[t].gate = gate;
        w[t].ops = p->ops / T;
        w[t].writes = p->writes ? p->writes : 100;
        w[t].given = given + (size_t)t * SCRATCH_HANDOFF;
        w[t].ngiven = 0;
    }
    if (scratch) {
        /* This thread allocates neighbouring blocks and hands them out in
         * turn, so each worker frees blocks that share lines with the
         * other worker's; an allocator that reuses a freed block for the
         * thread that freed it makes the workers share those lines. */
        for (size_t i = 0; i < SCRATCH_HANDOFF * T; i++) {
            size_t size = w[i % T].sizes[i / T];
            void *q = a->malloc(size);
            if (q == NULL) return -1;
            touch(q, size, i);
            w[i % T].given[w[i % T].ngiven++] = q;
        }
    }
    for (int t = 0; t < T; t++)
        if (pthread_create(&w[t].thread, NULL, cache_thread, &w[t]) != 0) return -1;
    gate_open(gate, T);
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    for (int t = 0; t < T; t++) pthread_join(w[t].thread, NULL);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    for (int t = 0; t < T; t++) {
        r->ops += w[t].ops;
        r->checksum += w[t].checksum;
        r->failed |= w[t].failed;
        harness_free((void *)w[t].sizes, sizeof(uint32_t) * TABLE_LEN);
    }
    harness_free(given, sizeof(void *) * SCRATCH_HANDOFF * T);
    harness_free(w, sizeof *w * T);
    harness_free(gate, sizeof *gate);
    return 0;
}

/* ---- many idle threads: what stays resident after the frees --------------- */

/* Sizes from 16 B to 32 KiB, each one eighth above the last (rounded up to 8 B). */
static size_t idle_sizes(size_t *out, size_t cap) {
    size_t n = 0;
    for (size_t sz = 16; sz <= 32768 && n < cap; ) {
        out[n++] = sz;
        size_t next = (sz + sz / 8 + 7) & ~(size_t)7;
        sz = next > sz ? next : sz + 8;
    }
    return n;
}

#define IDLE_BLOCKS 64 /* blocks of each size per thread per round */
#define IDLE_MAX_SIZES 96

typedef struct idle_ctx {
    const bk_allocator *a;
    size_t sizes[IDLE_MAX_SIZES];
    size_t nsizes;
    int rounds;
    start_gate gate;
    _Atomic int done;       /* threads that finished their rounds */
    _Atomic int release;    /* set when the threads may exit */
    _Atomic int failed;
} idle_ctx;

typedef struct idle_worker {
    idle_ctx *c;
    void **ptrs;            /* nsizes * IDLE_BLOCKS, from mmap */
    pthread_t thread;
} idle_worker;

static void *idle_thread(void *arg) {
    idle_worker *w = arg;
    idle_ctx *c = w->c;
    const bk_allocator *a = c->a;
    gate_wait(&c->gate);
    size_t n = c->nsizes * IDLE_BLOCKS;
    for (int round = 0; round < c->rounds; round++) {
        for (size_t i = 0; i < n; i++) {
            size_t size = c->sizes[i / IDLE_BLOCKS];
            unsigned char *q = a->malloc(size);
            if (q == NULL) { atomic_store(&c->failed, 1); w->ptrs[i] = NULL; continue; }
            for (size_t off = 0; off < size; off += 4096) q[off] = (unsigned char)i;
            q[size - 1] = (unsigned char)round;
            w->ptrs[i] = q;
        }
        for (size_t i = 0; i < n; i++) if (w->ptrs[i]) a->free(w->ptrs[i]);
    }
    atomic_fetch_add(&c->done, 1);
    /* Stay alive, blocked, until released (the thread's caches stay too). */
    while (!atomic_load(&c->release)) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static double rss_above(size_t base) {
    size_t now = bk_current_rss();
    return now > base ? (double)(now - base) : 0.0;
}

static void sleep_seconds(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}

static int run_idle_threads(const bk_allocator *a, const bk_params *p, bk_result *r) {
    int threads = p->threads > 0 ? p->threads : 64;
    idle_ctx *c = harness_alloc(sizeof *c);
    idle_worker *w = harness_alloc(sizeof *w * (size_t)threads);
    if (!c || !w) return -1;
    c->a = a;
    c->nsizes = idle_sizes(c->sizes, IDLE_MAX_SIZES);
    c->rounds = p->rounds > 0 ? p->rounds : 4;
    size_t n = c->nsizes * IDLE_BLOCKS;
    for (int t = 0; t < threads; t++) {
        w[t].c = c;
        w[t].ptrs = harness_alloc(sizeof(void *) * n);
        if (!w[t].ptrs) return -1;
        memset(w[t].ptrs, 0, sizeof(void *) * n); /* touched before the baseline */
    }
    size_t base = bk_current_rss();
    for (int t = 0; t < threads; t++)
        if (pthread_create(&w[t].thread, NULL, idle_thread, &w[t]) != 0) return -1;
    gate_open(&c->gate, threads);
    double t0 = bk_now_ns(), c0 = bk_cpu_ns();
    unsigned spins = 0;
    while (atomic_load(&c->done) < threads) backoff(&spins);
    r->elapsed_ns = bk_now_ns() - t0;
    r->cpu_ns = bk_cpu_ns() - c0;
    r->ops = (uint64_t)threads * (uint64_t)c->rounds * n;
    r->probes[0] = rss_above(base);          /* right after the frees, threads alive */
    sleep_seconds(p->idle_seconds);
    r->probes[1] = rss_above(base);          /* after the idle time */
    atomic_store(&c->release, 1);
    for (int t = 0; t < threads; t++) pthread_join(w[t].thread, NULL);
    r->probes[2] = rss_above(base);          /* after the threads exited */
    r->nprobes = 3;
    r->failed = atomic_load(&c->failed);
    r->checksum = n;
    for (int t = 0; t < threads; t++) harness_free(w[t].ptrs, sizeof(void *) * n);
    harness_free(w, sizeof *w * (size_t)threads);
    harness_free(c, sizeof *c);
    return 0;
}

/* ---- idle gaps: random-batch bursts separated by idle time ---------------- */

static int run_idle_gaps(const bk_allocator *a, const bk_params *p, bk_result *r) {
    int bursts = p->rounds > 0 ? p->rounds : 14;
    bk_params burst = *p;
    burst.rounds = 0;
    size_t base = bk_current_rss();
    double busy = 0, cpu = 0, after_burst = 0, after_gap = 0;
    uint64_t ops = 0, sum = 0;
    for (int b = 0; b < bursts; b++) {
        if (b > 0) {
            sleep_seconds(p->idle_seconds);
            after_gap += rss_above(base);
        }
        bk_result one;
        memset(&one, 0, sizeof one);
        burst.seed = p->seed + (uint64_t)b;
        if (run_random_batch(a, &burst, &one) != 0) return -1;
        if (one.failed) { r->failed = 1; break; }
        busy += one.elapsed_ns;
        cpu += one.cpu_ns;
        ops += one.ops;
        sum += one.checksum;
        after_burst += rss_above(base);
    }
    r->elapsed_ns = busy;
    r->cpu_ns = cpu;
    r->ops = ops;
    r->checksum = sum;
    r->probes[0] = after_burst / bursts;                       /* mean RSS right after a burst */
    r->probes[1] = bursts > 1 ? after_gap / (bursts - 1) : 0;  /* mean RSS at the end of a gap */
    r->nprobes = 2;
    return 0;
}

int bk_run(bk_workload_kind kind, const bk_allocator *a, const bk_params *p, bk_result *out) {
    memset(out, 0, sizeof *out);
    switch (kind) {
    case BK_W_LIFO: return run_lifo(a, p, out);
    case BK_W_RANDOM_BATCH: return run_random_batch(a, p, out);
    case BK_W_PRODCONS: return run_prodcons(a, p, out);
    case BK_W_LARSON: return run_larson(a, p, out);
    case BK_W_REALLOC: return run_realloc(a, p, out);
    case BK_W_LARGE: return run_large(a, p, out);
    case BK_W_SCALING: return run_scaling(a, p, out);
    case BK_W_CHURN: return run_churn(a, p, out);
    case BK_W_CACHE_SCRATCH: return run_cache(a, p, out, true);
    case BK_W_CACHE_THRASH: return run_cache(a, p, out, false);
    case BK_W_IDLE_THREADS: return run_idle_threads(a, p, out);
    case BK_W_IDLE_GAPS: return run_idle_gaps(a, p, out);
    default: return -1;
    }
}
