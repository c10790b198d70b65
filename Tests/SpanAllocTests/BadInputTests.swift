import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Prints the pointer (in hex, as the child's stdout) before freeing it, so
/// the parent can check the fault message names it.
func announce(_ p: UnsafeRawPointer) {
    print(String(UInt(bitPattern: p), radix: 16))
    fflush(nil)
}

extension CoreAllocatorTests {
    /// Bad frees stop the process with a message naming the pointer; sizes
    /// that cannot be served and OS refusals return nil.
    @Suite struct BadInput {
        /// Checks that the child's stderr names the pointer it printed.
        func expectNamesPointer(_ result: ExitTest.Result?, _ fault: String, _ words: [String],
                                sourceLocation: SourceLocation = #_sourceLocation) {
            guard let result else { return }
            let printed = String(decoding: result.standardOutputContent, as: UTF8.self)
                .split(separator: "\n").last.map(String.init) ?? ""
            let message = String(decoding: result.standardErrorContent, as: UTF8.self).lowercased()
            #expect(!printed.isEmpty && message.contains(printed),
                    "\(fault): the message names the pointer 0x\(printed): \(message.prefix(300))",
                    sourceLocation: sourceLocation)
            #expect(words.contains { message.contains($0) },
                    "\(fault): the message names the fault (\(words)): \(message.prefix(300))",
                    sourceLocation: sourceLocation)
        }

        static let foreign = ["not allocated", "not owned", "foreign", "not ours"]
        static let interior = ["interior"]
        static let double = ["double free", "already freed"]

        @Test func freeOfStackAddressStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                var x = 0
                withUnsafeMutablePointer(to: &x) { p in
                    announce(p)
                    sa_free(p)
                }
            }
            expectNamesPointer(r, "stack address", Self.foreign)
        }

        @Test func freeOfGlibcPointerStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = malloc(64)!
                announce(p)
                sa_free(p)
            }
            expectNamesPointer(r, "glibc pointer", Self.foreign)
        }

        @Test func freeOfLowAddressStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = UnsafeMutableRawPointer(bitPattern: 0x1000)!
                announce(p)
                sa_free(p)
            }
            expectNamesPointer(r, "address 0x1000", Self.foreign)
        }

        @Test func freeOfInteriorPointerStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = SpanHeap.default.allocate(byteCount: 32)
                announce(p + 8)
                sa_free(p + 8)
            }
            expectNamesPointer(r, "interior pointer", Self.interior)
        }

        @Test func freeOfInteriorPointerOfLargeObjectStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = SpanHeap.default.allocate(byteCount: 1 << 20)
                announce(p + 8192)
                sa_free(p + 8192)
            }
            expectNamesPointer(r, "interior pointer of a large object", Self.interior)
        }

        @Test func doubleFreeStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let keep = SpanHeap.default.allocate(byteCount: 48)   // the span stays in use
                let p = SpanHeap.default.allocate(byteCount: 48)
                announce(p)
                sa_free(p)
                sa_free(p)
                sa_free(keep)
            }
            expectNamesPointer(r, "double free", Self.double)
        }

        @Test func doubleFreeOfLastObjectStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = SpanHeap.default.allocate(byteCount: 32768)  // one object per span
                announce(p)
                sa_free(p)
                SpanHeap.default.flushThreadCache()
                sa_free(p)
            }
            expectNamesPointer(r, "double free of a span's only object", Self.double)
        }

        @Test func doubleFreeOfLargeObjectStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let p = SpanHeap.default.allocate(byteCount: 1 << 20)
                announce(p)
                sa_free(p)
                sa_free(p)
            }
            expectNamesPointer(r, "double free of a large object", Self.double)
        }

        /// One thread allocates; another frees the object twice.
        @Test func remoteDoubleFreeStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let address = Locked<Address>(0)
                runOnThread {
                    _ = SpanHeap.default.allocate(byteCount: 64)   // keeps the span in use
                    let p = SpanHeap.default.allocate(byteCount: 64)
                    address.withLock { $0 = p.address }
                    // Stay alive (caching the span) while the other thread frees.
                    runOnThread {
                        let p = UnsafeMutableRawPointer(address: address.value)
                        announce(p)
                        sa_free(p)
                        sa_free(p)
                    }
                }
            }
            expectNamesPointer(r, "remote double free", Self.double)
        }

        /// The owner frees an object (into its freeBits: another object was
        /// allocated after it, so the LIFO shortcut does not apply), then
        /// another thread frees it again: the remote free reads the owner's
        /// freeBits and stops the process before the slot can be reused.
        @Test func ownerThenRemoteDoubleFreeStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let keep = SpanHeap.default.allocate(byteCount: 80)
                let p = SpanHeap.default.allocate(byteCount: 80)
                let after = SpanHeap.default.allocate(byteCount: 80)
                announce(p)
                sa_free(p)
                sa_free(after)
                let address = p.address
                runOnThread { sa_free(UnsafeMutableRawPointer(address: address)) }
                // No sweep runs before this point: the remote free itself stopped.
                FileHandle.standardError.write(Data("survived the remote free\n".utf8))
                sa_free(keep)
            }
            expectNamesPointer(r, "owner then remote double free", Self.double)
            let err = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
            #expect(!err.contains("survived"), "the remote free did not stop the process: \(err.prefix(300))")
        }

        /// Another thread frees an object, then the owner frees it again (the
        /// owner's free does not read the remote bitmap): the owner's next
        /// sweep of the span finds the slot in both bitmaps and stops.
        @Test func remoteThenOwnerDoubleFreeStops() async {
            let r = await #expect(processExitsWith: .failure,
                                  observing: [\.standardOutputContent, \.standardErrorContent]) {
                let keep = SpanHeap.default.allocate(byteCount: 80)
                let p = SpanHeap.default.allocate(byteCount: 80)
                announce(p)
                let address = p.address
                runOnThread { sa_free(UnsafeMutableRawPointer(address: address)) }
                sa_free(p)
                for _ in 0..<1000 { _ = SpanHeap.default.allocate(byteCount: 80) }
                sa_free(keep)
            }
            expectNamesPointer(r, "remote then owner double free", Self.double)
        }

        /// The OS refuses every mmap: allocations that need new memory
        /// return nil with ENOMEM, and the heap works again afterwards.
        @Test func mmapFailureReturnsNilAndHeapRecovers() throws {
            defer { sa_debug_fail_mmap_after(-1) }
            heap.flushThreadCache()
            // With N mmaps allowed, a request bigger than every free run
            // (it needs new arenas, one metadata mmap per 64 MiB arena, span
            // structs: k mmaps) fails with ENOMEM while N < k and succeeds
            // from N = k on. Each N is tried until the first success.
            var served = false
            let arenas = (Int(heap.memStats.heapIdle) + (512 << 20)) >> 26
            let attempts = arenas + 16
            for successes in 0..<attempts where !served {
                let size = roundUpToPages(Int(heap.memStats.heapIdle) + (256 << 20))
                sa_debug_fail_mmap_after(successes)
                let (p, err) = withErrno { sa_alloc(size, UInt32(SA_NOSCAN)) }
                if let p {
                    #expect(successes > 0, "no mmap may succeed")
                    #expect(sa_usable_size(p) >= size && sa_owns(p) && sa_owns(p + size - 1),
                            "a \(size)-byte block after \(successes) mmaps")
                    p.storeBytes(of: 1, as: UInt8.self)
                    (p + size - 1).storeBytes(of: 1, as: UInt8.self)
                    sa_free(p)
                    served = true
                } else {
                    #expect(err == ENOMEM, "refused after \(successes) mmaps: errno \(err)")
                }
                // Small objects keep working or fail cleanly while mmap fails.
                var small: [UnsafeMutableRawPointer] = []
                for i in 0..<2000 {
                    guard let q = sa_alloc(16 + i % 4000, 0) else { break }
                    small.append(q)
                }
                sa_debug_fail_mmap_after(-1)
                for q in small { sa_free(q) }
                #expect(heap.checkInvariants() == nil, "after failing mmap after \(successes) successes")
            }
            #expect(served, "never served with up to \(attempts - 1) mmaps allowed")
            let size = roundUpToPages(Int(heap.memStats.heapIdle) + (256 << 20))
            let p = try #require(sa_alloc(size, UInt32(SA_NOSCAN)), "the heap maps memory again")
            (p + size - 1).storeBytes(of: 1, as: UInt8.self)
            sa_free(p)
            let q = heap.allocate(byteCount: 100)
            heap.deallocate(q)
        }
    }
}
