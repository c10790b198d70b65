/*
 * sa_os.c — the only file that talks to the OS: mapping and releasing
 * memory, the OS page size, the clocks, the process-wide memory barrier
 * (membarrier), and writing fatal messages without allocating. Holds no locks. Fault injection (sa_debug_fail_mmap_after)
 * lives here so every layer above sees the same failures a real OS gives.
 */
#include "sa_internal.h"

/* Linux only: MAP_NORESERVE, MADV_DONTNEED's zero-fill, CLOCK_MONOTONIC_COARSE,
 * membarrier and prctl are Linux's. Other systems stop here, not at link time. */
#ifndef __linux__
#error "SpanAlloc supports Linux only (mmap/madvise/membarrier as Linux has them)"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#ifdef __linux__
#include <linux/membarrier.h>
#endif
#include <unistd.h>

static _Atomic size_t os_page_size;
static _Atomic long fail_after = -1; /* mmaps that still succeed; -1 = never fail */

size_t sa_os_page_size(void) {
    size_t p = atomic_load_explicit(&os_page_size, SA_RELAXED);
    if (SA_UNLIKELY(p == 0)) {
        long v = sysconf(_SC_PAGESIZE);
        p = v > 0 ? (size_t)v : 4096;
        atomic_store_explicit(&os_page_size, p, SA_RELAXED);
    }
    return p;
}

void sa_debug_fail_mmap_after(long n) { atomic_store(&fail_after, n < 0 ? -1 : n); }

static _Atomic int release_mode = SA_DEBUG_RELEASE_NORMAL;

void sa_debug_set_release_mode(int mode) { atomic_store(&release_mode, mode); }

static bool injected_failure(void) {
    long n = atomic_load_explicit(&fail_after, SA_RELAXED);
    while (n >= 0) {
        if (n == 0) return true;
        if (atomic_compare_exchange_weak(&fail_after, &n, n - 1)) return false;
    }
    return false;
}

void *sa_os_map(size_t size) {
    if (injected_failure()) { errno = ENOMEM; return NULL; }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { errno = ENOMEM; return NULL; }
    return p;
}

void *sa_os_map_aligned(size_t size, size_t align) {
    if (align <= sa_os_page_size()) return sa_os_map(size);
    if (size + align < size) { errno = ENOMEM; return NULL; }
    char *p = sa_os_map(size + align);
    if (!p) return NULL;
    uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = a - (uintptr_t)p, tail = align - head;
    if (head) munmap(p, head);
    if (tail) munmap((char *)a + size, tail);
    return (void *)a;
}

void sa_os_unmap(void *p, size_t size) { munmap(p, size); }

size_t sa_os_release(void *p, size_t size, uintptr_t *start) {
    /* Only whole OS pages can be released: shrink the range inward. */
    int mode = atomic_load_explicit(&release_mode, SA_RELAXED);
    if (mode == SA_DEBUG_RELEASE_FAILS) return 0;
    size_t ps = mode == SA_DEBUG_RELEASE_64K_PAGES ? (size_t)64 << 10 : sa_os_page_size();
    uintptr_t a = ((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1);
    uintptr_t e = ((uintptr_t)p + size) & ~(uintptr_t)(ps - 1);
    if (e <= a || madvise((void *)a, e - a, MADV_DONTNEED) != 0) return 0;
    *start = a;
    return e - a;
}

uint64_t sa_os_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void vlog(const char *prefix, const char *fmt, va_list ap) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%s", prefix);
    if (n < 0) n = 0;
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(2, buf, len);
    (void)w;
}

void sa_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog("spanalloc: ", fmt, ap);
    va_end(ap);
}

void sa_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog("fatal error: spanalloc: ", fmt, ap);
    va_end(ap);
    abort();
}

uint64_t sa_os_thread_cpu_ns(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0) return 0;
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

bool sa_os_membarrier_register(void) {
#if defined(__linux__) && defined(SYS_membarrier)
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
    return false;
#endif
}

bool sa_os_membarrier(void) {
#if defined(__linux__) && defined(SYS_membarrier)
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
    return false;
#endif
}
