// The malloc override itself: the C test program under LD_PRELOAD, the
// SPANALLOC variable, the foreign-pointer policy, the library's
// dependencies, and malloc-demo (a Swift program that links the product).
import Foundation
import Testing

@Suite struct OverrideTests {
    init() throws {
        let built = Paths.built
        try #require(built.succeeded, "scripts/build-preload.sh --tests failed: \(built.summary)")
    }

    /// Every entry point, fork from a multithreaded parent, 10,000 short
    /// threads with memory back to baseline, OOM, foreign pointers.
    @Test func cTestProgram() {
        let r = run(Paths.cTest, ["all"], environment: ["LD_PRELOAD": Paths.library])
        #expect(r.succeeded, "\(r.summary)")
        for section in ["api", "realloc", "aligned", "oom", "foreign", "bootstrap", "fork", "threads", "huge",
                        "scavenger-start"] {
            #expect(r.out.contains("ok \(section)\n"), "section \(section) did not pass:\n\(r.summary)")
        }
        #expect(r.out.contains("heap check ok"))
        #expect(r.out.contains("fork: 40 of 40 children"))
        #expect(r.out.contains("threads: 10000 created, 10000 caches handed back"))
    }

    /// The C program notices when SpanAlloc is not its malloc (so its own
    /// "served by SpanAlloc" checks are not vacuous).
    @Test func cTestProgramRefusesToRunWithoutSpanAlloc() {
        let r = run(Paths.cTest, ["api"])
        #expect(r.status == 2 && !r.signaled, "\(r.summary)")
        #expect(r.err.contains("malloc is not SpanAlloc's"))
    }

    /// SPANALLOC=foreign=abort: freeing glibc's block stops the process with
    /// the core's diagnosis (the default hands it to glibc: section foreign).
    @Test func strictForeignPointers() {
        let r = run(Paths.cTest, ["foreign-strict"],
                    environment: ["LD_PRELOAD": Paths.library, "SPANALLOC": "foreign=abort"])
        #expect(r.signaled && r.status == SIGABRT, "\(r.summary)")
        #expect(r.err.contains("not allocated by SpanAlloc"))
        #expect(!r.err.contains("survived"))
    }

    /// realloc and malloc_usable_size of a freed SpanAlloc block (its pages
    /// now a free run of the heap) stop the process naming the pointer,
    /// instead of handing it to glibc, which would parse a chunk header
    /// that is not there.
    @Test(arguments: ["freed-realloc", "freed-usable-size"])
    func freedBlockIsNotForeign(section: String) throws {
        let r = run(Paths.cTest, [section], environment: ["LD_PRELOAD": Paths.library])
        #expect(r.signaled && r.status == SIGABRT, "\(r.summary)")
        let block = try #require(r.out.split(separator: "\n").first { $0.hasPrefix("block ") }, "\(r.summary)")
        let address = block.dropFirst("block ".count)
        #expect(r.err.contains("spanalloc"), "\(r.summary)")
        #expect(r.err.contains(address), "\(r.summary)")
        #expect(!r.err.contains("survived"), "\(r.summary)")
    }

    /// Every option of SPANALLOC reaches the heap; stats=1 prints MemStats
    /// as JSON at exit; verbose=1 prints the configuration.
    @Test func configurationFromEnvironment() throws {
        let r = run(Paths.cTest, ["config"], environment: [
            "LD_PRELOAD": Paths.library,
            "SPANALLOC": "stats=1,verbose=1,scavenge_retain=3M,scavenge_percent=7,scavenge_delay_ms=123,scavenge=off",
        ])
        #expect(r.succeeded, "\(r.summary)")
        #expect(r.out.contains("retain_bytes=3145728 retain_percent=7 delay_ms=123 mode=0"), "\(r.summary)")
        #expect(r.err.contains("override active"))
        #expect(r.err.contains("exit: "))
        let report = try #require(r.reports.first, "no stats report: \(r.summary)")
        let stats = try #require(report["MemStats"] as? [String: Any])
        #expect((stats["Mallocs"] as? Int ?? 0) >= 1000)
        #expect((stats["BySize"] as? [Any])?.count == 67)
        #expect((report["Override"] as? [String: Any])?["Active"] as? Bool == true)
    }

