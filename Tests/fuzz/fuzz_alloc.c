/*
 * fuzz_alloc.c — libFuzzer target for SpanAlloc's C API (docs/reliability.md).
 *
 * Each input is a sequence of operations, one opcode byte followed by its
 * argument bytes: allocate (sizes over every class and large, with the
 * SA_NOSCAN / SA_ZERO flags), free, realloc, aligned allocation, calloc,
 * scavenge, span lookups, thread-cache flush, a free by another thread, a
 * free of the block allocated last (the LIFO shortcut), sizes that cannot be
 * served, injected mmap failures, and a short-lived thread that frees live
 * blocks and some of its own and exits with them in its free caches. A shadow model keeps every live block:
 * its pointer, requested size and a content pattern derived from its address
 * and a seed. Every operation checks the allocator against the model
 * (alignment, usable size, no overlap, contents, span introspection, errno),
 * and the end of every input frees everything, runs the heap checker and
 * checks that the statistics balance. Any disagreement aborts with a message,
 * which libFuzzer reports as a crash with the input that caused it.
 *
 * At exit, after at least FREE_CACHE_MIN_INPUTS inputs, the run must have
 * exercised the free caches: allocations served from a bin, frees that
 * found their bin full, remote buffers handed back and threads that exited
 * holding cached frees (MemStats free_cache_hits, free_cache_flushes,
 * remote_batches, exit_flushes all > 0); otherwise it exits 1.
 *
 * Build and run: scripts/fuzz.sh (bounded), or by hand:
 *   /opt/swift/usr/bin/clang -fsanitize=fuzzer,address -O1 -g -D_GNU_SOURCE \
 *     -ISources/CSpanAlloc/include Tests/fuzz/fuzz_alloc.c Sources/CSpanAlloc/sa_*.c -o fuzz_alloc
 *   ./fuzz_alloc -runs=100000 /tmp/new-units Tests/fuzz/corpus
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spanalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LIVE 192
#define FULL_FILL (64u << 10) /* larger blocks: edges and one word per 4 KiB */
#define EDGE (8u << 10)
#define MAX_FUZZ_SIZE ((size_t)4 << 20)

typedef struct {
    unsigned char *p;
    size_t size;   /* bytes requested (the pattern covers them) */
    uint64_t seed; /* with the address at fill time, defines the pattern */
    uintptr_t origin;
} block;

/* FUZZ_TRACE=1 in the environment prints every operation (to turn a crash
 * into a reproducer by hand). */
static int tracing = -1;
#define TRACE(...) do { if (tracing) fprintf(stderr, __VA_ARGS__); } while (0)

static block live[MAX_LIVE];
static size_t nlive;
static uint64_t serial;
static int injecting; /* mmap failure injection is armed */

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_alloc: model disagrees: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* ---- the input -------------------------------------------------------- */

typedef struct {
    const uint8_t *d;
    size_t n, i;
} reader;

static unsigned u8(reader *r) { return r->i < r->n ? r->d[r->i++] : 0; }
static unsigned u16(reader *r) { return u8(r) | u8(r) << 8; }
static uint32_t u32(reader *r) { return (uint32_t)u16(r) | (uint32_t)u16(r) << 16; }

/* A request size: a size class's exact size, one byte over or under it,
 * a large size, or any size up to 64 KiB. */
static size_t pick_size(reader *r) {
    unsigned kind = u8(r);
    switch (kind & 7) {
    case 0: case 1: {
        int cls = 1 + (int)(u8(r) % 67);
        size_t s = sa_class_size(cls);
        int delta = (int)(kind >> 3 & 3) - 1; /* -1, 0, +1, +2 */
        return delta < 0 && s > 0 ? s - 1 : s + (size_t)(delta > 0 ? delta : 0);
    }
    case 2: return u8(r);
    case 3: return SA_MAX_SMALL_SIZE + (u16(r) & 0x3fff) - 0x2000; /* around the large threshold */
    case 4: return SA_MAX_SMALL_SIZE + 1 + u32(r) % MAX_FUZZ_SIZE;
    case 5: return (size_t)(u16(r) % 64 + 1) * SA_PAGE_SIZE + (kind >> 3) - 8; /* around page multiples */
    default: return u16(r);
    }
}

