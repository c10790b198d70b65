#!/usr/bin/env bash
# The heap profiler against known allocation sites (docs/profiling.md):
# Tests/profile/profile_sites.c, built with -g -fno-omit-frame-pointer, runs
# under LD_PRELOAD with SPANALLOC=profile=…, and `go tool pprof -top` must
# name each site with its figures:
#
#   profile_rate=65536, 5 runs: every site's in-use bytes within ±15% of the
#       truth, the freed site's allocated bytes within ±15% and its in-use
#       bytes at most 1% of them;
#   profile_rate=1: every figure exact;
#   the default rate (512 KiB): the 100 MiB site within ±15%;
#   folded stacks (a .folded path): one line per stack naming the sites;
#   profile_signal=USR2: the writer thread's profile has the 100 MiB site;
#   profile-demo (a Swift program linked with SpanAllocMalloc with the same
#       sites), when built: the same figures at 64 KiB and rate 1, by
#       demangled names; malloc-demo, when built: demangled Swift names.
#
# Needs `go` (Debian's golang-go; scripts/setup.sh installs it). Prints one
# line per run with the measured figures; exits non-zero on the first miss.
# Bounded: about 10 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "profile-check: go not found (apt-get install golang-go)" >&2; exit 2; }
lib=$(nice -n 19 scripts/build-preload.sh)
out=.build/profile-check
mkdir -p "$out"
CC=${CC:-$(command -v clang || echo cc)}
bin=$out/profile_sites
if [[ ! -x $bin || Tests/profile/profile_sites.c -nt $bin ]]; then
    nice -n 19 "$CC" -O1 -g -fno-omit-frame-pointer Tests/profile/profile_sites.c -o "$bin"
fi
export HOME=${PROFILE_CHECK_HOME:-$PWD/$out} # go wants a writable home

# top FILE INDEX SITE: the site's flat bytes (0 when pprof does not list it).
top() {
    go tool pprof -top -sample_index="$2" -unit=B "$bin" "$1" 2>/dev/null |
        awk -v site="$3" '$NF == site { v = $1; sub(/B$/, "", v); print v; found = 1 } END { if (!found) print 0 }'
}
# within A TRUTH PERCENT
within() { awk -v a="$1" -v t="$2" -v p="$3" 'BEGIN { d = a - t; if (d < 0) d = -d; exit !(d <= t * p / 100) }'; }

fail=0
run() { # run LABEL RATE-OPTION CHECK (pct|exact|big)
    local label=$1 opt=$2 mode=$3 prof=$out/heap.$1.pb.gz
    rm -f "$prof"
    LD_PRELOAD=$lib SPANALLOC="profile=$prof${opt:+,$opt}" "$bin" > "$out/truth.txt"
    [[ -s $prof ]] || { echo "profile-check: $label: no profile written" >&2; fail=1; return; }
    local big small churn_alloc churn_inuse
    big=$(top "$prof" inuse_space site_big)
    small=$(top "$prof" inuse_space site_small)
    churn_alloc=$(top "$prof" alloc_space site_churn)
    churn_inuse=$(top "$prof" inuse_space site_churn)
    local tbig tsmall tchurn
    tbig=$(awk '$1 == "site_big" { print $3 }' "$out/truth.txt")
    tsmall=$(awk '$1 == "site_small" { print $3 }' "$out/truth.txt")
    tchurn=$(awk '$1 == "site_churn" { print $2 }' "$out/truth.txt")
    printf '%-10s site_big %s/%s  site_small %s/%s  site_churn alloc %s/%s inuse %s\n' \
        "$label" "$big" "$tbig" "$small" "$tsmall" "$churn_alloc" "$tchurn" "$churn_inuse"
    local ok=1
    case $mode in
        pct)
            # The 12 MiB site holds about 192 samples at 64 KiB: its estimate's
            # σ is 1/√192 = 7.2%, so ±15% is 2σ and five runs all land inside
            # only about 83% of the time (docs/profiling.md). Outside ±15% is
            # reported; outside ±25% (3.5σ: about 1 run in 2,000) fails.
            within "$small" "$tsmall" 15 || echo "           (site_small outside ±15%: a 2σ event, reported)"
            within "$big" "$tbig" 15 && within "$small" "$tsmall" 25 && within "$churn_alloc" "$tchurn" 15 &&
                awk -v i="$churn_inuse" -v a="$churn_alloc" 'BEGIN { exit !(i <= a / 100) }' || ok=0 ;;
        exact)
            [[ $big == "$tbig" && $small == "$tsmall" && $churn_alloc == "$tchurn" && $churn_inuse == 0 ]] || ok=0 ;;
        big)
            within "$big" "$tbig" 15 || ok=0 ;;
    esac
    if [[ $ok == 0 ]]; then echo "profile-check: $label: figures out of bounds" >&2; fail=1; fi
}

# PROFILE_CHECK_RUNS: the runs at 64 KiB (default 5).
for i in $(seq 1 "${PROFILE_CHECK_RUNS:-5}"); do run "rate64k-$i" profile_rate=65536 pct; done
run rate1 profile_rate=1 exact
run default "" big

# Folded stacks: callers first, the site last, then its bytes in use.
folded=$out/heap.folded
LD_PRELOAD=$lib SPANALLOC="profile=$folded,profile_rate=65536" "$bin" > /dev/null
if ! grep -q ';main;site_big [0-9]*$' "$folded" || ! grep -q ';main;site_small [0-9]*$' "$folded"; then
    echo "profile-check: folded stacks lack the sites:" >&2
    cat "$folded" >&2
    fail=1
