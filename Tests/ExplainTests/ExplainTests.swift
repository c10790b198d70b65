import CSpanAlloc
import Foundation
import SpanAlloc
@testable import SpanAllocExplain
import SpanAllocTestSupport
import Testing

/// Every experiment against the live allocator. The suite has the heap to
/// itself: the experiments read process-wide counters and install the hook.
@Suite(.serialized, .heapExclusive)
struct ExplainTests {
    /// Smaller workloads than `bench explain`, same checks.
    static let options: Explain.Options = {
        var o = Explain.Options()
        o.pathAllocations = 400
        o.appends = 5_000
        o.interleavedPairs = 500
        o.hookOperations = 120
        return o
    }()

    /// The article's fate per experiment, as established by the Go sources
    /// (experiment 4 compares timings, which a unit test must not assert).
    static let articleVerdicts: [Int: ExplainVerdict.Article] = [
        1: .partlyRight, 2: .wrong, 3: .partlyRight, 5: .wrong, 6: .wrong,
        7: .partlyRight, 8: .wrong, 9: .wrong, 10: .wrong, 11: .right,
    ]

    @Test(arguments: Array(Explain.numbers))
    func everyGoFactHoldsOnSpanAlloc(number: Int) throws {
        let e = Explain.run(number, options: Self.options)
        #expect(e.number == number)
        #expect(!e.observations.isEmpty)
        #expect(!e.tables.isEmpty && e.tables.allSatisfy { !$0.rows.isEmpty })
        #expect(!e.goSources.isEmpty && e.goSources.allSatisfy { $0.hasPrefix("src/") })
        #expect(e.verdict.goFactsTested > 0)
        for c in e.checks where c.source == .go {
            #expect(c.holds, "experiment \(number): \(c.statement): expected \(c.expected), observed \(c.observed)")
        }
        #expect(e.verdict.matchesGo)
        if let expected = Self.articleVerdicts[number] {
            #expect(e.verdict.article == expected, "experiment \(number): \(e.checks.filter { $0.source == .article })")
        }
    }

    // MARK: The facts behind the verdicts, measured without the experiment code

    @Test func sameSpanClassSameThreadSharesASpan() throws {
        SpanHeap.default.flushThreadCache()   // a fresh span of class 9 holds 73 objects: both fit
        let ((ch, s), allocs) = recordAllocations { (GoChan<Int>(), GoSlice<UInt8>(length: 112)) }
        #expect(allocs.count == 2)
        let chanSpan = try #require(allocs.first?.span)
        let sliceSpan = try #require(s.backingSpan)
        #expect(chanSpan.spanClass == 19 && sliceSpan.spanClass == 19)
        #expect(chanSpan.id == sliceSpan.id)
        withExtendedLifetime(ch) {}
    }

    @Test func differentNoscanBitNeverSharesASpan() throws {
        var ids: Set<UInt64> = [], scanIDs: Set<UInt64> = []
        var keep: [(GoSlice<UInt8>, GoSlice<AnyObject?>)] = []
        for _ in 0..<200 {
            let a = GoSlice<UInt8>(length: 112), b = GoSlice<AnyObject?>(length: 14)
            let sa = try #require(a.backingSpan), sb = try #require(b.backingSpan)
            #expect(sa.sizeClass == sb.sizeClass)
            #expect(sa.spanClass == 19 && sb.spanClass == 18)
            ids.insert(sa.id); scanIDs.insert(sb.id)
            keep.append((a, b))
        }
        #expect(ids.isDisjoint(with: scanIDs))
    }

    @Test func anotherThreadUsesItsOwnSpan() throws {
        SpanHeap.default.flushThreadCache()
        let mine = GoSlice<UInt8>(length: 112)
        let theirs = OtherThread.run { GoSlice<UInt8>(length: 112).backingSpan?.id }
        #expect(theirs != nil && theirs != mine.backingSpan?.id)
    }

    @Test func nilAndEmptySlicesAllocateNothing() {
        let before = SpanHeap.default.memStats
        let (pair, allocs) = recordAllocations { (GoSlice<Int>(), GoSlice<Int>(length: 0)) }
        #expect(allocs.isEmpty)
        #expect(SpanHeap.default.memStats.mallocs == before.mallocs)
        #expect(pair.0.isNil && !pair.1.isNil)
        var s = pair.0
        let (_, first) = recordAllocations { s.append(1) }
        #expect(first.map(\.size) == [8])
    }

