/*
 * fuzz_malloc.c — libFuzzer target for the malloc override's entry points
 * (Sources/SpanAllocMalloc/override.c; docs/reliability.md, "Fuzzer").
 *
 * The override is compiled out under AddressSanitizer (SA_OVERRIDE), so this
 * target is built with -fsanitize=fuzzer and no ASan, and override.c and
 * config.c are compiled with their libc names renamed (-Dmalloc=fz_malloc,
 * -Dfree=fz_free, …; see scripts/fuzz.sh): the fuzzer's own allocations stay
 * glibc's, and the input drives fz_malloc & co. exactly as a preloaded
 * program drives malloc & co. This file is compiled without the renames and
 * calls the fz_ names.
 *
 * An input is a sequence of operations: malloc, calloc (with overflowing
 * counts), realloc (grow, shrink, to 0, of NULL, of a glibc block),
 * reallocarray, posix_memalign / aligned_alloc / memalign with good and bad
 * alignments, valloc, pvalloc, free, free_sized, free_aligned_sized, cfree,
 * malloc_usable_size, malloc_trim, free of a glibc block (forwarded), a free
 * on another thread, impossible sizes (2^45 - 8191 up to SIZE_MAX, and one past
 * SA_MAX_SIZE, through every entry point), injected mmap failures, and a
 * short-lived thread that frees live blocks and some of its own and exits
 * with them in its free caches. A shadow
 * model of live blocks checks the libc contract: alignment (16 bytes above
 * 8 bytes of request, the requested alignment, the OS page), usable size,
 * no overlap, contents across realloc and until free, zeroing, errno and
 * posix_memalign's result and out-pointer, that glibc's blocks go to glibc
 * (the override's counters) and SpanAlloc's never do. At the end of an
 * input everything is freed, the helper thread flushes its cache, the
 * quiescent heap checker runs, and heapObjects, spansInuse and heapInuse
 * must be back at their values before the input.
 *
 * At exit, after at least FREE_CACHE_MIN_INPUTS inputs, the run must have
 * exercised the free caches: allocations served from a bin, frees that
 * found their bin full, remote buffers handed back and threads that exited
 * holding cached frees (MemStats free_cache_hits, free_cache_flushes,
 * remote_batches, exit_flushes all > 0); otherwise it exits 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spanalloc.h"
#include "spanalloc_malloc.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the override's entry points, renamed at compile time */
void *fz_malloc(size_t);
void fz_free(void *);
void *fz_calloc(size_t, size_t);
void *fz_realloc(void *, size_t);
void *fz_reallocarray(void *, size_t, size_t);
int fz_posix_memalign(void **, size_t, size_t);
void *fz_aligned_alloc(size_t, size_t);
void *fz_memalign(size_t, size_t);
void *fz_valloc(size_t);
void *fz_pvalloc(size_t);
size_t fz_malloc_usable_size(void *);
void fz_free_sized(void *, size_t);
void fz_free_aligned_sized(void *, size_t, size_t);
void fz_cfree(void *);
int fz_malloc_trim(size_t);
/* glibc's allocator, for foreign blocks */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);

int sa_check_heap_quiescent(char *err, size_t errlen) __attribute__((weak));

#define MAX_LIVE 160
#define MAX_SIZE ((size_t)2 << 20)
#define FULL_FILL (32u << 10)
#define EDGE (4u << 10)

typedef struct {
    unsigned char *p;
    size_t size;
    uint64_t seed;
    bool foreign; /* from glibc (__libc_malloc, or a realloc of such) */
} block;

static block live[MAX_LIVE];
static size_t nlive;
static uint64_t serial;
static int injecting;
static int tracing = -1;
static size_t page;
#define TRACE(...) do { if (tracing) fprintf(stderr, __VA_ARGS__); } while (0)

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_malloc: model disagrees: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

