import Foundation
import Testing

/// bench/programs/workload_driver.c and `bench preload --programs driver`: the driver must run the
/// native rows' workloads (the same parameters, so the same checksums as `bench run-one`), print what
/// bench parses, and bench must turn its output into rows, and refuse output that is wrong.
@Suite(.serialized) struct BenchDriverTests {
    typealias T = BenchOutputTests

    /// The repository's bench/programs directory (this file is Tests/BenchTests/…).
    static let programsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("bench/programs").path

    static let cc = ["/usr/bin/cc", "/usr/bin/gcc"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static let workloads = ["churn-1t", "churn-2t", "cache-scratch", "cache-thrash", "idle-threads", "idle-gaps"]

    /// What the driver prints (the fields the tests read).
    struct Output: Decodable {
        var workload: String
        var samples: [Double]?
        var cpuSamples: [Double]?
        var ops: UInt64?
        var checksum: UInt64?
        var peakRSSBytes: Int?
        var probes: [[Double]]?
        var probeNames: [String]?
        var params: [String: Double]
    }
    struct NativeResult: Decodable {
        var ops: UInt64
        var checksum: UInt64
        var probes: [[Double]]?
    }

    /// Compiles `source` (default: the real driver) into a temporary file.
    static func compile(_ source: String = programsDir + "/workload_driver.c") throws -> String {
        let cc = try #require(Self.cc, "no C compiler")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("workload-driver-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        let r = T.run(cc, ["-std=c11", "-O2", "-pthread", "-Wall", "-Wextra", "-Werror", source, "-o", out])
        #expect(r.status == 0, "cc failed: \(r.stderr)")
        return out
    }

    static func decode(_ s: String) throws -> Output {
        try JSONDecoder().decode(Output.self, from: Data(s.utf8))
    }

    @Test(.enabled(if: cc != nil, "needs cc"))
    func driverDefaultsAreTheNativeRowsParameters() throws {
        let driver = try Self.compile()
        defer { try? FileManager.default.removeItem(atPath: driver) }
        // The full run's parameters, as docs/bench.md states them.
        let expected: [String: [String: Double]] = [
            "churn-1t": ["ops": 10_000_000, "sizeMin": 16, "sizeMax": 2048, "batch": 10_000, "threads": 1],
            "churn-2t": ["ops": 10_000_000, "sizeMin": 16, "sizeMax": 2048, "batch": 10_000, "threads": 2],
            "cache-scratch": ["ops": 400_000, "sizeMin": 8, "sizeMax": 64, "threads": 2, "writes": 50],
            "cache-thrash": ["ops": 400_000, "sizeMin": 8, "sizeMax": 64, "threads": 2, "writes": 50],
            "idle-threads": ["threads": 64, "rounds": 4, "idleSeconds": 5],
            "idle-gaps": ["ops": 500_000, "sizeMin": 8, "sizeMax": 1024, "batch": 100_000, "rounds": 14, "idleSeconds": 1.5],
        ]
        for w in Self.workloads {
            let r = T.run(driver, [w, "--params"])
            #expect(r.status == 0, "\(w): \(r.stderr)")
            let out = try Self.decode(r.stdout)
            #expect(out.workload == w)
            for (k, v) in expected[w]! { #expect(out.params[k] == v, "\(w): \(k) = \(out.params[k] ?? -1), not \(v)") }
            // bench's seeds: 0x5EED0000 + the length of the id.
            #expect(out.params["seed"] == Double(0x5EED_0000 + w.utf8.count), "\(w): seed")
        }
        // Every option reaches its parameter.
        let r = T.run(driver, ["idle-gaps", "--params", "--ops", "7", "--size-min", "9", "--size-max", "99", "--batch", "3",
                               "--threads", "5", "--seed", "11", "--rounds", "2", "--writes", "4", "--idle-seconds", "0.25",
                               "--warmup", "1", "--repetitions", "6"])
        let p = try Self.decode(r.stdout).params
        #expect(p == ["ops": 7, "sizeMin": 9, "sizeMax": 99, "batch": 3, "threads": 5, "seed": 11, "rounds": 2,
                      "writes": 4, "idleSeconds": 0.25, "warmup": 1, "repetitions": 6])
        #expect(T.run(driver, ["no-such-workload"]).status == 2)
        #expect(T.run(driver, ["churn-1t", "--ops", "x"]).status == 2)
        #expect(T.run(driver, ["churn-1t", "--bogus", "1"]).status == 2)
    }

