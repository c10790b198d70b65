/*
 * pairs.c — the instruction-count workloads that scripts/callgrind.sh (every
 * allocator) and scripts/profile-cost.sh (the heap profiler's cost,
 * docs/profiling.md) run under callgrind; plain C against libc's malloc, so
 * any allocator can be loaded under it with LD_PRELOAD:
 *
 *   pairs lifo N     N malloc(64)/free pairs
 *   pairs batch R    R rounds: 100,000 blocks of 8–1024 B, freed shuffled
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: pairs lifo|batch N\n"); return 2; }
    long n = atol(argv[2]);
    if (strcmp(argv[1], "lifo") == 0) {
        for (long i = 0; i < n; i++) {
            void *volatile p = malloc(64);
            free(p);
        }
        return 0;
    }
    enum { B = 100000 };
    static void *blocks[B];
    static size_t sizes[B];
    static uint32_t order[B];
    for (long r = 0; r < n; r++) {
        for (int i = 0; i < B; i++) sizes[i] = 8 + next() % 1017;
        for (int i = 0; i < B; i++) order[i] = (uint32_t)i;
        for (int i = B - 1; i > 0; i--) { uint32_t j = (uint32_t)(next() % (uint64_t)(i + 1)), t = order[i]; order[i] = order[j]; order[j] = t; }
        for (int i = 0; i < B; i++) blocks[i] = malloc(sizes[i]);
        for (int i = 0; i < B; i++) free(blocks[order[i]]);
    }
    return 0;
}
