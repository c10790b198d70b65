import CSpanAlloc
import Foundation
import SpanAlloc

/// Experiments 4, 6, 10, 11: the allocation climb, span reuse, the thread
/// cache's hit rate and the hook.
extension Explain {
    // MARK: 4. The allocation path

    /// Monotonic nanoseconds.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return .nan }
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func allocationPath(count: Int) -> Explanation {
        let heap = SpanHeap.default
        let size = 1_024
        let cls = SizeClass(index: heap.sizeClass(forByteCount: size))
        let perSpan = cls.objectsPerSpan
        // Prepare partial spans in mcentral: fill 4 spans, hand the cache back,
        // free every other object (the spans are cached nowhere, so they go
        // to mcentral's partial list).
        let partials = 4
        var prep: [UnsafeMutableRawPointer] = []
        heap.flushThreadCache()
        for _ in 0..<(partials * perSpan) { prep.append(heap.allocate(byteCount: size, noscan: true)) }
        heap.flushThreadCache()
        var freedSlots = 0
        for (i, p) in prep.enumerated() where i % 2 == 1 { heap.deallocate(p); freedSlots += 1 }
        // Frees into spans the thread does not cache are buffered and reach
        // the spans in batches; the flush hands the batch over now.
        heap.flushThreadCache()

        // Timer overhead, to subtract.
        var overhead: [Double] = []
        for _ in 0..<1_000 { let a = now(); let b = now(); overhead.append(Double(b - a)) }
        let timer = median(overhead)

        // Span ids are never reused and grow with each new span: a span
        // with an id above the probe's was made during the sequence.
        let probe = heap.allocate(byteCount: 40_000, noscan: true)
        let probeID = ObservedSpan.of(probe)!.id
        heap.deallocate(probe)

        // Each allocation's level, from this thread's point of view: the
        // same span as the previous one → thread cache; another span that
        // existed before → mcentral; a span made now → mheap.
        enum Level: Int, CaseIterable { case cache, central, heap }
        var times: [[Double]] = Array(repeating: [], count: Level.allCases.count)
        var blocks: [UnsafeMutableRawPointer] = []
        blocks.reserveCapacity(count)
        var lastSpan: UInt64 = 0
        let start = heap.memStats
        for _ in 0..<count {
            let t0 = now()
            let p = heap.allocate(byteCount: size, noscan: true)
            let t1 = now()
            blocks.append(p)
            let id = ObservedSpan.of(p)!.id
            let level: Level = id == lastSpan ? .cache : id > probeID ? .heap : .central
            times[level.rawValue].append(max(0, Double(t1 - t0) - timer))
            lastSpan = id
        }
        let last = heap.memStats
        let delta = StatsDelta(before: start, after: last)
        // One large object as big as an arena: straight from mheap, which
        // has to map new memory from the OS for it.
        let large = 64 << 20
        let ((largeNs, largeSpan), largeDelta): ((Double, ObservedSpan?), StatsDelta) = StatsDelta.around {
            let t0 = now()
            let p = heap.allocate(byteCount: large, noscan: true)
            let t1 = now()
            let span = ObservedSpan.of(p)
            heap.deallocate(p)
            return (max(0, Double(t1 - t0) - timer), span)
        }
        for p in blocks { heap.deallocate(p) }
        for (i, p) in prep.enumerated() where i % 2 == 0 { heap.deallocate(p) }

        let names = ["thread cache (mcache)", "mcentral partial span", "mheap: new span"]
        let claims: [Double] = [10, 100, 1_000]
        let claimText = ["~10 ns", "~100 ns", "~1 µs+"]
        let table = ExplainTable(
            title: "\(count) allocations of \(size) B (class \(cls.index), \(perSpan) per span), classified by the span "
                + "each came from (same as before, an older span, a span made now)",
            columns: ["level", "served", "median time", "article"],
            rows: Level.allCases.map { l in
                [names[l.rawValue], "\(times[l.rawValue].count)", Text.ns(median(times[l.rawValue])), claimText[l.rawValue]]
            } + [["large object, 64 MiB (mheap\(largeDelta.arenasMapped > 0 ? " + OS" : ""))", "1", Text.ns(largeNs),
                  "~1 µs+ (mmap)"]])
        let counters = ExplainTable(title: "MemStats deltas over the sequence", columns: ["counter", "Δ"], rows: delta.rows)
        let hits = times[0].count, central = times[1].count, grows = times[2].count
        let expectedGrows = Int((Double(count - freedSlots) / Double(perSpan)).rounded(.up))
        var checks: [ExplainCheck] = [
            ExplainCheck(source: .go, statement: "The partial spans in mcentral are used before mheap grows",
                         expected: "≥ \(partials) refills from older spans", observed: "\(central)",
                         holds: central >= partials),
            ExplainCheck(source: .go, statement: "mheap makes one new span per span's worth of objects",
                         expected: "\(expectedGrows) ± 2", observed: "\(grows)",
                         holds: abs(grows - expectedGrows) <= 2),
            ExplainCheck(source: .go, statement: "Everything else comes from the thread cache, without a refill",
                         expected: "\(count - central - grows)", observed: "\(hits)",
                         holds: hits == count - central - grows && hits >= count - count / perSpan - partials - 3),
        ]
        for l in Level.allCases where !times[l.rawValue].isEmpty {
            let m = median(times[l.rawValue])
            checks.append(ExplainCheck(source: .article, statement: "\(names[l.rawValue]) takes \(claimText[l.rawValue])",
                                       expected: "within 10× of \(Text.ns(claims[l.rawValue]))", observed: Text.ns(m),
                                       holds: m >= claims[l.rawValue] / 10 && m <= claims[l.rawValue] * 10))
        }
        if largeDelta.arenasMapped > 0 {
            checks.append(ExplainCheck(source: .article, statement: "mheap + mmap of new memory takes ~1 µs+",
                                       expected: "within 10× of 1000 ns", observed: Text.ns(largeNs) + " (64 MiB large object)",
                                       holds: largeNs >= 100 && largeNs <= 10_000))
        }
        checks.append(.equal(.go, "A 64 MiB object is a large object: class 0, a span of its own",
                             expected: "class 0, \(large / Int(SA_PAGE_SIZE)) pages",
                             observed: "class \(largeSpan?.sizeClass ?? -1), \(largeSpan?.pages ?? 0) pages"))
        return Explanation(
            number: 4, title: titles[4]!,
            question: "Which level of the allocator serves an allocation, and what does each level cost?",
            articleClaim: "make goes mcache (lock-free, ~10 ns) → mcentral (central lock, ~100 ns) → mheap "
                + "(global lock + system call, ~1 µs+) → mmap.",
            goAnswer: "mallocgc takes a slot from the P's cached span (nextFreeFast); when the span is full, "
                + "mcache.refill gets one from mcentral (partial swept spans first), which asks mheap.alloc for "
                + "new pages only when it has none; mheap maps new memory from the OS only when its free pages "
                + "run out. Each step runs once per span's worth of objects of the step below.",
            goSources: ["src/runtime/malloc.go (mallocgc, nextFreeFast)", "src/runtime/mcache.go (refill)",
                        "src/runtime/mcentral.go (cacheSpan, grow)", "src/runtime/mheap.go (alloc, grow, sysAlloc)"],
            observations: [
                "Of \(count) allocations, \(hits) came from the thread cache, \(central) from a partial span in "
                    + "mcentral and \(grows) needed a new span from mheap (process counters: \(delta.cacheRefills) refills, "
                    + "\(delta.centralGrows) mcentral grows, \(delta.arenasMapped) new arena(s)).",
                "A 64 MiB large object took \(Text.ns(largeNs)) and mapped \(largeDelta.arenasMapped) new arena(s).",
                "Times are medians per allocation with the clock's own cost (\(Text.ns(timer))) subtracted; "
                    + "one run on a shared machine, so read them as orders of magnitude.",
            ],
            tables: [table, counters], checks: checks,
            differences: [perThread, "SpanAlloc's mcache sweeps its own span first (cacheSweeps) when objects "
                          + "were freed into it, before asking mcentral; Go sweeps after each GC cycle."])
    }

