/*
 * sa_profile_write.c — the heap profiler's output (docs/profiling.md): a
 * snapshot of the buckets (sa_profile.c) written as a gzipped profile.proto
 * message (Go's heap profile: alloc_objects, alloc_space, inuse_objects,
 * inuse_space; mappings from /proc/self/maps with build IDs; functions named
 * from the executable's symbol table or dladdr, Swift names demangled by the
 * runtime's swift_demangle when it is loaded) or as folded stacks. Also the
 * SPANALLOC interfaces: the profile written at exit, and on a signal by a
 * writer thread (the handler only writes a byte to a pipe).
 *
 * Owns: write_lock (one writer at a time; never held by the allocator's
 * paths, so the writer may allocate: dladdr, swift_demangle; first of all
 * locks in fork's prepare). Its own
 * buffers come from sa_os_map. libc only: the protobuf encoding, the gzip
 * container (stored deflate blocks) and CRC-32 are written here.
 */
#include "sa_profile.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* fork: taken first in prepare (a writer holding it may allocate, which
 * takes the allocator's locks), so the child finds it free. */
void sa_prof_write_fork_prepare(void) { pthread_mutex_lock(&write_lock); }
void sa_prof_write_fork_parent(void) { pthread_mutex_unlock(&write_lock); }
static void signal_writer_fork_child(void);

void sa_prof_write_fork_child(void) {
    pthread_mutex_init(&write_lock, NULL);
    signal_writer_fork_child();
}

/* ---- growable buffers from mmap ---------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    bool failed;
} buf;

static bool buf_reserve(buf *b, size_t more) {
    if (b->failed) return false;
    if (b->n + more <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->n + more) cap *= 2;
    char *p = sa_os_map(cap);
    if (!p) { b->failed = true; return false; }
    if (b->p) {
        memcpy(p, b->p, b->n);
        sa_os_unmap(b->p, b->cap);
    }
    b->p = p;
    b->cap = cap;
    return true;
}
static void buf_put(buf *b, const void *d, size_t n) {
    if (!buf_reserve(b, n)) return;
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void buf_str(buf *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_release(buf *b) {
    if (b->p) sa_os_unmap(b->p, b->cap);
    *b = (buf){0};
}

/* ---- protobuf ------------------------------------------------------------------ */

static void pb_varint(buf *b, uint64_t v) {
    uint8_t t[10];
    int n = 0;
    do { t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
    buf_put(b, t, (size_t)n);
}
static void pb_int(buf *b, int field, uint64_t v) { /* varint field; 0 is the default, omitted */
    if (!v) return;
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, v);
}
static void pb_bytes(buf *b, int field, const void *d, size_t n) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    buf_put(b, d, n);
}
/* Appends sub as a length-delimited field and empties it. */
static void pb_msg(buf *b, int field, buf *sub) {
    pb_bytes(b, field, sub->p, sub->n);
    if (sub->failed) b->failed = true;
    sub->n = 0;
}

/* ---- tables: open addressing from mmap ---------------------------------------- */

typedef struct map {
    uint64_t *keys, *vals; /* key 0: empty (callers never store 0) */
    size_t cap, n;
} map;

static size_t mslot(uint64_t k, size_t cap) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1); }