/* ---- contents --------------------------------------------------------- */

static inline uint64_t pattern_word(uintptr_t origin, uint64_t seed, size_t off) {
    uint64_t z = (uint64_t)origin + off * 0x9E3779B97F4A7C15ull ^ seed;
    z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 32);
}

/* Calls body on each byte range [a, b) the pattern covers in `size` bytes:
 * all of it up to FULL_FILL, else both edges and one word per 4 KiB. */
#define FOR_EACH_RANGE(size, a, b, body) do { \
        size_t sz_ = (size); \
        if (sz_ <= FULL_FILL) { size_t a = 0, b = sz_; body; } \
        else { \
            { size_t a = 0, b = EDGE; body; } \
            for (size_t m_ = EDGE; m_ + 8 <= sz_ - EDGE; m_ += 4096) { size_t a = m_, b = m_ + 8; body; } \
            { size_t a = sz_ - EDGE, b = sz_; body; } \
        } \
    } while (0)

/* The model's own loops are not instrumented for coverage: they would
 * dominate the run time and guide the fuzzer by block sizes only. */
#define MODEL __attribute__((no_sanitize("coverage")))

/* Byte o of the pattern (little-endian words at 8-byte offsets). */
MODEL static inline unsigned char pattern_byte(uintptr_t origin, uint64_t seed, size_t o) {
    return (unsigned char)(pattern_word(origin, seed, o & ~(size_t)7) >> ((o & 7) * 8));
}

/* Writes (or, with `verify`, compares) the pattern over [a, b): whole words
 * where they fit, bytes at the ragged ends. Returns the first offset that
 * differs, or SIZE_MAX. */
MODEL static size_t pattern_range(unsigned char *p, uintptr_t origin, uint64_t seed, size_t a, size_t b, bool verify) {
    size_t o = a;
    for (; o < b && (o & 7); o++) {
        unsigned char c = pattern_byte(origin, seed, o);
        if (verify) { if (p[o] != c) return o; } else p[o] = c;
    }
    for (; o + 8 <= b; o += 8) {
        uint64_t w = pattern_word(origin, seed, o), have;
        if (verify) { memcpy(&have, p + o, 8); if (have != w) return o; } else memcpy(p + o, &w, 8);
    }
    for (; o < b; o++) {
        unsigned char c = pattern_byte(origin, seed, o);
        if (verify) { if (p[o] != c) return o; } else p[o] = c;
    }
    return SIZE_MAX;
}

MODEL static void fill(block *b) {
    b->origin = (uintptr_t)b->p;
    FOR_EACH_RANGE(b->size, a, e, { pattern_range(b->p, b->origin, b->seed, a, e, false); });
}

/* Checks the first `prefix` bytes of b against its pattern. */
MODEL static void check(const block *b, size_t prefix, const char *when) {
    FOR_EACH_RANGE(b->size, a, e, {
        size_t bad = a < prefix ? pattern_range(b->p, b->origin, b->seed, a, e < prefix ? e : prefix, true) : SIZE_MAX;
        if (bad != SIZE_MAX) fail("%s: block %p (%zu bytes) byte %zu changed", when, (void *)b->p, b->size, bad);
    });
}

MODEL static void check_zero(const unsigned char *p, size_t size) {
    static const unsigned char zero[4096];
    FOR_EACH_RANGE(size, a, e, {
        for (size_t o = a; o < e; o += sizeof zero) {
            size_t n = e - o < sizeof zero ? e - o : sizeof zero;
            if (memcmp(p + o, zero, n)) fail("zeroed block %p (%zu bytes) has a non-zero byte near %zu", (void *)p, size, o);
        }
    });
}

/* ---- checks on a new block ---------------------------------------------- */

static size_t natural_alignment(size_t size) {
    int cls = sa_size_to_class(size);
    if (cls == 0) return SA_PAGE_SIZE;
    size_t s = sa_class_size(cls);
    size_t a = s & -s;
    return a < 8 ? 8 : a;
}

