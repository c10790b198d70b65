"""Writes the C file that `bench preload --programs gcc` compiles with gcc -O2.

    python3 gen_compile_input.py --functions 100 --output /tmp/x/input.c

The file is a function of --functions and --seed alone (a private LCG, not
Python's random module, so it is the same under every Python version): a few
dozen struct and union types, small static inline helpers on them, and
--functions exported functions, each a loop around a switch of 8-40 cases
that reads and writes struct fields, calls helpers (inlining work) and calls
earlier functions (a call graph for the inliner and IPA passes), plus a
dispatch table that keeps every function alive. It compiles cleanly with
-std=c11 -Wall -Wextra; its object code does nothing useful. gcc -O2 takes
about 35-55 ms per function on the 2-core machine this project is measured
on (100 functions, bench's default: 3.5-5.5 s and a 180 MB cc1).
"""
import argparse
import sys


class Lcg:
    def __init__(self, seed):
        self.state = (seed * 6364136223846793005 + 1442695040888963407) & (2 ** 64 - 1)

    def next(self):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & (2 ** 64 - 1)
        return self.state >> 33

    def below(self, n):
        return self.next() % n

    def pick(self, seq):
        return seq[self.below(len(seq))]


SCALARS = ["int", "unsigned", "long", "short", "unsigned char", "double", "float", "long long"]
INTEGERS = ["int", "unsigned", "long", "short", "unsigned char", "long long"]


def emit_types(rng, out, ntypes):
    """Struct types: scalar fields, an array, a nested struct (an earlier one), sometimes a union."""
    types = []
    for t in range(ntypes):
        fields = []
        for f in range(3 + rng.below(6)):
            fields.append((rng.pick(SCALARS), "f%d" % f))
        ints = [name for ty, name in fields if ty in INTEGERS]
        if not ints:
            fields.append(("int", "fi"))
            ints = ["fi"]
        alen = 2 + rng.below(14)
        nested = "s%d" % rng.below(t) if t > 0 and rng.below(2) else None
        out.append("struct s%d {" % t)
        for ty, name in fields:
            out.append("    %s %s;" % (ty, name))
        out.append("    int arr[%d];" % alen)
        if nested:
            out.append("    struct %s inner;" % nested)
        if rng.below(3) == 0:
            out.append("    union { int i; float f; unsigned char b[4]; } u;")
        out.append("};")
        types.append({"name": "s%d" % t, "fields": fields, "ints": ints, "alen": alen, "nested": nested})
    return types


def emit_helpers(rng, out, types):
    """Two small static inline helpers per type: a mixer of fields and an updater."""
    for t in types:
        n = t["name"]
        terms = []
        for ty, name in t["fields"]:
            if ty in INTEGERS:
                terms.append("(long)p->%s * %d" % (name, 1 + rng.below(9)))
            else:
                terms.append("(long)(p->%s * %d.5)" % (name, rng.below(5)))
        out.append("static inline long mix_%s(const struct %s *p, int k) {" % (n, n))
        out.append("    long acc = %s;" % " + ".join(terms))
        out.append("    acc ^= p->arr[(unsigned)k %% %du];" % t["alen"])
        if t["nested"]:
            out.append("    acc += mix_%s(&p->inner, k + 1);" % t["nested"])
        out.append("    return acc + (k & 7);")
        out.append("}")
        f = rng.pick(t["ints"])
        out.append("static inline void bump_%s(struct %s *p, long v) {" % (n, n))
        out.append("    p->%s += (v & 0xff);" % f)
        out.append("    p->arr[(unsigned long)v %% %du] ^= (int)(v >> 3);" % t["alen"])
        out.append("}")


