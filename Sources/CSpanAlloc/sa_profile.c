/*
 * sa_profile.c — the heap profiler's sampler, as Go's mProf_Malloc and
 * nextSample (docs/profiling.md): each thread counts down an exponentially
 * distributed number of bytes (sa_tls.prof_left, mean prof_rate); the
 * allocation that crosses zero is sampled: its stack is walked by frame
 * pointers, deduplicated into a bucket, and a record (address → bucket,
 * size, weight) is kept until the object is freed. The object's slot is
 * marked in its span's profbits bitmap, so a free meets the profiler only
 * in a span that holds a sampled object.
 *
 * Owns: prof_lock, which protects the bucket table, the record table, the
 * bitmap pool and the counters. It is a leaf: nothing else is taken while
 * it is held, and nothing under it allocates from the heap (all of the
 * profiler's memory comes from sa_os_map). Taken with the heap lock held
 * (sa_prof_span_released) and last in fork's prepare.
 * Invariants: bit i of s->profbits is set ⇔ the record table holds slot i
 * of s (s live, the object not freed); s->profiled == 1 ⇔ some bit is set
 * (both under prof_lock), so frees into spans without a sampled object
 * keep the fast path; a span returned to the page heap has no bit set, and
 * its bitmap goes back to the pool.
 */
#include "sa_fastpath.h"
#include "sa_profile.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

_Atomic uint32_t sa_prof_gen = 1;
static _Atomic size_t prof_rate;
static pthread_mutex_t prof_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t n_samples, n_live, n_buckets, n_dropped;

/* Bytes a thread allocates, with profiling off, between two looks at the
 * rate: the cost of noticing a rate change, once per 16 MiB. */
#define OFF_RECHECK ((int64_t)16 << 20)

/* ---- arithmetic without libm --------------------------------------------- */

/* ln(x) for x in (0, 1]: x = m·2^e, ln m by the atanh series (error < 1e-7). */
static double ln(double x) {
    int e = 0;
    while (x < 0.5) { x *= 2; e--; }
    double t = (x - 1) / (x + 1), t2 = t * t, sum = 0, pow = t;
    for (int k = 1; k <= 15; k += 2) { sum += pow / k; pow *= t2; }
    return 2 * sum + e * 0.69314718055994530942;
}

double sa_prof_scale(double size, double rate) {
    if (rate <= 1) return 1;
    double y = size / rate, q;
    if (y > 40) return 1;
    if (y < 0.5) { /* 1 - exp(-y) by its series: no cancellation */
        double term = y;
        q = 0;
        for (int k = 1; k < 20; k++) { q += term; term *= -y / (k + 1); }
    } else {
        int k = (int)(y / 0.69314718055994530942);
        double r = y - k * 0.69314718055994530942, term = 1, ex = 0;
        for (int i = 1; i < 25; i++) { ex += term; term *= -r / i; }
        while (k-- > 0) ex *= 0.5;
        q = 1 - ex;
    }
    return 1 / q;
}

static uint64_t rng_next(void) {
    uint64_t x = sa_tls.prof_rng;
    if (SA_UNLIKELY(x == 0)) x = ((uintptr_t)&sa_tls * 0x9E3779B97F4A7C15ull) ^ sa_os_now_ns() ^ 0x2545F4914F6CDD1Dull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    sa_tls.prof_rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Bytes to the next sample: exponential with mean `rate` (0 at rate 1). */
static int64_t next_sample(size_t rate) {
    if (rate <= 1) return 0;
    double u = (double)((rng_next() >> 11) + 1) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double d = -ln(u) * (double)rate;
    return d > 4e18 ? (int64_t)4e18 : (int64_t)d;
}

/* The countdown went negative on an allocation of `size`: decides whether
 * it is sampled and sets prof_left to the count after it. A thread whose
 * countdown predates the current rate (new, or the rate changed) draws
 * first, so its first allocation is sampled with the same probability
 * 1 - exp(-size / rate) as any other. */
static bool prof_due(size_t size, size_t *rate_out) {
    uint32_t gen = atomic_load_explicit(&sa_prof_gen, SA_RELAXED);
    size_t rate = atomic_load_explicit(&prof_rate, SA_RELAXED);
    *rate_out = rate;
    if (sa_tls.prof_busy) { sa_tls.prof_left = INT64_MAX / 2; return false; }
    if (rate == 0) { sa_tls.prof_left = OFF_RECHECK; sa_tls.prof_gen = gen; return false; }
    if (sa_tls.prof_gen != gen) {
        sa_tls.prof_gen = gen;
        int64_t d = next_sample(rate);
        if ((uint64_t)d >= size) { sa_tls.prof_left = d - (int64_t)size; return false; }
    }
    sa_tls.prof_left = next_sample(rate);
    return true;
}

/* ---- profiler memory: bump chunks from mmap, never returned ---------------- */

#define CHUNK ((size_t)1 << 20)
static char *chunk_next, *chunk_end;

static void *arena_alloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if ((size_t)(chunk_end - chunk_next) < n) {
        size_t sz = n > CHUNK ? n : CHUNK;
        char *c = sa_os_map(sz);
        if (!c) return NULL;
        chunk_next = c;
        chunk_end = c + sz;
    }
    void *p = chunk_next;
    chunk_next += n;
    return p;
}

