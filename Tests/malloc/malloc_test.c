/*
 * malloc_test.c — the C test program of the malloc override. It is built by
 * `scripts/build-preload.sh --tests` WITHOUT linking SpanAlloc, and run
 * under LD_PRELOAD=.build/spanalloc-preload/libspanalloc.so (MallocTests
 * drives it). SpanAlloc's own functions are reached through weak references,
 * so the program can prove that the preloaded library really serves its
 * malloc (sa_owns) and read the heap's statistics.
 *
 *   malloc-test [all | api | realloc | aligned | oom | foreign | bootstrap |
 *                fork | threads | huge | config | foreign-strict |
 *                freed-realloc | freed-usable-size]
 *
 * Prints "ok <section>" per section, "FAIL file:line ..." per failed check;
 * exits 0 when every check passed, 1 otherwise, 2 when not preloaded.
 */
#include "spanalloc.h"
#include "spanalloc_malloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The checks call the allocator with sizes that overflow and look at blocks
 * after a realloc that was meant to fail: tell the compiler it is on purpose. */
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wformat-truncation"

/* Present only when the override is preloaded (glibc 2.36 has neither). */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);
void cfree(void *p);
#pragma weak free_sized
#pragma weak free_aligned_sized
#pragma weak cfree
#pragma weak sa_owns
#pragma weak sa_read_mem_stats
#pragma weak sa_scavenge
#pragma weak sa_check_heap
#pragma weak sa_get_scavenge_config
#pragma weak sa_debug_fail_mmap_after
#pragma weak sa_override_read_counts
#pragma weak sa_usable_size
#pragma weak sa_size_to_class
#pragma weak sa_class_size

/* glibc's allocator, bypassing the override: the source of foreign pointers. */
extern void *__libc_malloc(size_t);
extern void *__libc_memalign(size_t, size_t);

static _Atomic int failures;

#define CHECK(cond, ...)                                                               \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            char msg_[256];                                                            \
            snprintf(msg_, sizeof msg_, __VA_ARGS__);                                  \
            fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #cond, msg_);  \
            atomic_fetch_add(&failures, 1);                                            \
        }                                                                              \
    } while (0)

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * page_size();
}

static size_t vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0;
    if (f) {
        if (fscanf(f, "%lu", &size) != 1) size = 0;
        fclose(f);
    }
    return size * page_size();
}

/* Hides a pointer from the compiler, which may otherwise delete a malloc
 * whose block is only written and freed. */
static void *opaque(void *p) {
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

static bool aligned_to(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void fill(void *p, size_t n, unsigned char seed) {
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) c[i] = (unsigned char)(seed + i * 7);
}

static bool check_fill(const void *p, size_t n, unsigned char seed) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(seed + i * 7)) return false;
    return true;
}

static bool all_zero(const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i]) return false;
    return true;
}