    // MARK: 6. Span reuse

    static func spanReuse() -> Explanation {
        let heap = SpanHeap.default
        let sizeA = 2_048, sizeB = 512
        let perSpanA = SizeClass(index: heap.sizeClass(forByteCount: sizeA)).objectsPerSpan
        // Fill three spans of class A; pick a full one that the thread no longer caches.
        heap.flushThreadCache()
        var a: [UnsafeMutableRawPointer] = []
        for _ in 0..<(3 * perSpanA) { a.append(heap.allocate(byteCount: sizeA, noscan: true)) }
        let cachedID = ObservedSpan.of(a.last!)?.id
        let victims = Dictionary(grouping: a) { ObservedSpan.of($0)!.id }
            .filter { $0.key != cachedID && $0.value.count == perSpanA }
            .min { $0.key < $1.key }
        let old = victims.flatMap { ObservedSpan.of($0.value[0]) }
        // Free its objects, then hand the thread's spans back (as at thread
        // exit): a thread keeps a few emptied spans of a class for itself,
        // the way Go's mcache keeps its current span until the next sweep.
        let (_, freeDelta) = StatsDelta.around {
            for p in victims?.value ?? [] { heap.deallocate(p) }
            heap.flushThreadCache()
        }
        let goneAfterFree = old.map { ObservedSpan.of(UnsafeRawPointer(bitPattern: $0.base)!) == nil } ?? false

        // Allocate class B (different size, scan) until an object lands on the old pages.
        var b: [UnsafeMutableRawPointer] = []
        var hit: (UnsafeMutableRawPointer, ObservedSpan)?
        let limit = 8_192
        let (_, allocDelta) = StatsDelta.around {
            while hit == nil, b.count < limit, let old {
                let p = heap.allocate(byteCount: sizeB, noscan: false)
                b.append(p)
                let addr = UInt(bitPattern: p)
                if addr >= old.base && addr < old.base + UInt(old.pages) * UInt(SA_PAGE_SIZE) {
                    hit = (p, ObservedSpan.of(p)!)
                }
            }
        }
        for p in b { heap.deallocate(p) }
        for p in a where !(victims?.value.contains(p) ?? false) { heap.deallocate(p) }

        let new = hit?.1
        let table = ExplainTable(
            title: "The same pages, two spans",
            columns: ["", "span id", "base", "pages", "spanClass", "class (object size)"],
            rows: [old, new].enumerated().map { i, s in
                [i == 0 ? "old span (freed)" : "new span", s.map { "#\($0.id)" } ?? "-", s?.baseHex ?? "-",
                 "\(s?.pages ?? 0)", "\(s?.spanClass ?? -1)", s.map { "\($0.sizeClass) (\($0.elementSize) B)" } ?? "-"]
            })
        let counters = ExplainTable(title: "Counters: freeing the old span's objects, then allocating class \(new?.sizeClass ?? -1)",
                                    columns: ["counter", "Δ free", "Δ allocate"],
                                    rows: zip(freeDelta.rows, allocDelta.rows).map { [$0[0], $0[1], $1[1]] })
        let crossClass = new != nil && new?.sizeClass != old?.sizeClass
        return Explanation(
            number: 6, title: titles[6]!,
            question: "When every object of a span is freed, what happens to its pages?",
            articleClaim: "An mspan freed but not yet returned to mheap (mspanFree) is reused via "
                + "mheap.pickFreeSpan for the same size class, after clearing its inCache flag.",
            goAnswer: "When the sweeper finds a span with no live objects it frees the span to mheap "
                + "(mheap.freeSpan), which merges its pages into the page allocator's free runs. Those pages can "
                + "then back a span of any size class (or a large object). There is no pickFreeSpan or inCache "
                + "flag; the page allocator finds the lowest-addressed fit.",
            goSources: ["src/runtime/mgcsweep.go (sweep: freeSpan when nalloc == 0)",
                        "src/runtime/mheap.go (freeSpan, allocSpan)", "src/runtime/mpagealloc.go (find)"],
            observations: [
                old.map { "Span #\($0.id) (class \($0.sizeClass), \($0.pages) page(s) at \($0.baseHex)) was emptied; "
                    + "afterwards no in-use span covered its base: \(goneAfterFree ? "its pages went back to mheap" : "still in use")." }
                    ?? "No full span to empty was found.",
                new.map { "Allocation number \(b.count) of \(sizeB) B (scan) landed on those pages, in new span #\($0.id) "
                    + "(class \($0.sizeClass), spanClass \($0.spanClass))." }
                    ?? "No object of class B landed on the old pages within \(limit) allocations.",
                "spansReturned +\(freeDelta.spansReturned) when freeing; spansReused +\(allocDelta.spansReused), "
                    + "spansFresh +\(allocDelta.spansFresh) when allocating.",
            ],
            tables: [table, counters],
            checks: [
                .equal(.go, "Freeing every object returns the span's pages to mheap", expected: true,
                       observed: goneAfterFree && freeDelta.spansReturned >= 1),
                .equal(.go, "The pages serve a span of another size class", expected: true, observed: crossClass),
                .equal(.go, "The new span is counted as reused pages", expected: true, observed: allocDelta.spansReused >= 1),
                .equal(.go, "The new span has a new id", expected: true, observed: new != nil && new?.id != old?.id),
                .equal(.article, "Freed spans are reused for the same size class only", expected: true,
                       observed: new != nil && !crossClass),
            ],
            differences: [noGC + " Here the last free empties the span at once; Go finds it empty when it sweeps after a GC.",
                          "A SpanAlloc thread keeps a few emptied spans of a class for itself until its cache is flushed "
                          + "(flushThreadCache, thread exit); the experiment flushes after freeing, as Go's sweep would free the span."])
    }

