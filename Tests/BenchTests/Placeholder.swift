import Testing
@testable import SpanAlloc

@Suite struct BenchTestsPlaceholder {
    @Test func moduleLoads() { #expect(SpanHeap.default.sizeClasses.count == 67) }
}
