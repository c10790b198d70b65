import CSpanAlloc
import Foundation
import SpanAlloc

/// Experiments 1, 2, 7, 8, 9: which span and spanClass an object lands in.
extension Explain {
    // MARK: 1. Shared span

    static func sharedSpan() -> Explanation {
        let pairs = 8
        // Same spanClass (class 9, 112 B, noscan) from the same thread cache:
        // an unbuffered chan int's hchan and a 112-byte []byte array.
        var chans: [GoChan<Int>] = []
        var bytes: [GoSlice<UInt8>] = []
        var scanChans: [GoChan<String>] = []
        var refs: [GoSlice<AnyObject?>] = []
        chans.reserveCapacity(pairs); bytes.reserveCapacity(pairs)
        scanChans.reserveCapacity(pairs); refs.reserveCapacity(pairs)
        let rec = AllocationRecorder(capacity: 256)
        // Objects this thread freed earlier wait in its free-cache bins, from
        // whatever spans they came; hand them back so each allocation below
        // comes from the cache's current span, as in Go.
        SpanHeap.default.flushThreadCache()
        rec.record {
            for _ in 0..<pairs {
                rec.tag = 1; chans.append(GoChan<Int>())                      // make(chan int)
                rec.tag = 2; bytes.append(GoSlice<UInt8>(length: 112))        // make([]byte, 112)
                rec.tag = 3; scanChans.append(GoChan<String>(capacity: 1))    // make(chan string, 1)
                rec.tag = 4; refs.append(GoSlice<AnyObject?>(length: 14))     // make([]*T, 14)
            }
        }
        let events = rec.allocations
        func first(_ tag: Int) -> [ObservedSpan] {
            // The first block of each operation (a chan string makes two: hchan, then buffer).
            var seen = 0, out: [ObservedSpan] = []
            for e in events where e.tag == tag {
                if tag == 3 { seen += 1; if seen % 2 == 0 { continue } }
                out.append(e.span)
            }
            return out
        }
        let chanSpans = first(1), byteSpans = first(2), scanChanSpans = first(3), refSpans = first(4)

        // Another thread's cache: the same spanClass from a different thread.
        let other = OtherThread.run { GoSlice<UInt8>(length: 112).backingSpan.map { ObservedSpan.of(span: $0) } }

        let n = min(chanSpans.count, byteSpans.count, scanChanSpans.count, refSpans.count)
        let sameNoscan = (0..<n).filter { chanSpans[$0].id == byteSpans[$0].id }.count
        let sameScan = (0..<n).filter { scanChanSpans[$0].id == refSpans[$0].id }.count
        let crossNoscanBit = (0..<n).filter { chanSpans[$0].id == refSpans[$0].id }.count
        let otherThreadSame = other.map { o in byteSpans.contains { $0.id == o.id } } ?? true

        var table = ExplainTable(
            title: "Span id and spanClass (sc) of each block; each pair was made back to back on this thread. "
                + "chan int = hchan of make(chan int); []byte(112) = array of make([]byte, 112); "
                + "chan string = hchan of make(chan string, 1); []*T(14) = array of make([]*T, 14)",
            columns: ["pair", "chan int", "[]byte(112)", "same", "chan string", "[]*T(14)", "same"])
        for i in 0..<n {
            table.rows.append([
                "\(i + 1)",
                "#\(chanSpans[i].id) sc \(chanSpans[i].spanClass)", "#\(byteSpans[i].id) sc \(byteSpans[i].spanClass)",
                Text.yesNo(chanSpans[i].id == byteSpans[i].id),
                "#\(scanChanSpans[i].id) sc \(scanChanSpans[i].spanClass)", "#\(refSpans[i].id) sc \(refSpans[i].spanClass)",
                Text.yesNo(scanChanSpans[i].id == refSpans[i].id),
            ])
        }
        let c0 = chanSpans.first, r0 = refSpans.first
        var obs = [
            "\(sameNoscan) of \(n) noscan pairs (spanClass \(c0?.spanClass ?? -1)) came from the same span; "
                + "\(sameScan) of \(n) scan pairs (spanClass \(scanChanSpans.first?.spanClass ?? -1)) did too.",
            "\(crossNoscanBit) of \(n) pairs of the same size class (\(c0?.sizeClass ?? -1)) but different noscan bit "
                + "(spanClass \(c0?.spanClass ?? -1) vs \(r0?.spanClass ?? -1)) shared a span.",
        ]
        if let c = events.first(where: { $0.tag == 1 }), let b = events.first(where: { $0.tag == 2 }) {
            obs.append("First pair: the hchan at \(Text.hex(c.address)) and the array at \(Text.hex(b.address)), "
                       + "\(Int(bitPattern: b.address &- c.address)) bytes apart, both in span #\(c.span.id) at \(c.span.baseHex).")
        }
        if let other {
            obs.append("The same make([]byte, 112) on another thread landed in span #\(other.id) (spanClass "
                       + "\(other.spanClass)): that thread's own cached span, not this thread's.")
        }
        if sameNoscan < n {
            obs.append("A pair that differs straddles the moment the cached span filled up (\(c0?.elementCount ?? 0) "
                       + "objects per span) and the thread cache took a new one.")
        }
        withExtendedLifetime((chans, bytes, scanChans, refs)) {}

        return Explanation(
            number: 1, title: titles[1]!,
            question: "Do a slice's backing array and a channel's memory share the same runtime.mspan?",
            articleClaim: "mspan does not know types and hands out slots by size class, so a []int header and a "
                + "chan int's hchan whose sizes fall into the same size class are necessarily served by the same "
                + "mspan instance.",
            goAnswer: "A span holds objects of one spanClass = sizeClass << 1 | noscan, and mallocgc takes the "
                + "object from the current P's mcache.alloc[spanClass]. So a slice's backing array and a channel's "
                + "hchan can share a span only if they have the same size class AND the same noscan bit AND come "
                + "from the same P's cached span; a pointer-free array never shares with a pointer-holding hchan. "
                + "(Slice headers usually live on the stack or inside other objects; it is the backing array that "
                + "is allocated.)",
            goSources: ["src/runtime/malloc.go (mallocgc, nextFreeFast, mcache.nextFree)",
                        "src/runtime/mheap.go (spanClass, makeSpanClass)", "src/runtime/mcache.go (alloc [numSpanClasses]*mspan)",
                        "src/runtime/chan.go (makechan)", "src/runtime/slice.go (makeslice)"],
            observations: obs, tables: [table],
            checks: [
                ExplainCheck(source: .go, statement: "Same spanClass from the same thread cache ⇒ same span",
                             expected: "at least \(n - 1) of \(n) pairs (one may straddle a refill)",
                             observed: "\(sameNoscan) of \(n) (noscan), \(sameScan) of \(n) (scan)",
                             holds: n > 0 && sameNoscan >= n - 1 && sameScan >= n - 1),
                ExplainCheck(source: .go, statement: "Different noscan bit ⇒ never the same span",
                             expected: "0 of \(n)", observed: "\(crossNoscanBit) of \(n)", holds: crossNoscanBit == 0),
                ExplainCheck(source: .go, statement: "Same spanClass on another thread ⇒ that thread's own span",
                             expected: "a span id not used by this thread",
                             observed: other.map { "#\($0.id)" + (otherThreadSame ? " (shared!)" : "") } ?? "none",
                             holds: other != nil && !otherThreadSame),
                ExplainCheck(source: .article, statement: "A slice array and a channel of the same size class can share a span",
                             expected: "shared", observed: sameNoscan > 0 ? "shared (\(sameNoscan) pairs)" : "never shared",
                             holds: sameNoscan > 0),
                ExplainCheck(source: .article, statement: "Same size class ⇒ necessarily the same mspan",
                             expected: "\(n) of \(n) same-class pairs share",
                             observed: "\(crossNoscanBit) of \(n) (noscan array vs scan array of class \(r0?.sizeClass ?? -1))",
                             holds: crossNoscanBit == n),
            ],
            differences: [perThread, noGC])
    }