static void check_new(unsigned char *p, size_t size, size_t align) {
    if ((uintptr_t)p % align) fail("block %p of %zu bytes not aligned to %zu", (void *)p, size, align);
    size_t usable = sa_usable_size(p);
    if (usable < size) fail("usable size %zu < %zu requested", usable, size);
    sa_span_info si;
    if (!sa_span_of(p, &si) || !sa_owns(p)) fail("new block %p has no span", (void *)p);
    if ((uintptr_t)p < si.base || (uintptr_t)p + size > si.base + si.npages * SA_PAGE_SIZE)
        fail("block %p+%zu outside its span %p+%zu pages", (void *)p, size, (void *)si.base, si.npages);
    if (si.elemsize != usable) fail("span elemsize %zu != usable size %zu", si.elemsize, usable);
    /* No overlap with any live block (their usable extents). */
    uintptr_t lo = (uintptr_t)p, hi = lo + (usable ? usable : 1);
    for (size_t i = 0; i < nlive; i++) {
        uintptr_t l2 = (uintptr_t)live[i].p, h2 = l2 + (sa_usable_size(live[i].p) ? sa_usable_size(live[i].p) : 1);
        if (lo < h2 && l2 < hi) fail("new block %p overlaps live block %p", (void *)p, (void *)live[i].p);
    }
}

static void add(unsigned char *p, size_t size) {
    block *b = &live[nlive++];
    b->p = p;
    b->size = size;
    b->seed = ++serial * 0x2545F4914F6CDD1Dull;
    fill(b);
}

static block take(size_t i) {
    block b = live[i];
    live[i] = live[--nlive];
    return b;
}

static void expect_null_enomem(void *p, const char *what, size_t size) {
    if (p) fail("%s(%zu) returned %p, expected NULL", what, size, p);
    if (errno != ENOMEM) fail("%s(%zu): errno %d, expected ENOMEM", what, size, errno);
}

/* A NULL allocation is correct only while mmap failure is injected. */
static bool refused(void *p, const char *what, size_t size) {
    if (p) return false;
    if (!injecting) fail("%s(%zu) returned NULL without injected failure (errno %d)", what, size, errno);
    if (errno != ENOMEM) fail("%s(%zu) under injection: errno %d, expected ENOMEM", what, size, errno);
    return true;
}

/* ---- the other threads ------------------------------------------------- */

/* The quiescent heap checker: also validates the other threads' cached
 * spans and always cross-checks live objects against the statistics; the
 * caller promises that no other thread allocates or frees during the call.
 * Weak, so the target also builds against a core without it. */
int sa_check_heap_quiescent(char *err, size_t errlen) __attribute__((weak));

/* Thread 1, the synchronous remote freer: frees what it is handed while the
 * input's thread waits (so the order of operations stays deterministic).
 * Thread 2, the concurrent remote freer: takes blocks from a queue and
 * checks and frees them while the input's thread goes on allocating and
 * freeing. Both keep a thread cache across inputs; quiesce() waits until
 * both are idle, and with `flush` has each call sa_thread_flush() first. */
enum { HAND_FREE = 1, HAND_FLUSH = 2 };
static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hand_cond = PTHREAD_COND_INITIALIZER;
static void *hand_ptr;
static int hand_pending;

static void *remote_freer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&hand_lock);
    for (;;) {
        while (!hand_pending) pthread_cond_wait(&hand_cond, &hand_lock);
        if (hand_pending == HAND_FREE) sa_free(hand_ptr);
        else sa_thread_flush();
        hand_pending = 0;
        pthread_cond_broadcast(&hand_cond);
    }
    return NULL;
}

static pthread_t freer_thread;

static void hand_over(int what, void *p) {
    pthread_mutex_lock(&hand_lock);
    if (!freer_thread) pthread_create(&freer_thread, NULL, remote_freer, NULL);
    hand_ptr = p;
    hand_pending = what;
    pthread_cond_broadcast(&hand_cond);
    while (hand_pending) pthread_cond_wait(&hand_cond, &hand_lock);
    pthread_mutex_unlock(&hand_lock);
}

static void free_on_other_thread(void *p) { hand_over(HAND_FREE, p); }

