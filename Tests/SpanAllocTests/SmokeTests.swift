import Testing
import SpanAlloc

@Suite struct SmokeTests {
    @Test func allocateAndFree() {
        let p = SpanHeap.default.allocate(byteCount: 100)
        p.storeBytes(of: 0xAB, as: UInt8.self)
        #expect(p.load(as: UInt8.self) == 0xAB)
        SpanHeap.default.deallocate(p)
    }
}
