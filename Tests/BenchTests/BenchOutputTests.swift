import Foundation
import Testing

/// Runs the `bench` executable that the build put next to this test bundle
/// and checks its reports. No timing target is tested here (those belong in
/// `bench` itself): only that every installed allocator is measured and the
/// numbers hang together.
@Suite(.serialized) struct BenchOutputTests {
    // MARK: the slice of the report the test reads

    struct Report: Decodable {
        var allocators: [Allocator]
        var workloads: [Table]
        var preload: [Table]
        var reuse: Reuse?
        var environment: [String: JSONValue]
    }
    struct Allocator: Decodable {
        var name: String
        var available: Bool
        var version: String
    }
    struct Table: Decodable {
        var id: String
        var unit: String
        var baseline: String?
        var rows: [Row]
    }
    struct Row: Decodable {
        var name: String
        var samples: [Double]
        var median: Double
        var min: Double
        var max: Double
        var ratio: Double?
        var ratioLow: Double?
        var ratioHigh: Double?
        var pairedRatios: [Double]?
        var cpuSamples: [Double]?
        var peakRSSBytes: Int?
        var rssRatio: Double?
        var innerNsPerOp: Double?
        var usage: RowUsage?
    }
    struct RowUsage: Decodable {
        var samples: [[String: Double]]
        var median: [String: Double]
    }
    struct Reuse: Decodable {
        var targetBytes: Int
        var phases: [String]
        var runs: [Run]
    }
    struct Run: Decodable {
        var allocator: String
        var phases: [Phase]
        var allocatorConfig: String?
    }
    struct Phase: Decodable {
        var liveBytes: Int
        var residentBytes: Int
        var spanAlloc: [String: UInt64]?
        var jemalloc: [String: UInt64]?
    }
    enum JSONValue: Decodable {
        case string(String), number(Double), object([String: Double])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .string(s) }
            else if let o = try? c.decode([String: Double].self) { self = .object(o) }
            else { self = .number(try c.decode(Double.self)) }
        }
    }

    // MARK: helpers

    /// The bench binary: $BENCH_BINARY, or `bench` in the build directory of this test process.
    static func benchPath() -> String? {
        if let p = ProcessInfo.processInfo.environment["BENCH_BINARY"] { return p }
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        // .../debug/SpanAllocPackageTests.xctest → .../debug/bench
        var dir = URL(fileURLWithPath: exe)
        for _ in 0..<3 {
            dir = dir.deletingLastPathComponent()
            let candidate = dir.appendingPathComponent("bench").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Allocators whose shared library this machine has (so the report must contain them).
    static func installedAllocators() -> [String] {
        let ldconfig = run("/sbin/ldconfig", ["-p"]).stdout
        let dirs = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib",
                    "/usr/local/lib"]
        func has(_ soname: String) -> Bool {
            ldconfig.contains(soname) || dirs.contains { FileManager.default.fileExists(atPath: "\($0)/\(soname)") }
        }
        var names = ["SpanAlloc", "glibc"]
        if has("libjemalloc.so.2") { names.append("jemalloc") }
        if has("libmimalloc.so.2") { names.append("mimalloc") }
        if has("libtcmalloc_minimal.so.4") { names.append("tcmalloc") }
        return names
    }

    /// True when this test process runs under ThreadSanitizer.
    static var underTSan: Bool { dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil }

    static func run(_ path: String, _ args: [String], environment: [String: String] = [:])
        -> (status: Int32, stdout: String, stderr: String)
    {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe()
        let errFile = FileManager.default.temporaryDirectory
            .appendingPathComponent("bench-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).err")
        FileManager.default.createFile(atPath: errFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errFile) }
        p.standardOutput = out
        p.standardError = try? FileHandle(forWritingTo: errFile)
        do { try p.run() } catch { return (-1, "", "\(error)") }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let errText = (try? String(contentsOf: errFile, encoding: .utf8)) ?? ""
        return (p.terminationStatus, String(decoding: outData, as: UTF8.self), errText)
    }

    func medianOf(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-9 * Swift.max(abs(a), abs(b), 1) }

    // MARK: tests

    @Test func quickJSONReportIsCompleteAndConsistent() throws {
        let bench = try #require(Self.benchPath(), "bench binary not found next to the test bundle")
        // Under TSan the two-thread workload is left out: TSan cannot see the synchronization inside
        // uninstrumented allocators (jemalloc, glibc's __libc_malloc) and would report their memory reuse.
        let ids = Self.underTSan ? ["lifo-64", "realloc-growth"] : ["lifo-64", "prodcons"]
        // (Under TSan every child start is slow: one child per allocator instead of one per repetition.)
        let result = Self.run(bench, ["--quick", "--format", "json", "--filter", (ids + ["reuse"]).joined(separator: ","),
                                      "--repetitions", "3", "--inner", "1", "--warmup", "1", "--scale", "0.05",
                                      "--reuse-bytes", String(8 << 20), "--reuse-idle-seconds", "0.2"]
                                     + (Self.underTSan ? ["--no-interleave"] : []))
        #expect(result.status == 0, "bench failed: \(result.stderr)")
        let report = try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))

        let installed = Self.installedAllocators()
        for name in installed {
            let info = report.allocators.first { $0.name == name }
            #expect(info?.available == true, "\(name) is installed but the report says it is not available")
        }
        #expect(report.environment["cpuModel"] != nil && report.environment["kernel"] != nil)
        #expect(report.workloads.map(\.id) == ids)

        for table in report.workloads {
            #expect(table.unit == "ns/op")
            #expect(table.baseline == (installed.contains("jemalloc") ? "jemalloc" : nil))
            for name in installed {
                #expect(table.rows.contains { $0.name == name }, "\(table.id): no row for \(name)")
            }
            let base = table.rows.first { $0.name == table.baseline }
            for row in table.rows {
                let label = "\(table.id)/\(row.name)"
                #expect(row.samples.count == 3, "\(label): \(row.samples.count) samples")
                for x in row.samples + [row.median, row.min, row.max] {
                    #expect(x.isFinite && x > 0, "\(label): \(x) is not a positive finite time")
                }
                #expect(row.min <= row.median && row.median <= row.max, "\(label): min/median/max out of order")
                #expect(close(row.median, medianOf(row.samples)), "\(label): median is not the samples' median")
                let rss = try #require(row.peakRSSBytes, "\(label): no peak RSS")
                #expect(rss > 1 << 20 && rss < 64 << 30, "\(label): implausible peak RSS \(rss)")
                let usage = try #require(row.usage, "\(label): no wait4 usage")
                // One wait4 usage per child: 3 interleaved children, or 1 with --no-interleave (TSan).
                #expect(usage.samples.count == (Self.underTSan ? 1 : 3), "\(label): one usage sample per child")
                for key in ["userMs", "sysMs", "minorFaults", "majorFaults"] {
                    let v = try #require(usage.median[key], "\(label): no \(key)")
                    #expect(v.isFinite && v >= 0, "\(label): \(key) = \(v)")
                }
                // (The child's CPU time less an idle child's may round to 0 for a short quick row;
                // the timed region's own CPU time must not.)
                #expect(row.cpuSamples?.count == 3 && row.cpuSamples!.allSatisfy { $0 > 0 && $0.isFinite })
                if let base {
                    let ratio = try #require(row.ratio, "\(label): no ratio")
                    #expect(ratio.isFinite && ratio > 0)
                    // 3 rounds: the paired t-interval's centre, exp(mean of the per-round log ratios).
                    let logs = zip(row.samples, base.samples).map { log($0 / $1) }
                    let expected = exp(logs.reduce(0, +) / Double(logs.count))
                    #expect(close(ratio, expected), "\(label): ratio \(ratio) ≠ geometric mean of the paired ratios \(expected)")
                    let lo = try #require(row.ratioLow), hi = try #require(row.ratioHigh)
                    #expect(lo <= ratio && ratio <= hi, "\(label): ratio outside its interval [\(lo), \(hi)]")
                    #expect(row.pairedRatios.map { zip($0, zip(row.samples, base.samples)).allSatisfy { close($0, $1.0 / $1.1) } } == true)
                    let rssRatio = try #require(row.rssRatio, "\(label): no RSS ratio")
                    let baseRSS = try #require(base.peakRSSBytes)
                    #expect(close(rssRatio, Double(rss) / Double(baseRSS)), "\(label): RSS ratio inconsistent")
                }
            }
            if let base { #expect(close(try #require(base.ratio), 1)) }
        }

        let reuse = try #require(report.reuse, "no reuse report")
        #expect(reuse.phases.count == 6)
        #expect(reuse.phases.count == 6 && reuse.phases[4].hasPrefix("idle 0.2 s") && reuse.phases[5] == "scavenge / purge",
                "phases \(reuse.phases)")
        // jemalloc-bg: jemalloc again, after it, with MALLOC_CONF=background_thread:true in its child.
        let runs = installed + (installed.contains("jemalloc") ? ["jemalloc-bg"] : [])
        let order = reuse.runs.map(\.allocator)
        #expect(Set(order) == Set(runs) && order.count == runs.count, "reuse runs \(order)")
        if let j = order.firstIndex(of: "jemalloc") { #expect(order.firstIndex(of: "jemalloc-bg") == j + 1) }
        for name in runs {
            let run = try #require(reuse.runs.first { $0.allocator == name }, "reuse: no run for \(name)")
            #expect(run.phases.count == 6)
            guard run.phases.count == 6 else { continue }
            #expect(run.phases[0].liveBytes >= reuse.targetBytes, "\(name): fill did not reach the target")
            #expect(run.phases[1].liveBytes < run.phases[0].liveBytes / 5, "\(name): 90% were not freed")
            #expect(run.phases[3...].allSatisfy { $0.liveBytes == 0 })
            if name == "SpanAlloc" { #expect(run.phases.allSatisfy { $0.spanAlloc?["spansFresh"] != nil }) }
            if name.hasPrefix("jemalloc") {
                #expect(run.phases.allSatisfy { ($0.jemalloc?["nslabs"] ?? 0) > 0 }, "\(name): jemalloc slab stats missing")
                // The setting reached the dlopen'ed jemalloc of jemalloc-bg's child, and only that one.
                let bg = name == "jemalloc-bg"
                #expect(run.allocatorConfig?.contains("opt.background_thread=\(bg)") == true, "\(name): \(run.allocatorConfig ?? "-")")
                let threads = run.phases.last?.jemalloc?["backgroundThreads"]
                #expect(bg ? (threads ?? 0) > 0 : threads == 0, "\(name): \(threads ?? 0) background threads")
            }
        }
    }

    @Test func csvAndMarkdownRenderTheSameRows() throws {
        let bench = try #require(Self.benchPath())
        let args = ["--quick", "--filter", "lifo-16", "--repetitions", "1", "--warmup", "0", "--scale", "0.01",
                    "--allocators", "SpanAlloc,glibc"]
        let csv = Self.run(bench, args + ["--format", "csv"])
        #expect(csv.status == 0, "\(csv.stderr)")
        let lines = csv.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("\"section\",\"workload\",\"name\",\"unit\"") == true)
        #expect(lines.filter { $0.hasPrefix("\"workload\",\"lifo-16\",") }.count == 2)
        // One tidy table: a single header and the same number of fields on every line (no field holds a comma).
        let widths = Set(lines.map { $0.split(separator: ",", omittingEmptySubsequences: false).count })
        #expect(widths.count == 1, "CSV lines of different widths: \(widths)")
        #expect(!csv.stdout.contains("section,allocator,phase"), "the reuse table belongs in its own file")
        let md = Self.run(bench, args + ["--format", "markdown"])
        #expect(md.status == 0)
        #expect(md.stdout.contains("| SpanAlloc |") && md.stdout.contains("| glibc |"))
    }

    @Test func preloadRunsAProgramUnderEachInstalledAllocator() throws {
        let bench = try #require(Self.benchPath())
        let result = Self.run(bench, ["preload", "--format", "json", "--repetitions", "2", "--warmup", "0",
                                      "--spanalloc-so", "/nonexistent/libspanalloc.so",
                                      "--program", "/bin/echo", "hello"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))
        let table = try #require(report.preload.first)
        let expected = Self.installedAllocators().filter { $0 != "SpanAlloc" }  // no preload library given
        #expect(Set(table.rows.map(\.name)) == Set(expected))
        for row in table.rows {
            #expect(row.samples.count == 2 && row.samples.allSatisfy { $0 > 0 && $0.isFinite })
            #expect((row.peakRSSBytes ?? 0) > 0)
        }
        #expect(result.stdout.contains("SpanAlloc skipped"))
    }

    @Test func preloadOfBenchsOwnWorkloadReportsInProcessTimes() throws {
        // Preloading jemalloc into a TSan-instrumented bench would fight TSan's own malloc: glibc only then.
        let bench = try #require(Self.benchPath())
        let allocators = Self.underTSan ? "glibc" : Self.installedAllocators().joined(separator: ",")
        let result = Self.run(bench, ["preload", "--format", "json", "--filter", "lifo-16", "--repetitions", "1",
                                      "--warmup", "0", "--scale", "0.01", "--allocators", allocators])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))
        #expect(report.preload.map(\.id) == ["preload:lifo-16"])
        for row in report.preload.first?.rows ?? [] {
            let inner = try #require(row.innerNsPerOp, "\(row.name): no in-process time")
            #expect(inner > 0 && inner.isFinite)
        }
        #expect((report.preload.first?.rows.count ?? 0) >= 1)
    }

    /// The real programs (python3 with PYTHONMALLOC=malloc, gcc -O2 on a generated file), at their
    /// --quick size (~0.1 s and ~0.3 s a launch): a row per allocator, and with SPANALLOC=stats=1 the
    /// preload library's exit reports show that it served python and every process of the gcc driver.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
                   && FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc"),
                   "needs /usr/bin/python3 and /usr/bin/gcc (scripts/setup.sh installs them)"))
    func preloadRunsTheRealPrograms() throws {
        let bench = try #require(Self.benchPath())
        let result = Self.run(bench, ["preload", "--programs", "real", "--quick", "--format", "json",
                                      "--repetitions", "2", "--warmup", "0"],
                              environment: ["SPANALLOC": "stats=1"])
        #expect(result.status == 0, "\(result.stderr.suffix(3000))")
        let report = try JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8))
        #expect(report.preload.map(\.id) == ["preload:python", "preload:gcc"])
        let preloadLibrary = FileManager.default.fileExists(atPath: ".build/spanalloc-preload/libspanalloc.so")
        let expected = Self.installedAllocators().filter { preloadLibrary || $0 != "SpanAlloc" }
        for table in report.preload {
            #expect(Set(table.rows.map(\.name)) == Set(expected), "\(table.id): rows \(table.rows.map(\.name))")
            #expect(table.baseline == (expected.contains("jemalloc") ? "jemalloc" : nil))
            for row in table.rows {
                #expect(row.samples.count == 2 && row.samples.allSatisfy { $0 > 0 && $0.isFinite })
                if table.baseline != nil {
                    let (r, lo, hi) = (try #require(row.ratio), try #require(row.ratioLow), try #require(row.ratioHigh))
                    #expect(lo <= r && r <= hi && r.isFinite && r > 0, "\(table.id)/\(row.name)")
                    #expect(row.rssRatio != nil)
                }
                // The gcc driver itself stays at a few MiB; cc1, its child, is what the peak must show.
                let rss = try #require(row.peakRSSBytes)
                #expect(rss > (table.id == "preload:gcc" ? 16 << 20 : 1 << 20), "\(table.id)/\(row.name): \(rss)")
            }
        }
        guard preloadLibrary else { return }
        // One report per preloaded process: python ×2 launches, and gcc, cc1 and as ×2.
        let reports = result.stderr.split(separator: "\n").filter { $0.hasPrefix("{") && $0.contains("\"Override\"") }
        #expect(reports.count >= 8, "\(reports.count) SpanAlloc exit reports")
        // python (PYTHONMALLOC=malloc sends its objects to malloc) and cc1 each make well over 100,000 mallocs.
        let busy = reports.filter { line in
            guard let d = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let m = d["MemStats"] as? [String: Any], let n = m["Mallocs"] as? Int else { return false }
            return n >= 100_000
        }
        #expect(busy.count >= 4, "\(busy.count) processes with ≥ 100,000 mallocs")
    }

    @Test func badArgumentsFail() throws {
        let bench = try #require(Self.benchPath())
        #expect(Self.run(bench, ["--repetitions", "0"]).status != 0)
        #expect(Self.run(bench, ["--allocators", "nosuchalloc"]).status != 0)
        #expect(Self.run(bench, ["run-one", "--allocator", "glibc", "--workload", "nope"]).status != 0)
        #expect(Self.run(bench, ["preload", "--programs", "nosuchprogram"]).status != 0)
    }
}