    // MARK: 2. Header sizes

    static func headerSizes() -> Explanation {
        let heap = SpanHeap.default
        let (noscanChan, a1) = recordAllocations { GoChan<Int>() }
        let (scanChan, a2) = recordAllocations { GoChan<String>(capacity: 1) }
        let (slice, a3) = recordAllocations { GoSlice<Int>(length: 3) }
        withExtendedLifetime((noscanChan, scanChan, slice)) {}
        let hchan = a1.first, hchanScan = a2.first, array = a3.first
        let swiftHeader = MemoryLayout<GoSlice<Int>>.size
        let class24 = heap.sizeClass(forByteCount: goSliceHeaderSize)
        let class3Size = SizeClass(index: 3).objectSize
        let class4Size = SizeClass(index: 4).objectSize
        let mapClass = heap.sizeClass(forByteCount: goMapHeaderSize)
        let hchanSize = hchan?.size ?? -1
        let hchanClass = hchan?.span.sizeClass ?? -1

        let table = ExplainTable(
            title: "Sizes and classes (article vs Go 1.27 vs SpanAlloc now)",
            columns: ["object", "article", "Go 1.27 (amd64)", "SpanAlloc: bytes", "class (object size)", "spanClass"],
            rows: [
                ["slice header", "24 B, class 3 (\"32 B span\")", "24 B, inline; class 3 if it escapes",
                 "\(swiftHeader) (inline struct)", "\(class24) (\(SizeClass(index: class24).objectSize) B) for 24 B", "-"],
                ["backing array of make([]int, 3)", "-", "24 B, class 3, spanClass 7",
                 "\(array?.size ?? -1)", "\(array?.span.sizeClass ?? -1) (\(array?.span.elementSize ?? -1) B)",
                 "\(array?.span.spanClass ?? -1)"],
                ["hchan of make(chan int)", "48 B, class 4 (64 B)", "112 B, class 9, spanClass 19",
                 "\(hchanSize)", "\(hchanClass) (\(hchan?.span.elementSize ?? -1) B)", "\(hchan?.span.spanClass ?? -1)"],
                ["hchan of make(chan string, 1)", "48 B, class 4 (64 B)", "112 B, class 9, spanClass 18",
                 "\(hchanScan?.size ?? -1)", "\(hchanScan?.span.sizeClass ?? -1) (\(hchanScan?.span.elementSize ?? -1) B)",
                 "\(hchanScan?.span.spanClass ?? -1)"],
                ["map header", "16 B, class 2", "48 B, class 5", "(no maps; 48 B request)",
                 "\(mapClass) (\(SizeClass(index: mapClass).objectSize) B)", "\(mapClass << 1) scan"],
            ])
        return Explanation(
            number: 2, title: titles[2]!,
            question: "How big are the slice header, the channel header (hchan) and the map header, and which size classes hold them?",
            articleClaim: "Slice header 24 B in class 3 (\"32 B span\"); hchan 48 B in class 4 (64 B span); "
                + "map header 16 B in class 2.",
            goAnswer: "On amd64 a slice header is 24 B (array, len, cap) and lives inline (stack, struct field); "
                + "only an escaping header is heap-allocated, in class 3, which holds 24-byte objects. hchan is "
                + "112 B in Go 1.27 (with the timer and synctest bubble fields), class 9: spanClass 19 when "
                + "allocated noscan (unbuffered or pointer-free elements), 18 when scan. A Swiss-table map header "
                + "(maps.Map) is 48 B, class 5.",
            goSources: ["src/runtime/sizeclasses.go (class table)", "src/runtime/slice.go (type slice)",
                        "src/runtime/chan.go (type hchan, hchanSize)", "src/internal/runtime/maps/map.go (type Map)"],
            observations: [
                "GoSlice<Int> is a \(swiftHeader)-byte struct (Go's 24 B plus a reference that owns the array); "
                    + "like a non-escaping Go header it is never allocated on SpanAlloc's heap.",
                "GoChan<Int>() asked SpanAlloc for one \(hchanSize)-byte block: class \(hchanClass), spanClass "
                    + "\(hchan?.span.spanClass ?? -1); GoChan<String>(capacity: 1) put its \(hchanScan?.size ?? -1)-byte "
                    + "hchan in spanClass \(hchanScan?.span.spanClass ?? -1).",
                "Class 3 holds \(class3Size)-byte objects and class 4 holds \(class4Size)-byte ones; a 48-byte "
                    + "request is class \(mapClass).",
            ],
            tables: [table],
            checks: [
                .equal(.article, "Class 3 serves 32-byte objects (\"32 B span\")", expected: 32, observed: class3Size),
                .equal(.article, "A channel header is 48 B", expected: 48, observed: hchanSize),
                .equal(.article, "A channel header is in class 4", expected: 4, observed: hchanClass),
                .equal(.article, "A (48-byte) map header is in class 2", expected: 2, observed: mapClass),
                .equal(.go, "A 24-byte slice header is class 3 (24-byte objects)", expected: "3 (24 B)",
                       observed: "\(class24) (\(SizeClass(index: class24).objectSize) B)"),
                .equal(.go, "hchan is 112 B, class 9, spanClass 19 noscan", expected: "112 B, 9, 19",
                       observed: "\(hchanSize) B, \(hchanClass), \(hchan?.span.spanClass ?? -1)"),
                .equal(.go, "A pointer-holding channel's hchan is spanClass 18", expected: 18,
                       observed: hchanScan?.span.spanClass ?? -1),
                .equal(.go, "A 48-byte map header is class 5", expected: 5, observed: mapClass),
            ],
            differences: ["SpanAlloc has no escape analysis: GoSlice and GoChan headers are Swift values and "
                          + "objects; only backing arrays and channel blocks come from SpanAlloc.", noGC])
    }