/* Sizes that cover every class boundary region, and large objects. */
static const size_t sizes[] = {0,    1,    7,     8,     9,     15,    16,    17,     20,     24,    25,
                               31,   32,   33,    47,    48,    63,    64,    100,    128,    255,   256,
                               257,  500,  1000,  1024,  1025,  2047,  3000,  4096,   5000,   8191,  8192,
                               8193, 9000, 12345, 16384, 20000, 32767, 32768, 32769,  40000,  65536, 100000,
                               (size_t)1 << 20, ((size_t)1 << 20) + 1, 3u << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* ---- api: malloc, free, calloc, usable size, the other entry points ---------- */

static void test_api(void) {
    /* Every size: owned by SpanAlloc, 16-aligned from 16 bytes, 8 below,
     * usable size covers the request, memory holds its contents. */
    for (size_t k = 1; k <= 40000; k += (k < 2048 ? 1 : 97)) {
        void *p = malloc(k);
        CHECK(p != NULL, "malloc(%zu)", k);
        if (!p) continue;
        CHECK(sa_owns(p), "malloc(%zu) = %p not served by SpanAlloc", k, p);
        CHECK(aligned_to(p, k >= 16 ? 16 : 8), "malloc(%zu) = %p misaligned", k, p);
        size_t u = malloc_usable_size(p);
        CHECK(u >= k, "malloc_usable_size(malloc(%zu)) = %zu", k, u);
        fill(p, u, (unsigned char)k);
        CHECK(check_fill(p, u, (unsigned char)k), "contents of malloc(%zu)", k);
        free(p);
    }
    /* The class size is the usable size; 17..24 bytes use the 32-byte class. */
    void *p20 = malloc(20), *p100 = malloc(100), *p8 = malloc(8);
    CHECK(malloc_usable_size(p20) == 32, "usable(malloc(20)) = %zu", malloc_usable_size(p20));
    CHECK(malloc_usable_size(p100) == 112, "usable(malloc(100)) = %zu", malloc_usable_size(p100));
    CHECK(malloc_usable_size(p8) == 8, "usable(malloc(8)) = %zu", malloc_usable_size(p8));
    CHECK(malloc_usable_size(NULL) == 0, "usable(NULL)");
    free(p20);
    free(p100);
    free(p8);

    /* malloc(0): unique, freeable pointers. */
    void *z[64];
    for (int i = 0; i < 64; i++) {
        z[i] = malloc(0);
        CHECK(z[i] != NULL, "malloc(0)");
        for (int j = 0; j < i; j++) CHECK(z[i] != z[j], "malloc(0) returned %p twice", z[i]);
    }
    for (int i = 0; i < 64; i++) free(z[i]);
    free(NULL);

    /* Many live blocks of every size at once, then freed in another order. */
    void *live[NSIZES * 8];
    for (size_t i = 0; i < NSIZES * 8; i++) {
        size_t n = sizes[i % NSIZES];
        live[i] = malloc(n);
        CHECK(live[i] && sa_owns(live[i]), "malloc(%zu)", n);
        if (live[i]) fill(live[i], n, (unsigned char)i);
    }
    for (size_t i = 0; i < NSIZES * 8; i += 2) {
        CHECK(check_fill(live[i], sizes[i % NSIZES], (unsigned char)i), "block %zu overwritten", i);
        free(live[i]);
    }
    for (size_t i = 1; i < NSIZES * 8; i += 2) {
        CHECK(check_fill(live[i], sizes[i % NSIZES], (unsigned char)i), "block %zu overwritten", i);
        free(live[i]);
    }

    /* calloc: zeroed, also when the memory was just dirtied and freed. */
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        void *d = malloc(n ? n : 1);
        memset(d, 0xA5, n ? n : 1);
        free(d);
        unsigned char *c = calloc(1, n);
        CHECK(c != NULL && sa_owns(c), "calloc(1, %zu)", n);
        if (c) CHECK(all_zero(c, n), "calloc(1, %zu) not zeroed", n);
        free(c);
        c = calloc(n, 3);
        if (c) CHECK(all_zero(c, n * 3), "calloc(%zu, 3) not zeroed", n);
        free(c);
    }
    /* calloc overflow: NULL with ENOMEM. */
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM, "calloc overflow errno %d", errno);
    errno = 0;
    CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM, "calloc overflow 2");
    /* A large calloc fresh from the OS is not memset: 256 MiB zeroed blocks
     * must not make 256 MiB resident. */
    size_t rss0 = rss_bytes();
    unsigned char *big = calloc(1, (size_t)256 << 20);
    CHECK(big != NULL, "calloc 256 MiB");
    if (big) {
        CHECK(big[0] == 0 && big[((size_t)256 << 20) - 1] == 0 && big[(size_t)100 << 20] == 0, "big calloc zero");
        size_t grew = rss_bytes() - rss0;
        CHECK(grew < ((size_t)32 << 20), "calloc(256 MiB) made %zu MiB resident (memset of fresh pages?)", grew >> 20);
        free(big);
    }

    /* reallocarray */
    int *arr = reallocarray(NULL, 100, sizeof(int));
    CHECK(arr != NULL, "reallocarray(NULL, 100, 4)");
    for (int i = 0; i < 100; i++) arr[i] = i;
    int *arr2 = reallocarray(arr, 1000, sizeof(int));
    CHECK(arr2 != NULL, "reallocarray grow");
    if (arr2) {
        bool same = true;
        for (int i = 0; i < 100; i++) same &= arr2[i] == i;
        CHECK(same, "reallocarray kept contents");
        arr = arr2;
    }
    errno = 0;
    CHECK(reallocarray(arr, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM, "reallocarray overflow");
    CHECK(arr[99] == 99, "reallocarray overflow left the block intact");
    free(arr);

    /* free_sized, free_aligned_sized, cfree (override extensions). */
    CHECK(free_sized && free_aligned_sized && cfree, "free_sized/free_aligned_sized/cfree not exported");
    if (free_sized) {
        struct sa_mem_stats s0, s1;
        sa_read_mem_stats(&s0);
        void *a = malloc(100), *b = aligned_alloc(256, 1000), *c = malloc(50);
        free_sized(a, 100);
        free_aligned_sized(b, 256, 1000);
        cfree(c);
        sa_read_mem_stats(&s1);
        CHECK(s1.frees - s0.frees == 3 && s1.mallocs - s0.mallocs == 3, "free_sized & co: %llu frees",
              (unsigned long long)(s1.frees - s0.frees));
    }

    /* malloc_trim releases idle pages. */
    void *blocks[16];
    for (int i = 0; i < 16; i++) blocks[i] = malloc((size_t)1 << 20);
    for (int i = 0; i < 16; i++) memset(blocks[i], 1, (size_t)1 << 20);
    for (int i = 0; i < 16; i++) free(blocks[i]);
    CHECK(malloc_trim(0) == 1, "malloc_trim released nothing after freeing 16 MiB");
}

