import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Reads `count` bytes at `p` through memcpy, which AddressSanitizer
/// intercepts and checks, so the read is reported even where the compiler
/// would not instrument a plain load.
func touch(_ p: UnsafeRawPointer, count: Int = 1) {
    var sink = [UInt8](repeating: 0, count: count)
    sink.withUnsafeMutableBytes { _ = memcpy($0.baseAddress!, p, count) }
    print("read \(count) byte(s) at \(p): \(sink.first ?? 0)")
}

/// With AddressSanitizer, SpanAlloc poisons freed objects and the unused
/// tail of every block, so ASan reports use after free and overflows on
/// SpanAlloc memory as it does on malloc's. Only meaningful in a test binary
/// built with `swift test --sanitize=address`; skipped otherwise.
extension ReliabilityTests {
    @Suite(.enabled(if: Sanitizer.address,
                    "needs a test binary built with --sanitize=address (swift test --sanitize=address)"))
    struct AddressSanitizerAwareness {
        static let asanWords = ["AddressSanitizer"]

        func expectReport(_ result: ExitTest.Result?, _ kinds: [String], _ what: String,
                          sourceLocation: SourceLocation = #_sourceLocation) {
            guard let result else { return }
            let message = String(decoding: result.standardErrorContent, as: UTF8.self)
            #expect(message.contains("AddressSanitizer") && kinds.contains { message.contains($0) },
                    "\(what): ASan reports \(kinds): \(message.prefix(400))", sourceLocation: sourceLocation)
        }

        @Test func useAfterFreeOfSmallObjectIsReported() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let keep = sa_alloc(64, 0)!
                let p = sa_alloc(64, 0)!
                memset(p, 0x5A, 64)
                sa_free(p)
                touch(p)
                sa_free(keep)
            }
            expectReport(r, ["use-after-poison", "use-after-free"], "use after free (64 B)")
        }

        /// A freed object that is not the last allocation (no LIFO shortcut).
        @Test func useAfterFreeOfOlderSmallObjectIsReported() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let p = sa_alloc(256, 0)!
                let later = sa_alloc(256, 0)!
                sa_free(p)
                touch(p + 100)
                sa_free(later)
            }
            expectReport(r, ["use-after-poison", "use-after-free"], "use after free (256 B)")
        }

        @Test func useAfterFreeOfLargeObjectIsReported() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let p = sa_alloc(100_000, 0)!
                let keep = sa_alloc(100_000, 0)!
                sa_free(p)
                touch(p + 50_000)
                sa_free(keep)
            }
            expectReport(r, ["use-after-poison", "use-after-free"], "use after free (large)")
        }

        /// 20 bytes requested, class 24: bytes 20..<24 are the poisoned tail.
        @Test func overflowPastTheRequestedSizeIsReported() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let p = sa_alloc(20, 0)!
                memset(p, 1, 20)
                touch(p + 20)
                sa_free(p)
            }
            expectReport(r, ["use-after-poison", "heap-buffer-overflow", "container-overflow"], "overflow (20 of 24 B)")
        }

        @Test func overflowPastALargeObjectIsReported() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let p = sa_alloc(40_000, 0)!  // a 40960-byte span
                touch(p + 40_000)
                sa_free(p)
            }
            expectReport(r, ["use-after-poison", "heap-buffer-overflow", "container-overflow"], "overflow (large)")
        }

        /// The negative control: every byte of a live block, and a block
        /// reused after a free, may be read and written without a report.
        @Test func liveBlocksAreNotReported() throws {
            for size in [1, 20, 24, 64, 1000, 32768, 40_000, 1 << 20] {
                let p = try #require(sa_alloc(size, 0))
                memset(p, 0x11, size)
                touch(p, count: size)
                sa_free(p)
                let q = try #require(sa_alloc(size, 0))
                memset(q, 0x22, size)
                touch(q, count: size)
                let r = try #require(sa_realloc(q, size * 2 + 1))
                touch(r, count: size * 2 + 1)
                sa_free(r)
            }
        }
    }
}