    // MARK: 7. Channel buffer

    static func channelBuffer() -> Explanation {
        struct Row { let go: String; let swift: String; let blocks: [RecordedEvent]; let expectBlocks: Int; let expectNoscan: Bool }
        func row<T>(_ go: String, _ swift: String, _ blocks: Int, _ noscan: Bool, _ make: () -> GoChan<T>) -> Row {
            let (ch, a) = recordAllocations(make)
            withExtendedLifetime(ch) {}
            return Row(go: go, swift: swift, blocks: a, expectBlocks: blocks, expectNoscan: noscan)
        }
        let rows = [
            row("make(chan int, 8)", "GoChan<Int>(capacity: 8)", 1, true) { GoChan<Int>(capacity: 8) },
            row("make(chan string, 8)", "GoChan<String>(capacity: 8)", 2, false) { GoChan<String>(capacity: 8) },
            row("make(chan int)", "GoChan<Int>()", 1, true) { GoChan<Int>() },
            row("make(chan string)", "GoChan<String>()", 1, true) { GoChan<String>() },
            row("make(chan struct{}, 100)", "GoChan<Void>(capacity: 100)", 1, true) { GoChan<Void>(capacity: 100) },
        ]
        var table = ExplainTable(
            title: "Blocks each make(chan) asked SpanAlloc for",
            columns: ["Go", "Swift", "blocks", "sizes (B)", "spanClass", "span ids", "noscan"])
        for r in rows {
            table.rows.append([r.go, r.swift, "\(r.blocks.count)", r.blocks.map { "\($0.size)" }.joined(separator: " + "),
                               r.blocks.map { "\($0.span.spanClass)" }.joined(separator: ", "),
                               r.blocks.map { "#\($0.span.id)" }.joined(separator: ", "),
                               r.blocks.map { Text.yesNo($0.span.noscan) }.joined(separator: ", ")])
        }
        let intBuf = rows[0].blocks, strBuf = rows[1].blocks
        var checks = rows.map { r in
            ExplainCheck(source: .go, statement: "\(r.go): \(r.expectBlocks) block(s), " + (r.expectNoscan ? "noscan" : "scan"),
                         expected: "\(r.expectBlocks), " + (r.expectNoscan ? "noscan" : "scan"),
                         observed: "\(r.blocks.count), " + (r.blocks.allSatisfy { $0.span.noscan } ? "noscan"
                                                            : r.blocks.allSatisfy { !$0.span.noscan } ? "scan" : "mixed"),
                         holds: r.blocks.count == r.expectBlocks && r.blocks.allSatisfy { $0.span.noscan == r.expectNoscan })
        }
        checks.append(.equal(.go, "make(chan int, 8) is one block of hchanSize + 8×8 B", expected: goHchanSize + 64,
                             observed: intBuf.first?.size ?? -1))
        checks.append(ExplainCheck(source: .article, statement: "A buffered channel's buf is always a separate allocation in its own span",
                                   expected: "2 blocks for make(chan int, 8)", observed: "\(intBuf.count) block(s)",
                                   holds: intBuf.count == 2))
        checks.append(ExplainCheck(source: .article, statement: "An unbuffered channel allocates no buffer",
                                   expected: "hchan only", observed: "\(rows[2].blocks.count) block of \(rows[2].blocks.first?.size ?? -1) B",
                                   holds: rows[2].blocks.count == 1 && rows[2].blocks.first?.size == goHchanSize))
        return Explanation(
            number: 7, title: titles[7]!,
            question: "Where does a channel's buffer live: in its own span, next to the hchan, or nowhere?",
            articleClaim: "mallocgc always allocates buf as a brand-new span for a buffered channel, fully isolated "
                + "from slice memory; an unbuffered channel allocates no buffer.",
            goAnswer: "makechan makes one allocation of hchanSize + buffer, noscan, when the element type holds no "
                + "pointers (buf points just past the hchan); two allocations, hchan then a typed buffer, when it "
                + "does; and the hchan alone (noscan) for unbuffered channels and zero-size elements (buf points "
                + "at the hchan). Each block lands in whatever span its spanClass's cache holds, shared with "
                + "other objects of that spanClass.",
            goSources: ["src/runtime/chan.go (makechan)"],
            observations: [
                "make(chan int, 8) asked for \(intBuf.count) block of \(intBuf.first?.size ?? -1) B "
                    + "(spanClass \(intBuf.first?.span.spanClass ?? -1)): hchan and buffer together.",
                "make(chan string, 8) asked for \(strBuf.count) blocks of " + strBuf.map { "\($0.size) B" }.joined(separator: " and ")
                    + " in spans " + strBuf.map { "#\($0.span.id)" }.joined(separator: " and ") + ".",
            ],
            tables: [table], checks: checks, differences: [noGC])
    }

