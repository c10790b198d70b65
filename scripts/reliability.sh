#!/usr/bin/env bash
# The reliability checks that are not `swift test` (docs/reliability.md):
#   1. the C smoke test (Tests/c/smoke.c), -O2 -DNDEBUG;
#   2. the multi-generation stress (scripts/stress.sh): -O2 -DNDEBUG and
#      ThreadSanitizer builds, 4 configurations x >= 10^6 operations each;
#   3. the libFuzzer targets over the committed corpora (scripts/fuzz.sh),
#      bounded for CI.
# The fault-injection, bad-input, ASan and memory-return tests are the
# ReliabilityTests target and run with `swift test` (also under
# --sanitize=thread / --sanitize=address).
#
#   scripts/reliability.sh                    # CI
#   FUZZ_RUNS=1000000 scripts/reliability.sh  # longer fuzzing
#   FUZZ_SECONDS=3600 scripts/reliability.sh  # an hour per fuzz target
#   STRESS_SECONDS=1200 scripts/stress.sh --release-only   # long stress (>= 10^8 operations)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

echo "== C smoke test (scripts/smoke.sh)"
t=$(date +%s)
scripts/smoke.sh
echo "== reliability: smoke test passed, $(($(date +%s) - t)) s"

echo "== stress (scripts/stress.sh)"
t=$(date +%s)
scripts/stress.sh
echo "== reliability: stress passed, $(($(date +%s) - t)) s"

# Bounded by time, 40 s per target (4 targets, under 3 minutes with the
# builds), unless FUZZ_RUNS is given: the rate differs 2x between targets
# and with the machine's load (figures in docs/reliability.md).
if [[ -z ${FUZZ_RUNS:-} ]]; then export FUZZ_SECONDS=${FUZZ_SECONDS:-40}; fi
echo "== fuzzing (scripts/fuzz.sh)"
t=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! scripts/fuzz.sh > "$log" 2>&1; then
    cat "$log"
    echo "== reliability: scripts/fuzz.sh failed (a crash leaves its input in .build/fuzz/artifacts/; see docs/reliability.md)"
    exit 1
fi
grep -E '^(== |fuzz executions|fuzz_[a-z]+: free caches|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log"
echo "== reliability: fuzzing passed, $(($(date +%s) - t)) s, no crash"
echo "== reliability: all passed, $(($(date +%s) - start)) s"
