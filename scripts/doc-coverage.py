#!/usr/bin/env python3
"""Documentation coverage of the SpanAlloc module, for scripts/docs.sh.

    doc-coverage.py own-graphs SRC_DIR OUT_DIR
        Writes to OUT_DIR the symbol graphs of SRC_DIR reduced to the symbols
        declared in the module's own sources: the members a protocol's
        extension lends (swift-symbolgraph's SYNTHESIZED copies, documented
        by their own module) are left out, so every symbol docc then sees is
        one of ours.
    doc-coverage.py check COVERAGE_JSON
        Reads docc's documentation-coverage.json for those graphs and fails
        (exit 1) listing every symbol without an abstract; prints the figure.
"""
import json
import os
import sys


def own_graphs(src, out):
    os.makedirs(out, exist_ok=True)
    kept_total = 0
    for name in sorted(os.listdir(src)):
        if not (name.startswith("SpanAlloc.") or name.startswith("SpanAlloc@")) or not name.endswith(".symbols.json"):
            continue
        with open(os.path.join(src, name)) as f:
            graph = json.load(f)
        symbols = [s for s in graph["symbols"]
                   if "::SYNTHESIZED::" not in s["identifier"]["precise"] and "location" in s]
        kept = {s["identifier"]["precise"] for s in symbols}
        graph["symbols"] = symbols
        graph["relationships"] = [r for r in graph["relationships"] if r["source"] in kept]
        kept_total += len(symbols)
        with open(os.path.join(out, name), "w") as f:
            json.dump(graph, f)
    if kept_total == 0:
        sys.exit(f"doc-coverage: no SpanAlloc symbols in {src}")
    print(f"doc-coverage: {kept_total} public symbols declared in Sources/SpanAlloc")


def check(path):
    with open(path) as f:
        entries = json.load(f)
    symbols = [e for e in entries if e["kind"]["isSymbol"]]
    missing = [e for e in symbols if not e["hasAbstract"]]
    documented = len(symbols) - len(missing)
    if not symbols:
        sys.exit(f"doc-coverage: {path} lists no symbol")
    print(f"doc-coverage: {documented}/{len(symbols)} public symbols of SpanAlloc documented "
          f"({100.0 * documented / len(symbols):.1f}%)")
    for e in missing:
        ref = e["referencePath"].split("/documentation/", 1)[-1]
        print(f"  undocumented: {e['kind']['name']} {ref}")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "own-graphs":
        own_graphs(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