    // MARK: 8. spanClass table

    static func spanClasses() -> Explanation {
        let heap = SpanHeap.default
        struct Row { let what: String; let size: Int; let span: ObservedSpan?; let noscan: Bool }
        var rows: [Row] = []
        for n in [1, 8, 16, 24, 32, 48, 100, 512, 1_000, 3_584, 40_000] {
            let s = GoSlice<UInt8>(length: n)
            rows.append(Row(what: "make([]byte, \(n))", size: n, span: s.backingSpan.map(ObservedSpan.of(span:)), noscan: true))
        }
        let refs = GoSlice<AnyObject?>(length: 4)
        rows.append(Row(what: "make([]*T, 4)", size: 32, span: refs.backingSpan.map(ObservedSpan.of(span:)), noscan: false))
        let (c0, a0) = recordAllocations { GoChan<Int>() }
        rows.append(Row(what: "make(chan int)", size: a0.first?.size ?? 0, span: a0.first?.span, noscan: true))
        let (c16, a16) = recordAllocations { GoChan<Int>(capacity: 16) }
        rows.append(Row(what: "make(chan int, 16)", size: a16.first?.size ?? 0, span: a16.first?.span, noscan: true))
        let arr = heap.allocate(byteCount: 32, noscan: true)   // new([32]byte)
        rows.append(Row(what: "new([32]byte)", size: 32, span: ObservedSpan.of(arr), noscan: true))
        heap.deallocate(arr)
        withExtendedLifetime((refs, c0, c16)) {}

        var table = ExplainTable(title: "spanClass = class << 1 | noscan, observed",
                                 columns: ["allocation", "bytes", "class", "noscan", "spanClass", "Go 1.27 spanClass", "pages"])
        var formulaHolds = 0, goMatches = 0, tinyRows = 0
        for r in rows {
            let s = r.span
            let go = GoModel.spanClass(size: r.size, noscan: r.noscan)
            let isTiny = r.noscan && r.size < 16
            if let s, s.spanClass == (s.sizeClass << 1 | (s.noscan ? 1 : 0)) { formulaHolds += 1 }
            if isTiny { tinyRows += 1 } else if s?.spanClass == go { goMatches += 1 }
            table.rows.append([r.what, "\(r.size)", "\(s?.sizeClass ?? -1)", Text.yesNo(s?.noscan ?? false),
                               "\(s?.spanClass ?? -1)", "\(go)" + (isTiny ? " (tiny)" : ""), "\(s?.pages ?? 0)"])
        }
        let byteClasses = Set(rows.filter { $0.what.hasPrefix("make([]byte") }.compactMap { $0.span?.spanClass })
        let chanInt = rows.first { $0.what == "make(chan int)" }?.span?.spanClass ?? -1
        let arr32 = rows.first { $0.what == "new([32]byte)" }?.span?.spanClass ?? -1
        return Explanation(
            number: 8, title: titles[8]!,
            question: "What spanClass do common allocations get?",
            articleClaim: "[]byte is spanClass 11, chan int is 17, [32]byte is 97 (noscan spanClass = 64 + class).",
            goAnswer: "spanClass = sizeClass << 1 | noscan, so it follows from the object's size and whether it "
                + "holds pointers, not from its Go type: a []byte's array lands in a class that depends on its "
                + "length, an unbuffered chan int's 112-byte hchan is spanClass 19, a 32-byte pointer-free object "
                + "is spanClass 9. Pointer-free objects under 16 B go through the tiny allocator (spanClass 5).",
            goSources: ["src/runtime/mheap.go (makeSpanClass)", "src/runtime/sizeclasses.go",
                        "src/runtime/malloc.go (mallocgcTiny, maxTinySize)"],
            observations: [
                "The []byte rows used \(byteClasses.count) different spanClasses: "
                    + byteClasses.sorted().map(String.init).joined(separator: ", ") + ".",
                "make(chan int) is spanClass \(chanInt); new([32]byte) is spanClass \(arr32).",
            ],
            tables: [table],
            checks: [
                .equal(.article, "[]byte is spanClass 11", expected: "always 11",
                       observed: byteClasses.count == 1 ? "always \(byteClasses.first!)" : "\(byteClasses.count) different values"),
                .equal(.article, "chan int is spanClass 17", expected: 17, observed: chanInt),
                .equal(.article, "[32]byte is spanClass 97", expected: 97, observed: arr32),
                .equal(.go, "spanClass = class << 1 | noscan for every row", expected: rows.count, observed: formulaHolds),
                .equal(.go, "Rows outside the tiny allocator get Go's spanClass", expected: rows.count - tinyRows, observed: goMatches),
                .equal(.go, "An unbuffered chan int is spanClass 19", expected: 19, observed: chanInt),
                .equal(.go, "A 32-byte pointer-free object is spanClass 9", expected: 9, observed: arr32),
            ],
            differences: [noTiny + " (the rows marked tiny)"])
    }

