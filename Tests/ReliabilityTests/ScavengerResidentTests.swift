import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The resident-memory goals of memory return, with the scavenger's defaults (no
/// configuration): an idle process gives back what it does not use within
/// seconds. Natively (an exit-test child) and under the LD_PRELOAD library
/// (Tests/memory-return/idle_return.c), where every allocation of the
/// process is SpanAlloc's.
extension ScavengerTests {
    @Suite struct Resident {
        // MARK: The 1.2 GiB two-thread peak

        static let peakTotal = 12 << 30 / 10   // 1.2 GiB
        static let smallPerThread = 1_200_000  // 2.4 million blocks of 64-512 B in all
        static let largePerThread = 100        // 200 blocks of 256 KiB-4 MiB in all

        /// Two threads allocate 1.2 GiB in all (2.4 million blocks of
        /// 64–512 B, 200 of 256 KiB–4 MiB, every page written), each frees
        /// the other's blocks, both are joined, then no allocator call:
        /// resident memory must fall to max(10% of the peak, floor + 8 MiB)
        /// above the level before the workload within 10 s of the last free
        /// (statm read every 100 ms; passes as soon as it holds).
        @Test(.enabled(if: !Sanitizer.any, "sanitizer shadow memory is resident and is not returned"))
        func twoThreadPeakGoesBackWithinTenSeconds() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                Resident.twoThreadPeak()
            }
            expectChildPasses(r, reporting: "idle return")
        }

        static func twoThreadPeak() {
            let floor = scavengeConfig().floor_bytes
            let perThread = smallPerThread + largePerThread
            // The address lists live outside SpanAlloc, touched before the
            // baseline (and kept until the end, so freeing them cannot hide
            // memory the heap kept).
            let lists = (0..<2).map { _ -> UInt in
                let l = UnsafeMutablePointer<UInt>.allocate(capacity: perThread)
                l.initialize(repeating: 0, count: perThread)
                return UInt(bitPattern: l)
            }
            let barrier = Barrier(2)
            let figures = Guarded((peak: 0, bytes: 0))
            let r0 = statmResident()
            ThreadGang.run(2) { t in
                let mine = UnsafeMutablePointer<UInt>(bitPattern: lists[t])!
                var rng = WyRand(seed: 0x15_0000 + UInt64(t))
                var bytes = 0
                for i in 0..<smallPerThread {
                    let size = 64 + rng.below(449)
                    guard let p = sa_alloc(size, 0) else { childStop("small allocation \(i) failed") }
                    memset(p, Int32(truncatingIfNeeded: i), size)
                    mine[i] = UInt(bitPattern: p)
                    bytes += size
                }
                // Large blocks fill the thread's half of the 1.2 GiB.
                let target = peakTotal / 2
                for j in 0..<largePerThread {
                    let even = (target - bytes) / (largePerThread - j)
                    let size = min(max(even - (1 << 20) + rng.below(2 << 20), 256 << 10), 4 << 20)
                    guard let p = sa_alloc(size, 0) else { childStop("large allocation \(j) failed") }
                    touchEveryPage(p, size)
                    mine[smallPerThread + j] = UInt(bitPattern: p)
                    bytes += size
                }
                figures.withLock { $0.bytes += bytes }
                barrier.wait()
                if t == 0 { figures.withLock { $0.peak = statmResident() } }
                barrier.wait()
                // Each frees the other's blocks (remote frees).
                let other = UnsafeMutablePointer<UInt>(bitPattern: lists[1 - t])!
                for i in 0..<perThread { sa_free(UnsafeMutableRawPointer(bitPattern: other[i])) }
            }
            // Both threads joined: their caches are handed back. From here on
            // no allocator call until the figure holds or 10 s have passed.
            let (peak, bytes) = figures.withLock { ($0.peak, $0.bytes) }
            let peakAbove = peak - r0
            let bound = max(peakAbove / 10, floor + (8 << 20))
            var last = 0
            let took = poll(timeout: 10) {
                last = statmResident() - r0
                return last <= bound
            }
            let s = childStats()
            childReport("idle return (native): \(mib(bytes)) allocated by 2 threads; resident \(mib(r0)) before, "
                        + "+\(mib(peakAbove)) at the peak, +\(mib(last)) "
                        + (took.map { String(format: "%.1f s after the last free", $0) } ?? "10 s after the last free")
                        + " (bound +\(mib(bound))); \(releaseSummary(s))")
            childExpect(bytes >= peakTotal * 99 / 100, "allocated \(mib(bytes)), not 1.2 GiB")
            childExpect(peakAbove >= bytes * 9 / 10, "the peak is not resident: +\(mib(peakAbove)) for \(mib(bytes))")
            childExpect(took != nil, "resident +\(mib(last)) above the level before, 10 s after the last free "
                       + "(bound +\(mib(bound)) = max(10% of the +\(mib(peakAbove)) peak, floor \(mib(floor)) + 8 MiB)); "
                       + releaseSummary(s))
            if let v = childHeapViolation() { childStop(v) }
        }

        /// The same workload under the LD_PRELOAD library, in C (malloc and
        /// free; the program reads statm with open/read, so the wait makes
        /// no allocator call at all).
        @Test(.enabled(if: PreloadProgram.wanted, "needs .build/spanalloc-preload/libspanalloc.so (scripts/build-preload.sh)"),
              .enabled(if: !Sanitizer.any, "the sanitizer owns malloc"))
        func twoThreadPeakGoesBackUnderThePreloadedMalloc() throws {
            try Self.runPreloaded("peak", passing: "idle return (LD_PRELOAD peak): pass")
        }

        /// Runs a mode of idle_return.c under the preloaded library, prints
        /// its figures and expects it to pass.
        static func runPreloaded(_ mode: String, passing: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let dir = try PreloadProgram.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let binary = try PreloadProgram.build(in: dir)
            let out = try PreloadProgram.run(binary, mode)
            print(out.text.split(separator: "\n").filter { $0.hasPrefix("idle return") }.joined(separator: "\n"))
            #expect(out.status == 0 && out.text.contains(passing), "\(out.text.suffix(3000))", sourceLocation: sourceLocation)
        }

        // MARK: Many idle threads

        /// Sizes from 16 B to 32 KiB, each one eighth above the last (rounded
        /// up to 8 B): the bench's many-idle-threads sizes.
        static let idleSizes: [Int] = {
            var sizes: [Int] = [], size = 16
            while size <= 32768 {
                sizes.append(size)
                size = max((size + size / 8 + 7) & ~7, size + 8)
            }
            return sizes
        }()
        static let idleThreads = 64, idleBlocks = 64, idleRounds = 4

        /// 64 threads each allocate 64 blocks of every size from 16 B to
        /// 32 KiB (steps of one eighth), write them, free them, four rounds,
        /// then block alive: resident memory must fall to floor + 16 MiB
        /// above the level before within 5 s of the last thread blocking,
        /// and stay there once they have exited (again within 5 s); the
        /// scavenger must have handed back idle threads' caches.
        ///
        /// The peak depends on how many of the 64 threads the scheduler runs
        /// at once (270-910 MiB seen on 2 cores); the span structures mapped
        /// for it (9-18 MiB) go back with the pages once the program is idle.
        @Test(.enabled(if: !Sanitizer.any, "sanitizer shadow memory is resident and is not returned"))
        func manyIdleThreadsGiveTheirMemoryBack() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                Resident.manyIdleThreads()
            }
            expectChildPasses(r, reporting: "idle return")
        }

        static func manyIdleThreads() {
            let floor = scavengeConfig().floor_bytes
            let strict = floor + (16 << 20)
            let s0 = childStats()
            let sizes = idleSizes
            let perThread = sizes.count * idleBlocks
            let lists = (0..<idleThreads).map { _ -> UInt in
                let l = UnsafeMutablePointer<UInt>.allocate(capacity: perThread)
                l.initialize(repeating: 0, count: perThread)
                return UInt(bitPattern: l)
            }
            let sizeTable = UnsafeMutablePointer<Int>.allocate(capacity: sizes.count)
            sizeTable.initialize(from: sizes, count: sizes.count)
            let table = UInt(bitPattern: sizeTable), nsizes = sizes.count
            let r0 = statmResident()
            let gang = BlockedGang(idleThreads) { t in
                let ptrs = UnsafeMutablePointer<UInt>(bitPattern: lists[t])!
                let sizes = UnsafeMutablePointer<Int>(bitPattern: table)!
                for round in 0..<idleRounds {
                    for i in 0..<(nsizes * idleBlocks) {
                        let size = sizes[i / idleBlocks]
                        guard let p = sa_alloc(size, 0) else { childStop("allocation failed") }
                        touchEveryPage(p, size, UInt8(truncatingIfNeeded: round))
                        ptrs[i] = UInt(bitPattern: p)
                    }
                    for i in 0..<(nsizes * idleBlocks) { sa_free(UnsafeMutableRawPointer(bitPattern: ptrs[i])) }
                }
            }
            gang.waitUntilBlocked()
            let blocked = statmResident() - r0
            let metadata = Int(childStats().metadata_sys - s0.metadata_sys)
            let bound = strict
            func verdict(_ rss: Int) -> String {
                "bound +\(mib(bound)) = floor \(mib(floor)) + 16 MiB; \(mib(metadata)) of metadata mapped for the peak"
            }
            var last = 0
            let took = poll(timeout: 5) {
                last = statmResident() - r0
                return last <= strict
            }
            let s1 = childStats()
            childReport("idle return (native, \(idleThreads) idle threads): resident \(mib(r0)) before, +\(mib(blocked)) "
                        + "when the last thread blocked, +\(mib(last)) "
                        + (took.map { String(format: "%.1f s later", $0) } ?? "5 s later") + " (\(verdict(last))); "
                        + releaseSummary(s1))
            childExpect(last <= bound, "threads blocked: resident +\(mib(last)) above the level before after 5 s "
                       + "(\(verdict(last))); \(releaseSummary(s1))")
            childExpect(s1.idle_cache_flushes > 0, "no idle thread's cache was handed back (idleCacheFlushes 0)")
            gang.release()
            gang.join()
            let took2 = poll(timeout: 5) {
                last = statmResident() - r0
                return last <= strict
            }
            let s2 = childStats()
            childReport("idle return (native, \(idleThreads) threads exited): +\(mib(last)) "
                        + (took2.map { String(format: "%.1f s after the join", $0) } ?? "5 s after the join")
                        + " (\(verdict(last))); \(releaseSummary(s2))")
            childExpect(last <= bound, "threads exited: resident +\(mib(last)) above the level before after 5 s "
                       + "(\(verdict(last))); \(releaseSummary(s2))")
            childExpect(s2.heap_objects == s0.heap_objects, "\(s2.heap_objects) objects live after every thread freed all")
            if let v = childHeapViolation() { childStop(v) }
        }

        /// The same under the LD_PRELOAD library (idle_return.c, mode
        /// idle-threads), where the threads' own libc allocations are
        /// SpanAlloc's too.
        @Test(.enabled(if: PreloadProgram.wanted, "needs .build/spanalloc-preload/libspanalloc.so (scripts/build-preload.sh)"),
              .enabled(if: !Sanitizer.any, "the sanitizer owns malloc"))
        func manyIdleThreadsGiveTheirMemoryBackUnderThePreloadedMalloc() throws {
            try Self.runPreloaded("idle-threads", passing: "idle return (LD_PRELOAD idle threads): pass: threads exited")
        }
    }
}