static bool map_grow(map *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *k = sa_os_map(cap * 16);
    if (!k) return false;
    uint64_t *v = k + cap;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = mslot(m->keys[i], cap);
        while (k[j]) j = (j + 1) & (cap - 1);
        k[j] = m->keys[i];
        v[j] = m->vals[i];
    }
    if (m->keys) sa_os_unmap(m->keys, m->cap * 16);
    m->keys = k;
    m->vals = v;
    m->cap = cap;
    return true;
}
/* The value slot for key (inserted as 0 when new); NULL without memory. */
static uint64_t *map_slot(map *m, uint64_t key, bool *fresh) {
    if ((m->n + 1) * 2 > m->cap && !map_grow(m)) return NULL;
    size_t j = mslot(key, m->cap);
    while (m->keys[j] && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    *fresh = !m->keys[j];
    if (*fresh) { m->keys[j] = key; m->vals[j] = 0; m->n++; }
    return &m->vals[j];
}
static void map_release(map *m) {
    if (m->keys) sa_os_unmap(m->keys, m->cap * 16);
    *m = (map){0};
}

/* The string table: strs holds NUL-terminated strings, offs their offsets. */
typedef struct strtab {
    buf strs, offs;
    map bycontent; /* FNV hash (never 0) → index + 1 of the first string with it */
    size_t n;
} strtab;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= (uint8_t)s[i]; h *= 0x100000001b3ull; }
    return h | 1;
}
static const char *str_at(const strtab *t, size_t i) { return t->strs.p + ((const uint64_t *)t->offs.p)[i]; }
static uint64_t str_index(strtab *t, const char *s) {
    size_t len = strlen(s);
    uint64_t h = fnv(s, len);
    for (uint64_t probe = h;; probe = probe * 31 + 7) { /* colliding contents take further keys */
        bool fresh;
        uint64_t *v = map_slot(&t->bycontent, probe | 1, &fresh);
        if (!v) return 0;
        if (!fresh) {
            if (*v == 0) return 0; /* its string was never stored (out of memory) */
            if (strcmp(str_at(t, *v - 1), s) == 0) return *v - 1;
            continue;
        }
        uint64_t off = t->strs.n;
        buf_put(&t->strs, s, len + 1);
        buf_put(&t->offs, &off, sizeof off);
        if (t->strs.failed || t->offs.failed) return 0;
        *v = ++t->n;
        return t->n - 1;
    }
}

/* ---- the loaded objects: mappings, build IDs, symbols ------------------------- */

typedef struct mapping {
    uintptr_t start, limit, offset;
    uint64_t file;      /* string index of the path */
    uint64_t build_id;  /* string index, 0 when none */
    bool main;
} mapping;

typedef struct object {
    uintptr_t bias, xstart, xend; /* load bias; its executable segment */
    char build_id[41];
    bool main;
} object;

#define MAX_OBJECTS 1024
typedef struct objects { object *o; size_t n; } objects;

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    objects *os = data;
    if (os->n >= MAX_OBJECTS) return 1;
    object *o = &os->o[os->n];
    memset(o, 0, sizeof *o);
    o->bias = info->dlpi_addr;
    o->main = os->n == 0; /* the first is the program */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && !o->xend) {
            o->xstart = info->dlpi_addr + ph->p_vaddr;
            o->xend = o->xstart + ph->p_memsz;
        } else if (ph->p_type == PT_NOTE && !o->build_id[0]) {
            const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
            while (p + sizeof(ElfW(Nhdr)) <= end) {
                const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
                const char *name = p + sizeof *nh;
                const uint8_t *desc = (const uint8_t *)(name + ((nh->n_namesz + 3) & ~3u));
                if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                    static const char hex[] = "0123456789abcdef";
                    unsigned n = nh->n_descsz > 20 ? 20 : nh->n_descsz;
                    for (unsigned k = 0; k < n; k++) {
                        o->build_id[2 * k] = hex[desc[k] >> 4];
                        o->build_id[2 * k + 1] = hex[desc[k] & 15];
                    }
                    break;
                }
                p = (const char *)desc + ((nh->n_descsz + 3) & ~3u);
            }
        }
    }
    os->n++;
    return 0;
}

/* The executable's own symbol table (functions only), sorted by address. */
typedef struct sym { uintptr_t addr, size; uint32_t name; } sym;
typedef struct symtab {
    const char *file; size_t filesize;
    const char *names;
    sym *syms; size_t n, bytes;
} symtab;

static void sift(sym *a, size_t i, size_t n) {
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1].addr > a[c].addr) c++;
        if (a[c].addr <= a[i].addr) return;
        sym t = a[i]; a[i] = a[c]; a[c] = t;
        i = c;
    }
}