/* ---- realloc ------------------------------------------------------------------ */

static void test_realloc(void) {
    /* realloc(NULL, n) = malloc(n) */
    char *p = realloc(NULL, 10);
    CHECK(p && sa_owns(p), "realloc(NULL, 10)");
    memcpy(p, "abcdefghi", 10);
    /* Stays in place within the class: 10 -> 16 is the 16-byte class. */
    char *q = realloc(p, 16);
    CHECK(q == p, "realloc 10 -> 16 moved");
    p = q;
    /* 17..24 bytes use the 32-byte class: realloc to 20 moves to a 16-aligned block. */
    q = realloc(p, 20);
    CHECK(q && aligned_to(q, 16) && strcmp(q, "abcdefghi") == 0, "realloc 16 -> 20");
    p = q;
    CHECK(realloc(p, 30) == p, "realloc 20 -> 30 (same 32-byte class) moved");
    CHECK(realloc(p, 17) == p, "realloc 30 -> 17 (same 32-byte class) moved");
    /* Growing through every class keeps the contents and the alignment. */
    for (size_t n = 18; n < 200000; n = n * 5 / 4 + 1) {
        q = realloc(p, n);
        CHECK(q != NULL, "realloc to %zu", n);
        if (!q) break;
        CHECK(strcmp(q, "abcdefghi") == 0, "realloc to %zu lost contents", n);
        CHECK(aligned_to(q, 16), "realloc to %zu misaligned", n);
        CHECK(malloc_usable_size(q) >= n, "usable after realloc to %zu", n);
        p = q;
    }
    /* Large blocks shrink in place. */
    char *l = malloc(500000);
    fill(l, 500000, 3);
    char *l2 = realloc(l, 300000);
    CHECK(l2 == l, "large realloc shrink moved");
    CHECK(check_fill(l2, 300000, 3), "large shrink contents");
    char *l3 = realloc(l2, 2000000);
    CHECK(l3 && check_fill(l3, 300000, 3), "large grow contents");
    free(l3);
    /* Failure leaves the block intact: NULL with ENOMEM. */
    errno = 0;
    CHECK(realloc(p, (size_t)1 << 62) == NULL && errno == ENOMEM, "huge realloc errno %d", errno);
    CHECK(strcmp(p, "abcdefghi") == 0, "failed realloc touched the block");
    /* realloc(p, 0) frees p and returns NULL, as glibc. */
    struct sa_mem_stats s0, s1;
    sa_read_mem_stats(&s0);
    CHECK(realloc(p, 0) == NULL, "realloc(p, 0) returned a block");
    sa_read_mem_stats(&s1);
    CHECK(s1.frees == s0.frees + 1, "realloc(p, 0) did not free p");
    /* realloc(NULL, 0) is malloc(0). */
    void *z = realloc(NULL, 0);
    CHECK(z != NULL, "realloc(NULL, 0)");
    free(z);
}

/* ---- posix_memalign, aligned_alloc, memalign, valloc, pvalloc ---------------- */