/* Span bitmaps: one size for every span (the most slots a span has is 1024). */
#define BITMAP_WORDS 16
static uint64_t *bitmap_free; /* word 0 links the free blocks */

static uint64_t *bitmap_get(void) {
    uint64_t *b = bitmap_free;
    if (b) {
        bitmap_free = (uint64_t *)(uintptr_t)b[0];
        b[0] = 0;
        return b;
    }
    return arena_alloc(BITMAP_WORDS * sizeof(uint64_t)); /* zero: fresh mmap memory */
}

static void drop_record(uintptr_t a);

/* A bit still set when its span goes back to the page heap belongs to an
 * object freed without the profiler seeing it (the LIFO shortcut of a
 * thread whose `last` it was, after another thread resized it in place and
 * sampled it): its record goes as freed, so no phantom stays in use. */
void sa_prof_span_released(sa_mspan *s) {
    pthread_mutex_lock(&prof_lock);
    uint64_t *b = atomic_load_explicit(&s->profbits, SA_RELAXED);
    atomic_store_explicit(&s->profiled, 0, SA_RELAXED);
    atomic_store_explicit(&s->profbits, NULL, SA_RELAXED);
    if (b) {
        for (uint32_t w = 0; s->sizeclass && w < BITMAP_WORDS; w++)
            for (uint64_t m = b[w]; m; m &= m - 1) {
                uint32_t idx = w * 64 + (uint32_t)__builtin_ctzll(m);
                drop_record(s->base + (uintptr_t)idx * s->elemsize);
            }
        memset(b, 0, BITMAP_WORDS * sizeof(uint64_t));
        b[0] = (uint64_t)(uintptr_t)bitmap_free;
        bitmap_free = b;
    }
    pthread_mutex_unlock(&prof_lock);
}

/* ---- buckets ----------------------------------------------------------------- */

static sa_prof_bucket **btab;
static size_t btab_cap; /* power of two */
static sa_prof_bucket *ball;

static uint64_t hash_stack(const uintptr_t *pcs, int n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) { h ^= pcs[i]; h *= 0x100000001b3ull; h ^= h >> 29; }
    return h;
}

static bool btab_grow(void) {
    size_t cap = btab_cap ? btab_cap * 2 : 1024;
    sa_prof_bucket **t = sa_os_map(cap * sizeof *t);
    if (!t) return false;
    for (sa_prof_bucket *b = ball; b; b = b->allnext) {
        size_t i = b->hash & (cap - 1);
        b->next = t[i];
        t[i] = b;
    }
    if (btab) sa_os_unmap(btab, btab_cap * sizeof *btab);
    btab = t;
    btab_cap = cap;
    return true;
}

static sa_prof_bucket *bucket_for(const uintptr_t *pcs, int n) {
    uint64_t h = hash_stack(pcs, n);
    if (btab_cap) {
        for (sa_prof_bucket *b = btab[h & (btab_cap - 1)]; b; b = b->next)
            if (b->hash == h && b->nframes == (uint32_t)n && memcmp(b->pcs, pcs, (size_t)n * sizeof *pcs) == 0)
                return b;
    }
    uint64_t nb = atomic_load_explicit(&n_buckets, SA_RELAXED);
    if ((nb + 1 > btab_cap) && !btab_grow() && !btab_cap) return NULL;
    sa_prof_bucket *b = arena_alloc(sizeof *b + (size_t)n * sizeof *pcs);
    if (!b) return NULL;
    b->hash = h;
    b->nframes = (uint32_t)n;
    memcpy(b->pcs, pcs, (size_t)n * sizeof *pcs);
    size_t i = h & (btab_cap - 1);
    b->next = btab[i];
    btab[i] = b;
    b->allnext = ball;
    ball = b;
    atomic_store_explicit(&n_buckets, nb + 1, SA_RELAXED);
    return b;
}