    @Test func appendGrowthIsGos() {
        // The capacities Go 1.18+ gives a []int grown one append at a time (amd64).
        let go = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 848, 1280, 1792, 2560, 3408, 5120]
        var s = GoSlice<Int>(), caps: [Int] = []
        for i in 0..<5_000 {
            let c = s.capacity
            s.append(i)
            if s.capacity != c { caps.append(s.capacity) }
        }
        #expect(caps == go)
        // The model used as the oracle agrees with them too.
        var c = 0, model: [Int] = []
        while c < 5_000 { c = GoModel.grownCapacity(oldCapacity: c, stride: 8, noscan: true); model.append(c) }
        #expect(model == go)
    }

    @Test func channelBlocksFollowMakechan() {
        let (a, ia) = recordAllocations { GoChan<Int>(capacity: 8) }
        let (b, sb) = recordAllocations { GoChan<String>(capacity: 8) }
        let (c, u) = recordAllocations { GoChan<String>() }
        #expect(ia.map(\.size) == [112 + 64] && ia.allSatisfy(\.span.noscan))
        #expect(sb.map(\.size) == [112, 128] && sb.allSatisfy { !$0.span.noscan })
        #expect(u.map(\.size) == [112] && u.allSatisfy(\.span.noscan))
        withExtendedLifetime((a, b, c)) {}
    }

    @Test func size3584LandsInClass44() throws {
        let p = SpanHeap.default.allocate(byteCount: 3_584, noscan: true)
        defer { SpanHeap.default.deallocate(p) }
        let s = try #require(ObservedSpan.of(p))
        #expect(s.sizeClass == 44 && s.elementSize == 4_096 && s.pages == 1 && s.elementCount == 2 && s.spanClass == 89)
    }

    @Test func emptiedSpanPagesServeAnotherClass() throws {
        let heap = SpanHeap.default
        heap.flushThreadCache()
        let objs = (0..<4).map { _ in heap.allocate(byteCount: 2_048, noscan: true) }   // one 1-page span
        let old = try #require(ObservedSpan.of(objs[0]))
        #expect(objs.allSatisfy { ObservedSpan.of($0)?.id == old.id })
        for p in objs { heap.deallocate(p) }
        heap.flushThreadCache()
        #expect(ObservedSpan.of(UnsafeRawPointer(bitPattern: old.base)!) == nil)
        var more: [UnsafeMutableRawPointer] = []
        var reused: ObservedSpan?
        while reused == nil, more.count < 8_192 {
            let p = heap.allocate(byteCount: 512, noscan: false)
            more.append(p)
            if UInt(bitPattern: p) >= old.base, UInt(bitPattern: p) < old.base + 8_192 { reused = ObservedSpan.of(p) }
        }
        for p in more { heap.deallocate(p) }
        let r = try #require(reused)
        #expect(r.id != old.id && r.sizeClass != old.sizeClass && r.base == old.base)
    }

    // MARK: The recorder and the output

    @Test func recorderIgnoresOtherThreads() {
        let rec = AllocationRecorder(capacity: 64)
        rec.record {
            _ = OtherThread.run { let s = GoSlice<UInt8>(length: 64); return s.count }
        }
        #expect(rec.events.isEmpty)
        rec.record { _ = GoSlice<UInt8>(length: 64) }
        #expect(rec.events.map(\.isAlloc) == [true, false])
    }

    @Test func verdictIsComputedFromChecks() {
        func check(_ s: ExplainCheck.Source, _ h: Bool) -> ExplainCheck {
            ExplainCheck(source: s, statement: "x", expected: "a", observed: h ? "a" : "b", holds: h)
        }
        #expect(ExplainVerdict(checks: [check(.article, true), check(.go, true)]).article == .right)
        #expect(ExplainVerdict(checks: [check(.article, true), check(.article, false)]).article == .partlyRight)
        #expect(ExplainVerdict(checks: [check(.article, false)]).article == .wrong)
        #expect(ExplainVerdict(checks: [check(.go, false)]).article == .untested)
        #expect(!ExplainVerdict(checks: [check(.go, false), check(.go, true)]).matchesGo)
    }

    @Test func renderingsAreComplete() throws {
        let list = [Explain.run(9), Explain.run(3)]
        let json = try ExplainRender.json(list)
        let back = try JSONDecoder().decode([Explanation].self, from: Data(json.utf8))
        #expect(back.map(\.number) == [9, 3])
        #expect(back[0].checks.count == list[0].checks.count)
        let text = ExplainRender.text(list)
        #expect(text.components(separatedBy: "Verdict:").count == 3)
        #expect(text.contains("#\(list[0].tables[0].rows[0].last!.split(separator: " ")[0].dropFirst())"))
        let md = ExplainRender.markdown(list)
        #expect(md.contains("## 9. ") && md.contains("| allocation |"))
    }
}
