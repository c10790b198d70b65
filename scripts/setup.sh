#!/usr/bin/env bash
# Installs what SpanAlloc's benchmarks and tests use from Debian's packages:
# jemalloc (the baseline), and mimalloc and tcmalloc when the archive has them;
# gcc and python3 (/usr/bin), the real programs that `bench preload --programs
# real` times and the malloc tests run under LD_PRELOAD; golang-go, whose
# `go tool pprof` reads the heap profiles in scripts/profile-check.sh.
# Needs root (or sudo); without it, prints what to install and carries on.
set -u
need=()
for pkg in libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev gcc python3 golang-go; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "setup: not root; install these for the full comparison: ${need[*]}" >&2
        exit 0
    fi
fi
echo "setup: installing ${need[*]}" >&2
$SUDO apt-get update -qq >/dev/null 2>&1 || true
for pkg in "${need[@]}"; do
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
        || echo "setup: could not install $pkg (the comparison skips it)" >&2
done
exit 0
