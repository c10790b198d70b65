#!/usr/bin/env bash
# The package-benchmark suite (Benchmarks/) with its malloc-count thresholds:
# every SpanHeap benchmark's p90 of mallocCountTotal (libc malloc calls per
# scaled iteration, counted by the MallocInterposer trait) must equal its
# static threshold in Benchmarks/Thresholds (0: SpanHeap's hot paths allocate
# from its own spans only), with the zero tolerance the benchmarks declare.
# Exits non-zero when a benchmark allocates through libc. Each benchmark runs
# at most 1 s (maxDuration); the first build of the suite's dependencies takes
# 1-3 minutes on 2 cores, later runs seconds; the whole step is capped at 15 min.
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"
timeout 900 swift package --allow-writing-to-package-directory benchmark thresholds check --no-progress