#define ASYNC_RING 64
static pthread_mutex_t async_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t async_cond = PTHREAD_COND_INITIALIZER;
static block async_ring[ASYNC_RING];
static unsigned async_head, async_tail; /* ring indexes; async_lock */
static int async_busy;                  /* a block taken from the ring is being freed */
static int async_flush;                 /* flush requested, not yet done */
static pthread_t async_thread;
static _Atomic unsigned long long async_frees;

static void *concurrent_freer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&async_lock);
    for (;;) {
        while (async_head == async_tail && !async_flush) pthread_cond_wait(&async_cond, &async_lock);
        if (async_head != async_tail) {
            block b = async_ring[async_head % ASYNC_RING];
            async_head++;
            async_busy = 1;
            pthread_mutex_unlock(&async_lock);
            check(&b, b.size, "before a concurrent remote free");
            sa_free(b.p);
            atomic_fetch_add_explicit(&async_frees, 1, memory_order_relaxed);
            pthread_mutex_lock(&async_lock);
            async_busy = 0;
        } else {
            pthread_mutex_unlock(&async_lock);
            sa_thread_flush();
            pthread_mutex_lock(&async_lock);
            async_flush = 0;
        }
        pthread_cond_broadcast(&async_cond);
    }
    return NULL;
}

/* Queues b for the concurrent freer and returns at once (unless the queue is full). */
static void free_concurrently(const block *b) {
    pthread_mutex_lock(&async_lock);
    if (!async_thread) pthread_create(&async_thread, NULL, concurrent_freer, NULL);
    while (async_tail - async_head == ASYNC_RING) pthread_cond_wait(&async_cond, &async_lock);
    async_ring[async_tail % ASYNC_RING] = *b;
    async_tail++;
    pthread_cond_broadcast(&async_cond);
    pthread_mutex_unlock(&async_lock);
}

/* A short-lived thread: frees the blocks it is given (remote frees into
 * the input thread's spans, buffered), allocates `own` objects of `size`
 * bytes in spans of its own and frees them in allocation order (into its
 * bins), twice, and exits: its bins and its buffer are flushed at thread exit.
 * Joined before the input goes on, so the run stays deterministic. */
#define SHORT_LIVED_MAX 8
typedef struct {
    block b[SHORT_LIVED_MAX];
    unsigned n, own;
    size_t size;
} short_lived_job;

static void *short_lived(void *arg) {
    short_lived_job *j = arg;
    for (unsigned k = 0; k < j->n; k++) {
        check(&j->b[k], j->b[k].size, "before a free on a short-lived thread");
        sa_free(j->b[k].p);
    }
    /* twice: the second round is served from the bin the first one filled */
    for (int round = 0; round < 2; round++) {
        void *own[32];
        unsigned n = 0;
        for (unsigned k = 0; k < j->own; k++) {
            errno = 0;
            void *p = sa_alloc(j->size, 0);
            if (refused(p, "sa_alloc on a short-lived thread", j->size)) continue;
            own[n++] = p;
        }
        for (unsigned k = 0; k < n; k++) sa_free(own[k]);
    }
    return NULL;
}

static void run_short_lived(short_lived_job *j) {
    pthread_t t;
    if (pthread_create(&t, NULL, short_lived, j)) fail("pthread_create for a short-lived thread");
    pthread_join(t, NULL);
}

/* Waits until both helper threads are idle (every queued free done); with
 * `flush`, each hands its cached spans back first. */
static void quiesce(bool flush) {
    pthread_mutex_lock(&async_lock);
    if (async_thread && flush) async_flush = 1;
    pthread_cond_broadcast(&async_cond);
    while (async_head != async_tail || async_busy || async_flush) pthread_cond_wait(&async_cond, &async_lock);
    pthread_mutex_unlock(&async_lock);
    if (flush && freer_thread) hand_over(HAND_FLUSH, NULL);
}

/* The heap checker, every other thread idle. */
static void heap_check(const char *when) {
    char err[512];
    int rc = sa_check_heap_quiescent ? sa_check_heap_quiescent(err, sizeof err) : sa_check_heap(err, sizeof err);
    if (rc != 0) fail("heap checker%s: %s", when, err);
}

/* ---- one input ---------------------------------------------------------- */

