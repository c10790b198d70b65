import Foundation
import Testing

/// `--spanalloc-variant NAME=SETTINGS`: SpanAlloc again as a row of its own whose children (and only
/// theirs) get SPANALLOC=SETTINGS, in native rows, `bench preload` and `bench diff`.
@Suite(.serialized) struct BenchVariantTests {
    typealias T = BenchOutputTests

    struct Report: Decodable {
        var allocators: [Allocator]
        var workloads: [T.Table]
        var preload: [T.Table]
        var notes: [String]
    }
    struct Allocator: Decodable {
        var name: String
        var available: Bool
        var spanallocSetting: String?
    }

    /// Runs bench with SPANALLOC removed from its environment (the variants must bring their own).
    static func runWithoutSPANALLOC(_ path: String, _ args: [String]) -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["SPANALLOC"] = nil
        p.environment = env
        let out = Pipe()
        let errFile = FileManager.default.temporaryDirectory.appendingPathComponent("bench-variant-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).err")
        FileManager.default.createFile(atPath: errFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errFile) }
        p.standardOutput = out
        p.standardError = try? FileHandle(forWritingTo: errFile)
        do { try p.run() } catch { return (-1, "", "\(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self), (try? String(contentsOf: errFile, encoding: .utf8)) ?? "")
    }

    /// Lines of stderr that are SpanAlloc's SPANALLOC=stats=1 exit reports (MemStats JSON).
    static func statsReports(_ stderr: String, override: Bool) -> Int {
        stderr.split(separator: "\n").filter { $0.hasPrefix("{") && $0.contains(override ? "\"Override\"" : "\"Mallocs\"") }.count
    }

    @Test func nativeVariantIsARowOfItsOwnAndOnlyItsChildrenGetItsSetting() throws {
        let bench = try #require(T.benchPath())
        // st's children print SpanAlloc's exit report (SPANALLOC=stats=1); nobody else's may.
        let rounds = 2
        let r = Self.runWithoutSPANALLOC(bench, [
            "--quick", "--no-reuse", "--filter", "lifo-64,scaling-1t", "--repetitions", String(rounds), "--inner", "1",
            "--scale", "0.02", "--format", "json", "--baseline", "glibc",
            "--spanalloc-variant", "tc0=thread_cache=0", "--spanalloc-variant", "st=stats=1",
            "--allocators", "SpanAlloc,glibc,tc0,st"] + (T.underTSan ? ["--no-interleave"] : []))
        #expect(r.status == 0, "\(r.stderr.suffix(2000))")
        let report = try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8))
        #expect(report.allocators.first { $0.name == "tc0" }?.spanallocSetting == "thread_cache=0")
        #expect(report.allocators.first { $0.name == "st" }?.spanallocSetting == "stats=1")
        #expect(report.allocators.first { $0.name == "tc0" }?.available == true)
        #expect(report.allocators.first { $0.name == "SpanAlloc" }?.spanallocSetting == nil)
        #expect(report.workloads.map(\.id) == ["lifo-64", "scaling-1t"])
        let children = T.underTSan ? 1 : rounds
        for t in report.workloads {
            #expect(t.rows.map(\.name) == ["SpanAlloc", "glibc", "tc0", "st"], "\(t.id): \(t.rows.map(\.name))")
            for row in t.rows where ["tc0", "st"].contains(row.name) {
                #expect(row.samples.count == rounds && row.samples.allSatisfy { $0 > 0 && $0.isFinite }, "\(t.id)/\(row.name)")
                #expect(row.cpuSamples?.count == rounds)
                #expect(row.usage?.samples.count == children)
                let ratio = try #require(row.ratio), lo = try #require(row.ratioLow), hi = try #require(row.ratioHigh)
                #expect(lo <= ratio && ratio <= hi)
            }
        }
        #expect(Self.statsReports(r.stderr, override: false) == 2 * children,
                "\(Self.statsReports(r.stderr, override: false)) exit reports; expected one per st child")
        #expect(report.notes.contains { $0.hasPrefix("tc0: SpanAlloc with SPANALLOC=thread_cache=0") })
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: ".build/spanalloc-preload/libspanalloc.so"),
                   "needs the preload library (scripts/build-preload.sh)"))
    func preloadVariantRunsSpanAllocsLibraryWithItsSetting() throws {
        let bench = try #require(T.benchPath())
        let r = Self.runWithoutSPANALLOC(bench, [
            "preload", "--format", "json", "--repetitions", "2", "--warmup", "1",
            "--spanalloc-variant", "st=stats=1", "--allocators", "SpanAlloc,glibc,st", "--baseline", "glibc",
            "--program", "/bin/true"])
        #expect(r.status == 0, "\(r.stderr.suffix(2000))")
        let report = try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8))
        let table = try #require(report.preload.first)
        #expect(table.rows.map(\.name) == ["SpanAlloc", "glibc", "st"])
        #expect(table.rows.allSatisfy { $0.samples.count == 2 })
        // The override's exit report of every st launch (a warm-up and two rounds), and of no other.
        #expect(Self.statsReports(r.stderr, override: true) == 3)
    }

    /// A report with rows jemalloc (the baseline), SpanAlloc and the variant scav-on.
    static func report(variant: [Double], jemalloc: [Double], spanAlloc: [Double]) -> String {
        func row(_ name: String, _ s: [Double]) -> String {
            let sorted = s.sorted(), list = "[" + s.map { String($0) }.joined(separator: ", ") + "]"
            return "{\"name\": \"\(name)\", \"samples\": \(list), \"cpuSamples\": \(list), \"median\": \(sorted[s.count / 2]), "
                + "\"min\": \(sorted[0]), \"max\": \(sorted[s.count - 1])}"
        }
        return """
            {"tool": "spanalloc-bench", "schemaVersion": 2,
             "environment": {"date": "d", "cpuModel": "c", "cores": 2, "kernel": "k", "os": "o", "glibc": "g", "hostname": "h"},
             "allocators": [], "groups": [], "preload": [], "notes": [],
             "settings": {"repetitions": \(variant.count), "warmup": 0, "quick": true, "scale": 1, "filter": [],
                          "command": "x", "baseline": "jemalloc"},
             "workloads": [{"id": "w", "title": "w", "unit": "ns/op", "baseline": "jemalloc", "throughput": false,
                            "rows": [\(row("jemalloc", jemalloc)), \(row("SpanAlloc", spanAlloc)), \(row("scav-on", variant))]}]}
            """
    }

    struct Diff: Decodable {
        var rows: [BenchDiffTests.DiffRow]
        var worseJudgedRows: Int
    }

    @Test func diffTreatsAVariantAsAnotherAllocator() throws {
        let bench = try #require(T.benchPath())
        let jem: [Double] = [100, 104, 108, 101, 105, 109, 102, 106, 110, 103]
        let noise: [Double] = [1.000, 1.003, 0.999, 1.002, 0.998, 1.001, 0.997, 1.000, 1.003, 0.999]
        let same = zip(jem, noise).map { $0 * 0.9 * $1 }
        let slower = zip(jem, noise.reversed()).map { $0 * 0.9 * 1.2 * $1 }
        let files = ["old", "new"].map { FileManager.default.temporaryDirectory.appendingPathComponent("variant-\(getpid())-\($0).json").path }
        defer { for f in files { try? FileManager.default.removeItem(atPath: f) } }
        try Self.report(variant: same, jemalloc: jem, spanAlloc: same).write(toFile: files[0], atomically: true, encoding: .utf8)
        // The variant got 20% slower, SpanAlloc did not.
        try Self.report(variant: slower, jemalloc: jem, spanAlloc: same).write(toFile: files[1], atomically: true, encoding: .utf8)
        let plain = T.run(bench, ["diff", files[0], files[1], "--format", "json"])
        #expect(plain.status == 0, "SpanAlloc is judged by default and did not change")
        let d = try JSONDecoder().decode(Diff.self, from: Data(plain.stdout.utf8))
        #expect(Set(d.rows.map(\.allocator)) == ["SpanAlloc", "scav-on"])
        let v = try #require(d.rows.first { $0.allocator == "scav-on" })
        #expect(v.changed && v.worse && !v.judged)
        let judged = T.run(bench, ["diff", files[0], files[1], "--format", "json", "--allocator", "scav-on"])
        #expect(judged.status == 1, "the variant, judged, got worse")
        #expect(try JSONDecoder().decode(Diff.self, from: Data(judged.stdout.utf8)).worseJudgedRows == 1)
    }

    @Test func badVariantsAreRefused() throws {
        let bench = try #require(T.benchPath())
        for bad in [["--spanalloc-variant", "noequals"], ["--spanalloc-variant", "SpanAlloc=scavenge=on"],
                    ["--spanalloc-variant", "=scavenge=on"], ["--spanalloc-variant", "a,b=x"],
                    ["--spanalloc-variant", "v=x", "--spanalloc-variant", "v=y"],
                    ["--spanalloc-variant", "tcx=x", "--allocator", "tcx=/lib/x86_64-linux-gnu/libc.so.6"]] {
            #expect(T.run(bench, ["--list"] + bad).status != 0, "accepted \(bad)")
        }
        // A variant's name is an allocator name for --allocators and --baseline.
        #expect(T.run(bench, ["--list", "--spanalloc-variant", "v=", "--baseline", "v", "--allocators", "v,glibc"]).status == 0)
    }
}
