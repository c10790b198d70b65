/*
 * The allocator tables: how each allocator is reached without taking over
 * the process malloc (see benchkit.h), its version and jemalloc's
 * configuration and statistics through mallctl. Nothing here allocates
 * from an allocator under test except the calls the caller asks for.
 */
#define _GNU_SOURCE
#include "benchkit.h"

#include <dlfcn.h>
#include <link.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <spanalloc.h>

/* glibc's own entry points, reachable even when malloc is interposed. */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_realloc(void *ptr, size_t size);

/* ---- SpanAlloc: the native API with flags 0 ---------------------------- */
static void *sa_malloc0(size_t size) { return sa_alloc(size, 0); }
static size_t sa_usable(void *p) { return sa_usable_size(p); }
static void sa_release_all(void) { (void)sa_scavenge(SIZE_MAX); }

/* ---- glibc --------------------------------------------------------------- */
static size_t glibc_usable(void *p) { return malloc_usable_size(p); }
static void glibc_release(void) { (void)malloc_trim(0); }

/* ---- the process malloc (LD_PRELOAD runs) ------------------------------- */
static void *process_malloc(size_t n) { return malloc(n); }
static void process_free(void *p) { free(p); }
static void *process_realloc(void *p, size_t n) { return realloc(p, n); }
static size_t process_usable(void *p) { return malloc_usable_size(p); }

/* ---- dlopen'ed allocators ------------------------------------------------ */
static void *je_handle, *mi_handle, *tc_handle;
static bk_mallctl_fn je_mallctl;
static void (*mi_collect_fn)(bool);
static void (*tc_release_fn)(void);

/* MALLCTL_ARENAS_ALL in jemalloc 5: "arena.4096.purge" acts on every arena. */
#define JE_ARENAS_ALL 4096

static void je_release(void) {
    if (je_mallctl == NULL) return;
    char name[64];
    snprintf(name, sizeof name, "arena.%u.purge", (unsigned)JE_ARENAS_ALL);
    if (je_mallctl(name, NULL, NULL, NULL, 0) != 0) {
        unsigned narenas = 0;
        size_t len = sizeof narenas;
        if (je_mallctl("arenas.narenas", &narenas, &len, NULL, 0) == 0) {
            snprintf(name, sizeof name, "arena.%u.purge", narenas);
            (void)je_mallctl(name, NULL, NULL, NULL, 0);
        }
    }
}
static void mi_release(void) { if (mi_collect_fn) mi_collect_fn(true); }
static void tc_release(void) { if (tc_release_fn) tc_release_fn(); }

const char *bk_allocator_soname(bk_allocator_kind kind) {
    switch (kind) {
    case BK_JEMALLOC: return "libjemalloc.so.2";
    case BK_MIMALLOC: return "libmimalloc.so.2";
    case BK_TCMALLOC: return "libtcmalloc_minimal.so.4";
    default: return NULL;
    }
}

static void *open_lib(bk_allocator_kind kind, void **slot, bk_allocator *out) {
    if (*slot == NULL) {
        *slot = dlopen(bk_allocator_soname(kind), RTLD_NOW | RTLD_LOCAL);
        if (*slot == NULL) {
            const char *e = dlerror();
            snprintf(out->error, sizeof out->error, "%s", e ? e : "dlopen failed");
        }
    }
    return *slot;
}

static bool bind(void *h, bk_allocator *out, const char *m, const char *f,
                 const char *r, const char *u) {
    out->malloc = (bk_malloc_fn)dlsym(h, m);
    out->free = (bk_free_fn)dlsym(h, f);
    out->realloc = (bk_realloc_fn)dlsym(h, r);
    out->usable_size = (bk_usable_size_fn)dlsym(h, u);
    if (!out->malloc || !out->free || !out->realloc || !out->usable_size) {
        snprintf(out->error, sizeof out->error, "missing symbol among %s %s %s %s", m, f, r, u);
        return false;
    }
    return true;
}