def emit_function(rng, out, index, types):
    t = rng.pick(types)
    u = rng.pick(types)
    n, m = t["name"], u["name"]
    ncases = 8 + rng.below(33)
    out.append("long fn%d(struct %s *a, struct %s *b, int n) {" % (index, n, m))
    out.append("    long acc = %d;" % rng.below(1000))
    out.append("    int state = n & 3;")
    out.append("    for (int i = 0; i < n; i++) {")
    out.append("        switch ((state + i * %d) %% %d) {" % (1 + rng.below(7), ncases))
    for c in range(ncases):
        out.append("        case %d:" % c)
        kind = rng.below(7)
        fa = rng.pick(t["ints"])
        fb = rng.pick(u["ints"])
        if kind == 0:
            out.append("            acc += mix_%s(a, i) - mix_%s(b, state);" % (n, m))
        elif kind == 1:
            out.append("            bump_%s(a, acc + %d);" % (n, c))
            out.append("            state = (int)((unsigned long)acc %% %du);" % ncases)
        elif kind == 2:
            out.append("            for (int j = 0; j < %d; j++) acc += a->arr[j] * (j + %d);" % (t["alen"], c))
        elif kind == 3:
            out.append("            if ((long)a->%s > (long)b->%s) acc -= a->%s; else acc += b->%s * %d;"
                       % (fa, fb, fa, fb, 2 + rng.below(5)))
        elif kind == 4 and index > 0:
            callee = rng.below(index)
            out.append("            acc += callee_%d(acc, i);" % callee)
        elif kind == 5:
            out.append("            b->%s = (%s)(b->%s ^ (acc >> %d));" % (fb, dict(u["fields"]).get(fb, "int"),
                                                                         fb, 1 + rng.below(20)))
            out.append("            bump_%s(b, i * %d);" % (m, 3 + c))
        else:
            out.append("            acc = acc * %d + %d;" % (3 + rng.below(13), rng.below(1 << 16)))
            out.append("            state ^= %d;" % (1 + rng.below(15)))
        if rng.below(4) == 0 and c + 1 < ncases:
            out.append("            /* fall through */")
            continue
        out.append("            break;")
    out.append("        default:")
    out.append("            acc ^= i;")
    out.append("        }")
    out.append("    }")
    out.append("    return acc + mix_%s(a, n);" % n)
    out.append("}")
    # A small wrapper later functions call: the inliner decides whether to pull fn<i> in.
    out.append("static long callee_%d(long x, int i) {" % index)
    out.append("    static struct %s sa; static struct %s sb;" % (n, m))
    out.append("    sa.arr[0] = (int)x;")
    out.append("    return fn%d(&sa, &sb, (i & 3) + 1);" % index)
    out.append("}")
    return t, u


def generate(functions, seed):
    rng = Lcg(seed)
    out = ["/* Generated by bench/programs/gen_compile_input.py --functions %d --seed %d. */" % (functions, seed),
           "/* Compile input for timing gcc under each allocator; do not edit. */", ""]
    types = emit_types(rng, out, 24 + functions // 40)
    out.append("")
    emit_helpers(rng, out, types)
    out.append("")
    sigs = []
    for i in range(functions):
        out.append("static long callee_%d(long x, int i);" % i)
    out.append("")
    for i in range(functions):
        sigs.append(emit_function(rng, out, i, types))
        out.append("")
    out.append("typedef long (*any_fn)(void *, void *, int);")
    out.append("const any_fn dispatch_table[%d] = {" % functions)
    for i in range(functions):
        out.append("    (any_fn)(void (*)(void))fn%d," % i)
    out.append("};")
    out.append("typedef long (*callee_fn)(long, int);")
    out.append("const callee_fn callee_table[%d] = {" % functions)
    for i in range(functions):
        out.append("    callee_%d," % i)
    out.append("};")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description="Write a deterministic C file for compile-time benchmarks.")
    parser.add_argument("--functions", type=int, default=100, help="exported functions (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="LCG seed (default 1)")
    parser.add_argument("--output", default="-", help="file to write (default stdout)")
    args = parser.parse_args()
    if args.functions < 1:
        parser.error("--functions must be at least 1")
    text = generate(args.functions, args.seed)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
