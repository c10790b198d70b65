#!/usr/bin/env bash
# Builds and runs the C smoke test of the native API (Tests/c/smoke.c):
# size classes, every class, a random batch, large, aligned, realloc,
# threads, producer/consumer remote frees, injected mmap failure, scavenge,
# with the heap checker after each step. Built -O2 with assertions on (the
# test's asserts and the core's lock-rank checks). About 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${CLANG:-/opt/swift/usr/bin/clang}
OUT=.build/smoke
BIN=$OUT/smoke
mkdir -p "$OUT"
sources=(Tests/c/smoke.c Sources/CSpanAlloc/*.c)
if [[ ! -x $BIN ]] || [[ -n $(find "${sources[@]}" Sources/CSpanAlloc "$0" -newer "$BIN" -print -quit) ]]; then
    echo "== building $BIN"
    "$CLANG" -std=gnu11 -O2 -g -UNDEBUG -D_GNU_SOURCE -pthread \
        -ISources/CSpanAlloc/include -ISources/CSpanAlloc "${sources[@]}" -o "$BIN.tmp"
    mv -f "$BIN.tmp" "$BIN"
fi
"$BIN"