bool bk_allocator_load(bk_allocator_kind kind, bk_allocator *out) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    switch (kind) {
    case BK_SPANALLOC:
        out->name = "SpanAlloc";
        out->malloc = sa_malloc0;
        out->free = sa_free;
        out->realloc = sa_realloc;
        out->usable_size = sa_usable;
        out->release = sa_release_all;
        return true;
    case BK_GLIBC:
        out->name = "glibc";
        out->malloc = __libc_malloc;
        out->free = __libc_free;
        out->realloc = __libc_realloc;
        out->usable_size = glibc_usable;
        out->release = glibc_release;
        snprintf(out->version, sizeof out->version, "%s", gnu_get_libc_version());
        return true;
    case BK_PROCESS:
        out->name = "process";
        out->malloc = process_malloc;
        out->free = process_free;
        out->realloc = process_realloc;
        out->usable_size = process_usable;
        return true;
    case BK_JEMALLOC: {
        out->name = "jemalloc";
        void *h = open_lib(kind, &je_handle, out);
        if (!h || !bind(h, out, "malloc", "free", "realloc", "malloc_usable_size")) return false;
        je_mallctl = (bk_mallctl_fn)dlsym(h, "mallctl");
        out->mallctl = je_mallctl;
        out->release = je_release;
        const char *v = NULL;
        size_t len = sizeof v;
        if (je_mallctl && je_mallctl("version", &v, &len, NULL, 0) == 0 && v)
            snprintf(out->version, sizeof out->version, "%s", v);
        return true;
    }
    case BK_MIMALLOC: {
        out->name = "mimalloc";
        void *h = open_lib(kind, &mi_handle, out);
        if (!h || !bind(h, out, "mi_malloc", "mi_free", "mi_realloc", "mi_usable_size")) return false;
        mi_collect_fn = (void (*)(bool))dlsym(h, "mi_collect");
        out->release = mi_release;
        int (*ver)(void) = (int (*)(void))dlsym(h, "mi_version");
        if (ver) {
            int v = ver();
            snprintf(out->version, sizeof out->version, "%d.%d.%d", v / 100, (v % 100) / 10, v % 10);
        }
        return true;
    }
    case BK_TCMALLOC: {
        out->name = "tcmalloc";
        void *h = open_lib(kind, &tc_handle, out);
        if (!h || !bind(h, out, "tc_malloc", "tc_free", "tc_realloc", "tc_malloc_size")) return false;
        tc_release_fn = (void (*)(void))dlsym(h, "MallocExtension_ReleaseFreeMemory");
        out->release = tc_release;
        const char *(*ver)(int *, int *, const char **) =
            (const char *(*)(int *, int *, const char **))dlsym(h, "tc_version");
        if (ver) {
            int major = 0, minor = 0;
            const char *patch = NULL;
            const char *s = ver(&major, &minor, &patch);
            snprintf(out->version, sizeof out->version, "%s", s ? s : "");
        }
        return true;
    }
    default:
        snprintf(out->error, sizeof out->error, "unknown allocator kind %d", (int)kind);
        return false;
    }
}

/* ---- any library that exports malloc/free/realloc ------------------------ */

static size_t no_usable_size(void *p) { (void)p; return 0; }

bool bk_allocator_load_custom(const char *name, const char *path, bk_allocator *out) {
    memset(out, 0, sizeof *out);
    out->kind = BK_CUSTOM;
    out->name = name;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *e = dlerror();
        snprintf(out->error, sizeof out->error, "%s", e ? e : "dlopen failed");
        return false;
    }
    out->malloc = (bk_malloc_fn)dlsym(h, "malloc");
    out->free = (bk_free_fn)dlsym(h, "free");
    out->realloc = (bk_realloc_fn)dlsym(h, "realloc");
    if (!out->malloc || !out->free || !out->realloc) {
        snprintf(out->error, sizeof out->error, "%s does not export malloc, free and realloc", path);
        return false;
    }
    /* dlsym(handle) also searches the library's dependencies (libc): the
     * symbols must come from the library itself. */
    struct link_map *lm = NULL;
    Dl_info info;
    void *syms[3] = {(void *)out->malloc, (void *)out->free, (void *)out->realloc};
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0 || lm == NULL) {
        snprintf(out->error, sizeof out->error, "dlinfo failed for %s", path);
        return false;
    }
    for (int i = 0; i < 3; i++) {
        if (dladdr(syms[i], &info) == 0 || info.dli_fname == NULL || strcmp(info.dli_fname, lm->l_name) != 0) {
            snprintf(out->error, sizeof out->error, "%s does not define malloc/free/realloc itself (found in %s)",
                     path, info.dli_fname ? info.dli_fname : "?");
            return false;
        }
    }
    bk_usable_size_fn u = (bk_usable_size_fn)dlsym(h, "malloc_usable_size");
    out->usable_size = (u && dladdr((void *)u, &info) && info.dli_fname && strcmp(info.dli_fname, lm->l_name) == 0)
                           ? u : no_usable_size;
    snprintf(out->version, sizeof out->version, "%s", path);
    return true;
}

/* ---- jemalloc's configuration and statistics ----------------------------- */

static void append(char *buf, size_t cap, const char *fmt, const char *key, const char *val) {
    size_t n = strlen(buf);
    if (n < cap) snprintf(buf + n, cap - n, fmt, key, val);
}

