/*
 * sa_scavenger.c — the background scavenger (Go's bgscavenge,
 * mgcscavenge.go) and the memory limit (Go's GOMEMLIMIT).
 *
 * One thread, started when there is something for it to do (the page heap
 * has idle memory over the goal or over the floor, or reached the limit, or
 * a second thread cache appeared, whose thread may go idle), restarted in a fork child
 * only when needed again, stopped when the mode leaves
 * SA_SCAVENGE_BACKGROUND. Each round it:
 *   - hands back the caches of threads that made no allocation or free for
 *     idle_ms (sa_cache_flush_idle: the claim protocol of sa_mcache.c), so
 *     their spans and cached objects reach mcentral and mheap;
 *   - computes the goal for idle memory: while the program allocates,
 *     retain_bytes or retain_percent of the in-use heap, whichever is more;
 *     once the page heap has seen no allocation for idle_ms, the goal falls
 *     to floor_bytes over the next two idle_ms, as the square of the time
 *     (slowly at first: a pause of 1.5 idle_ms gives back a sixteenth of
 *     what the whole decay does, so programs that pause between bursts do
 *     not fault their memory back in); over the memory limit, the goal
 *     drops by the excess;
 *   - releases idle memory above the goal, runs idle for delay_ms first
 *     (none while over the limit), largest runs first, a chunk at a time
 *     with madvise outside the heap lock (sa_heap_release);
 *   - once idle, releases the span pool's empty chunks (metadata);
 *   - sleeps so that its CPU time stays cpu_percent of one CPU (ten times
 *     that while idle memory is over twice the goal, or the heap is over its
 *     limit), and half of idle_ms when there is nothing to release.
 *
 * Owns: the scavenger value (thread, its mutex and condition variable,
 * counters) and the memory limit. Lock: `mu` guards starting and stopping
 * the thread and its wake-up; it is never held while taking an allocator
 * lock, and no allocator lock is held while taking it. sa_claim_lock
 * (rank after the stats lock, before the registry) is held while an idle
 * thread's cache is claimed and flushed.
 *
 * Invariants: at most one scavenger thread exists; `running` is true from
 * its creation until it has been joined; the thread never allocates (it
 * has no cache) and blocks every signal.
 */
#include "sa_internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

sa_lock_t sa_claim_lock = SA_LOCK_INIT;

typedef struct sa_scavenger {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool cv_ready;           /* cv made with CLOCK_MONOTONIC (mu) */
    _Atomic bool running;    /* a thread exists (written under mu, read anywhere) */
    bool stop;               /* the thread should exit (mu) */
    bool wake;               /* work arrived (mu) */
    _Atomic bool failed;     /* pthread_create failed: the pacer takes over */
    pthread_t thread;        /* (mu) */
    _Atomic bool barrier_ok; /* membarrier registered: idle caches can be claimed */
    _Atomic uint64_t cpu_ns, idle_flushes;
    /* the memory limit */
    _Atomic size_t limit;
    _Atomic int limit_mode;
    _Atomic uint64_t limit_counts[3];
} sa_scavenger;

static sa_scavenger scav = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .limit = SIZE_MAX,
};

/* ---- the memory limit ------------------------------------------------------- */

size_t sa_memlimit_bytes(void) { return atomic_load_explicit(&scav.limit, SA_RELAXED); }
bool sa_memlimit_is_hard(void) { return atomic_load_explicit(&scav.limit_mode, SA_RELAXED) == SA_MEMLIMIT_HARD; }
void sa_memlimit_count(int what) { sa_stat_add(&scav.limit_counts[what], 1); }

size_t sa_set_memory_limit(size_t bytes, sa_memlimit_mode mode) {
    sa_config_load(); /* so the variable, read later, cannot undo this call */
    atomic_store(&scav.limit_mode, mode == SA_MEMLIMIT_HARD ? SA_MEMLIMIT_HARD : SA_MEMLIMIT_SOFT);
    size_t old = atomic_exchange(&scav.limit, bytes);
    if (bytes != SIZE_MAX) sa_scavenger_poke();
    return old;
}

size_t sa_memory_limit(sa_memlimit_mode *mode) {
    sa_config_load();
    if (mode) *mode = sa_memlimit_is_hard() ? SA_MEMLIMIT_HARD : SA_MEMLIMIT_SOFT;
    return sa_memlimit_bytes();
}

/* ---- the claim lock, owner's side ------------------------------------------------ */

void sa_claim_wait(void) {
    sa_lock(&sa_claim_lock);
    sa_unlock(&sa_claim_lock);
}

static bool barrier(void) { return sa_os_membarrier(); }

/* ---- the thread -------------------------------------------------------------------- */

#define MS ((uint64_t)1000000)

