/*
 * sa_config.c — the SPANALLOC environment variable, read once when the heap
 * starts (its first thread cache, large object or configuration call), for
 * native users and the malloc override alike. See docs/malloc.md.
 *
 *   SPANALLOC=stats=1,verbose=1,scavenge=background,scavenge_retain=64M,
 *             scavenge_percent=10,scavenge_delay_ms=1000,scavenge_floor=4M,
 *             scavenge_idle_ms=1000,scavenge_cpu_percent=1,memlimit=512M,
 *             memlimit_mode=soft,foreign=glibc,thread_cache=1M,
 *             thread_cache_total=64M,profile=heap.%p.pb.gz,profile_rate=512K,
 *             profile_signal=USR2
 *
 * Owns: env_options and the once-flag. The scavenger options go to the page
 * heap's configuration (sa_heap_config, under the heap lock), the memory
 * limit to sa_set_memory_limit; stats, verbose
 * and foreign are kept for whoever reports (the override's exit report and
 * log, or the core's exit report for native programs). Parsing allocates
 * nothing (the variable is read in place), so it may run inside malloc; bad
 * items are reported on stderr and ignored.
 */
#include "sa_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

static struct {
    _Atomic bool stats, verbose, foreign_abort;
    _Atomic bool report_native; /* the core prints the stats=1 report (no override) */
} env_options = {.report_native = true};
/* 0: not read; 1: being read; 2: read. */
static _Atomic int env_state;

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
    sa_log("SPANALLOC: %s '%.*s%s%.*s' ignored", why, (int)it->keylen, it->key,
              it->value ? "=" : "", it->value ? (int)it->valuelen : 0, it->value ? it->value : "");
}

