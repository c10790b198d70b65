/*
 * lineprobe.c — how long a cache line takes to go from one core to another
 * and back, measured with two threads that take turns incrementing one
 * counter. Channel hand-offs between threads cost a handful of such
 * transfers, so `bench` reports it next to the GoChan rows: on a VM the
 * figure depends on where the host runs the two vCPUs at the moment
 * (e.g. ~30 ns on one physical core's hyperthreads, ~130 ns across cores).
 */
#include "benchkit.h"

#include <pthread.h>
#include <stdatomic.h>

static _Alignas(64) _Atomic long probe_turn;
static long probe_rounds;

static void *probe_echo(void *arg) {
    (void)arg;
    for (long i = 0; i < probe_rounds; i++) {
        while (atomic_load_explicit(&probe_turn, memory_order_acquire) != 2 * i + 1) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        }
        atomic_store_explicit(&probe_turn, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

double bk_line_round_trip_ns(long rounds) {
    probe_rounds = rounds;
    atomic_store(&probe_turn, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, probe_echo, NULL) != 0) return -1;
    double t0 = bk_now_ns();
    for (long i = 0; i < rounds; i++) {
        atomic_store_explicit(&probe_turn, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&probe_turn, memory_order_acquire) != 2 * i + 2) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        }
    }
    double ns = (bk_now_ns() - t0) / (double)rounds;
    pthread_join(t, NULL);
    return ns;
}