void bk_jemalloc_config(const bk_allocator *a, char *buf, size_t cap) {
    if (cap == 0) return;
    buf[0] = 0;
    if (a->mallctl == NULL) return;
    static const char *bools[] = {"config.stats", "config.debug", "config.prof", "opt.tcache",
                                  "opt.background_thread", "opt.retain"};
    static const char *strs[] = {"opt.thp", "opt.metadata_thp", "opt.percpu_arena"};
    static const char *ssizes[] = {"opt.dirty_decay_ms", "opt.muzzy_decay_ms"};
    char val[64];
    unsigned narenas = 0;
    size_t len = sizeof narenas;
    if (a->mallctl("opt.narenas", &narenas, &len, NULL, 0) == 0) {
        snprintf(val, sizeof val, "%u", narenas);
        append(buf, cap, "%s=%s ", "opt.narenas", val);
    }
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++) {
        bool b = false;
        len = sizeof b;
        if (a->mallctl(bools[i], &b, &len, NULL, 0) == 0)
            append(buf, cap, "%s=%s ", bools[i], b ? "true" : "false");
    }
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        const char *s = NULL;
        len = sizeof s;
        if (a->mallctl(strs[i], &s, &len, NULL, 0) == 0 && s) append(buf, cap, "%s=%s ", strs[i], s);
    }
    for (size_t i = 0; i < sizeof ssizes / sizeof *ssizes; i++) {
        long v = 0; /* ssize_t */
        len = sizeof v;
        if (a->mallctl(ssizes[i], &v, &len, NULL, 0) == 0) {
            snprintf(val, sizeof val, "%ld", v);
            append(buf, cap, "%s=%s ", ssizes[i], val);
        }
    }
    size_t sz = 0;
    len = sizeof sz;
    if (a->mallctl("opt.tcache_max", &sz, &len, NULL, 0) == 0) {
        snprintf(val, sizeof val, "%zu", sz);
        append(buf, cap, "%s=%s ", "opt.tcache_max", val);
    }
    len = sizeof sz;
    if (a->mallctl("arenas.page", &sz, &len, NULL, 0) == 0) {
        snprintf(val, sizeof val, "%zu", sz);
        append(buf, cap, "%s=%s ", "arenas.page", val);
    }
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == ' ') buf[n - 1] = 0;
}

static bool rd_size(bk_mallctl_fn m, const char *name, uint64_t *out) {
    size_t v = 0, len = sizeof v;
    if (m(name, &v, &len, NULL, 0) != 0) return false;
    *out = v;
    return true;
}

static bool rd_u64(bk_mallctl_fn m, const char *name, uint64_t *out) {
    uint64_t v = 0;
    size_t len = sizeof v;
    if (m(name, &v, &len, NULL, 0) != 0) return false;
    *out = v;
    return true;
}

bool bk_jemalloc_read_stats(const bk_allocator *a, bk_jemalloc_stats *out) {
    memset(out, 0, sizeof *out);
    bk_mallctl_fn m = a->mallctl;
    if (m == NULL) return false;
    uint64_t epoch = 1, old = 0;
    size_t len = sizeof old;
    if (m("epoch", &old, &len, &epoch, sizeof epoch) != 0) return false;
    if (!rd_size(m, "stats.allocated", &out->allocated) || !rd_size(m, "stats.active", &out->active) ||
        !rd_size(m, "stats.resident", &out->resident) || !rd_size(m, "stats.mapped", &out->mapped) ||
        !rd_size(m, "stats.retained", &out->retained) || !rd_size(m, "stats.metadata", &out->metadata))
        return false;
    unsigned nbins = 0;
    len = sizeof nbins;
    if (m("arenas.nbins", &nbins, &len, NULL, 0) != 0) return false;
    /* Merged statistics of every arena (MALLCTL_ARENAS_ALL); arena 0 as a fallback. */
    unsigned arena = JE_ARENAS_ALL;
    char name[96];
    snprintf(name, sizeof name, "stats.arenas.%u.bins.0.nslabs", arena);
    uint64_t probe;
    if (!rd_u64(m, name, &probe)) arena = 0;
    for (unsigned b = 0; b < nbins; b++) {
        uint64_t v = 0;
        snprintf(name, sizeof name, "stats.arenas.%u.bins.%u.nslabs", arena, b);
        if (rd_u64(m, name, &v)) out->nslabs += v;
        snprintf(name, sizeof name, "stats.arenas.%u.bins.%u.nreslabs", arena, b);
        if (rd_u64(m, name, &v)) out->nreslabs += v;
        snprintf(name, sizeof name, "stats.arenas.%u.bins.%u.curslabs", arena, b);
        if (rd_size(m, name, &v)) out->curslabs += v;
    }
    uint64_t nm = 0, nd = 0;
    snprintf(name, sizeof name, "stats.arenas.%u.large.nmalloc", arena);
    (void)rd_u64(m, name, &nm);
    snprintf(name, sizeof name, "stats.arenas.%u.large.ndalloc", arena);
    (void)rd_u64(m, name, &nd);
    out->large_curruns = nm >= nd ? nm - nd : 0;
    (void)rd_size(m, "stats.background_thread.num_threads", &out->background_threads);
    return true;
}

const char *bk_glibc_version(void) { return gnu_get_libc_version(); }