/* ---- records: open addressing by address ------------------------------------ */

typedef struct record {
    uintptr_t addr; /* 0: empty; 1: deleted */
    sa_prof_bucket *b;
    double w;       /* the sample's weight */
    double size;
} record;
static record *rtab;
static size_t rtab_cap, rtab_used; /* used: live and deleted entries */

static size_t rhash(uintptr_t a, size_t cap) { return (size_t)((a >> 3) * 0x9E3779B97F4A7C15ull >> 17) & (cap - 1); }

static bool rtab_rehash(void) {
    uint64_t live = atomic_load_explicit(&n_live, SA_RELAXED);
    size_t cap = rtab_cap ? rtab_cap : 4096;
    while (cap < (live + 1) * 4) cap *= 2;
    record *t = sa_os_map(cap * sizeof *t);
    if (!t) return false;
    for (size_t i = 0; i < rtab_cap; i++) {
        if (rtab[i].addr <= 1) continue;
        size_t j = rhash(rtab[i].addr, cap);
        while (t[j].addr) j = (j + 1) & (cap - 1);
        t[j] = rtab[i];
    }
    if (rtab) sa_os_unmap(rtab, rtab_cap * sizeof *rtab);
    rtab = t;
    rtab_cap = cap;
    rtab_used = live;
    return true;
}

static record *rtab_find(uintptr_t a);

/* Frees the record of address a, if there is one: its object is gone. */
static void drop_record(uintptr_t a) {
    record *r = rtab_find(a);
    if (!r) return;
    r->b->free_objects += r->w;
    r->b->free_bytes += r->w * r->size;
    r->addr = 1;
    atomic_store_explicit(&n_live, atomic_load_explicit(&n_live, SA_RELAXED) - 1, SA_RELAXED);
}

/* A record for address a. One already there is stale (an address is handed
 * out again only after its object was freed): it is dropped as freed. */
static record *rtab_insert(uintptr_t a) {
    drop_record(a);
    if ((rtab_used + 1) * 2 > rtab_cap && !rtab_rehash()) return NULL;
    size_t j = rhash(a, rtab_cap);
    while (rtab[j].addr > 1) j = (j + 1) & (rtab_cap - 1);
    if (rtab[j].addr == 0) rtab_used++;
    rtab[j].addr = a;
    return &rtab[j];
}

static record *rtab_find(uintptr_t a) {
    if (!rtab_cap) return NULL;
    size_t j = rhash(a, rtab_cap);
    for (; rtab[j].addr; j = (j + 1) & (rtab_cap - 1))
        if (rtab[j].addr == a) return &rtab[j];
    return NULL;
}

/* ---- stacks ----------------------------------------------------------------- */

extern char __start_sa_alloc_text[] __attribute__((weak, visibility("hidden")));
extern char __stop_sa_alloc_text[] __attribute__((weak, visibility("hidden")));

static bool in_allocator(uintptr_t pc) {
    return pc >= (uintptr_t)__start_sa_alloc_text && pc < (uintptr_t)__stop_sa_alloc_text;
}

/* The thread's stack bounds, once (pthread_getattr_np may allocate: the
 * caller has made the thread's own allocations unsampled). */
static void stack_bounds(void) {
    pthread_attr_t attr;
    void *addr;
    size_t size;
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    /* Unknown bounds walk nothing (an empty range that is not 0, so they
     * are not looked up again). */
    sa_tls.stack_lo = here;
    sa_tls.stack_hi = here;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0 && (uintptr_t)addr < here &&
        (uintptr_t)addr + size > here) {
        sa_tls.stack_lo = (uintptr_t)addr;
        sa_tls.stack_hi = (uintptr_t)addr + size;
    }
    pthread_attr_destroy(&attr);
}

/* Walks the frame-pointer chain from the caller's frame: each frame must
 * lie inside the thread's stack, above the previous one, 8-aligned, with a
 * non-null return address; the walk stops at the first that is not (code
 * built without frame pointers ends the stack there). Frames of the
 * allocator itself (its text section) are dropped from the top. Returns the
 * frames kept, as return address - 1 (inside the call instruction). */