    /// The quick workloads under glibc: the same ops and checksums as bench's native child (the
    /// checksums depend only on the sizes and orders, i.e. on the parameters and random sequences),
    /// positive times, and the RSS probes of the idle workloads.
    @Test(.enabled(if: cc != nil, "needs cc"), .disabled(if: T.underTSan, "TSan: slow 64-thread children"))
    func driverMatchesTheNativeWorkloads() throws {
        let bench = try #require(T.benchPath())
        let driver = try Self.compile()
        defer { try? FileManager.default.removeItem(atPath: driver) }
        for w in Self.workloads {
            let r = T.run(driver, [w, "--quick", "--repetitions", "2"])
            #expect(r.status == 0, "\(w): \(r.stderr)")
            let out = try Self.decode(r.stdout)
            let native = T.run(bench, ["run-one", "--allocator", "glibc", "--workload", w, "--quick", "--repetitions", "1",
                                       "--warmup", "0"])
            #expect(native.status == 0, "\(w) native: \(native.stderr)")
            let n = try JSONDecoder().decode(NativeResult.self, from: Data(native.stdout.utf8))
            #expect(out.ops == n.ops, "\(w): ops \(out.ops ?? 0) vs native \(n.ops)")
            // Two repetitions: the driver's checksum is the sum of both.
            #expect(out.checksum == 2 &* n.checksum, "\(w): checksum \(out.checksum ?? 0) vs native 2 × \(n.checksum)")
            #expect(out.samples?.count == 2 && out.samples!.allSatisfy { $0 > 0 && $0.isFinite }, "\(w): samples")
            #expect(out.cpuSamples?.count == 2 && out.cpuSamples!.allSatisfy { $0 > 0 && $0.isFinite }, "\(w): cpuSamples")
            #expect((out.peakRSSBytes ?? 0) > 1 << 20, "\(w): peak RSS \(out.peakRSSBytes ?? 0)")
            let probeCount = w == "idle-threads" ? 3 : w == "idle-gaps" ? 2 : 0
            #expect(out.probeNames?.count == probeCount, "\(w): probe names \(out.probeNames ?? [])")
            if probeCount > 0 {
                let probes = try #require(out.probes, "\(w): no probes")
                #expect(probes.count == 2 && probes.allSatisfy { $0.count == probeCount }, "\(w): \(probes)")
                #expect(n.probes?.first?.count == probeCount)
                // What stays resident right after the first repetition's work: well above nothing, below
                // the peak. (The second repetition's baseline already holds what the first one left.)
                let first = probes[0][0]
                #expect(first > Double(4 << 20) && first < Double(out.peakRSSBytes!), "\(w): first probe \(first)")
                #expect(probes.allSatisfy { $0.allSatisfy { $0 >= 0 && $0.isFinite } })
            } else {
                #expect(out.probes == nil, "\(w): probes where the native row has none")
            }
        }
    }

    // MARK: bench preload --programs driver

    struct Report: Decodable {
        var preload: [Table]
        var notes: [String]
        var settings: Settings
    }
    struct Settings: Decodable { var idleRounds: Int? }
    struct Table: Decodable {
        var id: String
        var unit: String
        var baseline: String?
        var throughput: Bool?
        var rows: [Row]
    }
    struct Row: Decodable {
        var name: String
        var samples: [Double]
        var cpuSamples: [Double]?
        var ratio: Double?
        var ratioLow: Double?
        var ratioHigh: Double?
        var cpuRatio: Double?
        var peakRSSBytes: Int?
        var programMs: Double?
        var probes: [Probe]?
        var usage: T.RowUsage?
    }
    struct Probe: Decodable {
        var name: String
        var samples: [Double]
        var median: Double
    }