    // MARK: 10. Hit rate

    static func hitRate(pairs: Int) -> Explanation {
        let heap = SpanHeap.default
        let perSpan = SizeClass(index: heap.sizeClass(forByteCount: goHchanSize)).objectsPerSpan
        struct Run { var delta: StatsDelta; var allocs: Int; var switches: Int }
        func run(mixed: Bool) -> Run {
            var slices: [GoSlice<UInt8>] = [], chans: [GoChan<Int>] = []
            slices.reserveCapacity(2 * pairs); chans.reserveCapacity(pairs)
            heap.flushThreadCache()
            let rec = AllocationRecorder(capacity: 2 * pairs + 16)
            let (_, d) = StatsDelta.around {
                rec.record {
                    for _ in 0..<pairs {
                        slices.append(GoSlice<UInt8>(length: 112))
                        if mixed { chans.append(GoChan<Int>()) } else { slices.append(GoSlice<UInt8>(length: 112)) }
                    }
                }
            }
            withExtendedLifetime((slices, chans)) {}
            // A refill is where this thread's allocations move to another span.
            let ids = rec.allocations.map(\.span.id)
            let switches = ids.isEmpty ? 0 : 1 + zip(ids, ids.dropFirst()).filter { $0 != $1 }.count
            return Run(delta: d, allocs: ids.count, switches: switches)
        }
        let mixed = run(mixed: true), single = run(mixed: false)
        func rate(_ r: Run) -> Double { 1 - Double(r.switches) / Double(max(1, r.allocs)) }
        let model = 1 - 1 / Double(perSpan)
        let table = ExplainTable(
            title: "\(2 * pairs) allocations of spanClass 19 (112 B, noscan) on one thread",
            columns: ["workload", "allocations", "spans taken", "hit rate", "Δmallocs", "ΔcacheRefills"],
            rows: [["[]byte(112) and chan int interleaved", "\(mixed.allocs)", "\(mixed.switches)", Text.percent(rate(mixed)),
                    "\(mixed.delta.mallocs)", "\(mixed.delta.cacheRefills)"],
                   ["[]byte(112) only", "\(single.allocs)", "\(single.switches)", Text.percent(rate(single)),
                    "\(single.delta.mallocs)", "\(single.delta.cacheRefills)"],
                   ["model: 1 − 1/\(perSpan) objects per span", "-", "-", Text.percent(model), "-", "-"]])
        return Explanation(
            number: 10, title: titles[10]!,
            question: "Does interleaving slice and channel creations of one class change the thread cache's hit rate?",
            articleClaim: "mcache.localSpanClassCache reaches a 98.7% hit rate when slices and channels of one "
                + "spanClass are created together, against about 89% for either alone: they cooperate to fill the same slot.",
            goAnswer: "mcache has no localSpanClassCache: it holds one span per spanClass (mcache.alloc). Every "
                + "allocation is served from that span until it is full, then refill replaces it; so the hit rate "
                + "is about 1 − 1/objects-per-span whoever allocates, slice or channel (class 9: 1 − 1/73).",
            goSources: ["src/runtime/mcache.go (type mcache, alloc [numSpanClasses]*mspan, refill)",
                        "src/runtime/malloc.go (nextFreeFast)"],
            observations: [
                "Interleaved: the thread took \(mixed.switches) spans for \(mixed.allocs) allocations (the hook's span ids), "
                    + "hit rate \(Text.percent(rate(mixed))); MemStats counted \(mixed.delta.cacheRefills) refills.",
                "Slices only: \(single.switches) spans for \(single.allocs), hit rate \(Text.percent(rate(single))); "
                    + "MemStats counted \(single.delta.cacheRefills) refills.",
            ],
            tables: [table],
            checks: [
                ExplainCheck(source: .article, statement: "Interleaving raises the hit rate",
                             expected: "mixed > single + 1 point",
                             observed: "\(Text.percent(rate(mixed))) vs \(Text.percent(rate(single)))",
                             holds: rate(mixed) > rate(single) + 0.01),
                ExplainCheck(source: .go, statement: "The hit rate is 1 − 1/objects-per-span, mixed or not",
                             expected: "\(Text.percent(model)) ± 0.5 point",
                             observed: "\(Text.percent(rate(mixed))), \(Text.percent(rate(single)))",
                             holds: abs(rate(mixed) - model) < 0.005 && abs(rate(single) - model) < 0.005),
            ],
            differences: [perThread])
    }

