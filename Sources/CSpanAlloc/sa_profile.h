/*
 * sa_profile.h — what the heap profiler's sampler (sa_profile.c) shares
 * with its writer (sa_profile_write.c). See docs/profiling.md.
 */
#ifndef SA_PROFILE_H
#define SA_PROFILE_H

#include "sa_internal.h"

#define SA_PROF_MAX_FRAMES 64

/* One distinct stack (Go's mprof bucket). The stack is immutable once the
 * bucket is in the table, and buckets are never freed, so a writer may read
 * pcs without the lock; the counters are the lock's. Counts are estimates:
 * each sample adds its weight 1 / (1 - exp(-size / rate)) (1 at rate 1). */
typedef struct sa_prof_bucket {
    struct sa_prof_bucket *next;    /* hash chain (lock) */
    struct sa_prof_bucket *allnext; /* every bucket, newest first (lock) */
    uint64_t hash;
    double alloc_objects, alloc_bytes; /* sampled allocations, scaled */
    double free_objects, free_bytes;   /* those freed since, scaled */
    uint32_t nframes;
    uintptr_t pcs[];                   /* return addresses minus one, innermost first */
} sa_prof_bucket;

/* A bucket's counters as of a snapshot. */
typedef struct sa_prof_row {
    const sa_prof_bucket *b;
    double alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
} sa_prof_row;

/* Copies every bucket's counters (under the profiler's lock) into rows
 * mapped with sa_os_map; *nrows is set, the mapping's size in *bytes.
 * NULL when there is nothing or no memory (*nrows 0). */
SA_HIDDEN sa_prof_row *sa_prof_snapshot(size_t *nrows, size_t *bytes);

/* exp(-y) for y >= 0 and the scale 1 / (1 - exp(-y)), without libm. */
SA_HIDDEN double sa_prof_scale(double size, double rate);

/* The configured profile path (empty: none) and signal (0: none). */
SA_HIDDEN const char *sa_prof_config_path(void);
SA_HIDDEN int sa_prof_config_signal(void);

#endif
