import Testing
import SpanAllocTestSupport
import SpanAlloc

/// Hands a value to another thread. GoSlice is not Sendable (slices alias
/// mutable memory); a program that passes one over must stop using it, as
/// these tests do.
final class Handoff<T>: @unchecked Sendable {
    var value: T?
    init(value: T) { self.value = value }
}

@Suite(.heapShared) struct ThreadTests {
    /// Slices made on one thread and dropped on another: the backing arrays
    /// are freed by a thread that did not allocate them (SpanAlloc's remote
    /// free), elements destroyed exactly once.
    @Test func slicesDroppedOnAnotherThread() async {
        let tracker = LifetimeTracker()
        var made: [GoSlice<Tracked>] = []
        var ints: [GoSlice<Int>] = []
        for i in 0 ..< 200 {
            var s = GoSlice<Tracked>()
            for j in 0 ..< i % 20 { s.append(tracker.make(j)) }
            made.append(s)
            var n = GoSlice<Int>(length: 0, capacity: i)
            n.append(contentsOf: 0 ..< i)
            ints.append(n)
        }
        let box = Handoff(value: (made, ints))
        made = []
        ints = []
        let total = await Task.detached {
            let t = box.value!.1.reduce(0) { $0 + $1.count }
            box.value = nil          // the last references go on this thread
            return t
        }.value
        #expect(total == (0 ..< 200).reduce(0, +))
        #expect(tracker.live == 0 && tracker.created == (0 ..< 200).reduce(0) { $0 + $1 % 20 })
    }

    /// Independent slices grown and dropped on several threads at once.
    @Test func concurrentIndependentSlices() async {
        let sums = await withTaskGroup(of: Int.self) { group in
            for t in 0 ..< 4 {
                group.addTask {
                    var total = 0
                    for round in 0 ..< 200 {
                        var s = GoSlice<Int>()
                        var names = GoSlice<String>()
                        for i in 0 ..< (round % 50) * 10 + t {
                            s.append(i)
                            if i % 7 == 0 { names.append("n\(i)") }
                        }
                        let half = s.reslice(0, s.count / 2)
                        total += half.reduce(0, +) + names.count
                    }
                    return total
                }
            }
            var all: [Int] = []
            for await x in group { all.append(x) }
            return all
        }
        var expected: [Int] = []
        for t in 0 ..< 4 {
            var total = 0
            for round in 0 ..< 200 {
                let n = (round % 50) * 10 + t
                total += (0 ..< n / 2).reduce(0, +) + (0 ..< n).filter { $0 % 7 == 0 }.count
            }
            expected.append(total)
        }
        #expect(sums.sorted() == expected.sorted())
    }
}
