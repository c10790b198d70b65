import CSpanAlloc
import Foundation
import SpanAlloc

/// Experiments 3 and 5: what makes, appends and growth allocate.
extension Explain {
    // MARK: 3. nil, make(0), first append

    static func nilAndEmptySlices() -> Explanation {
        struct Case { let go: String; let swift: String; let expected: Int; let allocs: [RecordedEvent]; let delta: StatsDelta; let isNil: Bool }
        func measure(_ go: String, _ swift: String, expected: Int, _ make: () -> GoSlice<Int>) -> Case {
            let ((s, a), d) = StatsDelta.around { recordAllocations(make) }
            return withExtendedLifetime(s) {
                Case(go: go, swift: swift, expected: expected, allocs: a, delta: d, isNil: s.isNil)
            }
        }
        let cases = [
            measure("var s []int", "GoSlice<Int>()", expected: 0) { GoSlice<Int>() },
            measure("make([]int, 0)", "GoSlice<Int>(length: 0)", expected: 0) { GoSlice<Int>(length: 0) },
            measure("make([]int, 0, 10)", "GoSlice<Int>(length: 0, capacity: 10)", expected: 1) {
                GoSlice<Int>(length: 0, capacity: 10)
            },
            measure("var s []int; s = append(s, 1)", "GoSlice<Int>().append(1)", expected: 1) {
                var s = GoSlice<Int>(); s.append(1); return s
            },
            measure("s := make([]int, 0); s = append(s, 1)", "GoSlice<Int>(length: 0).append(1)", expected: 1) {
                var s = GoSlice<Int>(length: 0); s.append(1); return s
            },
        ]
        var table = ExplainTable(title: "SpanAlloc allocations per statement (hook) and MemStats deltas",
                                 columns: ["Go", "Swift", "nil?", "blocks", "bytes", "class", "Δmallocs", "ΔtotalAlloc"])
        for c in cases {
            table.rows.append([c.go, c.swift, Text.yesNo(c.isNil), "\(c.allocs.count)",
                               c.allocs.map { "\($0.size)" }.joined(separator: ","),
                               c.allocs.map { "\($0.span.sizeClass)" }.joined(separator: ","),
                               "\(c.delta.mallocs)", "\(c.delta.totalAlloc)"])
        }
        let firstAppend = cases[3].allocs.first
        return Explanation(
            number: 3, title: titles[3]!,
            question: "Which of a nil slice, make([]int, 0) and the first append allocate?",
            articleClaim: "A nil slice allocates nothing; make([]int, 0) allocates a backing array (non-nil pointer); "
                + "the first append allocates dynamically.",
            goAnswer: "A nil slice is just a zero header. make([]int, 0) calls makeslice, whose mallocgc(0) returns "
                + "the address of runtime.zerobase: a non-nil pointer, no allocation. The first append to an empty "
                + "slice calls growslice: capacity 1, 8 bytes, class 1.",
            goSources: ["src/runtime/slice.go (makeslice, growslice)", "src/runtime/malloc.go (mallocgc: size 0 → &zerobase)"],
            observations: cases.map { c in
                "\(c.swift): \(c.allocs.count) SpanAlloc block(s), Δmallocs \(c.delta.mallocs), slice is "
                    + (c.isNil ? "nil." : "not nil.")
            } + ["The first append allocated \(firstAppend?.size ?? -1) B in class \(firstAppend?.span.sizeClass ?? -1) "
                 + "(spanClass \(firstAppend?.span.spanClass ?? -1))."],
            tables: [table],
            checks: [
                .equal(.article, "A nil slice allocates nothing", expected: 0, observed: cases[0].allocs.count),
                ExplainCheck(source: .article, statement: "make([]int, 0) allocates a backing array",
                             expected: "≥ 1 block", observed: "\(cases[1].allocs.count) block(s)",
                             holds: !cases[1].allocs.isEmpty),
                .equal(.article, "The first append allocates", expected: 1, observed: cases[3].allocs.count),
            ] + cases.map { c in
                .equal(.go, "\(c.go) allocates \(c.expected) block(s)", expected: c.expected, observed: c.allocs.count)
            } + [
                .equal(.go, "make([]int, 0) is not nil (zerobase)", expected: false, observed: cases[1].isNil),
                .equal(.go, "The first append allocates 8 B in class 1", expected: "8 B, class 1",
                       observed: "\(firstAppend?.size ?? -1) B, class \(firstAppend?.span.sizeClass ?? -1)"),
            ],
            differences: ["Go's escape analysis can put a small non-escaping make on the stack; SpanAlloc has no "
                          + "stack allocation, so every non-empty make is a heap block.",
                          "A GoSlice's owner object (which frees the array) is a Swift object from Swift's allocator, not SpanAlloc."])
    }

    // MARK: 5. Growth

