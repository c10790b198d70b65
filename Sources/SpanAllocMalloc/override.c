/*
 * override.c — the glibc allocation API over SpanAlloc's native API.
 *
 * Owns: the libc names and the fork registration. No lock of its own: every
 * entry point is one call into spanalloc.h plus the adjustments below.
 *
 * What the libc contract adds to the native API:
 *   - 16-byte alignment for requests of 16 bytes or more (x86-64 glibc's
 *     guarantee). Every small class is a multiple of 16 except Go's 8-byte
 *     class (requests <= 8 only, as glibc-compatible allocators do) and its
 *     24-byte class, whose odd slots are only 8-aligned: requests of 17..24
 *     bytes are served from the 32-byte class instead.
 *   - foreign pointers: a pointer outside every SpanAlloc arena (sa_in_heap
 *     is false) can only come from glibc's allocator (memory allocated
 *     before the override took over, or through __libc_malloc), so free,
 *     realloc and malloc_usable_size hand it to glibc. A pointer inside an
 *     arena is SpanAlloc's even when it is not a live block (freed, interior):
 *     the core stops the process, naming it. SPANALLOC=foreign=abort makes it
 *     fatal instead, with the core's strict diagnosis.
 *   - errno: NULL results carry ENOMEM (EINVAL for a bad alignment), and
 *     posix_memalign reports through its result, leaving errno and the
 *     out-pointer untouched.
 *   - bootstrap: the core needs no initialization (static initializers, a
 *     thread starts on a static empty cache), so the first call may come
 *     from the dynamic loader before any constructor. The fork handlers are
 *     registered by that first call (sa_fork_register), so they are
 *     registered before any library's, and run last in prepare.
 */
#include "override_internal.h"
#include "sa_fastpath.h" /* the core's inline fast paths */

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

_Atomic uint64_t sa_ov_foreign_frees, sa_ov_foreign_reallocs, sa_ov_foreign_sizes, sa_ov_failures;

bool sa_override_active(void) { return SA_OVERRIDE; }

void sa_override_read_counts(sa_override_counts *out) {
    out->foreign_frees = atomic_load_explicit(&sa_ov_foreign_frees, memory_order_relaxed);
    out->foreign_reallocs = atomic_load_explicit(&sa_ov_foreign_reallocs, memory_order_relaxed);
    out->foreign_sizes = atomic_load_explicit(&sa_ov_foreign_sizes, memory_order_relaxed);
    out->failures = atomic_load_explicit(&sa_ov_failures, memory_order_relaxed);
}

static _Atomic bool started;

void sa_ov_start(void) {
    if (atomic_exchange(&started, true)) return;
#if SA_OVERRIDE
    /* Registered by the first call, before any other library's handlers, so
     * they run last in prepare (the core registers them itself otherwise). */
    sa_fork_register();
#endif
}

#if SA_OVERRIDE

#include <malloc.h>
#include <stdlib.h>

/* The override hands foreign pointers to glibc's own allocator (__libc_free,
 * __libc_realloc, malloc_usable_size through RTLD_NEXT), which other C
 * libraries, musl among them, do not export. */
#ifndef __GLIBC__
#error "SpanAllocMalloc replaces glibc's malloc; other C libraries (musl, the static Linux SDK) are not supported"
#endif

/* glibc's own allocator, for foreign pointers (exported by libc.so.6). */
extern void __libc_free(void *);
extern void *__libc_realloc(void *, size_t);

/* C23 and legacy names that glibc 2.36's headers do not declare. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);
void cfree(void *p);

/* Largest alignment the core serves (sa_alloc_aligned). */
#define MAX_ALIGNMENT ((size_t)1 << 30)

static inline void ensure_started(void) {
    if (SA_OV_UNLIKELY(!atomic_load_explicit(&started, memory_order_relaxed))) sa_ov_start();
}

