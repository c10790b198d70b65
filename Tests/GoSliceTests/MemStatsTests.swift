import Testing
import SpanAllocTestSupport
import SpanAlloc

#if canImport(Glibc)
import Glibc
#endif

/// After every slice is gone, the heap holds what it held before. Runs in a
/// child process (an exit test) so no other test allocates from SpanAlloc
/// meanwhile; the child exits with failure when the statistics differ.
@Suite(.heapShared) struct MemStatsTests {
    @Test func heapReturnsToBaseline() async {
        await #expect(processExitsWith: .success) {
            let heap = SpanHeap.default
            let before = heap.memStats
            do {
                var ints = GoSlice<Int>()
                var strings = GoSlice<String>()
                var ptrs = GoSlice<AnyObject?>()
                for i in 0 ..< 100_000 {
                    ints.append(i)
                    if i % 10 == 0 { strings.append("value \(i)") }
                    if i % 100 == 0 { ptrs.append(nil) }
                }
                var views: [GoSlice<Int>] = []
                for i in stride(from: 0, to: 90_000, by: 1000) {
                    var v = ints.reslice(i, i + 10, i + 10)
                    v.append(i)                      // each grows into an array of its own
                    views.append(v)
                }
                let bytes = (0 ..< 1000).map { GoSlice<UInt8>(length: $0) }   // make([]byte, n)
                let big = GoSlice<Double>(length: 1 << 16)                    // a large span
                let mid = heap.memStats
                guard mid.heapObjects > before.heapObjects, !bytes.isEmpty, big.count > 0,
                      strings.count > 0, ptrs.count > 0, !views.isEmpty else { exit(2) }
            }
            let after = heap.memStats
            if after.heapObjects != before.heapObjects || after.heapAlloc != before.heapAlloc
                || after.mallocs - before.mallocs != after.frees - before.frees {
                print("before \(before.heapObjects) objects \(before.heapAlloc) B;",
                      "after \(after.heapObjects) objects \(after.heapAlloc) B")
                exit(1)
            }
            if let problem = heap.checkInvariants() {
                print("heap check: \(problem)")
                exit(3)
            }
            exit(0)
        }
    }
}
