#!/usr/bin/env bash
# The main job: builds SpanAlloc in release mode and compares it with
# jemalloc (and glibc, mimalloc, tcmalloc where installed). Arguments go to
# `bench` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
swift build -c release --product bench >&2
./scripts/build-preload.sh >&2   # the LD_PRELOAD library, for `bench preload`
exec .build/release/bench "$@"
