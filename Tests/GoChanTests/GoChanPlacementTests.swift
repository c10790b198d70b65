import Testing
@testable import SpanAlloc
import SpanAllocTestSupport

/// Where makechan puts a channel: one noscan block for pointer-free
/// elements, two scan blocks for reference-holding ones, the 112-byte
/// control block alone for unbuffered channels and zero-size elements.
@Suite(.heapShared) struct GoChanPlacementTests {
    let heap = SpanHeap.default

    func blocks<T>(_ ch: GoChan<T>) -> (control: UnsafeMutableRawPointer, buf: UnsafeMutableRawPointer) {
        (UnsafeMutableRawPointer(ch.control), ch.control.pointee.buf)
    }

    @Test func pointerFreeElementsShareOneNoscanBlock() throws {
        let ch = GoChan<Int>(capacity: 128)
        let (control, buf) = blocks(ch)
        #expect(buf == control + 112)
        let span = try #require(heap.span(containing: control))
        #expect(span.noscan)
        #expect(span.elementSize == heap.sizeClasses[heap.sizeClass(forByteCount: 112 + 128 * 8) - 1].objectSize)
        #expect(span.spanClass == heap.sizeClass(forByteCount: 112 + 1024) << 1 | 1)
        #expect(heap.span(containing: buf + 1023)?.id == span.id)
        #expect(heap.usableSize(of: control) >= 112 + 1024)
    }

    @Test func referenceElementsUseTwoScanBlocks() throws {
        let ch = GoChan<String>(capacity: 10)
        let (control, buf) = blocks(ch)
        #expect(buf != control + 112)
        let c = try #require(heap.span(containing: control))
        let b = try #require(heap.span(containing: buf))
        #expect(!c.noscan && !b.noscan)
        #expect(c.elementSize == 112)
        #expect(c.spanClass == heap.sizeClass(forByteCount: 112) << 1)
        #expect(b.elementSize == heap.sizeClasses[heap.sizeClass(forByteCount: 10 * 16) - 1].objectSize)
    }

    @Test(arguments: [0, 1])
    func unbufferedAndZeroSizeAreTheControlBlockAlone(kind: Int) throws {
        let control: UnsafeMutableRawPointer
        let buf: UnsafeMutableRawPointer
        switch kind {
        case 0: (control, buf) = blocks(GoChan<String>())           // unbuffered, even with references
        default: (control, buf) = blocks(GoChan<Void>(capacity: 1_000))
        }
        #expect(buf == control)
        let span = try #require(heap.span(containing: control))
        #expect(span.noscan)
        #expect(span.elementSize == 112)
    }

    @Test func channelsOfOneClassShareSpans() throws {
        // Like Go's small objects, control blocks are packed into spans of
        // their size class: 100 unbuffered channels use few spans.
        let chans = (0..<100).map { _ in GoChan<Int>() }
        let ids = Set(try chans.map { try #require(heap.span(containing: UnsafeRawPointer($0.control))).id })
        #expect(ids.count <= 3)
    }

    @Test func controlBlocksAreSixteenByteAligned() {
        let a = GoChan<Int>(), b = GoChan<UInt8>(capacity: 3), c = GoChan<String>(capacity: 2)
        for p in [blocks(a).control, blocks(b).control, blocks(c).control] {
            #expect(UInt(bitPattern: p) % 16 == 0)
        }
    }

    @Test func deinitFreesTheBlocks() throws {
        let before = heap.memStats
        for _ in 0..<1_000 {
            _ = GoChan<Int>(capacity: 4)
            _ = GoChan<String>(capacity: 4)
        }
        let after = heap.memStats
        #expect(after.mallocs - before.mallocs >= 3_000)
        #expect(after.frees - before.frees >= 3_000)
    }
}