static void test_aligned(void) {
    static const size_t asizes[] = {0, 1, 8, 16, 24, 100, 4096, 5000, 40000, (size_t)1 << 20};
    for (size_t a = sizeof(void *); a <= ((size_t)256 << 20); a <<= 1) {
        for (size_t i = 0; i < sizeof asizes / sizeof asizes[0]; i++) {
            size_t n = asizes[i];
            if (a >= ((size_t)4 << 20) && i % 3) continue; /* keep the big alignments few */
            void *p = (void *)0x1;
            int rc = posix_memalign(&p, a, n);
            CHECK(rc == 0 && p && sa_owns(p) && aligned_to(p, a), "posix_memalign(%zu, %zu) = %d, %p", a, n, rc, p);
            if (rc == 0) {
                CHECK(malloc_usable_size(p) >= n, "usable of posix_memalign(%zu, %zu)", a, n);
                if (n) memset(p, 0x5A, n);
                free(p);
            }
            void *q = aligned_alloc(a, n);
            CHECK(q && aligned_to(q, a), "aligned_alloc(%zu, %zu) = %p", a, n, q);
            free(q);
            void *m = memalign(a, n);
            CHECK(m && aligned_to(m, a), "memalign(%zu, %zu) = %p", a, n, m);
            free(m);
        }
    }
    /* Alignments below sizeof(void *) are valid for aligned_alloc/memalign. */
    for (size_t a = 1; a < sizeof(void *); a <<= 1) {
        void *q = aligned_alloc(a, 10), *m = memalign(a, 10);
        CHECK(q && m, "aligned_alloc/memalign(%zu, 10)", a);
        free(q);
        free(m);
    }
    /* Bad alignments: EINVAL; the out-pointer and errno untouched. */
    static const size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4097, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)0x1234;
        errno = 1234;
        int rc = posix_memalign(&out, bad[i], 100);
        CHECK(rc == EINVAL && out == (void *)0x1234 && errno == 1234, "posix_memalign(bad %zu) = %d", bad[i], rc);
        if (bad[i] != 1 && bad[i] != 2 && bad[i] != 4) {
            errno = 0;
            CHECK(aligned_alloc(bad[i], 100) == NULL && errno == EINVAL, "aligned_alloc(bad %zu)", bad[i]);
            errno = 0;
            CHECK(memalign(bad[i], 100) == NULL && errno == EINVAL, "memalign(bad %zu)", bad[i]);
        }
    }
    /* Out of memory: ENOMEM, the out-pointer untouched. */
    void *out = (void *)0x1234;
    int rc = posix_memalign(&out, 64, (size_t)1 << 62);
    CHECK(rc == ENOMEM && out == (void *)0x1234, "posix_memalign huge = %d", rc);
    errno = 0;
    CHECK(aligned_alloc(64, (size_t)1 << 62) == NULL && errno == ENOMEM, "aligned_alloc huge");
    /* A valid alignment above what the heap serves (1 GiB): ENOMEM. */
    out = (void *)0x1234;
    rc = posix_memalign(&out, (size_t)1 << 31, 100);
    CHECK(rc == ENOMEM && out == (void *)0x1234, "posix_memalign(2 GiB alignment) = %d", rc);

    /* valloc and pvalloc: page-aligned; pvalloc rounds the size up to pages. */
    size_t ps = page_size();
    void *v = valloc(100);
    CHECK(v && aligned_to(v, ps), "valloc(100) = %p", v);
    free(v);
    void *pv = pvalloc(100);
    CHECK(pv && aligned_to(pv, ps) && malloc_usable_size(pv) >= ps, "pvalloc(100) = %p", pv);
    if (pv) memset(pv, 1, ps);
    free(pv);
    pv = pvalloc(0);
    CHECK(pv && aligned_to(pv, ps), "pvalloc(0)");
    free(pv);
    errno = 0;
    CHECK(pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM, "pvalloc overflow");
}

/* ---- out of memory: NULL and ENOMEM, never abort ------------------------------ */

static void test_oom(void) {
    errno = 0;
    CHECK(malloc(SIZE_MAX) == NULL && errno == ENOMEM, "malloc(SIZE_MAX) errno %d", errno);
    errno = 0;
    CHECK(malloc((size_t)1 << 50) == NULL && errno == ENOMEM, "malloc(2^50)");
    errno = 0;
    CHECK(calloc(1, (size_t)1 << 50) == NULL && errno == ENOMEM, "calloc(2^50)");

    /* The OS refuses memory (fault injection in the OS layer): every entry
     * point returns NULL/ENOMEM, then works again once memory is back. */
    void *keep = malloc(1000);
    sa_debug_fail_mmap_after(0);
    errno = 0;
    CHECK(malloc((size_t)512 << 20) == NULL && errno == ENOMEM, "malloc with mmap failing");
    errno = 0;
    CHECK(calloc(1, (size_t)512 << 20) == NULL && errno == ENOMEM, "calloc with mmap failing");
    errno = 0;
    CHECK(realloc(keep, (size_t)512 << 20) == NULL && errno == ENOMEM, "realloc with mmap failing");
    void *out = (void *)0x1;
    CHECK(posix_memalign(&out, (size_t)1 << 20, (size_t)512 << 20) == ENOMEM && out == (void *)0x1,
          "posix_memalign with mmap failing");
    sa_debug_fail_mmap_after(-1);
    void *big = malloc((size_t)512 << 20);
    CHECK(big != NULL, "malloc after mmap works again");
    free(big);
    free(keep);

    /* A real limit: in a child with RLIMIT_AS, allocate until refused. */
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {vm_bytes() + ((size_t)768 << 20), vm_bytes() + ((size_t)768 << 20)};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(3);
        void *list = NULL;
        int n = 0;
        for (;;) {
            void **b = malloc((size_t)16 << 20);
            if (!b) break;
            *b = list;
            list = b;
            n++;
        }
        int e = errno;
        void **small = NULL;
        while (list) {
            void **next = *(void ***)list;
            free(list);
            list = next;
        }
        small = malloc(100); /* still works after the failure */
        if (e != ENOMEM || n < 4 || !small) {
            fprintf(stderr, "RLIMIT_AS child: %d blocks of 16 MiB, then errno %d\n", n, e);
            _exit(4);
        }
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "RLIMIT_AS child: status %d", st);
}

