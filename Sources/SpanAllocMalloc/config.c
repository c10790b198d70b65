/*
 * config.c — the SPANALLOC environment variable, the exit report and the
 * verbose log of the malloc override. See docs/malloc.md for the options.
 *
 *   SPANALLOC=stats=1,verbose=1,scavenge=off,scavenge_retain=64M,
 *             scavenge_percent=10,scavenge_delay_ms=1000,foreign=glibc
 *
 * Owns: sa_ov_cfg, written once by the constructor. Parsing allocates
 * nothing (the variable is read in place) so it cannot recurse into
 * malloc; output goes to fd 2 with write(2) from stack or static buffers.
 * Allocations made before the constructor runs simply use the defaults.
 */
#include "override_internal.h"

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

/* ---- parsing ----------------------------------------------------------------- */

/* One "key=value" item of the variable, not NUL-terminated. */
typedef struct item {
    const char *key, *value;
    size_t keylen, valuelen;
} item;

static bool is(const char *s, size_t len, const char *word) {
    return strlen(word) == len && strncmp(s, word, len) == 0;
}

static bool parse_bool(const item *it, bool *out) {
    if (it->value == NULL) { *out = true; return true; } /* "stats" alone means stats=1 */
    const char *v = it->value;
    size_t n = it->valuelen;
    if (is(v, n, "1") || is(v, n, "on") || is(v, n, "true") || is(v, n, "yes")) { *out = true; return true; }
    if (is(v, n, "0") || is(v, n, "off") || is(v, n, "false") || is(v, n, "no")) { *out = false; return true; }
    return false;
}

/* Decimal number with an optional K, M or G suffix (powers of 1024, an
 * optional trailing "B" or "iB"). */
static bool parse_size(const item *it, uint64_t *out) {
    const char *v = it->value;
    size_t n = it->valuelen, i = 0;
    if (v == NULL || n == 0) return false;
    uint64_t x = 0;
    for (; i < n && v[i] >= '0' && v[i] <= '9'; i++) {
        if (x > (UINT64_MAX - 9) / 10) return false;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (i == 0) return false;
    unsigned shift = 0;
    if (i < n) {
        switch (v[i]) {
        case 'k': case 'K': shift = 10; i++; break;
        case 'm': case 'M': shift = 20; i++; break;
        case 'g': case 'G': shift = 30; i++; break;
        default: break;
        }
        if (shift && i < n && v[i] == 'i') i++;
        if (i < n && (v[i] == 'B' || v[i] == 'b')) i++;
    }
    if (i != n) return false;
    if (shift && x > (UINT64_MAX >> shift)) return false;
    *out = x << shift;
    return true;
}

static void bad(const item *it, const char *why) {
    sa_ov_log("SPANALLOC: %s '%.*s%s%.*s' ignored", why, (int)it->keylen, it->key,
              it->value ? "=" : "", it->value ? (int)it->valuelen : 0, it->value ? it->value : "");
}

static void apply(const item *it, sa_scavenge_config *scav, bool *scav_changed) {
    const char *k = it->key;
    size_t kl = it->keylen;
    bool b;
    uint64_t x;
    if (is(k, kl, "stats")) {
        if (!parse_bool(it, &b)) return bad(it, "bad value in");
        atomic_store(&sa_ov_cfg.stats, b);
    } else if (is(k, kl, "verbose")) {
        if (!parse_bool(it, &b)) return bad(it, "bad value in");
        atomic_store(&sa_ov_cfg.verbose, b);
    } else if (is(k, kl, "foreign")) {
        if (it->value && is(it->value, it->valuelen, "glibc")) atomic_store(&sa_ov_cfg.foreign_abort, false);
        else if (it->value && is(it->value, it->valuelen, "abort")) atomic_store(&sa_ov_cfg.foreign_abort, true);
        else return bad(it, "bad value (glibc or abort) in");
    } else if (is(k, kl, "scavenge")) {
        if (!parse_bool(it, &b)) return bad(it, "bad value in");
        scav->enabled = b;
        *scav_changed = true;
    } else if (is(k, kl, "scavenge_retain")) {
        if (!parse_size(it, &x) || x > SIZE_MAX) return bad(it, "bad size in");
        scav->retain_bytes = (size_t)x;
        *scav_changed = true;
    } else if (is(k, kl, "scavenge_percent")) {
        if (!parse_size(it, &x) || x > 100000) return bad(it, "bad percentage in");
        scav->retain_percent = (unsigned)x;
        *scav_changed = true;
    } else if (is(k, kl, "scavenge_delay_ms")) {
        if (!parse_size(it, &x) || x > UINT32_MAX) return bad(it, "bad delay in");
        scav->delay_ms = (unsigned)x;
        *scav_changed = true;
    } else {
        bad(it, "unknown option");
    }
}

static void parse(const char *s) {
    sa_scavenge_config scav;
    sa_get_scavenge_config(&scav);
    bool scav_changed = false;
    while (*s) {
        const char *end = strchr(s, ',');
        if (!end) end = s + strlen(s);
        if (end > s) {
            const char *eq = memchr(s, '=', (size_t)(end - s));
            item it = {.key = s, .keylen = (size_t)((eq ? eq : end) - s)};
            if (eq) {
                it.value = eq + 1;
                it.valuelen = (size_t)(end - eq - 1);
            }
            apply(&it, &scav, &scav_changed);
        }
        s = *end ? end + 1 : end;
    }
    if (scav_changed) sa_set_scavenge_config(&scav);
}

/* ---- start and exit ------------------------------------------------------------ */

__attribute__((constructor)) static void sa_ov_init(void) {
    sa_ov_start();
    const char *env = getenv("SPANALLOC");
    if (env) parse(env);
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
                  c.enabled ? "on" : "off", c.retain_bytes, c.retain_percent, c.delay_ms);
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
