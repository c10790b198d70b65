/*
 * profile_sites.c — allocation sites with known figures, for the heap
 * profiler's check (scripts/profile-check.sh, docs/profiling.md). Built with
 * -g -fno-omit-frame-pointer and run under LD_PRELOAD with SPANALLOC=profile=…:
 *
 *   site_big    holds 100 objects of 1 MiB (100 MiB in use)
 *   site_small  holds 131072 objects of 96 bytes (12 MiB in use)
 *   site_churn  allocates 524288 objects of 1 KiB (512 MiB) in batches and frees them all
 *
 * Prints the true figures as "site alloc_bytes inuse_bytes" lines. With the
 * argument `signal`, it first sends itself SIGUSR2 and waits for the profile
 * the signal's writer thread writes (SPANALLOC=profile_signal=USR2).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BIG_N 100
#define BIG_SIZE (1u << 20)
#define SMALL_N 131072
#define SMALL_SIZE 96
#define CHURN_N 524288
#define CHURN_SIZE 1024
#define CHURN_BATCH 4096

static void *big[BIG_N];
static void *small[SMALL_N];

__attribute__((noinline)) void site_big(void) {
    for (int i = 0; i < BIG_N; i++) {
        big[i] = malloc(BIG_SIZE);
        memset(big[i], 1, 4096);
    }
}

__attribute__((noinline)) void site_small(void) {
    for (int i = 0; i < SMALL_N; i++) {
        small[i] = malloc(SMALL_SIZE);
        *(volatile char *)small[i] = 1;
    }
}

__attribute__((noinline)) void site_churn(void) {
    static void *batch[CHURN_BATCH];
    for (int done = 0; done < CHURN_N; done += CHURN_BATCH) {
        for (int i = 0; i < CHURN_BATCH; i++) {
            batch[i] = malloc(CHURN_SIZE);
            *(volatile char *)batch[i] = 1;
        }
        /* Half freed in reverse, half in order: the LIFO shortcut and the bins both. */
        for (int i = CHURN_BATCH - 1; i >= CHURN_BATCH / 2; i--) free(batch[i]);
        for (int i = 0; i < CHURN_BATCH / 2; i++) free(batch[i]);
    }
}

int main(int argc, char **argv) {
    site_big();
    site_small();
    site_churn();
    if (argc > 1 && strcmp(argv[1], "signal") == 0) {
        /* SPANALLOC=profile_signal=USR2 without a path: the writer thread
         * writes spanalloc.<pid>.heap.pb.gz here; wait for it (10 s at most). */
        char path[64];
        snprintf(path, sizeof path, "spanalloc.%d.heap.pb.gz", (int)getpid());
        kill(getpid(), SIGUSR2);
        for (int i = 0; i < 1000 && access(path, F_OK) != 0; i++) usleep(10000);
        if (access(path, F_OK) != 0) { fprintf(stderr, "no profile after SIGUSR2\n"); return 1; }
    }
    printf("site_big %llu %llu\n", (unsigned long long)BIG_N * BIG_SIZE, (unsigned long long)BIG_N * BIG_SIZE);
    printf("site_small %llu %llu\n", (unsigned long long)SMALL_N * SMALL_SIZE,
           (unsigned long long)SMALL_N * SMALL_SIZE);
    printf("site_churn %llu 0\n", (unsigned long long)CHURN_N * CHURN_SIZE);
    return 0;
}