/* ---- sizes the heap refuses: every entry point, NULL with ENOMEM -------------- */

static void test_huge(void) {
    const size_t sizes[] = {((size_t)1 << 45) - 8191, ((size_t)1 << 45) + 3 * 8192, (size_t)1 << 46,
                            ((size_t)1 << 46) + 1, SIZE_MAX, ((size_t)1 << 38) + 1};
    void *small = malloc(100);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        void *p;
        errno = 0; p = malloc(n); CHECK(!p && errno == ENOMEM, "malloc(%zu) = %p, errno %d", n, p, errno);
        errno = 0; p = calloc(1, n); CHECK(!p && errno == ENOMEM, "calloc(1, %zu) = %p", n, p);
        errno = 0; p = realloc(small, n); CHECK(!p && errno == ENOMEM, "realloc(small, %zu) = %p", n, p);
        errno = 0; p = reallocarray(small, 1, n); CHECK(!p && errno == ENOMEM, "reallocarray(%zu) = %p", n, p);
        errno = 0; p = aligned_alloc(4096, n); CHECK(!p && errno == ENOMEM, "aligned_alloc(4096, %zu) = %p", n, p);
        errno = 0; p = memalign(1 << 20, n); CHECK(!p && errno == ENOMEM, "memalign(1 MiB, %zu) = %p", n, p);
        errno = 0; p = valloc(n); CHECK(!p && errno == ENOMEM, "valloc(%zu) = %p", n, p);
        errno = 0; p = pvalloc(n); CHECK(!p && errno == ENOMEM, "pvalloc(%zu) = %p", n, p);
        void *out = (void *)0x1;
        int rc = posix_memalign(&out, 64, n);
        CHECK(rc == ENOMEM && out == (void *)0x1, "posix_memalign(64, %zu) = %d", n, rc);
    }
    /* Near the bound, the alignment padding makes it too large. */
    errno = 0;
    void *p = aligned_alloc((size_t)1 << 30, ((size_t)1 << 38) - 8192);
    CHECK(!p && errno == ENOMEM, "aligned_alloc near the bound = %p", p);
    CHECK(small && sa_owns(small), "the block survived the refused reallocs");
    free(small);
}

/* ---- a freed block handed to realloc or malloc_usable_size: stops, naming it ---- */

/* A large block freed (its pages are now a free run of the heap, not
 * glibc's): a pointer `offset` bytes into it, printed for the parent. */
static void *freed_large_block(size_t offset) {
    char *p = malloc((size_t)1 << 20);
    printf("block %p\n", (void *)(p + offset));
    fflush(stdout); /* stdio's buffer is allocated before the free */
    free(opaque(p));
    return p + offset;
}

static int freed_realloc(void) {
    void *q = realloc(freed_large_block(0), 100);
    fprintf(stderr, "survived: realloc of a freed block gave %p\n", q);
    return 0;
}

static int freed_usable_size(void) {
    size_t n = malloc_usable_size(freed_large_block(3 * 8192));
    fprintf(stderr, "survived: malloc_usable_size of a freed block gave %zu\n", n);
    return 0;
}

/* ---- foreign pointers (from glibc's own allocator) ---------------------------- */

static void test_foreign(void) {
    sa_override_counts c0, c1;
    sa_override_read_counts(&c0);
    char *g = __libc_malloc(100);
    CHECK(g && !sa_owns(g), "__libc_malloc gave %p", g);
    strcpy(g, "from glibc");
    CHECK(malloc_usable_size(g) >= 100, "usable size of a glibc block: %zu", malloc_usable_size(g));
    char *g2 = realloc(g, 5000);
    CHECK(g2 && strcmp(g2, "from glibc") == 0, "realloc of a glibc block");
    free(g2);
    void *ga = __libc_memalign(64, 300);
    free(ga);
    sa_override_read_counts(&c1);
    CHECK(c1.foreign_frees - c0.foreign_frees == 2, "foreign frees %llu",
          (unsigned long long)(c1.foreign_frees - c0.foreign_frees));
    CHECK(c1.foreign_reallocs - c0.foreign_reallocs == 1, "foreign reallocs");
    CHECK(c1.foreign_sizes - c0.foreign_sizes == 1, "foreign sizes");
    /* SpanAlloc's blocks are not counted as foreign. */
    void *mine = malloc(10);
    free(mine);
    sa_override_read_counts(&c0);
    CHECK(c0.foreign_frees == c1.foreign_frees, "own block counted as foreign");
}

