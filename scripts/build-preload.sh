#!/usr/bin/env bash
# Builds the LD_PRELOAD library: SpanAlloc's C sources and the malloc
# override compiled with plain `cc` (no SwiftPM, no Swift runtime) into
#
#     .build/spanalloc-preload/libspanalloc.so
#
# which depends on libc only. Usage:
#
#     scripts/build-preload.sh            # the library; prints its path
#     scripts/build-preload.sh --tests    # also the C test program
#                                         # .build/spanalloc-preload/malloc-test
#                                         # (and libtlsprobe.so, which it loads)
#     LD_PRELOAD=$PWD/.build/spanalloc-preload/libspanalloc.so some-program
#
# Rebuilds only when a source is newer than the output. CC and CFLAGS_EXTRA
# may be set. The README's test and bench commands call this script.
set -euo pipefail
cd "$(dirname "$0")/.."

out=.build/spanalloc-preload
lib=$out/libspanalloc.so
test_bin=$out/malloc-test
# The Swift toolchain's clang when there is one: it lays the fast paths out better than gcc 12.
CC=${CC:-$(command -v clang || echo cc)}
mkdir -p "$out"

with_tests=0
for arg in "$@"; do
    case "$arg" in
        --tests) with_tests=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "build-preload: unknown argument $arg" >&2; exit 2 ;;
    esac
done

# Newer than $1? (true when $1 is missing or any later argument is newer)
stale() {
    local target=$1; shift
    [ -e "$target" ] || return 0
    [ -n "$(find "$@" -newer "$target" -print -quit)" ]
}

lib_inputs=(Sources/CSpanAlloc Sources/SpanAllocMalloc "$0")
if stale "$lib" "${lib_inputs[@]}"; then
    tmp=$(mktemp "$out/.libspanalloc.XXXXXX")
    # -fno-semantic-interposition and -Bsymbolic-functions let the entry
    # points call the core directly instead of through the PLT; only the
    # public names (sa_*, the libc API) are exported.
    # shellcheck disable=SC2086
    # -fno-builtin-*: the compiler must not turn malloc+memset into calloc
    # (or similar) inside the allocator itself.
    # -fno-omit-frame-pointer: the heap profiler walks stacks by frame pointer;
    # leaf functions (the fast paths that only tail-call) need none: they call
    # nothing that walks, and leave rbp as they found it.
    "$CC" -std=c11 -O2 -g -fPIC -shared -pthread -D_GNU_SOURCE -DNDEBUG -fno-omit-frame-pointer -momit-leaf-frame-pointer \
        -fno-semantic-interposition -Wl,-Bsymbolic-functions \
        -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free \
        ${CFLAGS_EXTRA:-} \
        -I Sources/CSpanAlloc/include -I Sources/CSpanAlloc -I Sources/SpanAllocMalloc/include \
        Sources/CSpanAlloc/*.c Sources/SpanAllocMalloc/*.c \
        -o "$tmp"
    # The library must not drag a runtime into every preloaded process.
    needed=$(readelf -d "$tmp" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    for so in $needed; do
        case "$so" in
            libc.so.*|ld-linux*) ;;
            *) echo "build-preload: $lib would need $so (libc only allowed)" >&2; rm -f "$tmp"; exit 1 ;;
        esac
    done
    mv -f "$tmp" "$lib"
fi

if [ "$with_tests" = 1 ] && stale "$test_bin" Tests/malloc Sources/CSpanAlloc/include Sources/SpanAllocMalloc/include "$0"; then
    tmp=$(mktemp "$out/.malloc-test.XXXXXX")
    # Not linked with the library: it runs under LD_PRELOAD and finds the
    # sa_* functions through weak references.
    # -fno-builtin: clang folds calloc(2^33, 2^33) == NULL at compile time
    # and would never call the allocator it is testing.
    "$CC" -std=c11 -O1 -g -pthread -D_GNU_SOURCE -Wall -Wextra -fno-builtin \
        -I Sources/CSpanAlloc/include -I Sources/SpanAllocMalloc/include \
        Tests/malloc/malloc_test.c -o "$tmp"
    mv -f "$tmp" "$test_bin"
    tmp=$(mktemp "$out/.libtlsprobe.XXXXXX")
    "$CC" -std=c11 -O1 -fPIC -shared Tests/malloc/tls_probe.c -o "$tmp"
    mv -f "$tmp" "$out/libtlsprobe.so"
fi

echo "$PWD/$lib"