    /// Unknown options and bad values are reported and ignored.
    @Test func badConfigurationIsReportedAndIgnored() {
        let defaults = run(Paths.cTest, ["config"], environment: ["LD_PRELOAD": Paths.library])
        let r = run(Paths.cTest, ["config"], environment: [
            "LD_PRELOAD": Paths.library, "SPANALLOC": "bogus=1,stats=maybe,scavenge_retain=12Q,,scavenge_delay_ms",
        ])
        #expect(r.succeeded, "\(r.summary)")
        #expect(r.out == defaults.out, "bad options changed the configuration")
        #expect(r.err.contains("unknown option 'bogus=1' ignored"))
        #expect(r.err.contains("bad value in 'stats=maybe' ignored"))
        #expect(r.err.contains("bad size in 'scavenge_retain=12Q' ignored"))
        #expect(r.err.contains("bad delay in 'scavenge_delay_ms' ignored"))
        #expect(r.reports.isEmpty)
    }

    /// The preload library pulls in nothing but libc.
    @Test(.enabled(if: installed("/usr/bin/readelf"), "readelf is not installed"))
    func libraryDependsOnLibcOnly() {
        let r = run("/usr/bin/readelf", ["-d", Paths.library])
        let needed = r.out.split(separator: "\n").filter { $0.contains("(NEEDED)") }
        #expect(needed.count == 1 && needed[0].contains("[libc.so.6]"), "\(needed)")
    }

    /// A Swift executable linked with the SpanAllocMalloc product exports
    /// malloc & co., and its runtime's allocations go through SpanAlloc.
    @Test(.enabled(if: !underSanitizer, "under a sanitizer its runtime owns malloc; SpanAllocMalloc stands aside"))
    func swiftExecutableLinkedWithTheProduct() throws {
        try #require(installed(Paths.demo), "malloc-demo is not built next to the test bundle (\(Paths.demo))")
        let r = run(Paths.demo, ["20000"], environment: ["SPANALLOC": "stats=1"])
        #expect(r.succeeded, "\(r.summary)")
        let json = try #require(try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any], "\(r.summary)")
        #expect(json["overrideActive"] as? Bool == true)
        // Blocks the runtime asked malloc for are SpanAlloc's.
        #expect(json["objectOwned"] as? Bool == true, "class instance not from SpanAlloc")
        #expect(json["arrayOwned"] as? Bool == true, "array buffer not from SpanAlloc")
        #expect(json["stringOwned"] as? Bool == true, "string storage not from SpanAlloc")
        // 20,000 instances + 20,000 arrays + 20,000 strings + dictionary growth.
        let before = try #require(json["mallocsBefore"] as? Int), after = try #require(json["mallocsAfter"] as? Int)
        #expect(after - before >= 60_000, "mallocs grew by \(after - before)")
        #expect(before > 0, "the runtime's start-up allocations were not SpanAlloc's")
        let liveBefore = try #require(json["heapObjectsBefore"] as? Int)
        let liveAfter = try #require(json["heapObjectsAfter"] as? Int)
        #expect(liveAfter - liveBefore >= 60_000)
        // SPANALLOC works in a linked program too: the exit report saw it all.
        #expect(r.reports.count == 1 && r.reportedMallocs >= after, "\(r.err.prefix(300))")
        // malloc_usable_size answers with SpanAlloc's class size: 72 bytes → 80.
        #expect(json["arrayCapacityFor5Ints"] as? Int == 6)

        if installed("/usr/bin/nm") {
            let nm = run("/usr/bin/nm", ["-D", "--defined-only", Paths.demo])
            let exported = Set(nm.out.split(separator: "\n").compactMap { line -> String? in
                let f = line.split(separator: " ")
                return f.count == 3 && f[1] == "T" ? String(f[2]) : nil
            })
            for name in ["malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc", "malloc_usable_size"] {
                #expect(exported.contains(name), "malloc-demo does not export \(name)")
            }
        }
    }
}