    // MARK: 11. The hook

    static func hookRun(operations: Int) -> Explanation {
        let byteLengths = [8, 16, 24, 32, 48, 64, 100, 112, 128, 176, 240, 256, 500]
        var keepSlices: [GoSlice<UInt8>] = [], keepChans: [AnyObject] = []
        keepSlices.reserveCapacity(operations); keepChans.reserveCapacity(operations)
        let rec = AllocationRecorder()
        rec.record {
            for i in 0..<operations {
                rec.tag = 1
                let s = GoSlice<UInt8>(length: byteLengths[i % byteLengths.count])
                rec.tag = 2
                let c: AnyObject = switch i % 3 {
                case 0: GoChan<Int>()
                case 1: GoChan<Int>(capacity: 1 + i % 16)
                default: GoChan<String>(capacity: 2)
                }
                rec.tag = 0
                if i % 2 == 0 { keepSlices.append(s); keepChans.append(c) }
            }
        }
        withExtendedLifetime((keepSlices, keepChans)) {}
        keepSlices = []; keepChans = []
        struct Use { var span: ObservedSpan; var slices = 0; var chanBlocks = 0; var scanChanBlocks = 0 }
        var uses: [UInt64: Use] = [:]
        for e in rec.allocations where e.tag != 0 {
            var u = uses[e.span.id] ?? Use(span: e.span)
            if e.tag == 1 { u.slices += 1 } else { u.chanBlocks += 1; if !e.span.noscan { u.scanChanBlocks += 1 } }
            uses[e.span.id] = u
        }
        let shared = uses.values.filter { $0.slices > 0 && $0.chanBlocks > 0 }.sorted { $0.span.id < $1.span.id }
        let scanShared = shared.filter { $0.scanChanBlocks > 0 }.count
        let sharedNoscan = shared.allSatisfy { $0.span.noscan }
        let table = ExplainTable(
            title: "Spans that served both slices and channels (from the hook's events)",
            columns: ["span", "spanClass", "class (object size)", "slice arrays", "channel blocks"],
            rows: shared.map { u in
                ["#\(u.span.id)", "\(u.span.spanClass)", "\(u.span.sizeClass) (\(u.span.elementSize) B)",
                 "\(u.slices)", "\(u.chanBlocks)"]
            })
        let allocs = rec.allocations.filter { $0.tag != 0 }.count
        return Explanation(
            number: 11, title: titles[11]!,
            question: "Can an allocation hook show which spans slices and channels shared over a run?",
            articleClaim: "runtime/debug.SetAllocFreeHook (Go 1.21+) intercepts make([]T) and make(chan T) and "
                + "captures the mspan instance ids they share.",
            goAnswer: "Go has no public allocation hook: runtime/debug has no SetAllocFreeHook, and span ids are "
                + "not exposed. The closest tools are the sampling heap profiler (runtime.MemProfileRate, "
                + "pprof) and runtime/metrics' per-size-class counters. SpanAlloc's sa_set_hook reports every "
                + "allocation with its span, which is what this experiment uses.",
            goSources: ["src/runtime/mprof.go (MemProfileRate, mProf_Malloc)", "src/runtime/debug (no allocation hook)",
                        "src/runtime/metrics/description.go (/gc/heap/allocs-by-size)"],
            observations: [
                "\(operations) rounds of make([]byte, n) and make(chan …) made \(allocs) SpanAlloc blocks in "
                    + "\(uses.count) spans; \(shared.count) spans held both slice arrays and channel blocks.",
                "Every shared span is " + (sharedNoscan ? "noscan" : "NOT all noscan")
                    + ": the []byte arrays are pointer-free, so they never meet a chan string's scan blocks "
                    + "(\(scanShared) shared spans with scan channel blocks).",
            ],
            tables: [table],
            checks: [
                ExplainCheck(source: .article, statement: "Slices and channels share spans, visible through a hook",
                             expected: "> 0 shared spans", observed: "\(shared.count)", holds: !shared.isEmpty),
                .equal(.go, "Shared spans are of one noscan spanClass each", expected: true, observed: sharedNoscan),
                .equal(.go, "No span mixes []byte arrays with a pointer-holding channel's blocks", expected: 0, observed: scanShared),
                .equal(.go, "The hook saw every block (none dropped)", expected: 0, observed: rec.dropped),
            ],
            differences: ["The hook is SpanAlloc's own (sa_set_hook); Go offers no equivalent.", perThread])
    }
}