typedef struct { const uint8_t *d; size_t n, i; } reader;
static unsigned u8(reader *r) { return r->i < r->n ? r->d[r->i++] : 0; }
static unsigned u16(reader *r) { return u8(r) | u8(r) << 8; }
static uint32_t u32(reader *r) { return (uint32_t)u16(r) | (uint32_t)u16(r) << 16; }

static size_t pick_size(reader *r) {
    unsigned kind = u8(r);
    switch (kind & 7) {
    case 0: case 1: {
        size_t s = sa_class_size(1 + (int)(u8(r) % 67));
        int delta = (int)(kind >> 3 & 3) - 1;
        return delta < 0 ? s - 1 : s + (size_t)(delta > 0 ? delta : 0);
    }
    case 2: return u8(r) % 40; /* 0 … 39: the 8-, 16-, 24- and 32-byte classes */
    case 3: return SA_MAX_SMALL_SIZE + (u16(r) & 0x3fff) - 0x2000;
    case 4: return SA_MAX_SMALL_SIZE + 1 + u32(r) % MAX_SIZE;
    case 5: return (size_t)(u16(r) % 64 + 1) * SA_PAGE_SIZE + (kind >> 3) - 8;
    default: return u16(r);
    }
}

/* ---- contents ---------------------------------------------------------- */

#define MODEL __attribute__((no_sanitize("coverage")))

MODEL static inline unsigned char pbyte(uint64_t seed, size_t o) {
    uint64_t z = seed + (o >> 3) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 32;
    return (unsigned char)(z >> ((o & 7) * 8));
}

#define FOR_EACH_RANGE(size, a, b, body) do { \
        size_t sz_ = (size); \
        if (sz_ <= FULL_FILL) { size_t a = 0, b = sz_; body; } \
        else { \
            { size_t a = 0, b = EDGE; body; } \
            for (size_t m_ = EDGE; m_ + 8 <= sz_ - EDGE; m_ += 4096) { size_t a = m_, b = m_ + 8; body; } \
            { size_t a = sz_ - EDGE, b = sz_; body; } \
        } \
    } while (0)

MODEL static void fill(const block *b) {
    FOR_EACH_RANGE(b->size, a, e, { for (size_t o = a; o < e; o++) b->p[o] = pbyte(b->seed, o); });
}

/* Checks the first min(prefix, size) bytes; the pattern does not depend on
 * the address, so it survives a moving realloc. */
MODEL static void check(const block *b, size_t prefix, const char *when) {
    FOR_EACH_RANGE(b->size, a, e, {
        for (size_t o = a; o < e && o < prefix; o++)
            if (b->p[o] != pbyte(b->seed, o))
                fail("%s: block %p (%zu bytes%s) byte %zu changed", when, (void *)b->p, b->size,
                     b->foreign ? ", glibc's" : "", o);
    });
}

MODEL static void check_zero(const unsigned char *p, size_t size) {
    FOR_EACH_RANGE(size, a, e, {
        for (size_t o = a; o < e; o++)
            if (p[o]) fail("calloc'd block %p (%zu bytes): byte %zu is %#x", (const void *)p, size, o, p[o]);
    });
}

/* ---- the model ----------------------------------------------------------- */

static void check_ours(unsigned char *p, size_t size, size_t align, const char *what) {
    if (!sa_owns(p)) fail("%s(%zu) = %p is not SpanAlloc's", what, size, (void *)p);
    if ((uintptr_t)p % align) fail("%s(%zu) = %p is not aligned to %zu", what, size, (void *)p, align);
    size_t usable = fz_malloc_usable_size(p);
    if (usable < size) fail("%s(%zu) = %p: malloc_usable_size %zu", what, size, (void *)p, usable);
    if (usable != sa_usable_size(p)) fail("malloc_usable_size %zu != sa_usable_size %zu", usable, sa_usable_size(p));
    uintptr_t lo = (uintptr_t)p, hi = lo + (usable ? usable : 1);
    for (size_t i = 0; i < nlive; i++) {
        if (live[i].foreign) continue;
        uintptr_t l2 = (uintptr_t)live[i].p, h2 = l2 + (sa_usable_size(live[i].p) ? sa_usable_size(live[i].p) : 1);
        if (lo < h2 && l2 < hi) fail("%s(%zu) = %p overlaps live block %p", what, size, (void *)p, (void *)live[i].p);
    }
}

