import Testing
@testable import SpanAlloc

@Suite struct GoSliceTestsPlaceholder {
    @Test func moduleLoads() { #expect(SpanHeap.default.sizeClasses.count == 67) }
}