/* Run with SPANALLOC=foreign=abort: the free must stop the process. */
static int foreign_strict(void) {
    void *g = __libc_malloc(64);
    fprintf(stderr, "freeing glibc block %p\n", g);
    free(g);
    fprintf(stderr, "survived the free of a foreign pointer\n");
    return 0;
}

/* ---- bootstrap paths: glibc allocating from inside dlsym and TLS set-up -------- */

/* Returns 1 when the thread's TLS block is SpanAlloc's (checked while the
 * thread lives: glibc frees the block once the thread is gone). */
static void *touch_tls(void *fn) {
    char *(*touch)(void) = (char *(*)(void))fn;
    char *block = touch();
    return (void *)(uintptr_t)(block && sa_owns(block));
}

static void test_bootstrap(void) {
    /* dlsym failing makes glibc allocate its dlerror state with malloc. */
    CHECK(dlsym(RTLD_DEFAULT, "sa_no_such_symbol") == NULL, "dlsym found a symbol that does not exist");
    const char *msg = dlerror();
    CHECK(msg != NULL, "dlerror after a failed dlsym");

    /* A dlopen'ed library's large __thread block is dynamic TLS, allocated
     * by glibc through malloc inside __tls_get_addr on first touch. */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0, "readlink /proc/self/exe");
    if (n <= 0) return;
    exe[n] = 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/libtlsprobe.so", dirname(exe));
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CHECK(lib != NULL, "dlopen %s: %s", path, dlerror());
    if (!lib) return;
    void *touch = dlsym(lib, "tls_probe_touch");
    CHECK(touch != NULL, "dlsym tls_probe_touch");
    if (touch) {
        struct sa_mem_stats s0, s1;
        sa_read_mem_stats(&s0);
        enum { T = 8 };
        pthread_t t[T];
        void *blocks[T];
        for (int i = 0; i < T; i++) pthread_create(&t[i], NULL, touch_tls, touch);
        for (int i = 0; i < T; i++) pthread_join(t[i], &blocks[i]);
        sa_read_mem_stats(&s1);
        for (int i = 0; i < T; i++) CHECK(blocks[i] != NULL, "dynamic TLS block of thread %d not from SpanAlloc", i);
        CHECK(s1.large_allocs - s0.large_allocs >= T, "%llu large allocations for %d TLS blocks",
              (unsigned long long)(s1.large_allocs - s0.large_allocs), T);
    }
    dlclose(lib);
}

/* ---- fork from a multithreaded parent ------------------------------------------ */

static atomic_bool stop_workers;

static void *churn(void *arg) {
    unsigned x = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    void *slots[64] = {0};
    while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
        x = x * 1103515245u + 12345u;
        unsigned i = (x >> 8) & 63;
        free(slots[i]);
        size_t n = (x >> 16) % 3000;
        if ((x & 0xff) == 7) n = 50000 + (x >> 20) % 100000; /* large now and then */
        slots[i] = (x & 1) ? malloc(n) : calloc(1, n);
        if ((x & 0x3ff) == 5) {
            void *p = NULL;
            if (posix_memalign(&p, 4096, n) == 0) free(p);
        }
    }
    for (int i = 0; i < 64; i++) free(slots[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) free(opaque(malloc((size_t)(i * 13) % 5000 + 1)));
    return malloc(1); /* freed by the joiner */
}

