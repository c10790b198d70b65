import Testing
@testable import SpanAlloc

@Suite struct GoChanTestsPlaceholder {
    @Test func moduleLoads() { #expect(SpanHeap.default.sizeClasses.count == 67) }
}
