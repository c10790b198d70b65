#!/usr/bin/env bash
# The test command: installs what the tests need (jemalloc and friends, for
# the bench and malloc tests), then runs the whole suite three times — plain,
# under ThreadSanitizer and under AddressSanitizer — the package checks
# (docs and their coverage, the README's dependency line, the Metrics
# package's tests; about 2 minutes), and the reliability
# checks that are not Swift tests (scripts/reliability.sh: the C smoke test,
# the multi-generation stress in two builds, four bounded fuzz targets;
# about 4-5 minutes). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
python3 scripts/gen_sizeclasses.py --check

# The LD_PRELOAD library before any Swift pass: the memory-return test
# under LD_PRELOAD (ReliabilityTests) needs it and must not be skipped.
echo "== scripts/build-preload.sh --tests"
./scripts/build-preload.sh --tests

echo "== scripts/typecheck-snippets.sh"
./scripts/typecheck-snippets.sh

echo "== swift test"
# bench's timing tests (opt-in, BENCH_TIMING_TESTS=1) measure the release
# build, what ./scripts/bench.sh runs.
swift build -c release --product bench
SPANALLOC_REQUIRE_PRELOAD=1 BENCH_RELEASE_BINARY="$PWD/.build/release/bench" swift test

# The package as a user meets it. Each step is bounded by `timeout` inside.
# DocC archive and documentation coverage: ~20 s (~10 s warm).
echo "== scripts/docs.sh"
./scripts/docs.sh
# The README's dependency line resolved by version in a new package: ~15 s.
echo "== scripts/check-dependency.sh"
./scripts/check-dependency.sh
# The SpanAllocMetrics package (Metrics/, its own .build): ~1 min cold, ~5 s warm.
echo "== (cd Metrics && swift test)"
(cd Metrics && timeout 600 swift test)

# The heap profiler read back by go tool pprof (see the script for its time).
echo "== scripts/profile-check.sh: the heap profiler read back by go tool pprof"
./scripts/profile-check.sh

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
