/* Quick C-level smoke and stress test of the native API. Built and run by
 * scripts/smoke.sh (part of scripts/reliability.sh, so of scripts/test.sh)
 * with assertions on: every assert below is live. */
#include "spanalloc.h"
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void check(void) {
    char err[256];
    if (sa_check_heap(err, sizeof err) != 0) { fprintf(stderr, "heap check failed: %s\n", err); exit(1); }
}

static uint64_t rng = 88172645463325252ull;
static uint64_t xr(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

#define N 200000
static void *ptrs[N];
static size_t sizes[N];

static void *thread_alloc_free(void *arg) {
    uint64_t r = (uintptr_t)arg * 2654435761u + 1;
    void **local = malloc(sizeof(void *) * 10000);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 10000; i++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            size_t sz = (r % 20 == 0) ? 40000 + r % 100000 : r % 2048;
            local[i] = sa_alloc(sz, r & 1);
            memset(local[i], (int)(i & 0xff), sz < 64 ? sz : 64);
        }
        for (int i = 0; i < 10000; i++) sa_free(local[i]);
    }
    free(local);
    return NULL;
}

typedef struct { void **ring; volatile int head, tail; int n; } ringq;
static void *consumer(void *arg) {
    ringq *q = arg;
    for (int got = 0; got < q->n;) {
        int t = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
        while (q->head != t) {
            void *p = q->ring[q->head % 1024];
            if (*(uint32_t *)p != (uint32_t)(uintptr_t)p) { fprintf(stderr, "pattern mismatch\n"); exit(1); }
            sa_free(p);
            __atomic_store_n(&q->head, q->head + 1, __ATOMIC_RELEASE);
            got++;
        }
    }
    return NULL;
}

int main(void) {
    /* size classes */
    for (size_t sz = 0; sz <= 32768; sz++) {
        int c = sa_size_to_class(sz);
        assert(c >= 1 && sa_class_size(c) >= sz && (c == 1 || sa_class_size(c - 1) < sz));
    }
    /* basic alloc/free of every class */
    for (int c = 1; c < SA_NUM_CLASSES; c++) {
        size_t n = sa_class_objects(c) * 2 + 70;
        void **v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) {
            v[i] = sa_alloc(sa_class_size(c), 0);
            sa_span_info si;
            assert(sa_span_of(v[i], &si) && si.size_class == c && (uintptr_t)v[i] >= si.base);
            memset(v[i], 0xab, sa_class_size(c));
        }
        for (size_t i = 0; i < n; i++) sa_free(v[i]);
        free(v);
    }
    check();
    /* random batch, freed in random order */
    for (int i = 0; i < N; i++) { sizes[i] = 8 + xr() % 1017; ptrs[i] = sa_alloc(sizes[i], 0); memset(ptrs[i], 1, sizes[i]); }
    for (int i = N - 1; i > 0; i--) { int j = xr() % (i + 1); void *t = ptrs[i]; ptrs[i] = ptrs[j]; ptrs[j] = t; }
    for (int i = 0; i < N; i++) sa_free(ptrs[i]);
    check();
    /* large */
    for (size_t sz = 33000; sz < ((size_t)1 << 30); sz *= 3) { char *p = sa_alloc(sz, 0); p[0] = 1; p[sz - 1] = 2; sa_free(p); }
    check();
    /* aligned */
    for (size_t a = 16; a <= ((size_t)64 << 20); a <<= 1) {
        void *p = sa_alloc_aligned(100, a, 0); assert(((uintptr_t)p & (a - 1)) == 0); sa_free(p);
    }
    check();
    /* realloc */
    char *p = sa_realloc(NULL, 10);
    for (size_t n = 10; n < 1000000; n = n * 3 / 2) { p = sa_realloc(p, n); p[n - 1] = 7; }
    sa_free(p);
    check();
    /* threads */
    pthread_t th[4];
    for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, thread_alloc_free, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    check();
    /* producer/consumer */
    ringq q = {.ring = malloc(1024 * sizeof(void *)), .n = 2000000};
    pthread_t ct; pthread_create(&ct, NULL, consumer, &q);
    struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < q.n; i++) {
        void *x = sa_alloc(64, 0); *(uint32_t *)x = (uint32_t)(uintptr_t)x;
        while (q.tail - __atomic_load_n(&q.head, __ATOMIC_ACQUIRE) >= 1024) ;
        q.ring[q.tail % 1024] = x; __atomic_store_n(&q.tail, q.tail + 1, __ATOMIC_RELEASE);
    }
    pthread_join(ct, NULL);
    free(q.ring);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("producer/consumer: %.1f ns/item\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / q.n);
    sa_thread_flush();
    check();
    sa_mem_stats st; sa_read_mem_stats(&st);
    printf("objects %llu mallocs %llu frees %llu inuse %llu idle %llu reused %llu fresh %llu returned %llu remote %llu\n",
           (unsigned long long)st.heap_objects, (unsigned long long)st.mallocs, (unsigned long long)st.frees,
           (unsigned long long)st.heap_inuse, (unsigned long long)st.heap_idle, (unsigned long long)st.spans_reused,
           (unsigned long long)st.spans_fresh, (unsigned long long)st.spans_returned, (unsigned long long)st.remote_frees);
    /* everything was freed and every cache handed back */
    if (st.heap_objects != 0 || st.mallocs != st.frees || st.heap_alloc != 0 || st.spans_inuse != 0 || st.heap_inuse != 0) {
        fprintf(stderr, "smoke: heap not empty after freeing everything\n");
        return 1;
    }
    if (st.remote_frees < (uint64_t)q.n) {
        fprintf(stderr, "smoke: %llu remote frees, the consumer freed %d\n", (unsigned long long)st.remote_frees, q.n);
        return 1;
    }
    /* LIFO pair timing */
    for (int sz = 16; sz <= 1024; sz *= 4) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 10000000; i++) { void *x = sa_alloc(sz, 0); __asm__ volatile("" ::"r"(x)); sa_free(x); }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("pair %d B: %.2f ns\n", sz, ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e7);
    }
    /* out of memory: the OS refuses every mmap */
    {
        void *keep = sa_alloc(100, 0);
        memset(keep, 0x5a, 100);
        sa_debug_fail_mmap_after(0);
        void *big = sa_alloc((size_t)8 << 30, 0);
        if (big) { fprintf(stderr, "expected NULL under injected OOM\n"); return 1; }
        void *many[20000]; int got = 0;
        for (int i = 0; i < 20000; i++) { many[i] = sa_alloc(4000 + (i % 7) * 4096, 0); if (many[i]) got++; else break; }
        printf("allocated %d blocks before OOM\n", got);
        for (int i = 0; i < got; i++) sa_free(many[i]);
        sa_debug_fail_mmap_after(-1);
        check();
        big = sa_alloc((size_t)1 << 30, 0);
        if (!big) { fprintf(stderr, "allocation should succeed again\n"); return 1; }
        sa_free(big);
        for (int i = 0; i < 100; i++) if (((unsigned char *)keep)[i] != 0x5a) { fprintf(stderr, "corrupted\n"); return 1; }
        sa_free(keep);
        check();
    }
    size_t rel = sa_scavenge(SIZE_MAX);
    printf("scavenged %zu bytes\n", rel);
    check();
    printf("ok\n");
    return 0;
}