/* The goal for idle memory (see the header comment). */
static uint64_t idle_goal(const sa_scavenge_config *cfg, const sa_heap_usage *u, uint64_t idle_for) {
    uint64_t goal = u->inuse_bytes / 100 * cfg->retain_percent;
    if (goal < cfg->retain_bytes) goal = cfg->retain_bytes;
    uint64_t idle_ns = (uint64_t)cfg->idle_ms * MS;
    if (idle_for >= idle_ns && goal > cfg->floor_bytes) {
        uint64_t span = 2 * idle_ns ? 2 * idle_ns : 1, t = idle_for - idle_ns;
        double x = (double)t / (double)span;
        goal = t >= span ? cfg->floor_bytes : goal - (uint64_t)((double)(goal - cfg->floor_bytes) * x * x);
    }
    size_t limit = sa_memlimit_bytes();
    if (limit != SIZE_MAX && u->counted_bytes > limit) {
        uint64_t over = u->counted_bytes - limit;
        goal = goal > over ? goal - over : 0;
    }
    return goal;
}

static void sleep_for(uint64_t ns) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t at = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec + ns;
    t.tv_sec = (time_t)(at / 1000000000u);
    t.tv_nsec = (long)(at % 1000000000u);
    pthread_mutex_lock(&scav.mu);
    while (!scav.wake && !scav.stop) {
        if (pthread_cond_timedwait(&scav.cv, &scav.mu, &t) == ETIMEDOUT) break;
    }
    scav.wake = false;
    pthread_mutex_unlock(&scav.mu);
}

static bool should_stop(void) {
    pthread_mutex_lock(&scav.mu);
    bool s = scav.stop;
    pthread_mutex_unlock(&scav.mu);
    return s;
}

static void *scavenger_main(void *arg) {
    (void)arg;
#ifdef __linux__
    prctl(PR_SET_NAME, "spanalloc-scav", 0, 0, 0);
#endif
    atomic_store(&scav.barrier_ok, sa_os_membarrier_register());
    uint64_t last_activity = 0, last_activity_ns = sa_os_now_ns(), last_scan = 0, metadata_activity = 0;
    while (!should_stop()) {
        uint64_t cpu0 = sa_os_thread_cpu_ns(), now = sa_os_now_ns();
        sa_scavenge_config cfg;
        sa_heap_config(&cfg, NULL);
        if (cfg.mode != SA_SCAVENGE_BACKGROUND) break;
        uint64_t idle_ns = (uint64_t)cfg.idle_ms * MS;

        if (atomic_load_explicit(&scav.barrier_ok, SA_RELAXED) && now - last_scan >= idle_ns / 2) {
            last_scan = now;
            unsigned n = sa_cache_flush_idle(now, idle_ns, barrier);
            if (n) sa_stat_add(&scav.idle_flushes, n);
        }

        sa_heap_usage u;
        sa_heap_usage_read(&u);
        if (u.activity != last_activity) {
            last_activity = u.activity;
            last_activity_ns = now;
        }
        uint64_t idle_for = now - last_activity_ns;
        uint64_t goal = idle_goal(&cfg, &u, idle_for);
        size_t limit = sa_memlimit_bytes();
        bool over_limit = limit != SIZE_MAX && u.counted_bytes > limit;
        bool program_idle = idle_for >= idle_ns;
        uint64_t released = 0;
        bool more = false;
        if (u.idle_bytes > goal) {
            /* mcentral's kept empty spans are idle memory: over the goal,
             * they go to mheap first, to be released as they age. */
            if (u.kept_bytes && (program_idle || over_limit || u.idle_bytes - u.kept_bytes < goal + u.kept_bytes)) {
                sa_lock(&sa_heap.lock);
                sa_central_reclaim_empty_heap_locked();
                sa_unlock(&sa_heap.lock);
            }
            size_t pages = (size_t)((u.idle_bytes - goal) >> SA_PAGE_SHIFT);
            sa_release_cause cause = over_limit ? SA_RELEASE_LIMIT : SA_RELEASE_BACKGROUND;
            /* Idle or over the limit, runs need not have aged. */
            released = sa_heap_release(pages < 512 ? pages : 512, !program_idle && !over_limit, cause);
            more = released > 0 && pages > released;
        }
        /* The span structs of a heap that shrank: once idle, or over the limit. */
        if (!more && (program_idle || over_limit) && u.activity != metadata_activity) {
            metadata_activity = u.activity;
            sa_heap_release_metadata();
        }
        uint64_t cpu = sa_os_thread_cpu_ns() - cpu0;
        sa_stat_add(&scav.cpu_ns, cpu);
        if (more) {
            unsigned pct = cfg.cpu_percent ? cfg.cpu_percent : 1;
            if (over_limit || u.idle_bytes > 2 * goal + ((uint64_t)16 << 20)) pct *= 10;
            if (pct > 100) pct = 100;
            uint64_t pause = cpu * (100 - pct) / pct;
            sleep_for(pause < MS ? MS : pause);
        } else {
            /* Nothing (more) to release now: look again in half the idle
             * time, or a quarter of the delay while runs are aging. */
            uint64_t pause = idle_ns / 2;
            uint64_t d = (uint64_t)cfg.delay_ms * MS / 4;
            if (u.idle_bytes > goal && d < pause) pause = d;
            if (pause < 10 * MS) pause = 10 * MS;
            sleep_for(pause);
        }
    }
    return NULL;
}