static void symtab_load(symtab *st) {
    memset(st, 0, sizeof *st);
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < (off_t)sizeof(ElfW(Ehdr))) { close(fd); return; }
    const char *f = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f == MAP_FAILED) return;
    st->file = f;
    st->filesize = (size_t)sb.st_size;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)f;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_shoff == 0 ||
        eh->e_shoff + (size_t)eh->e_shnum * sizeof(ElfW(Shdr)) > st->filesize)
        return;
    const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(f + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const ElfW(Shdr) *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > st->filesize || strs->sh_offset + strs->sh_size > st->filesize) return;
        const ElfW(Sym) *s = (const ElfW(Sym) *)(f + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof *s;
        st->bytes = (n ? n : 1) * sizeof(sym);
        st->syms = sa_os_map(st->bytes);
        if (!st->syms) return;
        st->names = f + strs->sh_offset;
        for (size_t k = 0; k < n; k++) {
            if (ELF64_ST_TYPE(s[k].st_info) != STT_FUNC || s[k].st_value == 0 || s[k].st_name >= strs->sh_size) continue;
            st->syms[st->n++] = (sym){s[k].st_value, s[k].st_size, s[k].st_name};
        }
        for (size_t k = st->n / 2; k-- > 0;) sift(st->syms, k, st->n);
        for (size_t k = st->n; k-- > 1;) {
            sym t = st->syms[0]; st->syms[0] = st->syms[k]; st->syms[k] = t;
            sift(st->syms, 0, k);
        }
        return;
    }
}

static const char *symtab_find(const symtab *st, uintptr_t addr) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (st->syms[mid].addr <= addr) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return NULL;
    const sym *s = &st->syms[lo - 1];
    if (s->size && addr >= s->addr + s->size) return NULL;
    return st->names + s->name;
}

static void symtab_release(symtab *st) {
    if (st->syms) sa_os_unmap(st->syms, st->bytes);
    if (st->file) munmap((void *)st->file, st->filesize);
}

typedef char *(*demangle_fn)(const char *, size_t, char *, size_t *, uint32_t);

/* ---- the profile ------------------------------------------------------------------ */

typedef struct writer {
    strtab strs;
    mapping *maps; size_t nmaps, mapbytes;
    objects objs;
    symtab exe;
    demangle_fn demangle;
    char *scratch; /* 64 KiB: file reads, demangling */
} writer;

static void read_maps(writer *w) {
    buf text = {0};
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        for (;;) {
            if (!buf_reserve(&text, 65536)) break;
            ssize_t r = read(fd, text.p + text.n, 65536);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            text.n += (size_t)r;
        }
        close(fd);
    }
    char exe[4096];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[el > 0 ? el : 0] = 0;
    size_t lines = 0;
    for (size_t i = 0; i < text.n; i++) lines += text.p[i] == '\n';
    w->mapbytes = (lines + 1) * sizeof(mapping);
    w->maps = sa_os_map(w->mapbytes);
    if (!w->maps) { buf_release(&text); return; }
    char *p = text.p, *end = text.p + text.n;
    while (p && p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        *nl = 0;
        unsigned long start, limit, off;
        char perms[8];
        int pathpos = 0;
        if (sscanf(p, "%lx-%lx %7s %lx %*s %*s %n", &start, &limit, perms, &off, &pathpos) >= 4 && pathpos > 0 &&
            perms[2] == 'x' && p[pathpos] == '/') {
            mapping *m = &w->maps[w->nmaps++];
            m->start = start;
            m->limit = limit;
            m->offset = off;
            m->file = str_index(&w->strs, p + pathpos);
            m->main = strcmp(p + pathpos, exe) == 0;
            for (size_t k = 0; k < w->objs.n; k++) {
                const object *o = &w->objs.o[k];
                if (o->build_id[0] && start < o->xend && limit > o->xstart) {
                    m->build_id = str_index(&w->strs, o->build_id);
                    break;
                }
            }
        }
        p = nl + 1;
    }
    /* pprof takes the first mapping for the main binary. */
    for (size_t i = 0; i < w->nmaps; i++) {
        if (!w->maps[i].main) continue;
        mapping t = w->maps[i];
        memmove(&w->maps[1], &w->maps[0], i * sizeof t);
        w->maps[0] = t;
        break;
    }
    buf_release(&text);
}

