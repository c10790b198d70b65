#!/usr/bin/env bash
# Checks the README's dependency snippet as a user would use it: clones this
# repository into a temporary directory (tagging its HEAD with the README's
# version when the clone lacks that tag, as a CI clone of main does), makes a
# new package whose manifest holds the README's `.package(url: …, from: …)`
# line with the URL replaced by the clone's file:// URL, and the README's
# product line, resolves it by version (Package.resolved must pin that
# version), builds it and runs a small program using SpanHeap and GoSlice,
# and a second executable linked with the README's SpanAllocMalloc line
# whose Swift objects must come from SpanAlloc.
# About 1-2 minutes on 2 cores (a debug build of CSpanAlloc and SpanAlloc);
# each step is bounded by `timeout`, 10 minutes at the worst.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# The README's lines, exactly.
dep_line=$(grep -m1 -E '^[[:space:]]*\.package\(url: "[^"]+", from: "[0-9]+\.[0-9]+\.[0-9]+"\),?$' README.md) \
    || { echo "check-dependency: README.md has no .package(url: …, from: …) line" >&2; exit 1; }
product_line=$(grep -m1 -E '^[[:space:]]*\.product\(name: "SpanAlloc", package: "SpanAlloc"\),?$' README.md) \
    || { echo "check-dependency: README.md has no SpanAlloc .product line" >&2; exit 1; }
malloc_line=$(grep -m1 -E '^[[:space:]]*\.product\(name: "SpanAllocMalloc", package: "SpanAlloc"\),?[[:space:]]*(//.*)?$' README.md) \
    || { echo "check-dependency: README.md has no SpanAllocMalloc .product line" >&2; exit 1; }
version=$(sed -E 's/.*from: "([^"]+)".*/\1/' <<<"$dep_line")
grep -q "^## \[$version\]" CHANGELOG.md \
    || { echo "check-dependency: CHANGELOG.md has no entry for $version (README's version)" >&2; exit 1; }
echo "check-dependency: README's lines:"
echo "  $dep_line"
echo "  $product_line"
echo "  $malloc_line"

tmp=$(mktemp -d /tmp/spanalloc-dep.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# The package's identity comes from the URL's last component: SpanAlloc.
timeout 120 git clone -q "$repo" "$tmp/SpanAlloc"
if ! git -C "$tmp/SpanAlloc" rev-parse -q --verify "refs/tags/$version" >/dev/null; then
    git -C "$tmp/SpanAlloc" tag "$version"
    echo "check-dependency: tagged the clone's HEAD $(git -C "$tmp/SpanAlloc" rev-parse --short HEAD) as $version"
fi

app=$tmp/App
mkdir -p "$app/Sources/App" "$app/Sources/AppMalloc"
url="file://$tmp/SpanAlloc"
# The URL replaced by the clone's; the rest of the line as the README has it.
local_dep=$(sed -E "s|url: \"[^\"]+\"|url: \"$url\"|" <<<"$dep_line")
cat >"$app/Package.swift" <<MANIFEST
// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "App",
    dependencies: [
$local_dep
    ],
    targets: [
        .executableTarget(name: "App", dependencies: [
$product_line
        ]),
        .executableTarget(name: "AppMalloc", dependencies: [
$malloc_line
$product_line
        ]),
    ]
)
MANIFEST
cat >"$app/Sources/App/main.swift" <<'PROGRAM'
import SpanAlloc

var s = GoSlice<Int>()
for i in 0..<5 { s.append(i) }
let heap = SpanHeap.default
let p = heap.allocate(byteCount: 48, noscan: true)
let span = heap.span(containing: p)!
heap.deallocate(p)
print("count \(s.count) capacity \(s.capacity) spanClass \(span.spanClass)")
PROGRAM
cat >"$app/Sources/AppMalloc/main.swift" <<'PROGRAM'
import SpanAlloc

final class Box { var x = 0 }
let before = SpanHeap.default.memStats.mallocs
var boxes: [Box] = []
for i in 0..<1000 { boxes.append(Box()); boxes[i].x = i }
let after = SpanHeap.default.memStats.mallocs
let owned = SpanHeap.default.owns(Unmanaged.passUnretained(boxes[999]).toOpaque())
print("objects from SpanAlloc: \(owned), mallocs counted: \(after - before >= 1000)")
PROGRAM

cd "$app"
echo "check-dependency: resolving $url from $version"
timeout 300 swift package --disable-dependency-cache resolve >"$tmp/resolve.log" 2>&1 \
    || { cat "$tmp/resolve.log" >&2; exit 1; }
pinned=$(python3 -c '
import json, sys
pins = json.load(open("Package.resolved"))["pins"]
print(next((p["state"].get("version", "") for p in pins if p["identity"] == "spanalloc"), ""))')
[ "$pinned" = "$version" ] \
    || { echo "check-dependency: Package.resolved pins SpanAlloc at '$pinned', not $version" >&2; exit 1; }
echo "check-dependency: Package.resolved pins SpanAlloc $pinned"
timeout 600 swift build >"$tmp/build.log" 2>&1 || { tail -40 "$tmp/build.log" >&2; exit 1; }
out=$(timeout 60 .build/debug/App)
echo "check-dependency: the program printed: $out"
[ "$out" = "count 5 capacity 8 spanClass 11" ] \
    || { echo "check-dependency: expected 'count 5 capacity 8 spanClass 11'" >&2; exit 1; }
out=$(timeout 60 .build/debug/AppMalloc)
echo "check-dependency: the SpanAllocMalloc program printed: $out"
[ "$out" = "objects from SpanAlloc: true, mallocs counted: true" ] \
    || { echo "check-dependency: expected 'objects from SpanAlloc: true, mallocs counted: true'" >&2; exit 1; }
echo "check-dependency: ok"
