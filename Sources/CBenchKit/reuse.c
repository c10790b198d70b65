/*
 * The reuse experiment's live set: which objects are alive and how big they
 * are, kept in mmap'ed arrays so that the bookkeeping never goes through an
 * allocator under test. Invariant: ptrs[0..count) are live, live_bytes is
 * the sum of sizes[0..count).
 */
#define _GNU_SOURCE
#include "benchkit.h"

#include <sys/mman.h>

struct bk_reuse {
    void **ptrs;
    uint32_t *sizes;
    size_t count, capacity, live_bytes;
    uint64_t rng;
};

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void *map(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

bk_reuse *bk_reuse_new(size_t capacity, uint64_t seed) {
    bk_reuse *r = map(sizeof *r);
    if (!r) return NULL;
    r->ptrs = map(sizeof(void *) * capacity);
    r->sizes = map(sizeof(uint32_t) * capacity);
    if (!r->ptrs || !r->sizes) return NULL;
    r->capacity = capacity;
    r->rng = seed;
    /* Touch the bookkeeping now so it is part of the baseline, not of a phase. */
    for (size_t i = 0; i < capacity; i += 512) { r->ptrs[i] = 0; r->sizes[i] = 0; }
    return r;
}

void bk_reuse_destroy(bk_reuse *r) {
    munmap(r->ptrs, sizeof(void *) * r->capacity);
    munmap(r->sizes, sizeof(uint32_t) * r->capacity);
    munmap(r, sizeof *r);
}

/* Mix 0: small objects in Go's lower classes. Mix 1: medium objects of other
 * classes and a few large ones, so refilled memory must come from pages that
 * held other size classes before. */
static size_t pick(bk_reuse *r, int mix) {
    uint64_t x = next(&r->rng);
    if (mix == 0) return 16 + (size_t)(x % 497);                /* 16..512 B */
    if (x % 100 < 95) return 640 + (size_t)((x >> 8) % 23937);  /* 640 B..24 KiB */
    return 40960 + (size_t)((x >> 8) % 221185);                 /* 40..256 KiB */
}

long bk_reuse_fill(bk_reuse *r, const bk_allocator *a, int mix, size_t bytes) {
    size_t target = r->live_bytes + bytes;
    long n = 0;
    while (r->live_bytes < target && r->count < r->capacity) {
        size_t size = pick(r, mix);
        unsigned char *q = a->malloc(size);
        if (!q) return -1;
        for (size_t off = 0; off < size; off += 4096) q[off] = (unsigned char)n;
        q[size - 1] = 1;
        r->ptrs[r->count] = q;
        r->sizes[r->count] = (uint32_t)size;
        r->count++;
        r->live_bytes += size;
        n++;
    }
    return n;
}

long bk_reuse_free_fraction(bk_reuse *r, const bk_allocator *a, double fraction) {
    size_t k = fraction >= 1 ? r->count : (size_t)((double)r->count * fraction);
    /* Choose k random live objects by a partial Fisher-Yates shuffle into the tail. */
    for (size_t i = 0; i < k; i++) {
        size_t last = r->count - 1 - i;
        size_t j = (size_t)(next(&r->rng) % (last + 1));
        void *tp = r->ptrs[j]; r->ptrs[j] = r->ptrs[last]; r->ptrs[last] = tp;
        uint32_t ts = r->sizes[j]; r->sizes[j] = r->sizes[last]; r->sizes[last] = ts;
    }
    for (size_t i = r->count - k; i < r->count; i++) {
        a->free(r->ptrs[i]);
        r->live_bytes -= r->sizes[i];
    }
    r->count -= k;
    return (long)k;
}

size_t bk_reuse_live_bytes(const bk_reuse *r) { return r->live_bytes; }
size_t bk_reuse_live_objects(const bk_reuse *r) { return r->count; }