SA_PROF_SKIP __attribute__((noinline)) static int walk_stack(uintptr_t *pcs, int max) {
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    uintptr_t lo = fp, hi = sa_tls.stack_hi;
    int n = 0;
    bool top = true;
    /* On another stack than the thread's (a signal stack, a fiber): none. */
    if (fp < sa_tls.stack_lo || fp >= hi) return 0;
    while (n < max) {
        if (fp < lo || fp + 16 > hi || (fp & 7)) break;
        uintptr_t next = ((const uintptr_t *)fp)[0], ret = ((const uintptr_t *)fp)[1];
        if (ret < 4096) break;
        if (!(top && in_allocator(ret))) {
            top = false;
            pcs[n++] = ret - 1;
        }
        if (next <= fp) break;
        lo = fp + 16;
        fp = next;
    }
    return n;
}

/* ---- sampling ---------------------------------------------------------------- */

/* Records object p (size bytes, sampled at `rate`): its stack, its bucket,
 * its record and its bit in the span. Takes prof_lock. */
SA_PROF_SKIP __attribute__((noinline)) static void record_sample(void *p, size_t size, size_t rate) {
    int64_t saved = sa_tls.prof_left;
    sa_tls.prof_busy = 1;
    sa_tls.prof_left = INT64_MAX / 2; /* the thread's own allocations in here are not sampled */
    if (SA_UNLIKELY(sa_tls.stack_hi == 0)) stack_bounds();
    uintptr_t pcs[SA_PROF_MAX_FRAMES];
    int n = walk_stack(pcs, SA_PROF_MAX_FRAMES);
    sa_mspan *s = sa_span_of_addr((uintptr_t)p);
    uint32_t idx = 0;
    if (s && s->sizeclass) idx = (uint32_t)(((uint64_t)((uintptr_t)p - s->base) * s->divmul) >> 32);
    double w = sa_prof_scale((double)size, (double)rate);
    pthread_mutex_lock(&prof_lock);
    sa_prof_bucket *b = s ? bucket_for(pcs, n) : NULL;
    uint64_t *bits = NULL;
    record *r = NULL;
    if (b) {
        bits = atomic_load_explicit(&s->profbits, SA_RELAXED);
        if (!bits) {
            bits = bitmap_get();
            if (bits) atomic_store_explicit(&s->profbits, bits, SA_RELEASE);
        }
    }
    if (bits) r = rtab_insert((uintptr_t)p);
    if (r) {
        r->b = b;
        r->w = w;
        r->size = (double)size;
        b->alloc_objects += w;
        b->alloc_bytes += w * (double)size;
        atomic_fetch_or_explicit((_Atomic uint64_t *)&bits[idx >> 6], (uint64_t)1 << (idx & 63), SA_RELAXED);
        atomic_store_explicit(&s->profiled, 1, SA_RELEASE);
        atomic_store_explicit(&n_samples, atomic_load_explicit(&n_samples, SA_RELAXED) + 1, SA_RELAXED);
        atomic_store_explicit(&n_live, atomic_load_explicit(&n_live, SA_RELAXED) + 1, SA_RELAXED);
    } else {
        atomic_store_explicit(&n_dropped, atomic_load_explicit(&n_dropped, SA_RELAXED) + 1, SA_RELAXED);
    }
    pthread_mutex_unlock(&prof_lock);
    sa_tls.prof_busy = 0;
    sa_tls.prof_left = saved;
}

SA_PROF_SKIP void *sa_prof_alloc_small(int cls, size_t size, unsigned flags) {
    size_t rate;
    bool sample = prof_due(size, &rate);
    /* The fast path below subtracts size again. */
    if (sa_tls.prof_left < INT64_MAX / 2) sa_tls.prof_left += (int64_t)size;
    sa_hold_enter();
    void *p = sa_alloc_small(cls, size, flags);
    if (p && sample) {
        sa_mcache *c = sa_get_cache();
        if (c->last == p) c->last = SA_NO_LAST; /* its free must not take the LIFO shortcut */
    }
    sa_hold_exit();
    if (p && sample) record_sample(p, size, rate);
    return p;
}

SA_PROF_SKIP void sa_prof_due_object(void *p, size_t size) {
    size_t rate;
    if (!prof_due(size, &rate)) return;
    sa_hold_enter();
    sa_mcache *c = sa_get_cache();
    if (c->last == p) c->last = SA_NO_LAST;
    sa_hold_exit();
    record_sample(p, size, rate);
}