/* Requests of 17..24 bytes go to the 32-byte class (see the top). */
static inline size_t libc_size(size_t n) { return n - 17 < 8 ? 32 : n; }

/* Returns NULL. The empty asm hides that from the callers, so they can
 * tail-call it instead of keeping a register for the constant. */
SA_OV_COLD static void *failed(const char *fn, size_t size, size_t alignment) {
    uint64_t n = atomic_fetch_add_explicit(&sa_ov_failures, 1, memory_order_relaxed);
    if (atomic_load_explicit(&sa_ov_cfg.verbose, memory_order_relaxed) && n < SA_OV_VERBOSE_EVENTS)
        sa_ov_log("%s(size %zu, alignment %zu) failed: %s", fn, size, alignment,
                  errno == EINVAL ? "EINVAL" : "ENOMEM");
    void *none = NULL;
    __asm__("" : "+r"(none));
    return none;
}

SA_OV_COLD static void foreign_event(_Atomic uint64_t *counter, const char *fn, const void *p) {
    if (atomic_load_explicit(&sa_ov_cfg.foreign_abort, memory_order_relaxed)) {
        sa_free((void *)p); /* stops the process with the core's message */
        _exit(134);         /* not reached */
    }
    uint64_t n = atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    if (atomic_load_explicit(&sa_ov_cfg.verbose, memory_order_relaxed) && n < SA_OV_VERBOSE_EVENTS)
        sa_ov_log("%s(%p): pointer not allocated by SpanAlloc, handed to glibc", fn, p);
}

SA_OV_COLD static void free_foreign(void *p) {
    foreign_event(&sa_ov_foreign_frees, "free", p);
    __libc_free(p);
}

SA_OV_COLD static void *realloc_foreign(void *p, size_t size) {
    foreign_event(&sa_ov_foreign_reallocs, "realloc", p);
    return __libc_realloc(p, size);
}

/* glibc's malloc_usable_size, found on first use (foreign pointers only). */
SA_OV_COLD static size_t usable_size_foreign(void *p) {
    static _Atomic(size_t (*)(void *)) glibc_usable;
    foreign_event(&sa_ov_foreign_sizes, "malloc_usable_size", p);
    size_t (*fn)(void *) = atomic_load(&glibc_usable);
    if (!fn) {
        fn = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
        if (!fn) return 0;
        atomic_store(&glibc_usable, fn);
    }
    return fn(p);
}

/* An aligned block; `alignment` is a power of two. */
SA_PROF_SKIP static void *aligned(const char *fn, size_t alignment, size_t size) {
    ensure_started();
    void *p;
    if (alignment <= 8) {
        p = sa_alloc(libc_size(size), 0);
    } else if (SA_OV_UNLIKELY(alignment > MAX_ALIGNMENT)) {
        errno = ENOMEM; /* a valid alignment the heap cannot serve */
        p = NULL;
    } else {
        /* The core picks a class whose size is a multiple of the alignment
         * (so 16 skips the 8- and 24-byte classes), or an aligned large span. */
        p = sa_alloc_aligned(size, alignment, 0);
    }
    return SA_OV_LIKELY(p != NULL) ? p : failed(fn, size, alignment);
}

static size_t os_page_size(void) {
    static _Atomic size_t page;
    size_t n = atomic_load_explicit(&page, memory_order_relaxed);
    if (SA_OV_UNLIKELY(n == 0)) {
        long v = sysconf(_SC_PAGESIZE);
        n = v > 0 ? (size_t)v : 4096;
        atomic_store_explicit(&page, n, memory_order_relaxed);
    }
    return n;
}

