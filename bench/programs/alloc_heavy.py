"""An allocation-heavy Python program for `bench preload --programs python`.

Run it with PYTHONMALLOC=malloc (bench sets it for this program's process only)
so that every object allocation goes to the preloaded malloc instead of
pymalloc's arenas, and PYTHONHASHSEED=0 so the run is the same every time.

    PYTHONMALLOC=malloc PYTHONHASHSEED=0 python3 alloc_heavy.py [--scale X]

The phases mimic what interpreters do all day: build and tear down dicts of
small objects, keep a working set whose members are replaced at random (so
frees come in scattered order and allocations follow at once), split, join
and format strings, sort lists of tuples, round-trip JSON, and churn class
instances and a tree of nodes. It prints one line of counts and a checksum;
the line depends only on --scale, so a run under any allocator must print
the same one. About 3-4 s at --scale 1 with glibc's malloc on the 2-core
machine this project is measured on.
"""
import argparse
import hashlib
import json
import random


class Record:
    def __init__(self, key, value, tags):
        self.key = key
        self.value = value
        self.tags = tags


class Slotted:
    __slots__ = ("a", "b", "c")

    def __init__(self, a, b, c):
        self.a = a
        self.b = b
        self.c = c


class Node:
    __slots__ = ("key", "left", "right", "payload")

    def __init__(self, key, payload):
        self.key = key
        self.left = None
        self.right = None
        self.payload = payload


def dict_build_and_delete(n, digest):
    data = {}
    for i in range(n):
        data["key%d" % i] = [i, str(i) * (i % 7), {"f": i / 3, "t": (i, -i)}]
    for i in range(0, n, 3):
        del data["key%d" % i]
    for i in range(0, n, 3):
        data["new%d" % i] = ("x" * (i % 50), i)
    digest.update(str(len(data)).encode())
    return len(data)


def working_set_churn(size, ops, rng, digest):
    """A working set of `size` objects of random kinds, one replaced per operation."""
    kinds = 6
    live = [None] * size
    total = 0
    for op in range(size + ops):
        slot = op if op < size else rng.randrange(size)
        k = rng.randrange(kinds)
        n = rng.randrange(1, 64)
        if k == 0:
            obj = "s" * n
        elif k == 1:
            obj = list(range(n))
        elif k == 2:
            obj = {i: i for i in range(n // 4 + 1)}
        elif k == 3:
            obj = Record(op, n, (op, n))
        elif k == 4:
            obj = bytearray(n * 16)
        else:
            obj = tuple(str(i) for i in range(n // 8 + 1))
        live[slot] = obj
        total += n
    digest.update(str(total).encode())
    return total


def string_work(n, rng, digest):
    words = ["w%d" % rng.randrange(10 ** 6) for _ in range(n)]
    lines = []
    for i in range(0, n, 8):
        chunk = words[i:i + 8]
        lines.append(", ".join(chunk).upper().replace("W", "word-") + f" #{i:06d}")
    text = "\n".join(lines)
    back = [line.split(", ") for line in text.split("\n")]
    counts = {}
    for parts in back:
        for p in parts:
            head = p[:6]
            counts[head] = counts.get(head, 0) + 1
    digest.update(text.encode())
    return len(text), len(counts)


def sort_and_comprehend(n, rng, digest):
    rows = [(rng.randrange(1000), "k%d" % rng.randrange(n), i) for i in range(n)]
    rows.sort()
    groups = {}
    for a, b, c in rows:
        groups.setdefault(a, []).append((b, c))
    squares = [[x * x for x in range(len(v) % 40)] for v in groups.values()]
    stack = []
    for i in range(n):
        stack.append([i] * (i % 5))
        if i % 3 == 0:
            stack.pop(rng.randrange(len(stack)))
    digest.update(repr(rows[:: max(1, n // 100)]).encode())
    return len(groups), sum(len(s) for s in squares), len(stack)


def json_round_trip(n, rng, digest):
    doc = {
        "items": [
            {"id": i, "name": "item%d" % i, "tags": ["t%d" % (i % 13), "u%d" % (i % 7)],
             "score": rng.random(), "nested": {"a": [i, i + 1], "b": None}}
            for i in range(n)
        ]
    }
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    digest.update(text.encode())
    return len(text), len(back["items"])


def objects_and_tree(n, rng, digest):
    made = 0
    for _ in range(4):
        objs = [Slotted(i, "v%d" % i, [i]) for i in range(n)]
        recs = {i: Record(i, objs[i], {"k": i}) for i in range(0, n, 2)}
        made += len(objs) + len(recs)
        del objs, recs
    root = None
    keys = list(range(n))
    rng.shuffle(keys)
    for k in keys:
        node = Node(k, "p" * (k % 24))
        if root is None:
            root = node
            continue
        cur = root
        while True:
            if k < cur.key:
                if cur.left is None:
                    cur.left = node
                    break
                cur = cur.left
            else:
                if cur.right is None:
                    cur.right = node
                    break
                cur = cur.right
    depth, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        if node is None:
            continue
        depth = max(depth, d)
        stack.append((node.left, d + 1))
        stack.append((node.right, d + 1))
    digest.update(str(depth).encode())
    return made, depth


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every phase's size")
    args = parser.parse_args()

    def size(n):
        return max(10, int(n * args.scale))

    rng = random.Random(7)
    digest = hashlib.sha256()
    results = [
        dict_build_and_delete(size(150_000), digest),
        working_set_churn(size(50_000), size(600_000), rng, digest),
        string_work(size(300_000), rng, digest),
        sort_and_comprehend(size(150_000), rng, digest),
        json_round_trip(size(30_000), rng, digest),
        objects_and_tree(size(60_000), rng, digest),
    ]
    print(json.dumps(results), digest.hexdigest())


if __name__ == "__main__":
    main()
