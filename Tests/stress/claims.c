/*
 * claims.c — the background scavenger claiming the caches of idle threads
 * while they wake up: NT threads work in bursts (allocate, check and free
 * blocks of 1 B to 40 KiB, hand small blocks to a neighbour, who frees them)
 * and sleep 15–45 ms between bursts, with idle_ms = 20, so the scavenger
 * flushes their caches as they stop and while they start again. Every block
 * carries a pattern checked before its free; after the threads are joined
 * every block is freed, the quiescent heap checker runs, and MemStats must
 * show claims (IdleCacheFlushes > 0) and no live object.
 *
 *   CLAIMS_SECONDS=N (default 5)
 */
#include "spanalloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NT 4
#define LIVE 512
#define SHARED 256

static _Atomic bool stop;
static void *_Atomic shared[NT][SHARED];

static void fail(const char *what, const void *p) {
    fprintf(stderr, "claims: %s (block %p)\n", what, p);
    abort();
}

static unsigned char pattern(size_t n) { return (unsigned char)(n * 131 + 7); }

static void *work(void *arg) {
    long t = (long)arg;
    unsigned s = (unsigned)t * 977u + 3u;
    void *b[LIVE];
    size_t n[LIVE];
    int k = 0;
    long ops = 0;
    while (!stop) {
        int burst = (int)((s >> 3) % 2000);
        for (int i = 0; i < burst; i++, ops++) {
            s = s * 1103515245u + 12345u;
            if (k < LIVE && (s >> 20) % 3) {
                size_t z = (s >> 8) % ((s >> 28) & 1 ? 40000 : 600) + 1;
                unsigned char *p = sa_alloc(z, 0);
                if (!p) fail("allocation failed", NULL);
                memset(p, pattern(z), z < 64 ? z : 64);
                b[k] = p;
                n[k++] = z;
            } else if (k) {
                int j = (int)((s >> 12) % (unsigned)k);
                unsigned char *p = b[j];
                for (size_t q = 0; q < (n[j] < 64 ? n[j] : 64); q++)
                    if (p[q] != pattern(n[j])) fail("pattern overwritten", p);
                if ((s >> 5) % 4 == 0) { /* a remote free, and a block for the neighbour */
                    void *x = atomic_exchange(&shared[(t + 1) % NT][j % SHARED], NULL);
                    if (x) sa_free(x);
                    void *y = sa_alloc(24, 0);
                    if (!y) fail("allocation failed", NULL);
                    void *old = atomic_exchange(&shared[t][j % SHARED], y);
                    if (old) sa_free(old);
                }
                sa_free(p);
                b[j] = b[--k];
                n[j] = n[k];
            }
        }
        s = s * 1103515245u + 12345u;
        usleep(((s >> 10) % 3) * 15000 + 15000);
    }
    while (k) sa_free(b[--k]);
    return (void *)ops;
}

int main(void) {
    const char *e = getenv("CLAIMS_SECONDS");
    int secs = e ? atoi(e) : 5;
    sa_scavenge_config c;
    sa_get_scavenge_config(&c);
    c.mode = SA_SCAVENGE_BACKGROUND;
    c.idle_ms = 20;
    c.delay_ms = 10;
    sa_set_scavenge_config(&c);
    pthread_t th[NT];
    for (long i = 0; i < NT; i++) pthread_create(&th[i], NULL, work, (void *)i);
    sleep((unsigned)secs);
    stop = true;
    long ops = 0;
    for (int i = 0; i < NT; i++) {
        void *r;
        pthread_join(th[i], &r);
        ops += (long)r;
    }
    for (int t = 0; t < NT; t++)
        for (int j = 0; j < SHARED; j++) {
            void *x = atomic_exchange(&shared[t][j], NULL);
            if (x) sa_free(x);
        }
    sa_mem_stats st;
    sa_read_mem_stats(&st);
    char err[256];
    int rc = sa_check_heap_quiescent(err, sizeof err);
    printf("claims: %ld operations in %d s, %llu idle caches handed back, %llu objects live at the end, heap check %s\n",
           ops, secs, (unsigned long long)st.idle_cache_flushes, (unsigned long long)st.heap_objects, rc ? err : "ok");
    if (rc || st.idle_cache_flushes == 0 || st.heap_objects != 0) return 1;
    return 0;
}
