import Testing
import SpanAllocTestSupport
import SpanAlloc

/// Counts the live instances of ``Tracked``; one tracker per test, so tests
/// can run in parallel.
final class LifetimeTracker: @unchecked Sendable {
    var created = 0
    var live = 0

    func make(_ value: Int) -> Tracked { Tracked(value, self) }
}

/// A non-trivial element: each instance is one value, counted on init and
/// deinit. A leaked copy keeps it alive; a double destroy over-releases it.
final class Tracked: Equatable, CustomStringConvertible {
    let value: Int
    let tracker: LifetimeTracker

    init(_ value: Int, _ tracker: LifetimeTracker) {
        self.value = value
        self.tracker = tracker
        tracker.created += 1
        tracker.live += 1
    }

    deinit { tracker.live -= 1 }

    static func == (a: Tracked, b: Tracked) -> Bool { a.value == b.value }
    var description: String { "\(value)" }
}

/// A non-trivial struct element bigger than a word, holding a tracked value.
struct TrackedPair: Equatable {
    var tracked: Tracked
    var label: String
}

@Suite(.heapShared) struct LifetimeTests {
    /// Runs `body` with the values it creates held in `keep`, then checks
    /// that, once every slice is gone, each value is referenced exactly as
    /// often as a control value that never entered a slice (no reference
    /// leaked, none released twice), and that all of them are destroyed.
    func checkNoLeakNoDoubleDestroy(
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: (LifetimeTracker, inout [Tracked]) -> Void
    ) {
        let tracker = LifetimeTracker()
        do {
            var keep: [Tracked] = []
            body(tracker, &keep)           // every slice made in body is gone on return
            keep.append(tracker.make(-1))   // the control, held only by `keep`
            let expected = _getRetainCount(keep[keep.count - 1])
            var wrong: [String] = []
            for i in keep.indices where _getRetainCount(keep[i]) != expected {
                wrong.append("\(keep[i].value): \(_getRetainCount(keep[i])) != \(expected)")
            }
            let allMatch = wrong.isEmpty
            #expect(allMatch, "retain counts: \(wrong.prefix(10))", sourceLocation: sourceLocation)
            #expect(tracker.live == keep.count, sourceLocation: sourceLocation)
        }
        #expect(tracker.live == 0, "leaked \(tracker.live) of \(tracker.created)",
                sourceLocation: sourceLocation)
    }

    @Test func appendsAndGrowth() {
        checkNoLeakNoDoubleDestroy { t, keep in
            var s = GoSlice<Tracked>()
            for i in 0 ..< 1000 {
                let x = t.make(i)
                keep.append(x)
                s.append(x)
            }
            #expect(s.count == 1000 && s[999].value == 999)
            s.append(contentsOf: keep[0 ..< 300])
            #expect(s.count == 1300 && s[1299].value == 299)
        }
    }

    @Test func appendsThroughSubslicesOverwriteAndReplace() {
        checkNoLeakNoDoubleDestroy { t, keep in
            var parent = GoSlice<Tracked>()
            for i in 0 ..< 10 { keep.append(t.make(i)); parent.append(keep[i]) }
            var sub = parent.reslice(0, 3)
            for i in 10 ..< 14 { keep.append(t.make(i)); sub.append(keep[i]) }  // overwrites parent[3...6]
            #expect(parent.map(\.value) == [0, 1, 2, 10, 11, 12, 13, 7, 8, 9])
            var fixed = parent.reslice(2, 4, 4)
            keep.append(t.make(99))
            fixed.append(keep[keep.count - 1])                                   // grows, parent untouched
            #expect(parent[4].value == 11 && fixed.map(\.value) == [2, 10, 99])
            parent[0] = keep[13]
            #expect(GoSlice.copy(to: parent.reslice(from: 1), from: parent) == 9)
            #expect(parent.map(\.value) == [13, 13, 1, 2, 10, 11, 12, 13, 7, 8])
            // Re-exposing written slots past the length, then dropping the
            // parent first while a subslice still holds the array.
            let tail = sub.reslice(5, 10)
            parent = GoSlice()
            sub = GoSlice()
            #expect(tail.map(\.value) == [11, 12, 13, 7, 8])
        }
    }

    @Test func repeatingLiteralsAndSequences() {
        checkNoLeakNoDoubleDestroy { t, keep in
            let x = t.make(1), y = t.make(2)
            keep += [x, y]
            var r = GoSlice(repeating: x, length: 2, capacity: 50)
            var w = r.reslice(0, 50)
            w[49] = y
            r.append(y)
            let lit: GoSlice = [x, y, x]
            var seq = GoSlice(AnySequence([y, y]))
            seq.append(contentsOf: AnySequence(lit))
            seq.append(contentsOf: seq)          // aliasing, grows
            var same = seq.reslice(upTo: 1)
            same.append(contentsOf: seq.reslice(from: 2))   // aliasing, fits
            #expect(seq.count == 10 && r.count == 3 && w.count == 50)
            w = GoSlice()
        }
    }

    @Test func structElements() {
        checkNoLeakNoDoubleDestroy { t, keep in
            var s = GoSlice<TrackedPair>()
            for i in 0 ..< 300 {
                keep.append(t.make(i))
                s.append(TrackedPair(tracked: keep[i], label: "label number \(i)"))
            }
            var a = s.reslice(10, 20)
            a.append(contentsOf: s.reslice(100, 200))       // grows past a's capacity? no: cap is large
            _ = GoSlice.copy(to: s, from: s.reslice(from: 150))
            #expect(s[0].label == "label number 150")
            a = GoSlice()
        }
    }

    @Test func optionalElementsGrowWithNil() {
        checkNoLeakNoDoubleDestroy { t, keep in
            var s = GoSlice<Tracked?>(length: 1, capacity: 3)
            for i in 0 ..< 700 {
                keep.append(t.make(i))
                s.append(keep[i])
            }
            var wide = s.reslice(0, s.capacity)          // nil tail, as in Go
            wide[wide.count - 1] = keep[5]
            var sub = s.reslice(10, 20)
            sub.append(contentsOf: [nil, keep[1]])         // overwrites s[20], s[21]
            #expect(s[21]?.value == 1 && s[20] == nil && wide.last??.value == 5)
            wide = GoSlice()
        }
    }
}
