#!/usr/bin/env bash
# The test command: installs what the tests need (jemalloc and friends, for
# the bench and malloc tests), then runs the whole suite three times — plain,
# under ThreadSanitizer and under AddressSanitizer — and the reliability
# checks that are not Swift tests (bounded fuzzing). Exits non-zero on the
# first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
python3 scripts/gen_sizeclasses.py --check

echo "== swift test"
# bench's timing tests measure the release build (what ./scripts/bench.sh runs) when it is there.
swift build -c release --product bench
BENCH_RELEASE_BINARY="$PWD/.build/release/bench" swift test

echo "== Benchmarks/: package-benchmark malloc-count thresholds"
./scripts/benchmarks.sh

echo "== swift test --sanitize=thread"
swift test --sanitize=thread --scratch-path .build-tsan

# LeakSanitizer is off: XCTest's own runner leaks a few objects at exit.
echo "== swift test --sanitize=address"
ASAN_OPTIONS=detect_leaks=0 swift test --sanitize=address --scratch-path .build-asan

if [ -x scripts/reliability.sh ]; then
    echo "== scripts/reliability.sh"
    ./scripts/reliability.sh
fi
echo "all test passes done"