static size_t mapping_of(const writer *w, uintptr_t pc) {
    for (size_t i = 0; i < w->nmaps; i++)
        if (pc >= w->maps[i].start && pc < w->maps[i].limit) return i + 1;
    return 0;
}

/* The function name for pc (string index, 0 when unknown). */
static uint64_t name_of(writer *w, uintptr_t pc) {
    const char *name = NULL;
    const object *mainobj = w->objs.n ? &w->objs.o[0] : NULL;
    if (mainobj && pc >= mainobj->xstart && pc < mainobj->xend && w->exe.n) name = symtab_find(&w->exe, pc - mainobj->bias);
    if (!name) {
        Dl_info info;
        if (dladdr((void *)pc, &info) && info.dli_sname) name = info.dli_sname;
    }
    if (!name) return 0;
    if (w->demangle && (name[0] == '$' || (name[0] == '_' && name[1] == 'T'))) {
        size_t outlen = 65536;
        char *d = w->demangle(name, strlen(name), w->scratch, &outlen, 0);
        if (d && outlen > 0) {
            w->scratch[outlen < 65535 ? outlen : 65535] = 0;
            return str_index(&w->strs, w->scratch);
        }
    }
    return str_index(&w->strs, name);
}

static void writer_init(writer *w) {
    memset(w, 0, sizeof *w);
    str_index(&w->strs, "");
    w->scratch = sa_os_map(65536);
    w->objs.o = sa_os_map(MAX_OBJECTS * sizeof(object));
    if (w->objs.o) dl_iterate_phdr(phdr_cb, &w->objs);
    read_maps(w);
    symtab_load(&w->exe);
    w->demangle = (demangle_fn)dlsym(RTLD_DEFAULT, "swift_demangle");
}

static void writer_release(writer *w) {
    buf_release(&w->strs.strs);
    buf_release(&w->strs.offs);
    map_release(&w->strs.bycontent);
    if (w->maps) sa_os_unmap(w->maps, w->mapbytes);
    if (w->objs.o) sa_os_unmap(w->objs.o, MAX_OBJECTS * sizeof(object));
    if (w->scratch) sa_os_unmap(w->scratch, 65536);
    symtab_release(&w->exe);
}

static int64_t rnd(double x) { return (int64_t)(x < 0 ? 0 : x + 0.5); }

static void value_type(writer *w, buf *out, buf *sub, int field, const char *type, const char *unit) {
    pb_int(sub, 1, str_index(&w->strs, type));
    pb_int(sub, 2, str_index(&w->strs, unit));
    pb_msg(out, field, sub);
}

