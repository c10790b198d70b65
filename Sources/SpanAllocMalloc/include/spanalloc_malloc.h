/*
 * SpanAllocMalloc — SpanAlloc as the process allocator: the glibc allocation
 * API (malloc, free, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size, free_sized,
 * free_aligned_sized, cfree, malloc_trim) defined over the native API of
 * spanalloc.h. See docs/malloc.md.
 *
 * Two ways in, the same sources:
 *   - LD_PRELOAD: scripts/build-preload.sh compiles Sources/CSpanAlloc/ *.c
 *     and Sources/SpanAllocMalloc/ *.c with plain `cc` into
 *     .build/spanalloc-preload/libspanalloc.so (depends on libc only).
 *   - linking: the SwiftPM product `SpanAllocMalloc`. SwiftPM links a C
 *     target's object files into the executable, whose malloc then
 *     interposes glibc's for the whole process, Swift runtime included.
 *
 * The libc names are not defined under AddressSanitizer or ThreadSanitizer,
 * whose runtimes define malloc themselves; sa_override_active() says which.
 *
 * This header declares only what the override adds; the libc names come
 * from <stdlib.h> and <malloc.h>.
 */
#ifndef SPANALLOC_MALLOC_H
#define SPANALLOC_MALLOC_H

#include "spanalloc.h" /* nullability macros */

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * True when this build defines the libc allocation names (false under a
 * sanitizer, whose runtime owns malloc).
 */
bool sa_override_active(void);

/** What the override did besides serving SpanAlloc's own blocks. */
typedef struct sa_override_counts {
    uint64_t foreign_frees;    /**< free() of pointers SpanAlloc does not own, handed to glibc */
    uint64_t foreign_reallocs; /**< realloc() of such pointers, handed to glibc */
    uint64_t foreign_sizes;    /**< malloc_usable_size() of such pointers, asked of glibc */
    uint64_t failures;         /**< allocations that returned NULL (ENOMEM or EINVAL) */
} sa_override_counts;

/** Reads the override's counters. */
void sa_override_read_counts(sa_override_counts *_Nonnull out);

#ifdef __cplusplus
}
#endif
#endif /* SPANALLOC_MALLOC_H */
