/*
 * config.c — the malloc override's side of the SPANALLOC environment
 * variable (the core parses it, sa_config.c): the exit report and the
 * verbose log. See docs/malloc.md for the options.
 *
 *   SPANALLOC=stats=1,verbose=1,scavenge=background,scavenge_retain=64M,
 *             scavenge_percent=10,scavenge_delay_ms=1000,foreign=glibc
 *             (and the other heap options of sa_config.c)
 *
 * Owns: sa_ov_cfg, copied once by the constructor from the core's parse.
 * Output goes to fd 2 with write(2) from stack or static buffers.
 * Allocations made before the constructor runs simply use the defaults.
 */
#include "override_internal.h"
#include "sa_internal.h" /* sa_env_report_native */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

sa_ov_config sa_ov_cfg;

/* Where reports go: stderr, or a copy of it made at start-up when stats or
 * verbose is on, so a program that closes stderr before exiting (coreutils
 * do) still gets its exit report. */
static _Atomic int report_fd = 2;

static void write_all(const char *buf, size_t len) {
    int fd = atomic_load_explicit(&report_fd, memory_order_relaxed);
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        buf += w;
        len -= (size_t)w;
    }
}

void sa_ov_log(const char *fmt, ...) {
    int saved = errno;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "spanalloc[%d]: ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    write_all(buf, len);
    errno = saved;
}

/* ---- start and exit ------------------------------------------------------------ */

__attribute__((constructor)) static void sa_ov_init(void) {
    sa_ov_start();
    const char *env = getenv("SPANALLOC");
    /* The core parses the variable (once, for native use too); this file
     * keeps the options that the entry points and reports read. */
    sa_env_report_native(false);
    sa_env_options o;
    sa_env_options_read(&o);
    atomic_store(&sa_ov_cfg.stats, o.stats);
    atomic_store(&sa_ov_cfg.verbose, o.verbose);
    atomic_store(&sa_ov_cfg.foreign_abort, o.foreign_abort);
    if (atomic_load(&sa_ov_cfg.stats) || atomic_load(&sa_ov_cfg.verbose)) {
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 100);
        if (fd >= 0) atomic_store(&report_fd, fd);
    }
    if (atomic_load(&sa_ov_cfg.verbose)) {
        sa_scavenge_config c;
        sa_get_scavenge_config(&c);
        sa_ov_log("override %s; SPANALLOC=\"%s\": stats=%d verbose=1 foreign=%s scavenge=%s "
                  "scavenge_retain=%zu scavenge_percent=%u scavenge_delay_ms=%u",
                  SA_OVERRIDE ? "active" : "compiled out (sanitizer)", env ? env : "",
                  (int)atomic_load(&sa_ov_cfg.stats), atomic_load(&sa_ov_cfg.foreign_abort) ? "abort" : "glibc",
                  c.mode == SA_SCAVENGE_BACKGROUND ? "background" : c.mode == SA_SCAVENGE_ON ? "on" : "off", c.retain_bytes, c.retain_percent, c.delay_ms);
    }
}

/* One line of JSON per process: {"pid":…,"Override":{…},"MemStats":{…}}. */
static void print_stats(void) {
    static char buf[32768];
    sa_override_counts oc;
    sa_override_read_counts(&oc);
    int n = snprintf(buf, sizeof buf,
                     "{\"pid\":%d,\"Override\":{\"Active\":%s,\"ForeignFrees\":%llu,\"ForeignReallocs\":%llu,"
                     "\"ForeignSizes\":%llu,\"Failures\":%llu},\"MemStats\":",
                     (int)getpid(), SA_OVERRIDE ? "true" : "false", (unsigned long long)oc.foreign_frees,
                     (unsigned long long)oc.foreign_reallocs, (unsigned long long)oc.foreign_sizes,
                     (unsigned long long)oc.failures);
    if (n < 0) return;
    size_t len = (size_t)n;
    size_t need = sa_mem_stats_json(buf + len, sizeof buf - len);
    if (need >= sizeof buf - len - 3) return; /* cannot happen: the JSON is a few KiB */
    len += need;
    buf[len++] = '}';
    buf[len++] = '\n';
    write_all(buf, len);
}

__attribute__((destructor)) static void sa_ov_exit(void) {
    if (atomic_load(&sa_ov_cfg.stats)) print_stats();
    if (atomic_load(&sa_ov_cfg.verbose)) {
        sa_mem_stats s;
        sa_read_mem_stats(&s);
        sa_override_counts oc;
        sa_override_read_counts(&oc);
        sa_ov_log("exit: %llu mallocs, %llu frees, %llu live objects, heap in use %llu KiB, sys %llu KiB; "
                  "foreign frees %llu, reallocs %llu, sizes %llu; failures %llu",
                  (unsigned long long)s.mallocs, (unsigned long long)s.frees, (unsigned long long)s.heap_objects,
                  (unsigned long long)(s.heap_inuse >> 10), (unsigned long long)(s.sys >> 10),
                  (unsigned long long)oc.foreign_frees, (unsigned long long)oc.foreign_reallocs,
                  (unsigned long long)oc.foreign_sizes, (unsigned long long)oc.failures);
    }
}