static int fork_child_body(void) {
    void *p[500];
    for (int i = 0; i < 500; i++) {
        p[i] = malloc((size_t)(i * 37) % 40000 + 1);
        if (!p[i] || !sa_owns(p[i])) return 10;
        memset(p[i], i, (size_t)(i * 37) % 40000 + 1);
    }
    for (int i = 0; i < 500; i++) free(p[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) return 11;
    void *r = NULL;
    pthread_join(t, &r);
    free(r);
    char *s = strdup("the child allocates");
    if (!s) return 12;
    free(s);
    return 0;
}

static void test_fork(void) {
    enum { WORKERS = 4, FORKS = 40 };
    pthread_t w[WORKERS];
    atomic_store(&stop_workers, false);
    for (int i = 0; i < WORKERS; i++) pthread_create(&w[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    int ok = 0;
    for (int k = 0; k < FORKS; k++) {
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL); /* let the workers get deep into the heap */
        pid_t pid = fork();
        if (pid < 0) {
            CHECK(pid >= 0, "fork failed");
            continue;
        }
        if (pid == 0) exit(fork_child_body());
        /* The child must finish: a lock held across fork would hang it. */
        int st = 0;
        pid_t r = 0;
        for (int waited = 0; waited < 2000 && (r = waitpid(pid, &st, WNOHANG)) == 0; waited++) {
            struct timespec ms = {0, 10000000};
            nanosleep(&ms, NULL);
        }
        if (r == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            CHECK(0, "fork child %d hung (allocator lock held across fork?)", k);
            break; /* one hang says it all; do not wait for more */
        }
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child %d status %#x", k, st);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    atomic_store(&stop_workers, true);
    for (int i = 0; i < WORKERS; i++) pthread_join(w[i], NULL);
    printf("fork: %d of %d children of a %d-thread parent allocated and exited 0\n", ok, FORKS, WORKERS + 1);
}

/* ---- 10,000 short-lived threads -------------------------------------------------- */

enum { NTHREADS = 10000, WAVE = 16, PER_THREAD = 24 };

typedef struct job {
    int kind;                /* 0: alloc+free, 1: alloc only, 2: free only */
    void *blocks[PER_THREAD];
} job;

static void *short_thread(void *arg) {
    job *j = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        size_t n = (size_t)(i * 131 + j->kind * 7) % 4000 + 1;
        if (i == 0) n = 40000; /* one large object */
        switch (j->kind) {
        case 0: {
            void *p = opaque(malloc(n));
            memset(p, 1, n < 64 ? n : 64);
            free(opaque(p));
            j->blocks[i] = NULL;
            break;
        }
        case 1: j->blocks[i] = malloc(n); break;          /* never frees: the joiner does */
        case 2: free(j->blocks[i]); j->blocks[i] = NULL; break; /* frees the joiner's blocks */
        }
    }
    return NULL;
}

static void test_threads(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    static job jobs[WAVE];
    pthread_t t[WAVE];
    /* Warm-up wave so glibc's stack cache and the heap's spans exist. */
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < WAVE; i++) {
            jobs[i].kind = 0;
            pthread_create(&t[i], &attr, short_thread, &jobs[i]);
        }
        for (int i = 0; i < WAVE; i++) pthread_join(t[i], NULL);
    }
    sa_scavenge(SIZE_MAX);
    struct sa_mem_stats s0, s1;
    sa_read_mem_stats(&s0);
    size_t rss0 = rss_bytes();
    int created = 0;
    for (int base = 0; base < NTHREADS; base += WAVE) {
        for (int i = 0; i < WAVE; i++) {
            job *j = &jobs[i];
            j->kind = (base + i) % 3;
            if (j->kind == 2)
                for (int b = 0; b < PER_THREAD; b++) j->blocks[b] = malloc((size_t)(b * 97) % 3000 + 1);
            int rc = pthread_create(&t[i], &attr, short_thread, j);
            CHECK(rc == 0, "pthread_create: %d", rc);
            created += rc == 0;
        }
        for (int i = 0; i < WAVE; i++) {
            pthread_join(t[i], NULL);
            if (jobs[i].kind == 1)
                for (int b = 0; b < PER_THREAD; b++) free(jobs[i].blocks[b]);
        }
    }
    sa_scavenge(SIZE_MAX);
    sa_read_mem_stats(&s1);
    size_t rss1 = rss_bytes();
    long long d_objects = (long long)s1.heap_objects - (long long)s0.heap_objects;
    long long d_alloc = (long long)s1.heap_alloc - (long long)s0.heap_alloc;
    long long d_inuse = (long long)s1.heap_inuse - (long long)s0.heap_inuse;
    long long d_meta = (long long)s1.metadata_sys - (long long)s0.metadata_sys;
    long long d_rss = (long long)rss1 - (long long)rss0;
    uint64_t exited = s1.threads_exited - s0.threads_exited;
    printf("threads: %d created, %llu caches handed back, %llu remote frees; live objects %+lld, live bytes %+lld, "
           "heap in use %+lld KiB, metadata %+lld KiB, RSS %+lld KiB, mallocs %llu\n",
           created, (unsigned long long)exited, (unsigned long long)(s1.remote_frees - s0.remote_frees), d_objects, d_alloc, d_inuse / 1024, d_meta / 1024, d_rss / 1024,
           (unsigned long long)(s1.mallocs - s0.mallocs));
    CHECK(created == NTHREADS, "created %d threads", created);
    CHECK(exited >= (uint64_t)NTHREADS, "only %llu of %d thread caches handed back", (unsigned long long)exited,
          NTHREADS);
    CHECK(s1.mallocs - s0.mallocs >= (uint64_t)NTHREADS * PER_THREAD, "mallocs did not go through SpanAlloc");
    /* Memory back to baseline: no live objects left behind, no stranded spans
     * or leaked caches (10,000 leaked caches would be > 20 MiB of metadata). */
    CHECK(d_objects <= 32, "%lld objects left behind", d_objects);
    CHECK(d_alloc <= 64 << 10, "%lld bytes left behind", d_alloc);
    CHECK(d_inuse <= 1 << 20, "heap in use grew by %lld KiB", d_inuse / 1024);
    CHECK(d_meta <= 1 << 20, "metadata grew by %lld KiB: thread exits strand caches or span structs", d_meta / 1024);
    CHECK(d_rss <= 16 << 20, "RSS grew by %lld KiB", d_rss / 1024);
    pthread_attr_destroy(&attr);
}

