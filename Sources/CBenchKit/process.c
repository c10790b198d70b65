/*
 * Child processes and this process's memory: posix_spawn with stdout on a
 * pipe, the VmHWM of the child and of its descendants sampled while they
 * run, wait4 for their CPU time and page faults, /proc/self for our own.
 */
#define _GNU_SOURCE
#include "benchkit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* VmHWM (peak RSS) in bytes from a /proc/<pid>/status file; 0 when unreadable (e.g. the process exited). */
static long read_hwm(const char *status_path) {
    FILE *f = fopen(status_path, "r");
    if (!f) return 0;
    char line[256];
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* The largest VmHWM of `pid` and its descendants (a compiler driver's cc1
 * and as, a make's jobs): each thread's /proc/PID/task/TID/children lists the
 * processes it started that are still alive. Depth-limited; a process that
 * exits between two reads is simply missed in that sample. */
static long tree_hwm(pid_t pid, int depth) {
    char name[96];
    snprintf(name, sizeof name, "/proc/%d/status", (int)pid);
    long best = read_hwm(name);
    if (depth >= 8) return best;
    snprintf(name, sizeof name, "/proc/%d/task", (int)pid);
    DIR *tasks = opendir(name);
    if (!tasks) return best;
    struct dirent *t;
    while ((t = readdir(tasks)) != NULL) {
        if (t->d_name[0] < '0' || t->d_name[0] > '9') continue;
        snprintf(name, sizeof name, "/proc/%d/task/%.20s/children", (int)pid, t->d_name);
        FILE *f = fopen(name, "r");
        if (!f) continue;
        int child;
        while (fscanf(f, "%d", &child) == 1) {
            long hwm = tree_hwm((pid_t)child, depth + 1);
            if (hwm > best) best = hwm;
        }
        fclose(f);
    }
    closedir(tasks);
    return best;
}

int bk_spawn(const char *path, char *const *argv, char *const *envp, char **out,
             long *peak_rss_bytes, bool *rss_upper_bound, double *wall_ns, int *status, bk_rusage *usage) {
    memset(usage, 0, sizeof *usage);
    *out = NULL;
    *rss_upper_bound = false;
    *peak_rss_bytes = 0;
    *wall_ns = 0;
    *status = 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    double t0 = bk_now_ns();
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        errno = rc;
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf && len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; } else { buf = nb; cap *= 2; }
        }
        /* ru_maxrss from wait4 is at least the parent's RSS at spawn time
         * (exec records the old mm's high-water mark), so the child's own
         * VmHWM is sampled while it runs, and its descendants' (the largest
         * single process counts); VmHWM is monotonic, so the last sample
         * before a process exits is its peak up to that moment. */
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int ready = poll(&pfd, 1, 2);
        long hwm = tree_hwm(pid, 0);
        if (hwm > *peak_rss_bytes) *peak_rss_bytes = hwm;
        if (ready == 0) continue;
        if (ready < 0 && errno == EINTR) continue;
        char scratch[4096];
        char *dst = buf ? buf + len : scratch;
        size_t room = buf ? cap - len - 1 : sizeof scratch;
        ssize_t n = read(fds[0], dst, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (buf) len += (size_t)n;
    }
    close(fds[0]);
    if (buf) buf[len] = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    int st = 0;
    while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR) {}
    *wall_ns = bk_now_ns() - t0;
    if (*peak_rss_bytes == 0) {
        /* The child ended before the first sample: fall back to ru_maxrss, an upper bound. */
        *peak_rss_bytes = ru.ru_maxrss * 1024L; /* Linux reports KiB */
        *rss_upper_bound = true;
    }
    usage->user_ns = (double)ru.ru_utime.tv_sec * 1e9 + (double)ru.ru_utime.tv_usec * 1e3;
    usage->sys_ns = (double)ru.ru_stime.tv_sec * 1e9 + (double)ru.ru_stime.tv_usec * 1e3;
    usage->minflt = ru.ru_minflt;
    usage->majflt = ru.ru_majflt;
    if (WIFEXITED(st)) *status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st)) *status = -WTERMSIG(st);
    *out = buf;
    return 0;
}

size_t bk_current_rss(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

size_t bk_peak_rss(void) { return (size_t)read_hwm("/proc/self/status"); }