static inline bool power_of_two(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

/* ---- the glibc API ---------------------------------------------------------- */

/* malloc and calloc need no ensure_started: the first allocation of a thread
 * or of a large object takes the core's slow path, which registers the fork
 * handlers. The failure path reads the size back from the core, so the fast
 * path keeps nothing across the call. */
SA_PROF_SKIP void *malloc(size_t size) {
    void *p = sa_alloc_inline_with(size, 0, sa_size_to_class8_libc);
    if (SA_OV_LIKELY(p != NULL)) return p;
    return failed("malloc", sa_failed_size, 0);
}

void free(void *p) {
    /* One page-map walk: frees SpanAlloc's pointers (stopping on a bad one),
     * and says no for memory outside its arenas. */
    sa_free_inline_or(p, free_foreign);
}

SA_PROF_SKIP void *calloc(size_t count, size_t size) {
    size_t total;
    if (SA_OV_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
        errno = ENOMEM;
        return failed("calloc", SIZE_MAX, 0);
    }
    /* The core skips the memset for a large span fresh from the OS. */
    void *p = sa_alloc_inline_with(total, SA_ZERO, sa_size_to_class8_libc);
    if (SA_OV_LIKELY(p != NULL)) return p;
    return failed("calloc", sa_failed_size, 0);
}

SA_PROF_SKIP void *realloc(void *p, size_t size) {
    ensure_started();
    if (p == NULL) return malloc(size);
    if (SA_OV_UNLIKELY(!sa_in_heap(p))) return realloc_foreign(p, size);
    /* In place when the (adjusted) size keeps the class, or a large span can
     * grow or shrink in place; size 0 frees p and returns NULL, as glibc. */
    void *q = sa_realloc(p, libc_size(size));
    return SA_OV_LIKELY(q != NULL || size == 0) ? q : failed("realloc", size, 0);
}

SA_PROF_SKIP void *reallocarray(void *p, size_t count, size_t size) {
    size_t total;
    if (SA_OV_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
        errno = ENOMEM;
        return failed("reallocarray", SIZE_MAX, 0);
    }
    return realloc(p, total);
}

SA_PROF_SKIP int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!power_of_two(alignment) || alignment % sizeof(void *) != 0) return EINVAL;
    int saved = errno;
    void *p = aligned("posix_memalign", alignment, size);
    int err = p ? 0 : errno;
    errno = saved;
    if (!p) return err;
    *out = p;
    return 0;
}

SA_PROF_SKIP void *aligned_alloc(size_t alignment, size_t size) {
    if (!power_of_two(alignment)) {
        errno = EINVAL;
        return failed("aligned_alloc", size, alignment);
    }
    return aligned("aligned_alloc", alignment, size);
}

SA_PROF_SKIP void *memalign(size_t alignment, size_t size) {
    if (!power_of_two(alignment)) {
        errno = EINVAL;
        return failed("memalign", size, alignment);
    }
    return aligned("memalign", alignment, size);
}

SA_PROF_SKIP void *valloc(size_t size) { return aligned("valloc", os_page_size(), size); }

SA_PROF_SKIP void *pvalloc(size_t size) {
    size_t page = os_page_size();
    size_t rounded = (size + page - 1) & ~(page - 1);
    if (SA_OV_UNLIKELY(rounded < size)) {
        errno = ENOMEM;
        return failed("pvalloc", size, page);
    }
    return aligned("pvalloc", page, rounded ? rounded : page);
}

size_t malloc_usable_size(void *p) {
    if (SA_OV_UNLIKELY(p == NULL)) return 0;
    /* Inside an arena: SpanAlloc's, live or not (a freed block stops the
     * process, naming it), never glibc's. */
    if (SA_OV_LIKELY(sa_in_heap(p))) return sa_usable_size_checked(p);
    return usable_size_foreign(p);
}

void free_sized(void *p, size_t size) {
    (void)size;
    free(p);
}

void free_aligned_sized(void *p, size_t alignment, size_t size) {
    (void)alignment;
    (void)size;
    free(p);
}

void cfree(void *p) { free(p); }

/* glibc's malloc_trim returns 1 when memory went back to the OS. */
int malloc_trim(size_t pad) {
    (void)pad;
    return sa_scavenge(SIZE_MAX) > 0;
}

#endif /* SA_OVERRIDE */