enum {
    OP_ALLOC, OP_FREE, OP_REALLOC, OP_ALIGNED, OP_CALLOC, OP_SCAVENGE, OP_LOOKUP,
    OP_FLUSH, OP_REMOTE_FREE, OP_FREE_LAST, OP_CHECK, OP_IMPOSSIBLE, OP_INJECT, OP_HEAP_CHECK,
    OP_COUNT,
    /* added later: opcode bytes 0xF0..0xFF, then 0xE8..0xEF (so the corpus's
     * older inputs keep their meaning for the other byte values) */
    OP_CONCURRENT_FREE = OP_COUNT,
    OP_SHORT_LIVED_THREAD
};

static void run_op(reader *r) {
    unsigned opbyte = u8(r);
    unsigned op = opbyte >= 0xF0   ? (unsigned)OP_CONCURRENT_FREE
                  : opbyte >= 0xE8 ? (unsigned)OP_SHORT_LIVED_THREAD
                                   : opbyte % OP_COUNT;
    switch (op) {
    case OP_ALLOC: {
        size_t size = pick_size(r);
        unsigned flags = u8(r) & (SA_NOSCAN | SA_ZERO);
        if (nlive == MAX_LIVE) return;
        errno = 0;
        unsigned char *p = sa_alloc(size, flags);
        TRACE("sa_alloc(%zu, %u) = %p\n", size, flags, (void *)p);
        if (refused(p, "sa_alloc", size)) return;
        check_new(p, size, natural_alignment(size));
        if (flags & SA_ZERO) check_zero(p, size);
        add(p, size);
        return;
    }
    case OP_FREE:
    case OP_REMOTE_FREE: {
        if (!nlive) return;
        block b = take(u8(r) % nlive);
        check(&b, b.size, "before free");
        TRACE("%s(%p)\n", op == OP_FREE ? "sa_free" : "sa_free on another thread", (void *)b.p);
        if (op == OP_FREE) sa_free(b.p); else free_on_other_thread(b.p);
        return;
    }
    case OP_CONCURRENT_FREE: {
        /* up to 8 blocks to the concurrent freer; the input goes on meanwhile */
        unsigned n = 1 + u8(r) % 8;
        for (unsigned k = 0; k < n && nlive; k++) {
            block b = take(u8(r) % nlive);
            check(&b, b.size, "before a concurrent free");
            TRACE("sa_free(%p) on the concurrent thread\n", (void *)b.p);
            free_concurrently(&b);
        }
        return;
    }
    case OP_SHORT_LIVED_THREAD: {
        /* up to 8 live blocks freed there, and up to 31 objects of one small
         * class of its own */
        short_lived_job j;
        j.n = u8(r) % (SHORT_LIVED_MAX + 1);
        j.own = u8(r) % 32;
        j.size = sa_class_size(1 + (int)(u8(r) % 67));
        unsigned k = 0;
        for (; k < j.n && nlive; k++) j.b[k] = take(u8(r) % nlive);
        j.n = k;
        TRACE("short-lived thread: frees %u blocks, allocates and frees %u of %zu bytes\n", j.n, j.own, j.size);
        run_short_lived(&j);
        return;
    }
    case OP_FREE_LAST: {
        if (!nlive) return;
        block b = take(nlive - 1);
        check(&b, b.size, "before free");
        TRACE("sa_free(%p) /* last */\n", (void *)b.p);
        sa_free(b.p);
        return;
    }
    case OP_REALLOC: {
        if (!nlive) return;
        size_t i = u8(r) % nlive;
        size_t size = pick_size(r);
        block *b = &live[i];
        check(b, b->size, "before realloc");
        if (size == 0) {
            block gone = take(i);
            if (sa_realloc(gone.p, 0) != NULL) fail("realloc(p, 0) returned a block");
            return;
        }
        errno = 0;
        unsigned char *q = sa_realloc(b->p, size);
        TRACE("sa_realloc(%p, %zu) = %p\n", (void *)b->p, size, (void *)q);
        if (refused(q, "sa_realloc", size)) {
            check(b, b->size, "after a refused realloc");
            return;
        }
        size_t keep = b->size < size ? b->size : size;
        block moved = *b;
        moved.p = q;
        check(&moved, keep, "after realloc");
        take(i);
        check_new(q, size, natural_alignment(size));
        add(q, size);
        return;
    }
    case OP_ALIGNED: {
        size_t size = pick_size(r);
        unsigned shift = u8(r) % 24; /* up to 8 MiB */
        size_t align = (size_t)1 << shift;
        if (nlive == MAX_LIVE) return;
        errno = 0;
        unsigned char *p = sa_alloc_aligned(size, align, u8(r) & SA_NOSCAN);
        TRACE("sa_alloc_aligned(%zu, %zu) = %p\n", size, align, (void *)p);
        if (refused(p, "sa_alloc_aligned", size)) return;
        /* Above 8 KiB alignment the block is a large object, aligned to `align` only. */
        check_new(p, size, align > 8 ? align : 8);
        add(p, size);
        return;
    }
    case OP_CALLOC: {
        size_t count = u8(r), each = u16(r) % 4096;
        if (nlive == MAX_LIVE) return;
        errno = 0;
        unsigned char *p = sa_calloc(count, each, u8(r) & SA_NOSCAN);
        TRACE("sa_calloc(%zu, %zu) = %p\n", count, each, (void *)p);
        if (refused(p, "sa_calloc", count * each)) return;
        check_new(p, count * each, natural_alignment(count * each));
        check_zero(p, count * each);
        add(p, count * each);
        return;
    }
    case OP_SCAVENGE: {
        unsigned k = u8(r);
        TRACE("sa_scavenge(%zu)\n", k == 255 ? SIZE_MAX : (size_t)k << 16);
        sa_scavenge(k == 255 ? SIZE_MAX : (size_t)k << 16);
        return;
    }
    case OP_LOOKUP: {
        if (!nlive) {
            int x;
            sa_span_info si;
            if (sa_span_of(&x, &si) || sa_owns(&x)) fail("a stack address is in a span");
            return;
        }
        block *b = &live[u8(r) % nlive];
        size_t usable = sa_usable_size(b->p);
        size_t off = usable ? u16(r) % usable : 0;
        sa_span_info si;
        if (!sa_span_of(b->p + off, &si)) fail("interior pointer %p+%zu has no span", (void *)b->p, off);
        if (si.alloc_count == 0 || si.alloc_count > si.nelems) fail("span alloc_count %zu of %zu", si.alloc_count, si.nelems);
        if (si.size_class != sa_size_to_class(si.elemsize) && si.size_class != 0)
            fail("span class %d does not match elemsize %zu", si.size_class, si.elemsize);
        if (si.span_class != sa_span_class(si.size_class, si.noscan)) fail("spanClass %d inconsistent", si.span_class);
        return;
    }
    case OP_FLUSH:
        TRACE("sa_thread_flush()\n");
        sa_thread_flush();
        return;
    case OP_CHECK:
        if (nlive) check(&live[u8(r) % nlive], SIZE_MAX, "check");
        return;
    case OP_IMPOSSIBLE: {
        size_t size = SIZE_MAX - (size_t)u16(r);
        errno = 0;
        expect_null_enomem(sa_alloc(size, u8(r) & 3), "sa_alloc", size);
        errno = 0;
        expect_null_enomem(sa_calloc(2, size / 2 + 1, 0), "sa_calloc", size);
        errno = 0;
        void *q = sa_alloc_aligned(size, (size_t)1 << (u8(r) % 31), 0);
        if (q || (errno != ENOMEM && errno != EINVAL)) fail("sa_alloc_aligned(%zu) = %p, errno %d", size, q, errno);
        if (nlive) {
            block *b = &live[u8(r) % nlive];
            errno = 0;
            expect_null_enomem(sa_realloc(b->p, size), "sa_realloc", size);
            check(b, b->size, "after an impossible realloc");
        }
        return;
    }
    case OP_INJECT: {
        unsigned k = u8(r);
        TRACE("sa_debug_fail_mmap_after(%ld)\n", k & 0x80 ? -1L : (long)(k & 7));
        if (k & 0x80) {
            sa_debug_fail_mmap_after(-1);
            injecting = 0;
        } else {
            sa_debug_fail_mmap_after((long)(k & 7));
            injecting = 1;
        }
        return;
    }
    case OP_HEAP_CHECK:
        /* the helper threads idle, their caches kept: the checker sees
         * spans other threads cache, with frees pending in their bitmaps */
        TRACE("heap check\n");
        quiesce(false);
        heap_check("");
        return;
    }
}

