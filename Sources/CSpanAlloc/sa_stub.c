/* TEMPORARY stub over glibc malloc so the Swift layers build while the real
 * allocator is written. Span introspection answers from a fake one-object span. */
#include "spanalloc.h"
#include "sa_sizeclasses.h"
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

void *sa_alloc(size_t size, unsigned flags) {
    if (size > ((size_t)1 << 46)) { errno = ENOMEM; return NULL; }
    void *p = (flags & SA_ZERO) ? calloc(1, size ? size : 1) : malloc(size ? size : 1);
    return p;
}
void *sa_calloc(size_t n, size_t size, unsigned flags) {
    size_t t; if (__builtin_mul_overflow(n, size, &t)) { errno = ENOMEM; return NULL; }
    return sa_alloc(t, flags | SA_ZERO);
}
void *sa_alloc_aligned(size_t size, size_t a, unsigned flags) {
    void *p = NULL; if (posix_memalign(&p, a < 8 ? 8 : a, size ? size : 1)) return NULL;
    if (flags & SA_ZERO) memset(p, 0, size); return p;
}
void *sa_realloc(void *p, size_t n) { if (n == 0) { free(p); return NULL; } return realloc(p, n); }
void sa_free(void *p) { free(p); }
size_t sa_usable_size(const void *p) { return p ? malloc_usable_size((void *)p) : 0; }
bool sa_owns(const void *p) { return p != NULL; }
int sa_size_to_class(size_t size) {
    if (size <= SA_SMALL_SIZE_MAX - 8) return sa_size_to_class8[(size + 7) >> 3] ? sa_size_to_class8[(size + 7) >> 3] : 1;
    if (size <= SA_MAX_SMALL_SIZE) return sa_size_to_class128[(size - SA_SMALL_SIZE_MAX + 127) >> 7];
    return 0;
}
size_t sa_class_size(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_size_tab[c] : 0; }
size_t sa_class_pages(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_npages_tab[c] : 0; }
size_t sa_class_objects(int c) { return (c > 0 && c < SA_NUM_CLASSES) ? sa_class_nelems_tab[c] : 0; }
bool sa_span_of(const void *p, sa_span_info *out) {
    if (!p) return false; memset(out, 0, sizeof *out);
    size_t n = malloc_usable_size((void *)p); int c = sa_size_to_class(n);
    out->id = (uintptr_t)p >> 13; out->size_class = c; out->span_class = c << 1;
    out->base = (uintptr_t)p & ~(uintptr_t)8191; out->npages = 1; out->elemsize = c ? sa_class_size(c) : n;
    out->nelems = 1; out->alloc_count = 1; return true;
}
void sa_read_mem_stats(sa_mem_stats *out) { memset(out, 0, sizeof *out); }
size_t sa_mem_stats_json(char *buf, size_t cap) { const char *s = "{}"; if (cap) { strncpy(buf, s, cap); buf[cap-1] = 0; } return 2; }
void sa_set_hook(sa_hook_fn h, void *ctx) { (void)h; (void)ctx; }
size_t sa_scavenge(size_t b) { (void)b; return 0; }
static sa_scavenge_config cfg;
void sa_get_scavenge_config(sa_scavenge_config *o) { *o = cfg; }
void sa_set_scavenge_config(const sa_scavenge_config *c) { cfg = *c; }
void sa_thread_flush(void) {}
int sa_check_heap(char *err, size_t n) { (void)err; (void)n; return 0; }
void sa_fork_prepare(void) {}
void sa_fork_parent(void) {}
void sa_fork_child(void) {}
void sa_debug_fail_mmap_after(long n) { (void)n; }
