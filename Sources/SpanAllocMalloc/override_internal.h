/*
 * override_internal.h — what override.c (the libc entry points) and
 * config.c (the SPANALLOC variable, exit report, verbose log) share.
 */
#ifndef SA_OVERRIDE_INTERNAL_H
#define SA_OVERRIDE_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spanalloc.h"
#include "spanalloc_malloc.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* The sanitizer runtimes define malloc themselves: a second definition in
 * the same executable would not link (or would fight the runtime), so under
 * ASan/TSan this target keeps only its non-libc functions. */
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || \
    __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SA_OVERRIDE 0
#else
#define SA_OVERRIDE 1
#endif

#define SA_OV_HIDDEN __attribute__((visibility("hidden")))
#define SA_OV_LIKELY(x) __builtin_expect(!!(x), 1)
#define SA_OV_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SA_OV_COLD __attribute__((noinline, cold))

/* Options of the SPANALLOC variable that the entry points read (written once
 * by the constructor in config.c, read with relaxed loads). */
typedef struct sa_ov_config {
    _Atomic bool stats;          /* stats=1: MemStats JSON on stderr at exit */
    _Atomic bool verbose;        /* verbose=1: config, foreign pointers, failures on stderr */
    _Atomic bool foreign_abort;  /* foreign=abort: a foreign pointer stops the process */
} sa_ov_config;

SA_OV_HIDDEN extern sa_ov_config sa_ov_cfg;

/* Counters (slow paths only). */
SA_OV_HIDDEN extern _Atomic uint64_t sa_ov_foreign_frees, sa_ov_foreign_reallocs,
    sa_ov_foreign_sizes, sa_ov_failures;

/* Registers the fork handlers once; called by the first allocation and by
 * the constructor, whichever comes first. Allocates nothing. */
SA_OV_HIDDEN void sa_ov_start(void);

/* Writes "spanalloc: <message>\n" to stderr without allocating; keeps errno. */
__attribute__((format(printf, 1, 2))) SA_OV_HIDDEN void sa_ov_log(const char *fmt, ...);

/* Verbose events are printed for the first few occurrences only. */
#define SA_OV_VERBOSE_EVENTS 16

#endif
