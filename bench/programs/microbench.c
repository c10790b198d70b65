/*
 * microbench.c — the instruction-count microbenchmark of scripts/callgrind.sh.
 *
 *   microbench lifo SIZE N     N times: malloc(SIZE), write a byte, free
 *   microbench batch ROUNDS N  ROUNDS times: N blocks of random size
 *                              8..1024 B allocated (a byte written in each),
 *                              then freed in a shuffled order
 *
 * Plain C against libc's malloc/free, so any allocator can be loaded under
 * it with LD_PRELOAD; the random sizes and the shuffle come from a fixed
 * xorshift seed, so every run and every allocator sees the same calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
static uint64_t rng = 88172645463325252ull;
static inline uint64_t xs(void){ rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "lifo";
    long a = argc > 2 ? atol(argv[2]) : 64, n = argc > 3 ? atol(argv[3]) : 1000000;
    volatile uintptr_t sink = 0;
    if (!strcmp(mode, "lifo")) {
        for (long i = 0; i < n; i++) { char *p = malloc((size_t)a); p[0] = 1; sink += (uintptr_t)p; free(p); }
    } else {
        void **v = malloc(sizeof(void *) * (size_t)n);
        size_t *order = malloc(sizeof(size_t) * (size_t)n);
        for (long r = 0; r < a; r++) {
            for (long i = 0; i < n; i++) { size_t s = 8 + xs() % 1017; v[i] = malloc(s); ((char *)v[i])[0] = 1; }
            for (long i = 0; i < n; i++) order[i] = (size_t)i;
            for (long i = n - 1; i > 0; i--) { size_t j = xs() % (size_t)(i + 1); size_t t = order[i]; order[i] = order[j]; order[j] = t; }
            for (long i = 0; i < n; i++) free(v[order[i]]);
        }
        free(order); free(v);
    }
    printf("%lu\n", (unsigned long)(sink & 1));
    return 0;
}