/* profile.proto's Profile message, uncompressed. */
static void encode_pprof(writer *w, const sa_prof_row *rows, size_t nrows, buf *out) {
    buf sub = {0}, sub2 = {0}, locs = {0}, funcs = {0}, ids = {0}, vals = {0};
    map locid = {0}, funcid = {0};
    value_type(w, out, &sub, 1, "alloc_objects", "count");
    value_type(w, out, &sub, 1, "alloc_space", "bytes");
    value_type(w, out, &sub, 1, "inuse_objects", "count");
    value_type(w, out, &sub, 1, "inuse_space", "bytes");
    uint64_t nlocs = 0, nfuncs = 0;
    for (size_t r = 0; r < nrows; r++) {
        const sa_prof_bucket *b = rows[r].b;
        for (uint32_t i = 0; i < b->nframes; i++) {
            bool fresh;
            uint64_t *id = map_slot(&locid, b->pcs[i], &fresh);
            if (!id) { out->failed = true; break; }
            if (fresh) {
                *id = ++nlocs;
                pb_int(&sub, 1, nlocs);
                pb_int(&sub, 2, mapping_of(w, b->pcs[i]));
                pb_int(&sub, 3, b->pcs[i]);
                uint64_t name = name_of(w, b->pcs[i]);
                if (name) {
                    uint64_t *fid = map_slot(&funcid, name + 1, &fresh);
                    if (fid && fresh) {
                        *fid = ++nfuncs;
                        pb_int(&sub2, 1, nfuncs);
                        pb_int(&sub2, 2, name);
                        pb_int(&sub2, 3, name);
                        pb_msg(&funcs, 5, &sub2);
                    }
                    if (fid) {
                        pb_int(&sub2, 1, *fid);
                        pb_msg(&sub, 4, &sub2);
                    }
                }
                pb_msg(&locs, 4, &sub);
            }
            pb_varint(&ids, *id); /* the sample's packed location ids */
        }
        pb_varint(&vals, (uint64_t)rnd(rows[r].alloc_objects));
        pb_varint(&vals, (uint64_t)rnd(rows[r].alloc_bytes));
        pb_varint(&vals, (uint64_t)rnd(rows[r].inuse_objects));
        pb_varint(&vals, (uint64_t)rnd(rows[r].inuse_bytes));
        pb_bytes(&sub, 1, ids.p, ids.n);
        pb_bytes(&sub, 2, vals.p, vals.n);
        pb_msg(out, 2, &sub);
        if (ids.failed || vals.failed) out->failed = true;
        ids.n = vals.n = 0;
    }
    for (size_t i = 0; i < w->nmaps; i++) {
        const mapping *m = &w->maps[i];
        pb_int(&sub, 1, i + 1);
        pb_int(&sub, 2, m->start);
        pb_int(&sub, 3, m->limit);
        pb_int(&sub, 4, m->offset);
        pb_int(&sub, 5, m->file);
        pb_int(&sub, 6, m->build_id);
        pb_int(&sub, 7, 1); /* has_functions: names were resolved here */
        pb_msg(out, 3, &sub);
    }
    buf_put(out, locs.p, locs.n);
    buf_put(out, funcs.p, funcs.n);
    if (locs.failed || funcs.failed) out->failed = true;
    value_type(w, out, &sub, 11, "space", "bytes");
    pb_int(out, 12, sa_profile_rate() ? sa_profile_rate() : 1);
    pb_int(out, 14, str_index(&w->strs, "inuse_space")); /* default_sample_type */
    /* Strings last: every index above is in the table now. */
    for (size_t i = 0; i < w->strs.n; i++) {
        const char *s = str_at(&w->strs, i);
        pb_bytes(out, 6, s, strlen(s));
    }
    if (w->strs.strs.failed || w->strs.offs.failed) out->failed = true;
    buf_release(&ids);
    buf_release(&vals);
    buf_release(&sub);
    buf_release(&sub2);
    buf_release(&locs);
    buf_release(&funcs);
    map_release(&locid);
    map_release(&funcid);
}

/* ---- gzip: stored deflate blocks ------------------------------------------------------ */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t crc32_of(const char *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ (uint8_t)p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void gzip(const buf *in, buf *out) {
    static const uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    buf_put(out, header, sizeof header);
    size_t off = 0;
    do {
        size_t n = in->n - off > 65535 ? 65535 : in->n - off;
        uint8_t h[5] = {(uint8_t)(off + n == in->n), (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)~n, (uint8_t)(~n >> 8)};
        buf_put(out, h, 5);
        buf_put(out, in->p + off, n);
        off += n;
    } while (off < in->n);
    uint32_t crc = crc32_of(in->p, in->n), size = (uint32_t)in->n;
    uint8_t t[8] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24),
                    (uint8_t)size, (uint8_t)(size >> 8), (uint8_t)(size >> 16), (uint8_t)(size >> 24)};
    buf_put(out, t, 8);
}

/* ---- folded stacks ------------------------------------------------------------------ */