void sa_prof_forget(const void *p, sa_mspan *s, uint32_t idx) {
    uint64_t *bits = atomic_load_explicit(&s->profbits, SA_ACQUIRE);
    if (!bits) return;
    _Atomic uint64_t *word = (_Atomic uint64_t *)&bits[idx >> 6];
    uint64_t m = (uint64_t)1 << (idx & 63);
    if (!(atomic_load_explicit(word, SA_RELAXED) & m)) return;
    pthread_mutex_lock(&prof_lock);
    if (atomic_fetch_and_explicit(word, ~m, SA_RELAXED) & m) {
        drop_record((uintptr_t)p);
        /* The span's last sampled object: its frees take the fast path
         * again (the bitmap stays until the span goes back to the heap). */
        bool any = false;
        for (int i = 0; i < BITMAP_WORDS && !any; i++)
            any = atomic_load_explicit((_Atomic uint64_t *)&bits[i], SA_RELAXED) != 0;
        if (!any) atomic_store_explicit(&s->profiled, 0, SA_RELAXED);
    }
    pthread_mutex_unlock(&prof_lock);
}

/* ---- the API ------------------------------------------------------------------ */

size_t sa_profile_set_rate(size_t rate) {
    sa_config_load(); /* SPANALLOC's profile_rate first, so it cannot override this call later */
    size_t old = atomic_exchange(&prof_rate, rate);
    atomic_fetch_add(&sa_prof_gen, 1);
    sa_tls.prof_left = 0; /* the caller's next allocation draws */
    return old;
}

size_t sa_profile_rate(void) {
    sa_config_load();
    return atomic_load(&prof_rate);
}

void sa_profile_read_counts(sa_profile_counts *out) {
    pthread_mutex_lock(&prof_lock);
    out->samples = atomic_load(&n_samples);
    out->live = atomic_load(&n_live);
    out->buckets = atomic_load(&n_buckets);
    out->dropped = atomic_load(&n_dropped);
    pthread_mutex_unlock(&prof_lock);
}

sa_prof_row *sa_prof_snapshot(size_t *nrows, size_t *bytes) {
    *nrows = 0;
    *bytes = 0;
    pthread_mutex_lock(&prof_lock);
    size_t n = (size_t)atomic_load_explicit(&n_buckets, SA_RELAXED);
    size_t sz = (n ? n : 1) * sizeof(sa_prof_row);
    sa_prof_row *rows = sa_os_map(sz);
    if (rows) {
        size_t i = 0;
        for (sa_prof_bucket *b = ball; b && i < n; b = b->allnext, i++) {
            rows[i].b = b;
            rows[i].alloc_objects = b->alloc_objects;
            rows[i].alloc_bytes = b->alloc_bytes;
            rows[i].inuse_objects = b->alloc_objects - b->free_objects;
            rows[i].inuse_bytes = b->alloc_bytes - b->free_bytes;
        }
        *nrows = i;
        *bytes = sz;
    }
    pthread_mutex_unlock(&prof_lock);
    return rows;
}

/* ---- configuration ---------------------------------------------------------------- */

static char config_path[4096];
static _Atomic int config_signal;

void sa_prof_configure(const char *path, size_t pathlen, int64_t rate, int signo) {
    if (path) {
        if (pathlen >= sizeof config_path) pathlen = 0;
        memcpy(config_path, path, pathlen);
        config_path[pathlen] = 0;
    }
    if (signo > 0) atomic_store(&config_signal, signo);
    if (rate < 0 && (config_path[0] || signo > 0)) rate = (int64_t)SA_PROFILE_DEFAULT_RATE;
    if (rate >= 0) {
        atomic_store(&prof_rate, (size_t)rate);
        atomic_fetch_add(&sa_prof_gen, 1);
    }
}

const char *sa_prof_config_path(void) { return config_path; }
int sa_prof_config_signal(void) { return atomic_load(&config_signal); }

void sa_prof_fork_prepare(void) { pthread_mutex_lock(&prof_lock); }
void sa_prof_fork_parent(void) { pthread_mutex_unlock(&prof_lock); }
void sa_prof_fork_child(void) {
    pthread_mutex_init(&prof_lock, NULL);
    /* The child's only thread keeps its stack bounds and countdown. */
}