/* The libc alignment of a plain malloc of `size` (docs/malloc.md): 16 bytes
 * above 8 bytes of request, 8 for the 8-byte class; a large block, a page. */
static size_t libc_alignment(size_t size) {
    if (size > SA_MAX_SMALL_SIZE) return SA_PAGE_SIZE;
    return size > 8 ? 16 : 8;
}

static void add(unsigned char *p, size_t size, bool foreign) {
    block *b = &live[nlive++];
    b->p = p;
    b->size = size;
    b->seed = ++serial * 0x2545F4914F6CDD1Dull;
    b->foreign = foreign;
    fill(b);
}

static block take(size_t i) {
    block b = live[i];
    live[i] = live[--nlive];
    return b;
}

static bool refused(void *p, const char *what, size_t size) {
    if (p) return false;
    if (!injecting) fail("%s(%zu) returned NULL without injected failure (errno %d)", what, size, errno);
    if (errno != ENOMEM) fail("%s(%zu) under injection: errno %d, expected ENOMEM", what, size, errno);
    return true;
}

static void expect_null(void *p, int err, const char *what, size_t size) {
    if (p) fail("%s(%zu) = %p, expected NULL", what, size, p);
    if (errno != err) fail("%s(%zu): errno %d, expected %d", what, size, errno, err);
}

static sa_override_counts counts(void) {
    sa_override_counts c;
    sa_override_read_counts(&c);
    return c;
}

/* ---- the other thread: frees what it is handed, flushes on request ------ */

static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hand_cond = PTHREAD_COND_INITIALIZER;
static void *hand_ptr;
static int hand_pending; /* 1: free hand_ptr, 2: sa_thread_flush() */
static pthread_t freer;

static void *remote_freer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&hand_lock);
    for (;;) {
        while (!hand_pending) pthread_cond_wait(&hand_cond, &hand_lock);
        if (hand_pending == 1) fz_free(hand_ptr);
        else sa_thread_flush();
        hand_pending = 0;
        pthread_cond_broadcast(&hand_cond);
    }
    return NULL;
}

static void hand_over(int what, void *p) {
    pthread_mutex_lock(&hand_lock);
    if (!freer) {
        if (what == 2) { pthread_mutex_unlock(&hand_lock); return; }
        pthread_create(&freer, NULL, remote_freer, NULL);
    }
    hand_ptr = p;
    hand_pending = what;
    pthread_cond_broadcast(&hand_cond);
    while (hand_pending) pthread_cond_wait(&hand_cond, &hand_lock);
    pthread_mutex_unlock(&hand_lock);
}

/* A short-lived thread: frees the blocks it is given (SpanAlloc's: remote
 * frees into the input thread's spans, buffered; glibc's: forwarded),
 * mallocs `own` blocks of `size` bytes in spans of its own and frees them
 * in allocation order (into its bins), twice, and exits: its bins and its buffer
 * are flushed at thread exit. Joined before the input goes on. */
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
        fz_free(j->b[k].p);
    }
    /* twice: the second round is served from the bin the first one filled */
    for (int round = 0; round < 2; round++) {
        void *own[32];
        unsigned n = 0;
        for (unsigned k = 0; k < j->own; k++) {
            errno = 0;
            void *p = fz_malloc(j->size);
            if (refused(p, "malloc on a short-lived thread", j->size)) continue;
            own[n++] = p;
        }
        for (unsigned k = 0; k < n; k++) fz_free(own[k]);
    }
    return NULL;
}

