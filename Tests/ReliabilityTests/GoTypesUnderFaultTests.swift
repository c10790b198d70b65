import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

/// GoSlice growth and GoChan creation when the OS refuses memory: the
/// process stops with a clear message (Go's "out of memory" throw); nothing
/// is half-built or corrupted, since it never continues.
extension ReliabilityTests.FaultInjection {
    func expectOutOfMemory(_ result: ExitTest.Result?, _ what: String,
                           sourceLocation: SourceLocation = #_sourceLocation) {
        guard let result else { return }
        let message = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(message.contains("out of memory"), "\(what): \(message.prefix(300))",
                sourceLocation: sourceLocation)
    }

    @Test func goSliceGrowthStopsWhenMmapFails() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var s = GoSlice<Int>(length: 1 << 20)  // 8 MiB
            sa_debug_fail_mmap_after(0)
            _ = holdEveryFreeRun()
            s.append(1)  // growth needs 16 MiB the heap no longer has
            print(s.count)
        }
        expectOutOfMemory(r, "GoSlice growth")
    }

    @Test func goChanCreationStopsWhenMmapFails() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            sa_debug_fail_mmap_after(0)
            _ = holdEveryFreeRun()
            let c = GoChan<Int>(capacity: 1 << 16)  // a 512 KiB buffer
            print(c)
        }
        expectOutOfMemory(r, "GoChan creation")
    }
}