static void encode_folded(writer *w, const sa_prof_row *rows, size_t nrows, buf *out) {
    char num[32];
    for (size_t r = 0; r < nrows; r++) {
        int64_t bytes = rnd(rows[r].inuse_bytes);
        const sa_prof_bucket *b = rows[r].b;
        if (bytes <= 0 || b->nframes == 0) continue;
        for (uint32_t i = b->nframes; i-- > 0;) {
            uint64_t name = name_of(w, b->pcs[i]);
            if (name) {
                /* ';' and ' ' separate frames and the count: keep them out of names. */
                for (const char *s = str_at(&w->strs, name); *s; s++) {
                    char c = *s == ';' ? ':' : *s == ' ' ? '_' : *s;
                    buf_put(out, &c, 1);
                }
            } else if (mapping_of(w, b->pcs[i])) { /* as pprof shows it: [the object's file name] */
                const char *file = str_at(&w->strs, w->maps[mapping_of(w, b->pcs[i]) - 1].file);
                const char *slash = strrchr(file, '/');
                buf_str(out, "[");
                buf_str(out, slash ? slash + 1 : file);
                buf_str(out, "]");
            } else {
                snprintf(num, sizeof num, "0x%lx", (unsigned long)b->pcs[i]);
                buf_str(out, num);
            }
            buf_put(out, i ? ";" : " ", 1);
        }
        snprintf(num, sizeof num, "%lld\n", (long long)bytes);
        buf_str(out, num);
    }
}

/* ---- entry points ---------------------------------------------------------------------- */

/* The profile in *out (mmap'd). 0 or an errno value. */
static int build(int format, buf *out) {
    if (format != SA_PROFILE_PPROF && format != SA_PROFILE_FOLDED) return EINVAL;
    pthread_mutex_lock(&write_lock);
    size_t nrows, rowbytes;
    sa_prof_row *rows = sa_prof_snapshot(&nrows, &rowbytes);
    writer w;
    writer_init(&w);
    if (format == SA_PROFILE_FOLDED) {
        encode_folded(&w, rows, nrows, out);
    } else {
        buf raw = {0};
        encode_pprof(&w, rows, nrows, &raw);
        gzip(&raw, out);
        if (raw.failed) out->failed = true;
        buf_release(&raw);
    }
    writer_release(&w);
    if (rows) sa_os_unmap(rows, rowbytes);
    pthread_mutex_unlock(&write_lock);
    if (out->failed) { buf_release(out); return ENOMEM; }
    return 0;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return EIO;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int sa_profile_write_fd(int fd, int format) {
    buf out = {0};
    int err = build(format, &out);
    if (!err) err = write_all(fd, out.p, out.n);
    buf_release(&out);
    if (err) sa_log("heap profile not written to fd %d: %s", fd, strerror(err));
    return err;
}

/* path with %p replaced by the process id (and %% by %). */
static bool expand_path(const char *path, char *out, size_t cap) {
    size_t n = 0;
    for (const char *s = path; *s; s++) {
        char num[24];
        const char *add = num;
        if (s[0] == '%' && s[1] == 'p') { snprintf(num, sizeof num, "%d", (int)getpid()); s++; }
        else if (s[0] == '%' && s[1] == '%') { num[0] = '%'; num[1] = 0; s++; }
        else { num[0] = *s; num[1] = 0; }
        size_t l = strlen(add);
        if (n + l + 1 > cap) return false;
        memcpy(out + n, add, l);
        n += l;
    }
    out[n] = 0;
    return true;
}

int sa_profile_write(const char *path, int format) {
    char full[4096];
    if (!expand_path(path, full, sizeof full)) {
        sa_log("heap profile not written: path too long");
        return ENAMETOOLONG;
    }
    /* A regular file (or a new one) is written beside the target and
     * renamed over it, so a reader never sees half a profile; anything else
     * (a pipe, /dev/stdout, a device) is written in place. */
    struct stat st;
    bool in_place = stat(full, &st) == 0 && !S_ISREG(st.st_mode);
    /* A name of its own per write (O_EXCL): two writers of one process (the
     * signal's writer thread and the exit, say) never share a file. */
    static _Atomic unsigned seq;
    char tmp[4096 + 48];
    snprintf(tmp, sizeof tmp, "%s.tmp%d.%u", full, (int)getpid(), atomic_fetch_add(&seq, 1));
    buf out = {0};
    int err = build(format, &out);
    if (!err) {
        int fd = in_place ? open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                          : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) err = errno;
        else {
            err = write_all(fd, out.p, out.n);
            if (close(fd) != 0 && !err) err = errno;
            if (!in_place && !err && rename(tmp, full) != 0) err = errno;
            if (!in_place && err) unlink(tmp);
        }
    }
    buf_release(&out);
    if (err) sa_log("heap profile not written to %s: %s", full, strerror(err));
    return err;
}

