#!/usr/bin/env bash
# The heap profiler's cost in instructions (callgrind counts do not depend
# on the machine's load), docs/profiling.md. Builds the preload library
# three ways from the same sources and runs bench/programs/pairs.c under each:
#
#   nofp      SA_PROFILE_SAMPLING=0, frame pointers omitted (the allocator before the profiler)
#   gateless  SA_PROFILE_SAMPLING=0 (the profiler's fast-path tests compiled out), frame pointers kept
#   off       the shipped build, profiling off
#   default   the shipped build, SPANALLOC=profile_rate=524288
#   rate64k   the shipped build, SPANALLOC=profile_rate=65536
#
# and prints the inclusive Ir of malloc + free per malloc/free pair for
# lifo-64 (1,000,000 pairs) and random-batch (2 rounds of 100,000 blocks of
# 8–1024 B, freed shuffled). Each library is a `strip --strip-debug` copy
# (valgrind 3.19 cannot read clang 21's DWARF). About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "profile-cost: valgrind not found" >&2; exit 2; }
CC=${CC:-$(command -v clang || echo cc)}
out=.build/profile-cost
mkdir -p "$out"
build() { # build NAME FLAGS...
    local name=$1; shift
    nice -n 19 "$CC" -std=c11 -O2 -g -fPIC -shared -pthread -D_GNU_SOURCE -DNDEBUG \
        -fno-semantic-interposition -Wl,-Bsymbolic-functions \
        -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free "$@" \
        -I Sources/CSpanAlloc/include -I Sources/CSpanAlloc -I Sources/SpanAllocMalloc/include \
        Sources/CSpanAlloc/*.c Sources/SpanAllocMalloc/*.c -o "$out/lib-$name.so"
    strip --strip-debug "$out/lib-$name.so"
}
build nofp -DSA_PROFILE_SAMPLING=0 -fomit-frame-pointer
build gateless -DSA_PROFILE_SAMPLING=0 -fno-omit-frame-pointer -momit-leaf-frame-pointer
build shipped -fno-omit-frame-pointer -momit-leaf-frame-pointer
nice -n 19 "$CC" -O2 bench/programs/pairs.c -o "$out/pairs"

# ir LIB ENV PATTERN N PAIRS: inclusive Ir of malloc + free per pair.
ir() {
    local lib=$1 env=$2 pattern=$3 n=$4 pairs=$5 f=$out/cg.out
    rm -f "$f"
    env SPANALLOC="$env" LD_PRELOAD="$PWD/$out/lib-$lib.so" nice -n 19 valgrind --tool=callgrind \
        --callgrind-out-file="$f" "$out/pairs" "$pattern" "$n" >/dev/null 2>&1
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
        awk -v pairs="$pairs" '/:(malloc|free) \[/ { gsub(",", "", $1); s += $1 }
            END { printf "%.2f", s / pairs }'
}
printf '%-10s %10s %10s\n' variant lifo-64 batch
for v in "nofp:" "gateless:" "off:" "default:profile_rate=524288" "rate64k:profile_rate=65536"; do
    name=${v%%:*} env=${v#*:}
    lib=$name
    case $name in off|default|rate64k) lib=shipped ;; esac
    printf '%-10s %10s %10s\n' "$name" "$(ir "$lib" "$env" lifo 1000000 1000000)" "$(ir "$lib" "$env" batch 2 200000)"
done