fi

# profile_signal=USR2 without a path: the writer thread writes
# spanalloc.<pid>.heap.pb.gz in the working directory.
sigdir=$out/signal
rm -rf "$sigdir" && mkdir -p "$sigdir"
if (cd "$sigdir" && LD_PRELOAD=$lib SPANALLOC=profile_signal=USR2,profile_rate=65536 "$PWD/../profile_sites" signal > truth.txt); then
    sigprof=$(ls "$sigdir"/spanalloc.*.heap.pb.gz)
    big=$(top "$sigprof" inuse_space site_big)
    echo "signal     site_big $big (written by the USR2 writer thread)"
    within "$big" 104857600 15 || { echo "profile-check: signal: site_big $big" >&2; fail=1; }
else
    echo "profile-check: profile_signal=USR2 wrote no profile" >&2
    fail=1
fi

# The same sites in a Swift program linked with SpanAllocMalloc (profile-demo,
# when built): demangled names, figures as for the C program. A site's
# figure is the flat bytes of every function whose name contains it (the
# closures that call malloc for it).
swiftdemo=${PROFILE_DEMO:-$(ls .build/debug/profile-demo .build/release/profile-demo 2>/dev/null | head -1 || true)}
topsum() { # topsum FILE INDEX NAME
    go tool pprof -top -sample_index="$2" -unit=B "$swiftdemo" "$1" 2>/dev/null |
        awk -v site="$3" 'index($0, site) && $1 ~ /B$/ { v = $1; sub(/B$/, "", v); s += v } END { print s + 0 }'
}
swiftrun() { # swiftrun LABEL RATE MODE
    local prof=$out/swift.$1.pb.gz
    rm -f "$prof"
    SPANALLOC="profile=$prof,profile_rate=$2" "$swiftdemo" > /dev/null
    local big small churn churn_inuse
    big=$(topsum "$prof" inuse_space profile_demo.bigSite)
    small=$(topsum "$prof" inuse_space profile_demo.smallSite)
    churn=$(topsum "$prof" alloc_space profile_demo.churnSite)
    churn_inuse=$(topsum "$prof" inuse_space profile_demo.churnSite)
    printf '%-10s bigSite %s/104857600  smallSite %s/12582912  churnSite alloc %s/536870912 inuse %s\n' \
        "$1" "$big" "$small" "$churn" "$churn_inuse"
    local ok=1
    if [[ $3 == exact ]]; then
        [[ $big == 104857600 && $small == 12582912 && $churn == 536870912 && $churn_inuse == 0 ]] || ok=0
    else
        # The 12 MiB site as in the C program's runs: ±15% reported, ±25% enforced.
        within "$small" 12582912 15 || echo "           (smallSite outside ±15%: a 2σ event, reported)"
        within "$big" 104857600 15 && within "$small" 12582912 25 && within "$churn" 536870912 15 &&
            awk -v i="$churn_inuse" -v a="$churn" 'BEGIN { exit !(i <= a / 100) }' || ok=0
    fi
    if [[ $ok == 0 ]]; then echo "profile-check: $1: figures out of bounds" >&2; fail=1; fi
}
if [[ -n $swiftdemo && -x $swiftdemo ]]; then
    for i in 1 2 3 4 5; do swiftrun "swift64k-$i" 65536 pct; done
    swiftrun swift1 1 exact
else
    echo "swift      profile-demo not built (swift build): skipped"
fi

# A signal the program's environment already disposes of (here: ignored,
# inherited across exec) is left alone, with one message.
msg=$( (trap '' USR2; LD_PRELOAD=$lib SPANALLOC=profile_signal=USR2 "$bin" 2>&1 >/dev/null) )
if [[ $msg != *"profile_signal=12 ignored"* ]]; then
    echo "profile-check: an ignored SIGUSR2 was taken over: '$msg'" >&2
    fail=1
fi

# A Swift program linked with SpanAllocMalloc (malloc-demo, when built):
# its Swift functions by demangled names.
demo=${MALLOC_DEMO:-$(ls .build/debug/malloc-demo .build/release/malloc-demo 2>/dev/null | head -1 || true)}
if [[ -n $demo && -x $demo ]]; then
    SPANALLOC="profile=$out/demo.pb.gz,profile_rate=4096" "$demo" 2000 > /dev/null
    go tool pprof -top -sample_index=alloc_space -unit=B "$demo" "$out/demo.pb.gz" 2>/dev/null > "$out/demo.top"
    if grep -q 'main' "$out/demo.top" && grep -q 'Swift\.' "$out/demo.top" && ! grep -q '\$s' "$out/demo.top"; then
        echo "swift      malloc-demo: $(grep -c . "$out/demo.top") lines, demangled (e.g. $(grep -o 'Swift\.[A-Za-z]*' "$out/demo.top" | head -1))"
    else
        echo "profile-check: malloc-demo's profile lacks demangled Swift names:" >&2
        head -30 "$out/demo.top" >&2
        fail=1
    fi
else
    echo "swift      malloc-demo not built (swift build): skipped"
fi

[[ $fail == 0 ]] && echo "profile-check: ok"
exit $fail
