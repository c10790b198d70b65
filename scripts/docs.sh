#!/usr/bin/env bash
# Builds the DocC documentation of the SpanAlloc module with the toolchain's
# docc (no plugin): symbol graphs from a build of the SpanAlloc target (its own
# scratch path .build-docs, so the flags do not force a rebuild of .build),
# the catalog Sources/SpanAlloc/SpanAlloc.docc, documentation coverage at the
# detailed level. Fails when a public symbol declared in Sources/SpanAlloc has
# no doc comment (scripts/doc-coverage.py reads docc's coverage JSON).
# Writes .build-docs/docs/SpanAlloc.doccarchive. About 30 s from a clean
# checkout on 2 cores, under 10 s warm; each step is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build-docs/docs
graphs=$PWD/.build-docs/symbol-graphs
docc=$(command -v docc || true)
[ -n "$docc" ] || docc="$(dirname "$(readlink -f "$(command -v swift)")")/docc"
[ -x "$docc" ] || { echo "docs: no docc beside swift ($docc)" >&2; exit 1; }

echo "== docs: symbol graphs of SpanAlloc"
mkdir -p "$graphs" "$out"
timeout 600 swift build --scratch-path .build-docs --target SpanAlloc \
    -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$graphs" >"$out/build.log" 2>&1 \
    || { tail -30 "$out/build.log" >&2; exit 1; }
rm -rf "$out/all-graphs" "$out/own-graphs"
mkdir -p "$out/all-graphs"
cp "$graphs"/SpanAlloc.symbols.json "$out/all-graphs/"
cp "$graphs"/SpanAlloc@*.symbols.json "$out/all-graphs/" 2>/dev/null || true
python3 scripts/doc-coverage.py own-graphs "$graphs" "$out/own-graphs"

common=(--fallback-display-name SpanAlloc --fallback-bundle-identifier org.spanalloc.SpanAlloc
        --fallback-default-module-kind Framework)

echo "== docs: docc convert (the archive)"
rm -rf "$out/SpanAlloc.doccarchive"
timeout 300 "$docc" convert Sources/SpanAlloc/SpanAlloc.docc --additional-symbol-graph-dir "$out/all-graphs" \
    --output-dir "$out/SpanAlloc.doccarchive" "${common[@]}" >"$out/convert.log" 2>&1 \
    || { tail -30 "$out/convert.log" >&2; exit 1; }
echo "docs: $(grep -c '^warning:' "$out/convert.log" || true) docc warnings (in $out/convert.log)"
# A warning located in the catalog's articles (a link to a symbol that is no
# longer there, say) fails the build; those in doc comments are only counted.
if grep -A1 '^warning:' "$out/convert.log" | grep -qE '^[[:space:]]*-->[[:space:]]+[^ ]+\.md:'; then
    grep -B1 -A6 -E '^[[:space:]]*-->[[:space:]]+[^ ]+\.md:' "$out/convert.log" >&2
    echo "docs: warnings in Sources/SpanAlloc/SpanAlloc.docc" >&2
    exit 1
fi

echo "== docs: coverage (--experimental-documentation-coverage --coverage-summary-level detailed)"
rm -rf "$out/coverage"
timeout 300 "$docc" convert Sources/SpanAlloc/SpanAlloc.docc --additional-symbol-graph-dir "$out/own-graphs" \
    --output-dir "$out/coverage" "${common[@]}" \
    --experimental-documentation-coverage --coverage-summary-level detailed >"$out/coverage.txt" 2>&1 \
    || { tail -30 "$out/coverage.txt" >&2; exit 1; }
python3 scripts/doc-coverage.py check "$out/coverage/documentation-coverage.json"
echo "docs: $out/SpanAlloc.doccarchive"
