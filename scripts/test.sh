#!/usr/bin/env bash
# The test command: installs what the tests need, then runs the whole suite,
# once plainly and once under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
python3 scripts/gen_sizeclasses.py --check
echo "== swift test"
swift test
echo "== swift test --sanitize=thread"
swift test --sanitize=thread --scratch-path .build-tsan
