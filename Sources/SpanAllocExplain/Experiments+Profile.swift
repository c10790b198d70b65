import CSpanAlloc
import Foundation
import SpanAlloc

/// Call sites of experiment 12: each allocates from its own function, so the
/// heap profile's stacks tell them apart.
enum ProfiledSites {
    @inline(never)
    static func makeByteSlices(_ n: Int) -> [GoSlice<UInt8>] {
        (0..<n).map { i in GoSlice<UInt8>(length: 64 + (i % 4) * 16) }
    }

    @inline(never)
    static func makeIntChannels(_ n: Int) -> [GoChan<Int>] {
        (0..<n).map { i in GoChan<Int>(capacity: 1 + i % 8) }
    }

    @inline(never)
    static func makeBigSlices(_ n: Int) -> [GoSlice<Int>] {
        (0..<n).map { _ in GoSlice<Int>(length: 8192) }
    }
}

extension Explain {
    /// Experiment 12: the heap profiler at rate 1 over a GoSlice/GoChan
    /// program, its sites matched with the spans the hook saw them use.
    static func profileSites(rounds: Int) -> Explanation {
        let heap = SpanHeap.default
        let oldRate = heap.heapProfileRate
        heap.heapProfileRate = 1
        let rec = AllocationRecorder()
        let (bytes, chans, bigs) = rec.record { () -> ([GoSlice<UInt8>], [GoChan<Int>], [GoSlice<Int>]) in
            rec.tag = 1
            let b = ProfiledSites.makeByteSlices(rounds)
            rec.tag = 2
            let c = ProfiledSites.makeIntChannels(rounds / 2)
            rec.tag = 3
            let g = ProfiledSites.makeBigSlices(4)
            rec.tag = 0
            return (b, c, g)
        }
        let folded = (try? heap.heapProfile(format: .folded)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        heap.heapProfileRate = oldRate
        let sites = [(1, "makeByteSlices"), (2, "makeIntChannels"), (3, "makeBigSlices")]
        var rows: [[String]] = []
        var exact = true, named = true
        for (tag, name) in sites {
            let events = rec.allocations.filter { $0.tag == tag }
            let hookBytes = events.reduce(0) { $0 + $1.size }
            let spans = Set(events.map(\.span.id)).sorted()
            let classes = Set(events.map { "\($0.span.spanClass)" }).sorted()
            let lines = folded.split(separator: "\n").filter { $0.contains("ProfiledSites.\(name)") }
            let profiled = lines.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
            if lines.isEmpty { named = false }
            if profiled != hookBytes { exact = false }
            let shown = spans.prefix(6).map { "#\($0)" }.joined(separator: " ") + (spans.count > 6 ? " …" : "")
            rows.append([name, "\(profiled)", "\(events.count) / \(hookBytes)", "\(spans.count): \(shown)",
                         classes.joined(separator: ", ")])
        }
        withExtendedLifetime((bytes, chans, bigs)) {}
        var sitesOfSpan: [UInt64: Set<Int>] = [:]
        for e in rec.allocations where e.tag != 0 { sitesOfSpan[e.span.id, default: []].insert(e.tag) }
        let sharedSpans = sitesOfSpan.values.filter { $0.count > 1 }.count
        let bigSpans = Set(rec.allocations.filter { $0.tag == 3 }.map(\.span.id)).count
        let table = ExplainTable(
            title: "Call sites in the heap profile (rate 1) and the spans their blocks live in (from the hook)",
            columns: ["site", "profile: bytes in use", "hook: blocks / bytes", "spans", "spanClasses"],
            rows: rows)
        return Explanation(
            number: 12, title: titles[12]!,
            question: "Which call sites own which spans, and can a heap profile say so?",
            articleClaim: "The article does not discuss profiling; Go's answer is the heap profile (pprof).",
            goAnswer: "Go samples allocations by bytes (runtime.MemProfileRate, 512 KiB by default; 1 records "
                + "every allocation) and keeps each sample's stack in a bucket with allocated and in-use counts "
                + "(mProf_Malloc, mProf_Free); pprof.WriteHeapProfile writes them as a profile.proto message. "
                + "Profiles name call sites, not spans: the span of each block is a separate question, answered "
                + "here by SpanAlloc's hook.",
            goSources: ["src/runtime/mprof.go (MemProfileRate, mProf_Malloc, bucket)",
                        "src/runtime/malloc.go (nextSample, profilealloc)",
                        "src/runtime/pprof/protomem.go (writeHeapProto, scaleHeapSample)"],
            observations: [
                "\(rounds) GoSlice<UInt8>, \(rounds / 2) GoChan<Int> and 4 GoSlice<Int>(8192) from three functions, "
                    + "with SpanHeap.heapProfileRate = 1: the profile's folded stacks name each function with its "
                    + "bytes in use, the hook the spans its blocks went to.",
                "\(sitesOfSpan.count) spans served the three sites; \(sharedSpans) of them held blocks of more "
                    + "than one site (a span serves one spanClass, whoever asks), and the 4 arrays of 64 KiB took "
                    + "\(bigSpans) large spans.",
            ],
            tables: [table],
            checks: [
                .equal(.go, "Go's default sampling rate is 512 KiB", expected: 524_288,
                       observed: Int(SA_PROFILE_DEFAULT_RATE)),
                .equal(.go, "The profile names every call site", expected: true, observed: named),
                .equal(.go, "At rate 1 each site's in-use bytes are exact (profile = hook)", expected: true,
                       observed: exact),
            ],
            differences: ["Sampling is off until asked for (SPANALLOC=profile=…, heapProfileRate); Go samples "
                          + "always.", "Stacks come from frame pointers, not Go's unwinder."])
    }
}