static void apply(const item *it, sa_scavenge_config *scav, bool *scav_changed, sa_cache_config *cache,
                  bool *cache_changed, size_t *limit, int *limit_mode, item *prof_path,
                  int64_t *prof_rate, int *prof_signal) {
    const char *k = it->key;
    size_t kl = it->keylen;
    bool b;
    uint64_t x;
    if (is(k, kl, "stats")) {
        if (!parse_bool(it, &b)) return bad(it, "bad value in");
        atomic_store(&env_options.stats, b);
    } else if (is(k, kl, "verbose")) {
        if (!parse_bool(it, &b)) return bad(it, "bad value in");
        atomic_store(&env_options.verbose, b);
    } else if (is(k, kl, "foreign")) {
        if (it->value && is(it->value, it->valuelen, "glibc")) atomic_store(&env_options.foreign_abort, false);
        else if (it->value && is(it->value, it->valuelen, "abort")) atomic_store(&env_options.foreign_abort, true);
        else return bad(it, "bad value (glibc or abort) in");
    } else if (is(k, kl, "scavenge")) {
        if (it->value && is(it->value, it->valuelen, "background")) scav->mode = SA_SCAVENGE_BACKGROUND;
        else if (parse_bool(it, &b)) scav->mode = b ? SA_SCAVENGE_ON : SA_SCAVENGE_OFF;
        else return bad(it, "bad value (off, on or background) in");
        *scav_changed = true;
    } else if (is(k, kl, "scavenge_floor")) {
        if (!parse_size(it, &x) || x > SIZE_MAX) return bad(it, "bad size in");
        scav->floor_bytes = (size_t)x;
        *scav_changed = true;
    } else if (is(k, kl, "scavenge_idle_ms")) {
        if (!parse_size(it, &x) || x > UINT32_MAX) return bad(it, "bad delay in");
        scav->idle_ms = (unsigned)x;
        *scav_changed = true;
    } else if (is(k, kl, "scavenge_cpu_percent")) {
        if (!parse_size(it, &x) || x == 0 || x > 100) return bad(it, "bad percentage (1-100) in");
        scav->cpu_percent = (unsigned)x;
        *scav_changed = true;
    } else if (is(k, kl, "memlimit")) {
        if (!parse_size(it, &x) || x > SIZE_MAX) return bad(it, "bad size in");
        *limit = (size_t)x;
    } else if (is(k, kl, "memlimit_mode")) {
        if (it->value && is(it->value, it->valuelen, "soft")) *limit_mode = SA_MEMLIMIT_SOFT;
        else if (it->value && is(it->value, it->valuelen, "hard")) *limit_mode = SA_MEMLIMIT_HARD;
        else return bad(it, "bad value (soft or hard) in");
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
    } else if (is(k, kl, "thread_cache")) {
        if (!parse_size(it, &x) || x > SIZE_MAX) return bad(it, "bad size in");
        cache->thread_bytes = (size_t)x;
        *cache_changed = true;
    } else if (is(k, kl, "thread_cache_total")) {
        if (!parse_size(it, &x) || x > SIZE_MAX) return bad(it, "bad size in");
        cache->total_bytes = (size_t)x;
        *cache_changed = true;
    } else if (is(k, kl, "profile")) {
        if (!it->value || it->valuelen == 0 || it->valuelen >= 4096) return bad(it, "bad path in");
        *prof_path = *it;
    } else if (is(k, kl, "profile_rate")) {
        if (!parse_size(it, &x) || x > INT64_MAX) return bad(it, "bad size in");
        *prof_rate = (int64_t)x;
    } else if (is(k, kl, "profile_signal")) {
        static const struct { const char *name; int signo; } sigs[] = {
            {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
            {"PROF", SIGPROF}, {"SIGPROF", SIGPROF}, {"URG", SIGURG}, {"SIGURG", SIGURG}};
        int signo = 0;
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            if (it->value && is(it->value, it->valuelen, sigs[i].name)) signo = sigs[i].signo;
        /* A number: one of those, or a real-time signal (never one whose
         * default action a fault or the kernel relies on: SEGV, KILL, …). */
        if (!signo && parse_size(it, &x) &&
            (x == SIGUSR1 || x == SIGUSR2 || x == SIGPROF || x == SIGURG ||
             (x >= (uint64_t)SIGRTMIN && x <= (uint64_t)SIGRTMAX)))
            signo = (int)x;
        if (!signo) return bad(it, "bad signal (USR1, USR2, PROF, URG, or a real-time signal's number) in");
        *prof_signal = signo;
    } else {
        bad(it, "unknown option");
    }
}

static void parse(const char *s) {
    sa_scavenge_config scav;
    sa_heap_config(&scav, NULL);
    bool scav_changed = false, cache_changed = false;
    sa_cache_config cache;
    sa_cache_configure(&cache, NULL);
    size_t limit = SIZE_MAX;
    int limit_mode = -1;
    item prof_path = {0};
    int64_t prof_rate = -1;
    int prof_signal = 0;
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
            apply(&it, &scav, &scav_changed, &cache, &cache_changed, &limit, &limit_mode, &prof_path,
                  &prof_rate, &prof_signal);
        }
        s = *end ? end + 1 : end;
    }
    if (prof_path.value || prof_rate >= 0 || prof_signal)
        sa_prof_configure(prof_path.value, prof_path.valuelen, prof_rate, prof_signal);
    if (scav_changed) sa_heap_config(NULL, &scav);
    if (cache_changed) sa_cache_configure(NULL, &cache);
    if (limit != SIZE_MAX || limit_mode >= 0) {
        sa_memlimit_mode m;
        size_t cur = sa_memory_limit(&m);
        sa_set_memory_limit(limit != SIZE_MAX ? limit : cur, limit_mode >= 0 ? (sa_memlimit_mode)limit_mode : m);
    }
}

void sa_config_load(void) {
    if (SA_LIKELY(atomic_load_explicit(&env_state, SA_ACQUIRE) == 2)) return;
    /* Before the C library has set up the environment (an allocation from
     * the dynamic loader), try again later. */
    if (!environ) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&env_state, &expected, 1)) {
        /* Another thread is reading it (or this one, recursively): its
         * settings land in a moment; go on with the defaults meanwhile. */
        return;
    }
    const char *env = getenv("SPANALLOC");
    if (env) parse(env);
    atomic_store_explicit(&env_state, 2, SA_RELEASE);
}

void sa_env_options_read(sa_env_options *out) {
    sa_config_load();
    out->stats = atomic_load(&env_options.stats);
    out->verbose = atomic_load(&env_options.verbose);
    out->foreign_abort = atomic_load(&env_options.foreign_abort);
}

void sa_env_report_native(bool yes) { atomic_store(&env_options.report_native, yes); }

/* Native programs with stats=1 get MemStats as JSON on stderr at exit (the
 * malloc override prints its own report, with its counters, instead). */
__attribute__((destructor)) static void sa_config_exit_report(void) {
    if (atomic_load_explicit(&env_state, SA_ACQUIRE) != 2 || !atomic_load(&env_options.stats) ||
        !atomic_load(&env_options.report_native))
        return;
    static char buf[16384];
    size_t n = sa_mem_stats_json(buf, sizeof buf - 1);
    if (n >= sizeof buf - 1) return;
    buf[n++] = '\n';
    ssize_t w = write(2, buf, n);
    (void)w;
}