/* The condition variable, timed on CLOCK_MONOTONIC (sleep_for). */
static void make_cv(void) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&scav.cv, &a);
    pthread_condattr_destroy(&a);
}

/* Starts the thread (mu held). Signals stay blocked in it. */
static void start_locked(void) {
    if (!scav.cv_ready) {
        make_cv();
        scav.cv_ready = true;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    scav.stop = false;
    scav.wake = false;
    /* pthread_create allocates (its TLS), through this allocator when it is
     * malloc: held, so that nested allocation ends no operation of ours. */
    sa_hold_inc();
    int rc = pthread_create(&scav.thread, &attr, scavenger_main, NULL);
    sa_hold_dec();
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0) {
        scav.running = true;
    } else {
        atomic_store(&scav.failed, true);
    }
}

bool sa_scavenger_running(void) { return atomic_load_explicit(&scav.running, SA_RELAXED); }

bool sa_scavenger_failed(void) { return atomic_load_explicit(&scav.failed, SA_RELAXED); }

void sa_scavenger_poke(void) {
    sa_scavenge_config cfg;
    sa_heap_config(&cfg, NULL);
    if (cfg.mode != SA_SCAVENGE_BACKGROUND) return;
    /* A try: pthread_create allocates, and that allocation can come back
     * here (a thread's first small allocation makes its cache), with mu
     * held by this very thread; whoever holds mu is starting or waking the
     * scavenger anyway, and it looks again on its own within idle_ms. */
    if (pthread_mutex_trylock(&scav.mu) != 0) return;
    if (scav.running) {
        scav.wake = true;
        pthread_cond_signal(&scav.cv);
    } else if (!atomic_load(&scav.failed)) {
        start_locked();
    }
    pthread_mutex_unlock(&scav.mu);
}

/* After a configuration change: a mode other than background stops the
 * thread (joined, so it is gone when this returns). */
void sa_scavenger_config_changed(void) {
    sa_scavenge_config cfg;
    sa_heap_config(&cfg, NULL);
    pthread_mutex_lock(&scav.mu);
    if (!scav.running || cfg.mode == SA_SCAVENGE_BACKGROUND) {
        bool running = scav.running;
        pthread_mutex_unlock(&scav.mu);
        if (running) sa_scavenger_poke();
        return;
    }
    scav.stop = true;
    pthread_cond_signal(&scav.cv);
    pthread_t t = scav.thread;
    pthread_mutex_unlock(&scav.mu);
    pthread_join(t, NULL);
    pthread_mutex_lock(&scav.mu);
    scav.running = false;
    scav.stop = false;
    pthread_mutex_unlock(&scav.mu);
}

/* The child of fork has only the forking thread: no scavenger. The
 * parent's thread may have held mu at the fork. */
void sa_scavenger_fork_child(void) {
    pthread_mutex_init(&scav.mu, NULL);
    if (scav.cv_ready) make_cv();
    scav.running = false;
    scav.stop = false;
    scav.wake = false;
    atomic_store(&scav.barrier_ok, false);
}

/* ---- statistics --------------------------------------------------------------------- */

void sa_scavenger_stats(sa_mem_stats *out) {
    pthread_mutex_lock(&scav.mu);
    out->scavenger_running = scav.running;
    pthread_mutex_unlock(&scav.mu);
    out->scavenger_cpu_ns = sa_stat(&scav.cpu_ns);
    out->idle_cache_flushes = sa_stat(&scav.idle_flushes);
    out->memory_limit = sa_memlimit_bytes();
    out->memory_limit_hard = sa_memlimit_is_hard();
    out->memory_limit_hits = sa_stat(&scav.limit_counts[SA_LIMIT_HIT]);
    out->memory_limit_overshoots = sa_stat(&scav.limit_counts[SA_LIMIT_OVERSHOOT]);
    out->memory_limit_refusals = sa_stat(&scav.limit_counts[SA_LIMIT_REFUSAL]);
    sa_heap_usage u;
    sa_heap_usage_read(&u);
    out->memory_counted = u.counted_bytes;
}
