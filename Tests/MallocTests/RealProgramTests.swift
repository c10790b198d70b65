// Programs not written here, run plainly and under
// LD_PRELOAD=libspanalloc.so: their output must be identical, and SpanAlloc's
// exit report (SPANALLOC=stats=1) must show it served their allocations.
// A test is skipped, not failed, when its program is not installed.
import Foundation
import Testing

@Suite struct RealProgramTests {
    init() throws {
        let built = Paths.built
        try #require(built.succeeded, "scripts/build-preload.sh failed: \(built.summary)")
    }

    /// Checks the pair of runs: both succeed, same stdout and stderr (minus
    /// SpanAlloc's report), and SpanAlloc counted at least `mallocs`.
    func expectIdentical(_ runs: (plain: Outcome, preloaded: Outcome), mallocs: Int,
                         sourceLocation: SourceLocation = #_sourceLocation) {
        let (plain, preloaded) = runs
        #expect(plain.succeeded, "plain run failed: \(plain.summary)", sourceLocation: sourceLocation)
        #expect(preloaded.succeeded, "preloaded run failed: \(preloaded.summary)", sourceLocation: sourceLocation)
        #expect(plain.stdout == preloaded.stdout, "stdout differs", sourceLocation: sourceLocation)
        #expect(plain.err == preloaded.errWithoutReports, "stderr differs:\n\(preloaded.err.prefix(2000))",
                sourceLocation: sourceLocation)
        #expect(preloaded.reportedMallocs >= mallocs,
                "SpanAlloc counted \(preloaded.reportedMallocs) mallocs (preload not effective?)",
                sourceLocation: sourceLocation)
    }

    /// An interpreter running an allocation-heavy script. PYTHONMALLOC=malloc
    /// sends every object allocation to malloc instead of Python's pymalloc.
    @Test(.enabled(if: installed("/usr/bin/python3"), "/usr/bin/python3 is not installed"))
    func python() {
        let script = """
            import hashlib, json, random, threading
            random.seed(7)
            data = {}
            for i in range(150000):
                data["key%d" % i] = [i, str(i) * (i % 7), {"f": float(i) / 3, "t": (i, -i)}]
            for i in range(0, 150000, 3):
                del data["key%d" % i]
            words = sorted(("w%d" % random.randrange(10**9)) * (1 + i % 5) for i in range(60000))
            blob = json.dumps(data, sort_keys=True) + "".join(words)
            out = []
            def work(n):
                out.append(sum(len(bytearray(k % 5000 + 1)) for k in range(n)))
            ts = [threading.Thread(target=work, args=(20000 + t,)) for t in range(4)]
            [t.start() for t in ts]; [t.join() for t in ts]
            print(len(data), len(blob), hashlib.sha256(blob.encode()).hexdigest(), sorted(out))
            """
        expectIdentical(runBoth("/usr/bin/python3", ["-c", script],
                                environment: ["PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"]),
                        mallocs: 500_000)
    }

    /// A compiler: gcc (driver, cc1 and as, all preloaded) compiling a C file
    /// produces the same object file.
    @Test(.enabled(if: installed("/usr/bin/gcc"), "/usr/bin/gcc is not installed"))
    func gcc() throws {
        let source = """
            #include <stdio.h>
            #include <stdlib.h>
            struct node { int key; struct node *left, *right; };
            static struct node *insert(struct node *t, int key) {
                if (!t) { t = calloc(1, sizeof *t); t->key = key; return t; }
                if (key < t->key) t->left = insert(t->left, key); else t->right = insert(t->right, key);
                return t;
            }
            static int depth(const struct node *t) {
                if (!t) return 0;
                int l = depth(t->left), r = depth(t->right);
                return 1 + (l > r ? l : r);
            }
            int main(void) {
                struct node *t = NULL;
                unsigned x = 1;
                for (int i = 0; i < 100000; i++) { x = x * 1103515245u + 12345u; t = insert(t, (int)(x >> 8)); }
                printf("%d\\n", depth(t));
                return 0;
            }
            """
        // One directory for both runs: -g records the compilation directory.
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try source.write(to: dir.appendingPathComponent("tree.c"), atomically: true, encoding: .utf8)
        let object = dir.appendingPathComponent("tree.o")
        var objects: [Data] = []
        let runs = runBoth("/usr/bin/gcc", ["-O2", "-g", "-Wall", "-c", "tree.c", "-o", "tree.o"],
                           directories: (dir, dir)) { objects.append((try? Data(contentsOf: object)) ?? Data()) }
        objects.append(try Data(contentsOf: object))
        expectIdentical(runs, mallocs: 10_000)
        #expect(objects.count == 2 && objects[0].count > 1000)
        #expect(objects[0] == objects[1], "the object files differ")
        // cc1 and as ran under SpanAlloc too: one report per process.
        #expect(runs.preloaded.reports.count >= 3, "\(runs.preloaded.reports.count) processes reported")
    }

    /// A multithreaded program: xz with two threads compresses generated
    /// text (2 MB, 8 blocks) to the same bytes, and decompresses it back.
    @Test(.enabled(if: installed("/usr/bin/xz"), "/usr/bin/xz is not installed"))
    func xzMultithreaded() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("input.txt")
        try generatedText(lines: 30_000).write(to: input)
        let compressed = runBoth("/usr/bin/xz", ["-T2", "--block-size=256KiB", "-1", "-c", input.path])
        expectIdentical(compressed, mallocs: 10)
        #expect(compressed.plain.stdout.count > 1000)
        let xzFile = dir.appendingPathComponent("input.txt.xz")
        try compressed.preloaded.stdout.write(to: xzFile)
        let decompressed = runBoth("/usr/bin/xz", ["-T2", "-d", "-c", xzFile.path])
        expectIdentical(decompressed, mallocs: 10)
        #expect(decompressed.preloaded.stdout == (try Data(contentsOf: input)))
    }

    /// A multithreaded sort of generated lines.
    @Test(.enabled(if: installed("/usr/bin/sort"), "/usr/bin/sort is not installed"))
    func sortParallel() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("lines.txt")
        try generatedText(lines: 200_000).write(to: input)
        let runs = runBoth("/usr/bin/sort", ["--parallel=2", "-S", "4M", "-k2,2", "-k1,1n", input.path],
                           environment: ["LC_ALL": "C", "TMPDIR": dir.path])
        expectIdentical(runs, mallocs: 10)
        #expect(runs.plain.stdout.count == (try Data(contentsOf: input)).count)
    }

    /// Another interpreter: perl building and sorting a large hash.
    @Test(.enabled(if: installed("/usr/bin/perl"), "/usr/bin/perl is not installed"))
    func perl() {
        let script = """
            my %h; my @keep;
            for my $i (1..200000) { $h{"k$i"} = [$i, "v" x ($i % 40), { n => $i * 3 }]; }
            for my $i (1..200000) { delete $h{"k$i"} if $i % 3 == 0; }
            my $s = join(",", map { $_ . ":" . scalar(@{$h{$_}}) } sort keys %h);
            print scalar(keys %h), " ", length($s), " ", unpack("%32C*", $s), "\\n";
            """
        expectIdentical(runBoth("/usr/bin/perl", ["-e", script], environment: ["PERL_HASH_SEED": "0"]),
                        mallocs: 200_000)
    }

    /// git: a repository with a commit at a fixed date has the same hash.
    @Test(.enabled(if: installed("/usr/bin/git"), "/usr/bin/git is not installed"))
    func git() throws {
        let (a, b) = (try temporaryDirectory(), try temporaryDirectory())
        defer {
            try? FileManager.default.removeItem(at: a)
            try? FileManager.default.removeItem(at: b)
        }
        let env: [String: String?] = [
            "GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
            "GIT_COMMITTER_NAME": "A", "GIT_COMMITTER_EMAIL": "a@example.com",
            "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z", "HOME": a.path, "GIT_CONFIG_NOSYSTEM": "1",
        ]
        for dir in [a, b] { try generatedText(lines: 20_000).write(to: dir.appendingPathComponent("data.txt")) }
        for args in [["init", "-q", "-b", "main", "."], ["add", "data.txt"], ["commit", "-q", "-m", "generated"],
                     ["log", "--format=%H %T %s"], ["show", "--stat", "HEAD"]] {
            expectIdentical(runBoth("/usr/bin/git", args, environment: env, directories: (a, b)), mallocs: 10)
        }
    }

    /// The Swift compiler (driver and frontend, Swift and C++ programs)
    /// compiling a small program to the same LLVM IR.
    @Test(.enabled(if: installed("/opt/swift/usr/bin/swiftc"), "swiftc is not installed at /opt/swift/usr/bin"))
    func swiftCompiler() throws {
        let source = """
            struct Point: Hashable { var x, y: Int }
            final class Box<T> { var value: T; init(_ v: T) { value = v } }
            func run() -> Int {
                var d: [Point: [String]] = [:]
                for i in 0..<1000 { d[Point(x: i % 37, y: i % 11), default: []].append("v\\(i)") }
                return d.values.map(\\.count).reduce(0, +) + Box(d.count).value
            }
            print(run())
            """
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try source.write(to: dir.appendingPathComponent("hello.swift"), atomically: true, encoding: .utf8)
        let runs = runBoth("/opt/swift/usr/bin/swiftc", ["-O", "-module-name", "hello", "-emit-ir", "hello.swift", "-o", "-"],
                           directories: (dir, dir))
        expectIdentical(runs, mallocs: 100_000)
        #expect(runs.plain.out.contains("define"), "no IR: \(runs.plain.summary)")
    }
}

/// Deterministic text: numbered lines of pseudo-random words.
func generatedText(lines: Int) -> Data {
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    var text = ""
    text.reserveCapacity(lines * 40)
    for i in 0..<lines {
        x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let words = Int(x >> 60) + 1
        text += "\(i) "
        for w in 0..<words { text += "w\((x >> UInt64(w * 4)) & 0xFFFF) " }
        text += "\n"
    }
    return Data(text.utf8)
}
