#!/usr/bin/env bash
# Builds the libFuzzer targets (docs/reliability.md, "Fuzzer") against the
# CSpanAlloc sources and runs each for a bounded number of executions over
# its committed corpus. New interesting inputs go to a scratch folder per
# target, never into Tests/fuzz/corpus*.
#
#   target          source                  build                                         corpus
#   alloc           Tests/fuzz/fuzz_alloc.c  -O1 -g, assertions on, AddressSanitizer       Tests/fuzz/corpus
#   alloc-release   Tests/fuzz/fuzz_alloc.c  -O2 -DNDEBUG, no sanitizer (the shipped core) Tests/fuzz/corpus
#   malloc          Tests/fuzz/fuzz_malloc.c -O1 -g, assertions on, no ASan (*)            Tests/fuzz/corpus-malloc
#   malloc-release  Tests/fuzz/fuzz_malloc.c -O2 -DNDEBUG, no sanitizer                    Tests/fuzz/corpus-malloc
#
# (*) the override is compiled out under ASan (SA_OVERRIDE), so override.c
# and config.c are compiled with their libc names renamed (-Dmalloc=fz_malloc,
# …) and without ASan; the fuzzer itself keeps glibc's malloc.
#
#   scripts/fuzz.sh                          # every target, FUZZ_RUNS executions each (default 20000)
#   FUZZ_TARGETS="alloc malloc" scripts/fuzz.sh
#   FUZZ_SECONDS=600 scripts/fuzz.sh         # time-bounded, per target
#   scripts/fuzz.sh -runs=1000000            # libFuzzer flags replace the defaults (every target)
#
# Prints "fuzz executions (TARGET): N" per target. A crash leaves crash-*
# in .build/fuzz/TARGET/artifacts/ and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${CLANG:-/opt/swift/usr/bin/clang}
OUT=.build/fuzz
mkdir -p "$OUT"
targets=(${FUZZ_TARGETS:-alloc alloc-release malloc malloc-release})

core=(Sources/CSpanAlloc/*.c)
common=(-std=gnu11 -D_GNU_SOURCE -pthread -fsanitize-coverage-ignorelist=Tests/fuzz/coverage-ignorelist.txt
        -ISources/CSpanAlloc/include -ISources/CSpanAlloc -ISources/SpanAllocMalloc/include)
renames=()
for f in malloc free calloc realloc reallocarray posix_memalign aligned_alloc memalign valloc pvalloc \
         malloc_usable_size free_sized free_aligned_sized cfree malloc_trim; do
    renames+=("-D$f=fz_$f")
done

build() { # build TARGET
    local t=$1 bin=$OUT/$1/fuzz_$1 opt harness
    mkdir -p "$OUT/$t"
    case $t in
        alloc)          opt=(-O1 -g -fsanitize=fuzzer,address); harness=Tests/fuzz/fuzz_alloc.c ;;
        alloc-release)  opt=(-O2 -g -DNDEBUG -fsanitize=fuzzer); harness=Tests/fuzz/fuzz_alloc.c ;;
        malloc)         opt=(-O1 -g -fsanitize=fuzzer); harness=Tests/fuzz/fuzz_malloc.c ;;
        malloc-release) opt=(-O2 -g -DNDEBUG -fsanitize=fuzzer); harness=Tests/fuzz/fuzz_malloc.c ;;
        *) echo "fuzz.sh: unknown target $t" >&2; exit 2 ;;
    esac
    local inputs=("$harness" "${core[@]}" Sources/CSpanAlloc Sources/SpanAllocMalloc Tests/fuzz/coverage-ignorelist.txt "$0")
    if [[ -x $bin ]] && [[ -z $(find "${inputs[@]}" -newer "$bin" -print -quit) ]]; then return; fi
    echo "== building $bin"
    # (the linker's "cannot export local symbol __asan_…" warnings are noise:
    # the build log is shown only when the build fails)
    local objs=() log=$OUT/$t/build.log
    : > "$log"
    if [[ $t == malloc* ]]; then
        local o
        for src in Sources/SpanAllocMalloc/override.c Sources/SpanAllocMalloc/config.c; do
            o=$OUT/$t/$(basename "$src" .c).o
            # coverage for the override, no sanitizer: SA_OVERRIDE stays 1
            local oopt=("${opt[@]/-fsanitize=fuzzer/-fsanitize=fuzzer-no-link}")
            if ! "$CLANG" "${common[@]}" "${oopt[@]}" "${renames[@]}" -fno-builtin -c "$src" -o "$o" >> "$log" 2>&1; then
                cat "$log"; exit 1
            fi
            objs+=("$o")
        done
    fi
    if ! "$CLANG" "${common[@]}" "${opt[@]}" "$harness" "${core[@]}" "${objs[@]}" -o "$bin.tmp" >> "$log" 2>&1; then
        cat "$log"; exit 1
    fi
    mv -f "$bin.tmp" "$bin"
}

args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
    if [[ -n ${FUZZ_SECONDS:-} ]]; then
        args=(-max_total_time="$FUZZ_SECONDS")
    else
        args=(-runs="${FUZZ_RUNS:-20000}")
    fi
fi

rc=0
for t in "${targets[@]}"; do
    build "$t"
    bin=$OUT/$t/fuzz_$t
    corpus=Tests/fuzz/corpus
    [[ $t == malloc* ]] && corpus=Tests/fuzz/corpus-malloc
    mkdir -p "$OUT/$t/new" "$OUT/$t/artifacts" "$corpus"
    echo "== $bin ${args[*]} (corpus $corpus)"
    log=$OUT/$t/last-run.log
    start=$(date +%s)
    set +e
    # -max_len bounds an input to a few hundred operations; leaks are not
    # checked (SpanAlloc's memory is mmap'd, LeakSanitizer cannot see it).
    "$bin" -max_len=1024 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$OUT/$t/artifacts/" \
        "${args[@]}" "$OUT/$t/new" "$corpus" 2>&1 | tee "$log" | grep -v -E '^#[0-9]+.*(NEW|REDUCE|pulse)|NEW_FUNC'
    trc=${PIPESTATUS[0]}
    set -e
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    [[ -z $runs ]] && runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo 0)
    echo "fuzz executions ($t): ${runs:-0} in $(($(date +%s) - start)) s$([[ $trc != 0 ]] && echo ", FAILED (exit $trc)")"
    [[ $trc != 0 ]] && rc=$trc
done
exit "$rc"