    // MARK: 9. 3584 bytes

    static func size3584() -> Explanation {
        let heap = SpanHeap.default
        let raw = heap.allocate(byteCount: 3_584, noscan: true)
        let rawScan = heap.allocate(byteCount: 3_584, noscan: false)
        let s = ObservedSpan.of(raw), sScan = ObservedSpan.of(rawScan)
        let slice = GoSlice<UInt8>(length: 3_584)
        let sliceSpan = slice.backingSpan.map(ObservedSpan.of(span:))
        heap.deallocate(raw)
        heap.deallocate(rawScan)
        withExtendedLifetime(slice) {}
        let table = ExplainTable(
            title: "Where 3584 bytes land",
            columns: ["allocation", "class", "object size", "pages", "objects/span", "spanClass", "span"],
            rows: [("3584 B noscan", s), ("3584 B scan", sScan), ("make([]byte, 3584)", sliceSpan)].map { name, sp in
                [name, "\(sp?.sizeClass ?? -1)", "\(sp?.elementSize ?? -1)", "\(sp?.pages ?? -1)",
                 "\(sp?.elementCount ?? -1)", "\(sp?.spanClass ?? -1)", sp.map { "#\($0.id) at \($0.baseHex)" } ?? "-"]
            })
        let pages = s?.pages ?? -1, objects = s?.elementCount ?? -1
        return Explanation(
            number: 9, title: titles[9]!,
            question: "Where does a 3584-byte allocation land?",
            articleClaim: "3584 bytes → spanClass 60, 2 pages, 11 objects.",
            goAnswer: "3584 B rounds up to class 44 (4096 B), whose spans are 1 page holding 2 objects: "
                + "spanClass 89 noscan, 88 scan (a scan object this size also carries the 8-byte malloc header, "
                + "3592 B, still class 44).",
            goSources: ["src/runtime/sizeclasses.go (class 44: 4096 B, 8192 B/span, 2 objects)",
                        "src/runtime/msize.go (roundupsize)", "src/internal/runtime/gc (MallocHeaderSize)"],
            observations: [
                "A 3584-byte noscan block landed in class \(s?.sizeClass ?? -1) (\(s?.elementSize ?? -1)-byte objects, "
                    + "\(pages) page(s), \(objects) per span), spanClass \(s?.spanClass ?? -1).",
                "The article's numbers do not fit together: 11 × 3584 B = \(11 * 3_584) B, more than 2 pages "
                    + "(\(2 * Int(SA_PAGE_SIZE)) B).",
            ],
            tables: [table],
            checks: [
                .equal(.article, "spanClass 60", expected: 60, observed: s?.spanClass ?? -1),
                .equal(.article, "2 pages per span", expected: 2, observed: pages),
                .equal(.article, "11 objects per span", expected: 11, observed: objects),
                .equal(.go, "Class 44, 4096-byte objects", expected: "44, 4096 B",
                       observed: "\(s?.sizeClass ?? -1), \(s?.elementSize ?? -1) B"),
                .equal(.go, "1 page, 2 objects per span", expected: "1, 2", observed: "\(pages), \(objects)"),
                .equal(.go, "spanClass 89 noscan, 88 scan", expected: "89, 88",
                       observed: "\(s?.spanClass ?? -1), \(sScan?.spanClass ?? -1)"),
            ],
            differences: [noInlineMarks])
    }
}

extension ObservedSpan {
    /// The explain view of a `SpanInfo`.
    static func of(span s: SpanInfo) -> ObservedSpan {
        var info = sa_span_info()
        info.id = s.id
        info.span_class = Int32(s.spanClass)
        info.size_class = Int32(s.sizeClass)
        info.noscan = s.noscan
        info.base = uintptr_t(s.base)
        info.npages = s.pageCount
        info.elemsize = s.elementSize
        info.nelems = s.elementCount
        info.alloc_count = s.allocatedCount
        return ObservedSpan(info)
    }
}

/// Carries a closure to another thread; the caller waits for that thread.
private final class ThreadBody: @unchecked Sendable {
    var body: (() -> Void)?
}

/// Runs a closure on a new thread and waits for its result.
enum OtherThread {
    static func run<R>(_ body: @escaping () -> R) -> R {
        let done = DispatchSemaphore(value: 0)
        var result: R?
        let box = ThreadBody()
        box.body = { result = body() }
        let t = Thread { box.body?(); done.signal() }
        t.start()
        done.wait()
        return result!
    }
}
