/*
 * sa_check.c — locks across the layers: the rank checker of debug builds,
 * fork support (every lock taken in rank order before fork, the child's
 * caches of vanished threads handed back) and the heap checker
 * (sa_check_heap, sa_check_heap_quiescent), which asks each layer to
 * validate what it owns and compares the totals with MemStats.
 *
 * Owns: the per-thread list of held ranks (debug builds) and the fork
 * registration flag.
 */
#include "sa_internal.h"

#include <stdio.h>
#include <string.h>

/* ---- locks: ranks, fork and the checker ---------------------------------------- */

#ifndef NDEBUG
/* Ranks held by this thread, in acquisition order (fork_prepare holds all). */
static __thread int held[SA_NUM_SPAN_CLASSES + 8] __attribute__((tls_model("initial-exec")));
static __thread int nheld __attribute__((tls_model("initial-exec")));

static int lock_rank(const sa_lock_t *l) {
    if (l == &sa_stats_lock) return 0;
    if (l == &sa_claim_lock) return 1;
    if (l == &sa_registry_lock_v) return 2;
    if (l == &sa_heap.lock) return 3;
    uintptr_t a = (uintptr_t)l, c0 = (uintptr_t)&sa_central[0];
    if (a >= c0 && a < (uintptr_t)&sa_central[SA_NUM_SPAN_CLASSES]) return 4 + (int)((a - c0) / sizeof(sa_mcentral));
    return -1;
}

void sa_lockrank_acquire(const sa_lock_t *l) {
    int r = lock_rank(l);
    if (r < 0) return;
    if (nheld && held[nheld - 1] >= r)
        sa_fatal("lock order violation: taking lock rank %d while holding rank %d", r, held[nheld - 1]);
    if (nheld < (int)(sizeof held / sizeof held[0])) held[nheld++] = r;
}

void sa_lockrank_release(const sa_lock_t *l) {
    int r = lock_rank(l);
    if (r < 0) return;
    for (int i = nheld - 1; i >= 0; i--) {
        if (held[i] == r) {
            for (int j = i; j < nheld - 1; j++) held[j] = held[j + 1];
            nheld--;
            return;
        }
    }
    sa_fatal("lock order: releasing lock rank %d that is not held", r);
}

void sa_lockrank_reset(void) { nheld = 0; }
#endif

/* Every lock, in rank order, so the child of a multithreaded parent finds
 * them all free. */
void sa_fork_prepare(void) {
    sa_prof_write_fork_prepare(); /* the profile writer's: it allocates while holding it */
    sa_lock(&sa_stats_lock);
    sa_lock(&sa_claim_lock);
    sa_registry_lock();
    sa_lock(&sa_heap.lock);
    for (int i = 0; i < SA_NUM_SPAN_CLASSES; i++) sa_lock(&sa_central[i].lock);
    sa_prof_fork_prepare(); /* a leaf: taken after every other lock */
}

void sa_fork_parent(void) {
    sa_prof_fork_parent();
    for (int i = SA_NUM_SPAN_CLASSES - 1; i >= 0; i--) sa_unlock(&sa_central[i].lock);
    sa_unlock(&sa_heap.lock);
    sa_registry_unlock();
    sa_unlock(&sa_claim_lock);
    sa_unlock(&sa_stats_lock);
    sa_prof_write_fork_parent();
}

/* The child has one thread, the one that forked: the locks start free, and
 * the caches of the parent's other threads, which the child does not have,
 * are handed back (their threads will never exit here). */
void sa_fork_child(void) {
    sa_lockrank_reset();
    pthread_mutex_init(&sa_stats_lock, NULL);
    pthread_mutex_init(&sa_claim_lock, NULL);
    pthread_mutex_init(&sa_heap.lock, NULL);
    for (int i = 0; i < SA_NUM_SPAN_CLASSES; i++) pthread_mutex_init(&sa_central[i].lock, NULL);
    sa_registry_reinit();
    sa_scavenger_fork_child();
    sa_cache_fork_child();
    sa_prof_fork_child();
    sa_prof_write_fork_child();
}

static _Atomic bool fork_handlers;

/* At load time, before the program starts threads: a fork racing another
 * thread's first lock could otherwise snapshot the handler list before the
 * registration and the lock after it. Entry points that run before
 * constructors (the override's first malloc) register lazily. */
__attribute__((constructor)) static void sa_fork_register_at_load(void) { sa_fork_register(); }

void sa_fork_register(void) {
    /* An atomic flag, not pthread_once: pthread_atfork may allocate, and
     * that allocation comes back here. */
    if (atomic_load_explicit(&fork_handlers, SA_RELAXED) || atomic_exchange(&fork_handlers, true)) return;
    pthread_atfork(sa_fork_prepare, sa_fork_parent, sa_fork_child);
}

static int check_heap(char *err, size_t errlen, bool quiescent) {
    char local[256];
    if (!err || errlen == 0) { err = local; errlen = sizeof local; }
    err[0] = 0;
    uint64_t live = 0, nsmall = 0, ncached = 0, ncentral = 0, nfreecached = 0;
    sa_fork_register();
    sa_hold_enter(); /* reads the thread's own cache */
    sa_lock(&sa_claim_lock); /* no claim or idle flush meanwhile */
    sa_registry_lock();
    int others = sa_registry_other_caches();
    /* The heap lock stays held through the cache and central checks: the
     * background scavenger moves mcentral's kept empty spans to mheap under
     * it (sa_central_reclaim_empty_heap_locked), and a move between the
     * page-map count and the central lists' would count spans twice or not
     * at all. */
    sa_lock(&sa_heap.lock);
    int rc = sa_heap_check(err, errlen, quiescent, &live, &nsmall);
    if (rc == 0) rc = sa_cache_check(err, errlen, quiescent, &ncached, &nfreecached);
    if (rc == 0) rc = sa_central_check(err, errlen, &ncentral);
    sa_unlock(&sa_heap.lock);
    sa_registry_unlock();
    sa_unlock(&sa_claim_lock);
    if (rc == 0 && quiescent && nsmall != ncached + ncentral) {
        /* Every small span is some cache's (current or on its lists) or on a central list. */
        snprintf(err, errlen, "small spans: %llu in the page map, %llu cached + %llu on central lists",
                 (unsigned long long)nsmall, (unsigned long long)ncached, (unsigned long long)ncentral);
        rc = -1;
    }
    if (rc == 0 && (quiescent || others == 0)) {
        /* Every span was counted: the counters must match the heap. */
        sa_mem_stats st;
        sa_read_mem_stats(&st);
        /* Objects in free caches are taken in their spans' bitmaps but freed. */
        if (st.heap_objects + nfreecached != live) {
            snprintf(err, errlen, "live objects: %llu in spans (%llu of them in free caches), statistics say %llu",
                     (unsigned long long)live, (unsigned long long)nfreecached, (unsigned long long)st.heap_objects);
            rc = -1;
        }
    }
    sa_hold_exit();
    return rc;
}

int sa_check_heap(char *err, size_t errlen) { return check_heap(err, errlen, false); }

int sa_check_heap_quiescent(char *err, size_t errlen) { return check_heap(err, errlen, true); }
