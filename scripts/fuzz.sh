#!/usr/bin/env bash
# Builds the libFuzzer target Tests/fuzz/fuzz_alloc.c (with AddressSanitizer)
# against the CSpanAlloc sources and runs a bounded number of executions
# over the committed corpus. New interesting inputs go to a scratch folder,
# never into Tests/fuzz/corpus.
#
#   scripts/fuzz.sh                 # FUZZ_RUNS executions (default 20000: about a minute, CI-sized)
#   scripts/fuzz.sh -runs=1000000   # any libFuzzer flags replace the defaults
#   FUZZ_SECONDS=600 scripts/fuzz.sh  # time-bounded instead
#
# Prints "fuzz executions: N". A crash leaves crash-* / leak-* in
# .build/fuzz/artifacts/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${CLANG:-/opt/swift/usr/bin/clang}
OUT=.build/fuzz
BIN=$OUT/fuzz_alloc
mkdir -p "$OUT/new" "$OUT/artifacts"

sources=(Tests/fuzz/fuzz_alloc.c Sources/CSpanAlloc/*.c)
if [[ ! -x $BIN ]] || [[ -n $(find "${sources[@]}" Sources/CSpanAlloc Tests/fuzz/coverage-ignorelist.txt scripts/fuzz.sh -newer "$BIN" -print -quit) ]]; then
    echo "== building $BIN"
    # (the linker's "cannot export local symbol __asan_…" warnings are noise:
    # the build log is shown only when the build fails)
    if ! "$CLANG" -fsanitize=fuzzer,address -O1 -g -std=gnu11 -D_GNU_SOURCE -pthread \
        -fsanitize-coverage-ignorelist=Tests/fuzz/coverage-ignorelist.txt \
        -ISources/CSpanAlloc/include -ISources/CSpanAlloc "${sources[@]}" -o "$BIN" > "$OUT/build.log" 2>&1; then
        cat "$OUT/build.log"
        exit 1
    fi
fi

args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    if [[ -n ${FUZZ_SECONDS:-} ]]; then
        args=(-max_total_time="$FUZZ_SECONDS")
    else
        args=(-runs="${FUZZ_RUNS:-20000}")
    fi
fi
echo "== $BIN ${args[*]} (corpus Tests/fuzz/corpus)"
log=$OUT/last-run.log
set +e
# -max_len bounds an input to a few hundred operations; leaks are not
# checked (SpanAlloc's memory is mmap'd, LeakSanitizer cannot see it).
"$BIN" -max_len=1024 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/" \
    "${args[@]}" "$OUT/new" Tests/fuzz/corpus 2>&1 | tee "$log" | grep -v -E '^#[0-9]+.*(NEW|REDUCE|pulse)' 
rc=${PIPESTATUS[0]}
set -e
runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
[[ -z $runs ]] && runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
echo "fuzz executions: ${runs:-0}"
exit "$rc"
