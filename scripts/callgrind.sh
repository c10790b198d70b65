#!/usr/bin/env bash
# Instructions per malloc+free pair, counted by valgrind's callgrind (exact
# and repeatable, unlike times on a shared machine), for SpanAlloc's
# LD_PRELOAD library and every peer installed:
#   lifo-64       1,000,000 x (malloc(64), free)
#   random-batch  2 rounds of 100,000 random-size blocks (8..1024 B)
#                 allocated, then freed in shuffled order
# The count is malloc's and free's inclusive Ir over the pairs (callgrind_annotate
# --inclusive=yes). valgrind 3.19 cannot read clang 21's DWARF, so SpanAlloc's
# library is measured on a `strip --strip-debug` copy (its symbols stay).
#   ./scripts/callgrind.sh            SpanAlloc and the installed peers (~1 min)
#   ./scripts/callgrind.sh spanalloc  SpanAlloc only
#   LIB=/path/lib.so ./scripts/callgrind.sh   that library under the name "lib"
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 2; }
./scripts/build-preload.sh >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/pairs" bench/programs/pairs.c
strip --strip-debug -o "$work/libspanalloc.so" .build/spanalloc-preload/libspanalloc.so

libdir=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
declare -a names libs
add() { if [ -z "$2" ] || [ -e "$2" ]; then names+=("$1"); libs+=("$2"); fi; }
if [ -n "${LIB:-}" ]; then add lib "$LIB"
else
    add SpanAlloc "$work/libspanalloc.so"
    if [ "${1:-}" != spanalloc ]; then
        add jemalloc "$libdir/libjemalloc.so.2"
        add mimalloc "$libdir/libmimalloc.so.2"
        add tcmalloc "$libdir/libtcmalloc_minimal.so.4"
        add glibc ""
    fi
fi

# Ir of malloc and free (inclusive) divided by the pairs.
per_pair() { # out-file pairs
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null | awk -v pairs="$2" '
        $3 ~ /:(malloc|__libc_malloc|free|__libc_free)$/ && !seen[$3]++ {
            n = $1; gsub(",", "", n); k = split($3, f, ":")
            if (f[k] ~ /malloc/) m += n; else fr += n }
        END { printf "%.1f (malloc %.1f, free %.1f)", (m + fr) / pairs, m / pairs, fr / pairs }'
}

printf '%-10s %-38s %s\n' allocator "lifo-64 Ir/pair" "random-batch Ir/pair"
for i in "${!names[@]}"; do
    pre=()
    [ -n "${libs[$i]}" ] && pre=(env "LD_PRELOAD=${libs[$i]}")
    "${pre[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/lifo.out" "$work/pairs" lifo 1000000 >/dev/null 2>&1
    "${pre[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/batch.out" "$work/pairs" batch 2 >/dev/null 2>&1
    printf '%-10s %-38s %s\n' "${names[$i]}" "$(per_pair "$work/lifo.out" 1000000)" "$(per_pair "$work/batch.out" 200000)"
done
