#!/usr/bin/env bash
# Compile-time soundness checks: compiles each snippet in Tests/typecheck
# against the SpanAlloc module in Swift 6 language mode, through the SIL
# diagnostics (`-emit-sil`: the data-race checks of `sending` run on SIL, after
# what `-typecheck` alone checks). A snippet whose first line is
# `// expect: pass` must compile; one whose first line is
# `// expect: error: TEXT` must fail with a diagnostic containing TEXT. The
# passing snippets keep the script from passing vacuously (a broken module
# path would fail them). Each swiftc call is bounded by a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

timeout 900 swift build --target SpanAlloc >/dev/null
bin="$(swift build --show-bin-path)"
flags=(-emit-sil -o /dev/null -swift-version 6 -warnings-as-errors
       -I "$bin/Modules"
       -Xcc -fmodule-map-file="$bin/CSpanAlloc.build/module.modulemap"
       -Xcc -I -Xcc Sources/CSpanAlloc/include)

failures=0 passes=0 rejections=0
for f in Tests/typecheck/*.swift; do
    expect="$(head -n 1 "$f" | sed -n 's|^// expect: ||p')"
    if [ -z "$expect" ]; then
        echo "FAIL $f: no '// expect:' first line"; failures=$((failures + 1)); continue
    fi
    set +e
    out="$(timeout 120 swiftc "${flags[@]}" "$f" 2>&1)"
    rc=$?
    set -e
    if [ "$expect" = pass ]; then
        if [ $rc -eq 0 ]; then
            echo "ok   $f type-checks"; passes=$((passes + 1))
        else
            echo "FAIL $f should type-check:"; echo "$out" | grep -E 'error' | head -5 || true
            failures=$((failures + 1))
        fi
    elif [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -qF -- "$expect" <<<"$out"; then
        echo "ok   $f rejected: $expect"; rejections=$((rejections + 1))
    else
        echo "FAIL $f (exit $rc) should be rejected with: $expect"
        echo "$out" | grep -E 'error' | head -5 || true
        failures=$((failures + 1))
    fi
done
echo "typecheck snippets: $passes pass, $rejections rejected as expected, $failures wrong"
[ $failures -eq 0 ] && [ $passes -gt 0 ] && [ $rejections -gt 0 ]