    static func growth(appends: Int) -> Explanation {
        struct Step { let oldCap: Int; let newCap: Int; let goCap: Int; let articleCap: Int; let span: ObservedSpan? }
        var s = GoSlice<Int>()
        var steps: [Step] = []
        for i in 0..<appends {
            let old = s.capacity
            s.append(i)
            if s.capacity != old {
                let article = old == 0 ? 1 : old < 1024 ? old * 2 : old + old / 4
                steps.append(Step(oldCap: old, newCap: s.capacity,
                                  goCap: GoModel.grownCapacity(oldCapacity: old, stride: 8, noscan: true),
                                  articleCap: article, span: s.backingSpan.map(ObservedSpan.of(span:))))
            }
        }
        var table = ExplainTable(
            title: "Capacity after each growth of a []int (8-byte elements, noscan), one append at a time",
            columns: ["old cap", "new cap", "factor", "Go rule", "article rule", "bytes", "class", "spanClass", "pages", "span"])
        for st in steps {
            let factor = st.oldCap == 0 ? "-" : String(format: "%.2f×", Double(st.newCap) / Double(st.oldCap))
            table.rows.append(["\(st.oldCap)", "\(st.newCap)", factor, "\(st.goCap)", "\(st.articleCap)",
                               "\(st.newCap * 8)", "\(st.span?.sizeClass ?? -1)", "\(st.span?.spanClass ?? -1)",
                               "\(st.span?.pages ?? -1)", st.span.map { "#\($0.id)" } ?? "-"])
        }
        let goOK = steps.filter { $0.newCap == $0.goCap }.count
        let articleOK = steps.filter { $0.newCap == $0.articleCap }.count
        let firstOver256 = steps.first { $0.oldCap > 256 }
        let firstOver1024 = steps.first { $0.oldCap >= 1024 }
        let rounded = steps.filter { $0.newCap != GoModel.nextSliceCap(newLength: $0.oldCap + 1, oldCapacity: $0.oldCap) }
        var obs = ["\(appends) appends grew the slice \(steps.count) times: "
                   + steps.map { "\($0.newCap)" }.joined(separator: " → ") + "."]
        if let f = firstOver256 {
            obs.append("From capacity \(f.oldCap) (above 256) it grew to \(f.newCap), "
                       + String(format: "%.2f×", Double(f.newCap) / Double(f.oldCap)) + ", not 2×: the smooth formula, "
                       + "then rounding up to class \(f.span?.sizeClass ?? -1).")
        }
        if let big = steps.first(where: { $0.span?.sizeClass == 0 }) {
            obs.append("At capacity \(big.newCap) (\(big.newCap * 8) B, over 32 KiB) the array became a large object: "
                       + "class 0, a span of \(big.span?.pages ?? 0) pages of its own, as in Go.")
        }
        obs.append("\(rounded.count) of \(steps.count) capacities were raised by roundupsize beyond nextslicecap's value.")
        return Explanation(
            number: 5, title: titles[5]!,
            question: "How does append grow a slice's capacity?",
            articleClaim: "Below 1024 elements the capacity doubles; above, it grows 1.25× (newcap = oldcap + oldcap/4).",
            goAnswer: "Since Go 1.18 nextslicecap doubles below 256 elements, then adds (newcap + 3×256) / 4 per step, "
                + "a smooth transition from 2× to 1.25×; growslice then rounds capacity × element size up to a size "
                + "class with roundupsize (whole pages above 32 KiB) and divides back, so the capacity often exceeds "
                + "the formula.",
            goSources: ["src/runtime/slice.go (growslice, nextslicecap)", "src/runtime/msize.go (roundupsize)"],
            observations: obs, tables: [table],
            checks: [
                .equal(.article, "Every capacity follows 2× below 1024, 1.25× above", expected: steps.count, observed: articleOK),
                .equal(.go, "Every capacity is nextslicecap rounded up by roundupsize", expected: steps.count, observed: goOK),
                ExplainCheck(source: .go, statement: "Growth slows down above capacity 256, not 1024",
                             expected: "factor < 2 at the first step from above 256",
                             observed: firstOver256.map { String(format: "%.2f×", Double($0.newCap) / Double($0.oldCap)) } ?? "-",
                             holds: firstOver256.map { $0.newCap < 2 * $0.oldCap } ?? false),
                ExplainCheck(source: .go, statement: "Above 1024 each step is between 1.25× and 2×",
                             expected: "1.25× ≤ factor < 2×",
                             observed: firstOver1024.map { String(format: "%.2f×", Double($0.newCap) / Double($0.oldCap)) } ?? "-",
                             holds: steps.filter { $0.oldCap >= 1024 }.allSatisfy {
                                 $0.newCap * 4 >= $0.oldCap * 5 && $0.newCap < 2 * $0.oldCap
                             }),
            ],
            differences: [noGC])
    }
}
