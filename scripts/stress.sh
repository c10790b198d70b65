#!/usr/bin/env bash
# Builds and runs the multi-generation stress (Tests/stress/stress.c,
# docs/reliability.md), the idle-cache claim stress (Tests/stress/claims.c) and
# the scavenger stress (Tests/stress/scavenge_stress.c: page runs released
# outside the heap lock while workers allocate from them, fork while releasing)
# against the CSpanAlloc sources, twice each:
#
#   .build/stress/*-release   clang -O2 -DNDEBUG (the shipped build)
#   .build/stress/*-tsan      clang -O1 -g -fsanitize=thread, assertions and lock-rank checks on
#
# claims runs CLAIMS_SECONDS (default 5) per build; scavenge_stress
# SCAVENGE_STRESS_SECONDS (default 4, shared by its 2- and 4-worker runs) per
# build, then its fork phase (SCAVENGE_STRESS_FORK=0 skips it; the TSan build
# runs the fork phase on its own, with die_after_fork=0 detect_deadlocks=0);
# and the heap profiler stress (Tests/stress/profile_stress.c,
# PROFILE_STRESS_SECONDS, default 3, with a fork midway).
#   scripts/stress.sh                    # CI: 4 configurations x >= 10^6 operations, each build
#   STRESS_SECONDS=1200 scripts/stress.sh --release-only   # long mode (>= 10^8 operations)
#   STRESS_CONFIGS=8m STRESS_OPS=10000000 scripts/stress.sh
#
# STRESS_OPS, STRESS_SECONDS, STRESS_CONFIGS and STRESS_SEED go to both
# builds; STRESS_TSAN_OPS (default 10^6) bounds the ThreadSanitizer run.
# Rebuilds only when a source changed. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG=${CLANG:-/opt/swift/usr/bin/clang}
OUT=.build/stress
mkdir -p "$OUT"
release_only=0
for arg in "$@"; do
    case "$arg" in
        --release-only) release_only=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "stress.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

core=(Sources/CSpanAlloc/*.c)
build() { # build OUTPUT MAIN FLAGS...
    local bin=$1 main=$2; shift 2
    if [[ ! -x $bin ]] || [[ -n $(find "$main" "${core[@]}" Sources/CSpanAlloc "$0" -newer "$bin" -print -quit) ]]; then
        echo "== building $bin"
        "$CLANG" -std=gnu11 -D_GNU_SOURCE -pthread -Wall -Wextra "$@" \
            -ISources/CSpanAlloc/include -ISources/CSpanAlloc "$main" "${core[@]}" -o "$bin.tmp"
        mv -f "$bin.tmp" "$bin"
    fi
}
build "$OUT/stress-release" Tests/stress/stress.c -O2 -DNDEBUG
build "$OUT/claims-release" Tests/stress/claims.c -O2 -DNDEBUG
build "$OUT/scavenge-stress-release" Tests/stress/scavenge_stress.c -O2 -DNDEBUG
build "$OUT/profile-stress-release" Tests/stress/profile_stress.c -O2 -DNDEBUG -fno-omit-frame-pointer -momit-leaf-frame-pointer
# The toolchain's TSan runtime carries libdispatch interceptors: link the
# toolchain's libdispatch and BlocksRuntime so they resolve.
swiftlib=$(dirname "$CLANG")/../lib/swift/linux
tsan=(-O1 -g -fsanitize=thread -L"$swiftlib" -Wl,-rpath,"$swiftlib" -ldispatch -lBlocksRuntime)
[[ $release_only = 1 ]] || build "$OUT/stress-tsan" Tests/stress/stress.c "${tsan[@]}"
[[ $release_only = 1 ]] || build "$OUT/claims-tsan" Tests/stress/claims.c "${tsan[@]}"
[[ $release_only = 1 ]] || build "$OUT/scavenge-stress-tsan" Tests/stress/scavenge_stress.c "${tsan[@]}"
[[ $release_only = 1 ]] || build "$OUT/profile-stress-tsan" Tests/stress/profile_stress.c -fno-omit-frame-pointer "${tsan[@]}"

start=$(date +%s)
echo "== $OUT/stress-release"
"$OUT/stress-release"
if [[ $release_only = 0 ]]; then
    echo "== $OUT/stress-tsan"
    # halt_on_error: a reported race fails the run (exit code 66).
    STRESS_OPS=${STRESS_TSAN_OPS:-${STRESS_OPS:-1000000}} TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" \
        "$OUT/stress-tsan"
fi
# The scavenger claiming idle threads' caches while they wake up.
echo "== $OUT/claims-release"
"$OUT/claims-release"
if [[ $release_only = 0 ]]; then
    echo "== $OUT/claims-tsan"
    TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" "$OUT/claims-tsan"
fi
# Releases outside the heap lock racing the workers' allocations, and fork.
echo "== $OUT/scavenge-stress-release"
"$OUT/scavenge-stress-release"
if [[ $release_only = 0 ]]; then
    echo "== $OUT/scavenge-stress-tsan"
    SCAVENGE_STRESS_FORK=0 TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" "$OUT/scavenge-stress-tsan"
    # The fork phase alone: its children start their own scavenger thread
    # (die_after_fork=0), and sa_fork_prepare holds more locks than TSan's
    # deadlock detector tracks (detect_deadlocks=0).
    SCAVENGE_STRESS_FORK=only TSAN_OPTIONS="halt_on_error=1 die_after_fork=0 detect_deadlocks=0 ${TSAN_OPTIONS:-}" \
        "$OUT/scavenge-stress-tsan"
fi
# The heap profiler: sampling, remote frees of sampled objects, profiles
# written and the rate changed while workers run, thread exit, fork.
echo "== $OUT/profile-stress-release"
"$OUT/profile-stress-release"
if [[ $release_only = 0 ]]; then
    echo "== $OUT/profile-stress-tsan"
    PROFILE_STRESS_FORK=0 TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" "$OUT/profile-stress-tsan"
    PROFILE_STRESS_SECONDS=1 TSAN_OPTIONS="halt_on_error=1 die_after_fork=0 detect_deadlocks=0 ${TSAN_OPTIONS:-}" \
        "$OUT/profile-stress-tsan"
fi
echo "== stress: passed, $(($(date +%s) - start)) s"