    static var preloadLibrary: Bool { FileManager.default.fileExists(atPath: ".build/spanalloc-preload/libspanalloc.so") }

    @Test(.enabled(if: cc != nil, "needs cc"))
    func preloadDriverGroupHasARowPerAllocatorWithTheNativeReadings() throws {
        let bench = try #require(T.benchPath())
        // Under TSan the bench parent is slow: two workloads (one idle) and two allocators.
        let filter = T.underTSan ? "churn-1t,idle-threads" : "preload:"
        let allocators = T.underTSan ? ["glibc", "SpanAlloc"] : T.installedAllocators()
        let variant = Self.preloadLibrary ? ["--spanalloc-variant", "tc0=thread_cache=0"] : []
        let result = T.run(bench, ["preload", "--programs", "driver", "--quick", "--format", "json", "--repetitions", "2",
                                   "--idle-rounds", "2", "--inner", "2", "--scale", "0.3", "--filter", filter,
                                   "--allocators", (allocators + (variant.isEmpty ? [] : ["tc0"])).joined(separator: ",")]
                              + variant)
        #expect(result.status == 0, "\(result.stderr.suffix(3000))")
        let report = try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))
        let ids = T.underTSan ? ["churn-1t", "idle-threads"] : Self.workloads
        #expect(report.preload.map(\.id) == ids.map { "preload:\($0)" })
        #expect(report.settings.idleRounds == 2)
        let expected = allocators.filter { Self.preloadLibrary || $0 != "SpanAlloc" } + (variant.isEmpty ? [] : ["tc0"])
        #expect(!report.notes.contains { $0.contains("no usable result") || $0.contains("other parameters") }, "\(report.notes)")
        for t in report.preload {
            #expect(t.unit == "ns/op", "\(t.id): unit \(t.unit)")
            #expect(t.throughput == (t.id == "preload:churn-2t"), "\(t.id): throughput")
            #expect(Set(t.rows.map(\.name)) == Set(expected), "\(t.id): rows \(t.rows.map(\.name)) (notes: \(report.notes))")
            #expect(t.baseline == (expected.contains("jemalloc") ? "jemalloc" : nil))
            let idle = t.id.hasPrefix("preload:idle")
            for row in t.rows {
                let label = "\(t.id)/\(row.name)"
                #expect(row.samples.count == 2 && row.samples.allSatisfy { $0 > 0 && $0.isFinite }, "\(label): samples")
                #expect(row.cpuSamples?.count == 2 && row.cpuSamples!.allSatisfy { $0 > 0 && $0.isFinite }, "\(label): CPU")
                #expect((row.programMs ?? 0) > 0, "\(label): program ms")
                #expect((row.peakRSSBytes ?? 0) > 1 << 20, "\(label): peak RSS")
                #expect(row.usage?.samples.count == 2, "\(label): one wait4 usage per launch")
                if t.baseline != nil {
                    let (r, lo, hi) = (try #require(row.ratio), try #require(row.ratioLow), try #require(row.ratioHigh))
                    #expect(lo <= r && r <= hi && r > 0 && r.isFinite, "\(label): ratio \(r) [\(lo), \(hi)]")
                    #expect(row.cpuRatio != nil)
                }
                if idle {
                    let names = t.id == "preload:idle-threads"
                        ? ["RSS after frees", "RSS after idle", "RSS after exit"] : ["RSS after bursts", "RSS after gaps"]
                    let probes = try #require(row.probes, "\(label): no probes")
                    #expect(probes.map(\.name) == names)
                    #expect(probes.allSatisfy { $0.samples.count == 2 }, "\(label): a probe sample per round")
                    #expect(probes[0].median > Double(4 << 20), "\(label): \(probes[0].name) \(probes[0].median)")
                } else {
                    #expect(row.probes == nil)
                }
            }
        }
        #expect(result.stderr.contains("compiling bench/programs/workload_driver.c"))
    }

    /// A driver whose output is wrong: every launch a different checksum (as a driver that lost its
    /// parameters would), or no probes for an idle workload, or parameters other than bench passed.
    /// bench leaves those rows out with a note instead of reporting their times.
    @Test(.enabled(if: cc != nil, "needs cc"))
    func preloadRefusesWrongDriverOutput() throws {
        let bench = try #require(T.benchPath())
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fake-programs-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/alloc_heavy.py", contents: Data())
        // It echoes bench's arguments as its parameters (as the real driver does), except where noted.
        let fake = """
            #include <stdio.h>
            #include <string.h>
            #include <unistd.h>
            static const char *keys[][2] = {{"--ops", "ops"}, {"--size-min", "sizeMin"}, {"--size-max", "sizeMax"},
                {"--batch", "batch"}, {"--threads", "threads"}, {"--seed", "seed"}, {"--rounds", "rounds"},
                {"--writes", "writes"}, {"--idle-seconds", "idleSeconds"}, {"--warmup", "warmup"},
                {"--repetitions", "repetitions"}};
            static void params(int argc, char **argv, int wrong_ops) {
                printf("\\"params\\": {");
                for (int i = 2; i + 1 < argc; i += 2)
                    for (unsigned k = 0; k < sizeof keys / sizeof *keys; k++)
                        if (strcmp(argv[i], keys[k][0]) == 0)
                            printf("%s\\"%s\\": %s", i > 2 ? ", " : "", keys[k][1],
                                   wrong_ops && k == 0 ? "1" : argv[i + 1]);
                printf("}");
            }
            int main(int argc, char **argv) {
                const char *w = argc > 1 ? argv[1] : "";
                if (strcmp(w, "cache-scratch") == 0) { printf("not json\\n"); return 0; }
                printf("{\\"samples\\": [5.0], \\"cpuSamples\\": [5.0], \\"ops\\": 100, \\"peakRSSBytes\\": 4096, ");
                /* churn-1t: a different checksum every launch; idle-threads: no probes; cache-thrash: other ops */
                printf("\\"checksum\\": %d, ", strcmp(w, "churn-1t") == 0 ? (int)getpid() : 1);
                params(argc, argv, strcmp(w, "cache-thrash") == 0);
                printf("}\\n");
                return 0;
            }
            """
        try fake.write(toFile: dir + "/workload_driver.c", atomically: true, encoding: .utf8)
        let result = T.run(bench, ["preload", "--programs", "driver", "--programs-dir", dir, "--quick", "--format", "json",
                                   "--repetitions", "2", "--idle-rounds", "1", "--filter", "churn-1t,idle-threads,cache",
                                   "--allocators", "glibc"])
        #expect(result.status == 0, "\(result.stderr.suffix(2000))")
        let report = try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))
        #expect(report.preload.map(\.id) == ["preload:churn-1t", "preload:cache-scratch", "preload:cache-thrash",
                                             "preload:idle-threads"])
        for t in report.preload { #expect(t.rows.isEmpty, "\(t.id): a row from wrong output: \(t.rows.map(\.name))") }
        let notes = report.notes.joined(separator: "\n")
        #expect(notes.contains("preload:churn-1t under glibc reported ops/checksum"), "\(notes)")
        #expect(notes.contains("preload:idle-threads under glibc printed no usable result"), "\(notes)")
        #expect(notes.contains("preload:cache-scratch under glibc printed no usable result"), "\(notes)")
        #expect(notes.contains("preload:cache-thrash under glibc ran with other parameters"), "\(notes)")
    }
}