static void run_short_lived(short_lived_job *j) {
    pthread_t t;
    if (pthread_create(&t, NULL, short_lived, j)) fail("pthread_create for a short-lived thread");
    pthread_join(t, NULL);
}

static void heap_check(const char *when) {
    char err[512];
    int rc = sa_check_heap_quiescent ? sa_check_heap_quiescent(err, sizeof err) : sa_check_heap(err, sizeof err);
    if (rc != 0) fail("heap checker%s: %s", when, err);
}

/* ---- one input ----------------------------------------------------------- */

enum {
    OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_REALLOCARRAY, OP_POSIX_MEMALIGN, OP_ALIGNED_ALLOC, OP_MEMALIGN,
    OP_VALLOC, OP_PVALLOC, OP_FREE, OP_FREE_SIZED, OP_REMOTE_FREE, OP_USABLE, OP_TRIM, OP_FOREIGN,
    OP_IMPOSSIBLE, OP_INJECT, OP_HEAP_CHECK, OP_COUNT,
    /* added later: opcode bytes 0xF0..0xFF (so the corpus's older inputs
     * keep their meaning for the other 15/16 of the byte values) */
    OP_SHORT_LIVED_THREAD = OP_COUNT
};

static void run_op(reader *r) {
    unsigned opbyte = u8(r);
    unsigned op = opbyte >= 0xF0 ? (unsigned)OP_SHORT_LIVED_THREAD : opbyte % OP_COUNT;
    switch (op) {
    case OP_MALLOC: {
        size_t size = pick_size(r);
        if (nlive == MAX_LIVE) return;
        errno = 0;
        unsigned char *p = fz_malloc(size);
        TRACE("malloc(%zu) = %p\n", size, (void *)p);
        if (refused(p, "malloc", size)) return;
        check_ours(p, size, libc_alignment(size), "malloc");
        add(p, size, false);
        return;
    }
    case OP_CALLOC: {
        unsigned kind = u8(r);
        size_t count = u8(r), each = u16(r) % 4096;
        if (kind % 16 == 0) { count = SIZE_MAX / (each ? each : 1) + 1; each = each ? each : 2; } /* overflows */
        if (nlive == MAX_LIVE) return;
        errno = 0;
        size_t total;
        bool overflow = __builtin_mul_overflow(count, each, &total);
        unsigned char *p = fz_calloc(count, each);
        TRACE("calloc(%zu, %zu) = %p\n", count, each, (void *)p);
        if (overflow) { expect_null(p, ENOMEM, "calloc (overflowing)", count); return; }
        if (refused(p, "calloc", total)) return;
        check_ours(p, total, libc_alignment(total), "calloc");
        check_zero(p, total);
        add(p, total, false);
        return;
    }
    case OP_REALLOC:
    case OP_REALLOCARRAY: {
        size_t size = pick_size(r);
        unsigned kind = u8(r);
        if (!nlive || kind % 8 == 0) { /* realloc(NULL, n) is malloc(n) */
            if (nlive == MAX_LIVE) return;
            errno = 0;
            unsigned char *p = fz_realloc(NULL, size);
            TRACE("realloc(NULL, %zu) = %p\n", size, (void *)p);
            if (refused(p, "realloc(NULL)", size)) return;
            check_ours(p, size, libc_alignment(size), "realloc(NULL)");
            add(p, size, false);
            return;
        }
        size_t i = u8(r) % nlive;
        block *b = &live[i];
        check(b, b->size, "before realloc");
        if (op == OP_REALLOCARRAY && kind % 4 == 1) {
            errno = 0;
            void *q = fz_reallocarray(b->p, SIZE_MAX / 2 + 1 + size, 2);
            expect_null(q, ENOMEM, "reallocarray (overflowing)", size);
            check(b, b->size, "after an overflowing reallocarray");
            return;
        }
        if (kind % 8 == 1 && !b->foreign) { /* realloc(p, 0) frees p and returns NULL, as glibc */
            block gone = take(i);
            TRACE("realloc(%p, 0)\n", (void *)gone.p);
            if (fz_realloc(gone.p, 0) != NULL) fail("realloc(p, 0) returned a block");
            return;
        }
        if (size == 0) size = 1;
        sa_override_counts c0 = counts();
        errno = 0;
        unsigned char *q = op == OP_REALLOC ? fz_realloc(b->p, size) : fz_reallocarray(b->p, size, 1);
        TRACE("realloc(%p%s, %zu) = %p\n", (void *)b->p, b->foreign ? " glibc's" : "", size, (void *)q);
        if (b->foreign) {
            if (!q) fail("realloc of a glibc block returned NULL");
            if (counts().foreign_reallocs != c0.foreign_reallocs + 1) fail("realloc of glibc's %p not forwarded", (void *)b->p);
            if (sa_owns(q)) fail("realloc of a glibc block returned SpanAlloc's %p", (void *)q);
        } else {
            if (refused(q, "realloc", size)) { check(b, b->size, "after a refused realloc"); return; }
            if (counts().foreign_reallocs != c0.foreign_reallocs) fail("realloc of SpanAlloc's %p went to glibc", (void *)b->p);
        }
        block moved = *b;
        moved.p = q;
        check(&moved, b->size < size ? b->size : size, "after realloc");
        bool foreign = b->foreign;
        take(i);
        if (!foreign) check_ours(q, size, libc_alignment(size), "realloc");
        add(q, size, foreign);
        return;
    }
    case OP_POSIX_MEMALIGN:
    case OP_ALIGNED_ALLOC:
    case OP_MEMALIGN: {
        size_t size = pick_size(r);
        unsigned a = u8(r);
        /* a power of two up to 2^31 (2 GiB: above the 1 GiB the heap serves),
         * or, one time in eight, not one */
        size_t align = (size_t)1 << (a % 32);
        bool bad = a >= 224;
        if (bad) align = align * 3 + (a & 1);
        if (nlive == MAX_LIVE) return;
        bool pm = op == OP_POSIX_MEMALIGN;
        bool invalid = (align & (align - 1)) != 0 || align == 0 || (pm && align % sizeof(void *) != 0);
        bool too_big = !invalid && align > ((size_t)1 << 30);
        unsigned char *p = NULL;
        errno = 0;
        if (pm) {
            void *out = (void *)&live; /* must stay untouched on failure */
            errno = 12345;
            int rc = fz_posix_memalign(&out, align, size);
            TRACE("posix_memalign(%zu, %zu) = %d, %p\n", align, size, rc, out);
            if (errno != 12345) fail("posix_memalign changed errno to %d", errno);
            if (invalid || too_big || rc) {
                int want = invalid ? EINVAL : ENOMEM;
                if (rc == 0) fail("posix_memalign(%zu, %zu) succeeded, expected %d", align, size, want);
                if (out != (void *)&live) fail("posix_memalign changed the out-pointer on failure");
                if (rc != want) fail("posix_memalign(%zu, %zu) = %d, expected %d", align, size, rc, want);
                if (!invalid && !too_big && !injecting) fail("posix_memalign(%zu, %zu) = %d without injected failure", align, size, rc);
                return;
            }
            p = out;
        } else {
            p = op == OP_ALIGNED_ALLOC ? fz_aligned_alloc(align, size) : fz_memalign(align, size);
            TRACE("%s(%zu, %zu) = %p\n", op == OP_ALIGNED_ALLOC ? "aligned_alloc" : "memalign", align, size, (void *)p);
            if (invalid) { expect_null(p, EINVAL, "aligned_alloc/memalign (bad alignment)", align); return; }
            if (too_big) { expect_null(p, ENOMEM, "aligned_alloc/memalign (alignment above 1 GiB)", align); return; }
            if (refused(p, "aligned_alloc/memalign", size)) return;
        }
        size_t want = align > 8 ? align : 8;
        if (align <= 8 && size > 8) want = libc_alignment(size);
        check_ours(p, size, want, "an aligned allocation");
        add(p, size, false);
        return;
    }
    case OP_VALLOC:
    case OP_PVALLOC: {
        size_t size = pick_size(r);
        if (nlive == MAX_LIVE) return;
        errno = 0;
        unsigned char *p = op == OP_VALLOC ? fz_valloc(size) : fz_pvalloc(size);
        TRACE("%s(%zu) = %p\n", op == OP_VALLOC ? "valloc" : "pvalloc", size, (void *)p);
        if (refused(p, "valloc/pvalloc", size)) return;
        size_t need = op == OP_PVALLOC ? (size + page - 1) / page * page : size;
        if (op == OP_PVALLOC && need == 0) need = page;
        check_ours(p, need, page, op == OP_VALLOC ? "valloc" : "pvalloc");
        add(p, size, false);
        return;
    }
    case OP_FREE:
    case OP_FREE_SIZED:
    case OP_REMOTE_FREE: {
        if (!nlive) { fz_free(NULL); return; }
        unsigned how = u8(r);
        block b = take(u8(r) % nlive);
        check(&b, b.size, "before free");
        sa_override_counts c0 = counts();
        TRACE("free(%p%s) kind %u\n", (void *)b.p, b.foreign ? " glibc's" : "", op);
        if (op == OP_REMOTE_FREE) hand_over(1, b.p);
        else if (op == OP_FREE) { if (how & 1) fz_cfree(b.p); else fz_free(b.p); }
        else if (how & 1) fz_free_sized(b.p, b.size);
        else fz_free_aligned_sized(b.p, 16, b.size);
        uint64_t forwarded = counts().foreign_frees - c0.foreign_frees;
        if (forwarded != (b.foreign ? 1u : 0u))
            fail("free of %s block %p: %llu frees forwarded to glibc", b.foreign ? "a glibc" : "SpanAlloc's", (void *)b.p,
                 (unsigned long long)forwarded);
        return;
    }
    case OP_USABLE: {
        if (!nlive) { if (fz_malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) != 0"); return; }
        block *b = &live[u8(r) % nlive];
        size_t n = fz_malloc_usable_size(b->p);
        if (b->foreign ? n != malloc_usable_size(b->p) : n != sa_usable_size(b->p))
            fail("malloc_usable_size(%p%s) = %zu", (void *)b->p, b->foreign ? ", glibc's" : "", n);
        if (n < b->size) fail("malloc_usable_size(%p) = %zu < %zu", (void *)b->p, n, b->size);
        return;
    }
    case OP_TRIM: {
        int rc = fz_malloc_trim(u8(r));
        TRACE("malloc_trim() = %d\n", rc);
        if (rc != 0 && rc != 1) fail("malloc_trim returned %d", rc);
        return;
    }
    case OP_FOREIGN: {
        size_t size = 1 + u16(r) % 8192;
        if (nlive == MAX_LIVE) return;
        unsigned char *p = __libc_malloc(size);
        if (!p) return;
        TRACE("__libc_malloc(%zu) = %p\n", size, (void *)p);
        if (sa_owns(p)) fail("glibc's %p is SpanAlloc's", (void *)p);
        add(p, size, true);
        return;
    }
    case OP_IMPOSSIBLE: {
        /* Sizes no entry point may serve (docs/reliability.md's defects): a span's page
         * count above 32 bits (from 2^45 - 8191 bytes), the old 2^46 limit
         * and one past it, one past SA_MAX_SIZE, and SIZE_MAX down to
         * SIZE_MAX - 65535 (the input picks). */
        const size_t sizes[] = {
            ((size_t)1 << 45) - 8191, ((size_t)1 << 45) + 3 * 8192, (size_t)1 << 46, ((size_t)1 << 46) + 1,
            SIZE_MAX, SA_MAX_SIZE + 1, SIZE_MAX - (size_t)u16(r),
        };
        block *b = NULL;
        if (nlive) {
            b = &live[u8(r) % nlive];
            if (b->foreign) b = NULL; /* glibc's answer to a huge realloc is glibc's business */
        }
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t size = sizes[k];
            TRACE("impossible size %zu\n", size);
            errno = 0;
            expect_null(fz_malloc(size), ENOMEM, "malloc", size);
            errno = 0;
            expect_null(fz_calloc(1, size), ENOMEM, "calloc(1, n)", size);
            errno = 0;
            expect_null(fz_calloc(size, 1), ENOMEM, "calloc(n, 1)", size);
            errno = 0;
            expect_null(fz_realloc(NULL, size), ENOMEM, "realloc(NULL, n)", size);
            errno = 0;
            expect_null(fz_reallocarray(NULL, size, 1), ENOMEM, "reallocarray(NULL, n, 1)", size);
            errno = 0;
            expect_null(fz_aligned_alloc(64, size), ENOMEM, "aligned_alloc(64, n)", size);
            errno = 0;
            expect_null(fz_memalign(64, size), ENOMEM, "memalign(64, n)", size);
            errno = 0;
            expect_null(fz_valloc(size), ENOMEM, "valloc", size);
            errno = 0;
            expect_null(fz_pvalloc(size), ENOMEM, "pvalloc", size);
            for (size_t align = 64; align; align = align == 64 ? (size_t)1 << 30 : 0) {
                void *out = (void *)&live; /* must stay untouched */
                errno = 12345;
                int rc = fz_posix_memalign(&out, align, size);
                if (rc != ENOMEM) fail("posix_memalign(%zu, %zu) = %d, expected ENOMEM", align, size, rc);
                if (out != (void *)&live) fail("posix_memalign(%zu, %zu) changed the out-pointer", align, size);
                if (errno != 12345) fail("posix_memalign(%zu, %zu) changed errno to %d", align, size, errno);
            }
            if (b) { /* refused: the block stays live, in place, with its contents */
                sa_override_counts c0 = counts();
                errno = 0;
                expect_null(fz_realloc(b->p, size), ENOMEM, "realloc", size);
                errno = 0;
                expect_null(fz_reallocarray(b->p, size, 1), ENOMEM, "reallocarray(p, n, 1)", size);
                if (counts().foreign_reallocs != c0.foreign_reallocs) fail("impossible realloc of %p went to glibc", (void *)b->p);
                check(b, b->size, "after an impossible realloc");
                /* still live: malloc_usable_size stops on a freed block */
                if (fz_malloc_usable_size(b->p) < b->size) fail("%p shrank after an impossible realloc", (void *)b->p);
            }
        }
        /* An aligned request near the bound: the size fits, the alignment
         * padding (up to 1 GiB) does not. */
        size_t near = SA_MAX_SIZE - ((size_t)1 << 29);
        errno = 0;
        expect_null(fz_aligned_alloc((size_t)1 << 30, near), ENOMEM, "aligned_alloc(1 GiB, SA_MAX_SIZE - 512 MiB)", near);
        errno = 0;
        expect_null(fz_memalign((size_t)1 << 30, near), ENOMEM, "memalign(1 GiB, SA_MAX_SIZE - 512 MiB)", near);
        void *out = (void *)&live;
        int rc = fz_posix_memalign(&out, (size_t)1 << 30, near);
        if (rc != ENOMEM || out != (void *)&live) fail("posix_memalign(1 GiB, %zu) = %d, out-pointer %s", near, rc,
                                                      out == (void *)&live ? "kept" : "changed");
        return;
    }
    case OP_INJECT: {
        unsigned k = u8(r);
        TRACE("sa_debug_fail_mmap_after(%ld)\n", k & 0x80 ? -1L : (long)(k & 7));
        if (k & 0x80) { sa_debug_fail_mmap_after(-1); injecting = 0; }
        else { sa_debug_fail_mmap_after((long)(k & 7)); injecting = 1; }
        return;
    }
    case OP_HEAP_CHECK:
        TRACE("heap check\n");
        heap_check("");
        return;
    case OP_SHORT_LIVED_THREAD: {
        /* up to 8 live blocks freed there, and up to 31 blocks of its own, of
         * one size up to 1 KiB */
        short_lived_job j;
        j.n = u8(r) % (SHORT_LIVED_MAX + 1);
        j.own = u8(r) % 32;
        j.size = 1 + u16(r) % 1024;
        unsigned k = 0;
        for (; k < j.n && nlive; k++) j.b[k] = take(u8(r) % nlive);
        j.n = k;
        TRACE("short-lived thread: frees %u blocks, mallocs and frees %u of %zu bytes\n", j.n, j.own, j.size);
        run_short_lived(&j);
        return;
    }
    }
}

