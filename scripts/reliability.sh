#!/usr/bin/env bash
# The reliability checks that are not `swift test` (docs/reliability.md):
# the libFuzzer target over the committed corpus, bounded for CI.
# The stress, fault-injection, bad-input, ASan and memory-return tests are
# the ReliabilityTests target and run with `swift test` (also under
# --sanitize=thread / --sanitize=address).
#
#   scripts/reliability.sh                    # CI: FUZZ_RUNS (default 20000) executions
#   FUZZ_RUNS=1000000 scripts/reliability.sh  # longer
#   FUZZ_SECONDS=3600 scripts/reliability.sh  # an hour
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_RUNS=${FUZZ_RUNS:-20000}
start=$(date +%s)
echo "== fuzzing (scripts/fuzz.sh)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! scripts/fuzz.sh > "$log" 2>&1; then
    cat "$log"
    echo "== reliability: scripts/fuzz.sh failed (a crash leaves its input in .build/fuzz/artifacts/; see docs/reliability.md)"
    exit 1
fi
grep -v -E '^\s+NEW_FUNC|^#[0-9]+ +(INITED|DONE)' "$log" | tail -n 12
echo "== reliability: $(grep '^fuzz executions:' "$log"), $(($(date +%s) - start)) s, no crash"