/* The free caches over the whole run (see the header comment). */
#define FREE_CACHE_MIN_INPUTS 1000
static unsigned long long inputs_run;

static void check_free_caches(void) {
    sa_mem_stats s;
    sa_read_mem_stats(&s);
    fprintf(stderr, "fuzz_alloc: free caches over %llu inputs: hits %llu, overflow flushes %llu, remote batches %llu, "
            "exit flushes %llu\n", inputs_run, (unsigned long long)s.free_cache_hits,
            (unsigned long long)s.free_cache_flushes, (unsigned long long)s.remote_batches,
            (unsigned long long)s.exit_flushes);
    if (inputs_run < FREE_CACHE_MIN_INPUTS) return;
    if (!s.free_cache_hits || !s.free_cache_flushes || !s.remote_batches || !s.exit_flushes) {
        fprintf(stderr, "fuzz_alloc: FAILED: %llu inputs did not exercise every part of the free caches "
                "(a counter above is 0)\n", inputs_run);
        fflush(stderr);
        _exit(1);
    }
}

/* FUZZ_STATS=1: print the heap's size at exit (growth over a long run
 * that the live set does not explain would be a leak). */
static void print_stats(void) {
    sa_mem_stats s;
    sa_read_mem_stats(&s);
    fprintf(stderr, "fuzz_alloc: heap_sys %llu MiB, heap_idle %llu MiB, released %llu MiB, metadata %llu KiB, "
            "spans in use %llu, arenas %llu, mallocs %llu, concurrent remote frees %llu\n",
            (unsigned long long)s.heap_sys >> 20, (unsigned long long)s.heap_idle >> 20,
            (unsigned long long)s.heap_released >> 20, (unsigned long long)s.metadata_sys >> 10,
            (unsigned long long)s.spans_inuse, (unsigned long long)s.arenas_mapped, (unsigned long long)s.mallocs,
            (unsigned long long)atomic_load(&async_frees));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (tracing < 0) {
        tracing = getenv("FUZZ_TRACE") != NULL;
        if (getenv("FUZZ_STATS")) atexit(print_stats);
        atexit(check_free_caches);
    }
    inputs_run++;
    sa_mem_stats before, after;
    sa_thread_flush();
    sa_read_mem_stats(&before);
    /* every input frees everything and every thread flushes at its end */
    if (before.heap_objects || before.spans_inuse || before.heap_inuse)
        fail("the heap is not empty at the start of an input: %llu objects, %llu spans in use, %llu bytes in use",
             (unsigned long long)before.heap_objects, (unsigned long long)before.spans_inuse,
             (unsigned long long)before.heap_inuse);
    reader r = {data, size, 0};
    while (r.i < r.n) run_op(&r);
    sa_debug_fail_mmap_after(-1);
    injecting = 0;
    while (nlive) {
        block b = take(nlive - 1);
        check(&b, b.size, "at the end");
        sa_free(b.p);
    }
    /* every helper thread's queued frees done and its cache handed back */
    quiesce(true);
    sa_thread_flush();
    heap_check(" at the end");
    sa_read_mem_stats(&after);
    if (after.mallocs - before.mallocs != after.frees - before.frees || after.heap_objects != before.heap_objects ||
        after.heap_alloc != before.heap_alloc || after.spans_inuse != before.spans_inuse ||
        after.heap_inuse != before.heap_inuse)
        fail("statistics do not balance: mallocs +%llu, frees +%llu, heap objects %llu -> %llu, heap alloc %llu -> %llu, "
             "spans in use %llu -> %llu, heap in use %llu -> %llu",
             (unsigned long long)(after.mallocs - before.mallocs), (unsigned long long)(after.frees - before.frees),
             (unsigned long long)before.heap_objects, (unsigned long long)after.heap_objects,
             (unsigned long long)before.heap_alloc, (unsigned long long)after.heap_alloc,
             (unsigned long long)before.spans_inuse, (unsigned long long)after.spans_inuse,
             (unsigned long long)before.heap_inuse, (unsigned long long)after.heap_inuse);
    return 0;
}