/* ---- scavenger start from a thread without a cache ------------------------------ */

/* A thread whose first allocations are large: its frees leave idle memory
 * over the goal, so it starts the background scavenger; pthread_create
 * allocates, which makes the thread's first cache, whose creation (a second
 * cache) wakes the scavenger again from inside the start. That nested start
 * deadlocked on the scavenger's own mutex. Timed: a hang is a failure. */
static void *large_first(void *arg) {
    (void)arg;
    enum { N = 40 };
    void *keep[N];
    for (int i = 0; i < N; i++) {
        keep[i] = malloc(4 << 20);
        CHECK(keep[i] != NULL, "malloc(4 MiB) failed");
        if (keep[i]) memset(keep[i], 1, 4 << 20);
    }
    for (int i = 0; i < N; i++) free(keep[i]);
    return NULL;
}

static void test_scavenger_start(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, large_first, NULL) == 0, "pthread_create");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    int rc = pthread_timedjoin_np(t, NULL, &until);
    CHECK(rc == 0, "a thread starting the scavenger from its first cache hung (pthread_timedjoin_np: %d)", rc);
    if (rc != 0) {
        printf("FAILED scavenger-start\n");
        fflush(stdout);
        _exit(1);
    }
    sa_mem_stats st;
    sa_read_mem_stats(&st);
    CHECK(st.scavenger_running == 1, "no scavenger after 160 MiB freed to the page heap");
}

/* ---- config: print what SPANALLOC set ------------------------------------------- */

static int print_config(void) {
    sa_scavenge_config c;
    sa_get_scavenge_config(&c);
    printf("retain_bytes=%zu retain_percent=%u delay_ms=%u mode=%d\n", c.retain_bytes, c.retain_percent,
           c.delay_ms, (int)c.mode);
    /* some work, so the exit report has something to count */
    for (int i = 0; i < 1000; i++) free(opaque(malloc((size_t)i + 1)));
    return 0;
}

/* ---- main ------------------------------------------------------------------------ */

typedef struct section {
    const char *name;
    void (*run)(void);
} section;

static const section sections[] = {
    {"api", test_api},       {"realloc", test_realloc}, {"aligned", test_aligned}, {"oom", test_oom},
    {"foreign", test_foreign}, {"bootstrap", test_bootstrap}, {"fork", test_fork}, {"threads", test_threads},
    {"huge", test_huge},     {"scavenger-start", test_scavenger_start},
};

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "all";
    void *probe = malloc(1);
    if (!sa_owns || !sa_read_mem_stats || !sa_owns(probe)) {
        fprintf(stderr, "malloc-test: malloc is not SpanAlloc's: run with "
                        "LD_PRELOAD=.build/spanalloc-preload/libspanalloc.so\n");
        return 2;
    }
    free(probe);
    if (strcmp(what, "config") == 0) return print_config();
    if (strcmp(what, "foreign-strict") == 0) return foreign_strict();
    if (strcmp(what, "freed-realloc") == 0) return freed_realloc();
    if (strcmp(what, "freed-usable-size") == 0) return freed_usable_size();
    bool ran = false;
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        if (strcmp(what, "all") != 0 && strcmp(what, sections[i].name) != 0) continue;
        ran = true;
        int before = atomic_load(&failures);
        sections[i].run();
        printf("%s %s\n", atomic_load(&failures) == before ? "ok" : "FAILED", sections[i].name);
        fflush(stdout);
    }
    if (!ran) {
        fprintf(stderr, "malloc-test: unknown section %s\n", what);
        return 2;
    }
    /* The heap is consistent after everything above (single-threaded now). */
    char err[512];
    int rc = sa_check_heap(err, sizeof err);
    CHECK(rc == 0, "heap check: %s", err);
    printf("heap check %s\n", rc == 0 ? "ok" : "FAILED");
    return atomic_load(&failures) == 0 ? 0 : 1;
}