/* The free caches over the whole run (see the header comment). */
#define FREE_CACHE_MIN_INPUTS 1000
static unsigned long long inputs_run;

static void check_free_caches(void) {
    sa_mem_stats s;
    sa_read_mem_stats(&s);
    fprintf(stderr, "fuzz_malloc: free caches over %llu inputs: hits %llu, overflow flushes %llu, remote batches %llu, "
            "exit flushes %llu\n", inputs_run, (unsigned long long)s.free_cache_hits,
            (unsigned long long)s.free_cache_flushes, (unsigned long long)s.remote_batches,
            (unsigned long long)s.exit_flushes);
    if (inputs_run < FREE_CACHE_MIN_INPUTS) return;
    if (!s.free_cache_hits || !s.free_cache_flushes || !s.remote_batches || !s.exit_flushes) {
        fprintf(stderr, "fuzz_malloc: FAILED: %llu inputs did not exercise every part of the free caches "
                "(a counter above is 0)\n", inputs_run);
        fflush(stderr);
        _exit(1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (tracing < 0) {
        tracing = getenv("FUZZ_TRACE") != NULL;
        page = (size_t)sysconf(_SC_PAGESIZE);
        atexit(check_free_caches);
    }
    inputs_run++;
    sa_mem_stats before, after;
    sa_thread_flush();
    sa_read_mem_stats(&before);
    if (before.heap_objects || before.spans_inuse || before.heap_inuse)
        fail("the heap is not empty at the start of an input: %llu objects, %llu spans in use",
             (unsigned long long)before.heap_objects, (unsigned long long)before.spans_inuse);
    reader r = {data, size, 0};
    while (r.i < r.n) run_op(&r);
    sa_debug_fail_mmap_after(-1);
    injecting = 0;
    while (nlive) {
        block b = take(nlive - 1);
        check(&b, b.size, "at the end");
        fz_free(b.p);
    }
    hand_over(2, NULL);
    sa_thread_flush();
    heap_check(" at the end");
    sa_read_mem_stats(&after);
    if (after.mallocs - before.mallocs != after.frees - before.frees || after.heap_objects != before.heap_objects ||
        after.heap_alloc != before.heap_alloc || after.spans_inuse != before.spans_inuse ||
        after.heap_inuse != before.heap_inuse)
        fail("statistics do not balance: mallocs +%llu, frees +%llu, heap objects %llu -> %llu, "
             "spans in use %llu -> %llu, heap in use %llu -> %llu",
             (unsigned long long)(after.mallocs - before.mallocs), (unsigned long long)(after.frees - before.frees),
             (unsigned long long)before.heap_objects, (unsigned long long)after.heap_objects,
             (unsigned long long)before.spans_inuse, (unsigned long long)after.spans_inuse,
             (unsigned long long)before.heap_inuse, (unsigned long long)after.heap_inuse);
    return 0;
}