void *sa_profile_write_buffer(int format, size_t *len) {
    buf out = {0};
    int err = build(format, &out);
    *len = 0;
    if (err) { errno = err; return NULL; }
    *len = out.n;
    return out.p ? out.p : sa_os_map(4096);
}

void sa_profile_buffer_free(void *p, size_t len) {
    if (!p) return;
    size_t cap = 65536;
    while (cap < len) cap *= 2; /* the buffer's mapping, as buf_reserve sized it */
    sa_os_unmap(p, len ? cap : 4096);
}

/* ---- SPANALLOC=profile=…, profile_signal=… ------------------------------------------- */

/* Folded when the path ends in .folded or .txt, else pprof. */
static int format_for(const char *path) {
    size_t n = strlen(path);
    if ((n >= 7 && strcmp(path + n - 7, ".folded") == 0) || (n >= 4 && strcmp(path + n - 4, ".txt") == 0))
        return SA_PROFILE_FOLDED;
    return SA_PROFILE_PPROF;
}

static const char *signal_path(void) {
    const char *p = sa_prof_config_path();
    return p[0] ? p : "spanalloc.%p.heap.pb.gz";
}

static int sig_pipe[2] = {-1, -1};
static _Atomic bool writer_started;

/* A fork child has no writer thread: its ends of the pipe are closed, so
 * the signal does nothing there (the parent's writer must not write the
 * parent's profile for it); profile=PATH still writes at its exit. */
static void signal_writer_fork_child(void) {
    for (int i = 0; i < 2; i++) {
        if (sig_pipe[i] >= 0) close(sig_pipe[i]);
        sig_pipe[i] = -1;
    }
}

static void on_signal(int signo) {
    (void)signo;
    int saved = errno;
    char c = 1;
    ssize_t r = write(sig_pipe[1], &c, 1);
    (void)r;
    errno = saved;
}

static void *writer_main(void *arg) {
    (void)arg;
    for (;;) {
        char c[16];
        ssize_t r = read(sig_pipe[0], c, sizeof c);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return NULL;
        const char *path = signal_path();
        sa_profile_write(path, format_for(path));
    }
}

/* Installs the handler (only over SIG_DFL) and starts the writer thread. */
static void start_signal_writer(int signo) {
    if (atomic_exchange(&writer_started, true)) return;
    struct sigaction old;
    if (sigaction(signo, NULL, &old) != 0) return;
    if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) {
        sa_log("profile_signal=%d ignored: the program handles that signal", signo);
        return;
    }
    if (pipe2(sig_pipe, O_CLOEXEC) != 0) return;
    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, prev;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &prev); /* the writer takes no signals */
    int err = pthread_create(&t, &attr, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    pthread_attr_destroy(&attr);
    if (err) { sa_log("profile_signal: no writer thread: %s", strerror(err)); return; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, NULL) != 0) sa_log("profile_signal=%d: %s", signo, strerror(errno));
}

/* After the C library is up (not inside malloc): the signal writer. The
 * variable is read here only when it asks for a signal (a program may still
 * set SPANALLOC before its first allocation otherwise). */
__attribute__((constructor)) static void sa_prof_at_load(void) {
    const char *env = getenv("SPANALLOC");
    if (!env || !strstr(env, "profile_signal=")) return;
    sa_config_load();
    int signo = sa_prof_config_signal();
    if (signo > 0) start_signal_writer(signo);
}

__attribute__((destructor)) static void sa_prof_at_exit(void) {
    const char *path = sa_prof_config_path();
    if (path[0]) sa_profile_write(path, format_for(path));
}
