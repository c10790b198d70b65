import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The memory limit (Go's GOMEMLIMIT): soft (near the limit the heap hands
/// back caches and releases idle pages before it maps more, and allocation
/// still succeeds past it) and hard (a request that would take the counted
/// memory past the limit fails with ENOMEM; GoSlice stops with Go's
/// "runtime: out of memory"). Each test in a child of its own.
extension ScavengerTests {
    @Suite struct MemoryLimit {
        static let limit = 256 << 20
        static let liveBytes = 200 << 20

        // MARK: The 4 GiB cycle with 200 MiB live

        /// 200 MiB live: 150 MiB of large blocks in whole pages (64 KiB-1 MiB)
        /// and 50 MiB of small objects of exact class sizes, so the span
        /// rounding adds little to what is counted. Every page written.
        static func allocateLiveSet() -> [UInt] {
            var rng = WyRand(seed: 0x15_11)
            var blocks: [UInt] = [], bytes = 0
            while bytes < 150 << 20 {
                let size = (8 + rng.below(121)) * 8192
                guard let p = sa_alloc(size, 0) else { childStop("live-set allocation failed") }
                touchEveryPage(p, size)
                blocks.append(UInt(bitPattern: p))
                bytes += size
            }
            let classes = [512, 1024, 2048, 4096, 8192]
            while bytes < liveBytes {
                let size = classes[rng.below(classes.count)]
                guard let p = sa_alloc(size, 0) else { childStop("live-set allocation failed") }
                touchEveryPage(p, size)
                blocks.append(UInt(bitPattern: p))
                bytes += size
            }
            return blocks
        }

        /// The size mixes the cycle goes through: a size range (log-uniform
        /// between its bounds) and the bytes of one mix at scale 1.
        static let mixes: [(name: String, low: Int, high: Int, bytes: Int)] = [
            ("16-128 B", 16, 128, 12 << 20),
            ("256 B-2 KiB", 256, 2048, 32 << 20),
            ("4-32 KiB", 4096, 32768, 40 << 20),
            ("40-256 KiB", 40 << 10, 256 << 10, 40 << 20),
            ("1-4 MiB", 1 << 20, 4 << 20, 40 << 20),
            ("16 B-1 MiB", 16, 1 << 20, 32 << 20),
        ]

        /// Allocates one mix (every page written), calls `atPeak`, frees it
        /// all. Returns the bytes allocated, or nil at the first refusal
        /// (`refused` gets the size).
        static func runMix(_ mix: Int, scale: Double, rng: inout WyRand, atPeak: () -> Void) -> Int {
            let m = mixes[mix % mixes.count]
            let target = Int(Double(m.bytes) * scale)
            let lo = log(Double(m.low)), hi = log(Double(m.high))
            var blocks: [UInt] = [], bytes = 0
            blocks.reserveCapacity(target / m.low + 1)
            while bytes < target {
                let u = Double(rng.next() >> 11) / Double(1 << 53)
                let size = Int(exp(lo + (hi - lo) * u))
                guard let p = sa_alloc(size, 0) else {
                    let s = childStats()
                    childStop("mix \(mix) (\(m.name)): allocation of \(size) B failed (errno \(errno)) with "
                              + "\(mib(bytes)) of the mix live; counted \(mib(s.memory_counted)), limit \(mib(s.memory_limit))")
                }
                if size <= 512 { memset(p, 0x5A, size) } else { touchEveryPage(p, size) }
                blocks.append(UInt(bitPattern: p))
                bytes += size
            }
            atPeak()
            freeAll(blocks)
            return bytes
        }

        /// Soft limit of 256 MiB (SpanHeap.setMemoryLimit): 200 MiB stay
        /// live while the program goes through size mixes of up to 64 MiB,
        /// each allocated and then freed entirely, 4 GiB allocated in all.
        /// Peak resident memory (ru_maxrss minus the level before) stays
        /// within 1.15x the limit; the heap reached the limit (mixes take it
        /// past 256 MiB) and counted the overshoots.
        @Test(.enabled(if: !Sanitizer.any, "sanitizer shadow memory is resident"))
        func softLimitKeepsThePeakNearTheLimit() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                MemoryLimit.cycle(hard: false, total: 4 << 30)
            }
            expectChildPasses(r, reporting: "memory limit")
        }

        /// Hard limit of 256 MiB (SPANALLOC=memlimit=256M,memlimit_mode=hard):
        /// the same cycle with mixes of up to 40 MiB. Counted memory, sampled
        /// at every mix's peak and after its free, never exceeds the limit;
        /// an extra 100 MiB request half-way fails (sa_alloc: NULL with
        /// ENOMEM; allocateIfPossible: nil); the cycle then completes. 1 GiB
        /// in all under a sanitizer.
        @Test func hardLimitIsNeverExceededAndRefusesTheExtraRequest() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                setenv("SPANALLOC", "memlimit=256M,memlimit_mode=hard", 1)
                MemoryLimit.cycle(hard: true, total: Sanitizer.any ? 1 << 30 : 4 << 30)
            }
            expectChildPasses(r, reporting: "memory limit")
        }

        static func cycle(hard: Bool, total: Int) {
            if !hard {
                let old = SpanHeap.default.setMemoryLimit(limit, mode: .soft)
                childExpect(old == nil, "a limit was set before: \(String(describing: old))")
            }
            let heap = SpanHeap.default
            childExpect(heap.memoryLimit == limit && heap.memoryLimitMode == (hard ? .hard : .soft),
                       "limit \(String(describing: heap.memoryLimit)) \(heap.memoryLimitMode)")
            let r0 = statmResident()
            let live = allocateLiveSet()
            var rng = WyRand(seed: hard ? 0x15_4A : 0x15_50)
            var allocated = 0, mix = 0, maxCounted: UInt64 = 0, minCounted = UInt64.max, samples = 0
            var extraTried = false
            let scale = hard ? 1.0 : 1.6
            let start = monotonicSeconds()
            func sample(_ when: String) {
                let s = childStats()
                maxCounted = max(maxCounted, s.memory_counted)
                minCounted = min(minCounted, s.memory_counted)
                samples += 1
                if hard {
                    childExpect(s.memory_counted <= UInt64(limit), "mix \(mix) \(when): counted \(mib(s.memory_counted)) "
                               + "over the hard limit \(mib(limit)); \(releaseSummary(s))")
                }
                childExpect(s.memory_counted >= UInt64(liveBytes), "mix \(mix) \(when): counted \(mib(s.memory_counted)) "
                           + "is less than the \(mib(liveBytes)) live")
            }
            while allocated < total {
                allocated += runMix(mix, scale: scale, rng: &rng) {
                    sample("at its peak")
                    if hard && !extraTried && allocated >= total / 2 {
                        extraTried = true
                        let (p, e) = errnoAfter { sa_alloc(100 << 20, 0) }
                        childExpect(p == nil && e == ENOMEM, "an extra 100 MiB request past the hard limit gave "
                                   + "\(String(describing: p)), errno \(e)")
                        childExpect(heap.allocateIfPossible(byteCount: 100 << 20) == nil,
                                   "allocateIfPossible(100 MiB) past the hard limit is not nil")
                        sample("after the refused requests")
                    }
                }
                sample("after its free")
                mix += 1
            }
            let elapsed = monotonicSeconds() - start
            let peak = peakResident() - r0
            let s = childStats()
            childReport("memory limit (\(hard ? "hard" : "soft") 256 MiB): \(mix) mixes, \(mib(allocated)) allocated in "
                        + String(format: "%.1f s", elapsed) + " with \(mib(liveBytes)) live; peak resident +\(mib(peak)) "
                        + "(bound \(mib(limit * 115 / 100))), counted \(mib(minCounted))-\(mib(maxCounted)) over \(samples) samples; "
                        + "hits \(s.memory_limit_hits), overshoots \(s.memory_limit_overshoots), refusals "
                        + "\(s.memory_limit_refusals); \(releaseSummary(s))")
            childExpect(s.memory_limit == UInt64(limit) && (s.memory_limit_hard != 0) == hard,
                       "MemStats limit \(s.memory_limit), hard \(s.memory_limit_hard)")
            childExpect(s.memory_limit_hits > 0, "memoryLimitHits 0: the heap never reached its limit")
            if hard {
                childExpect(extraTried, "the extra request was not tried")
                childExpect(s.memory_limit_refusals > 0, "memoryLimitRefusals 0 after a refused request")
            } else {
                childExpect(peak <= limit * 115 / 100, "peak resident +\(mib(peak)) over 1.15x the \(mib(limit)) soft limit")
                childExpect(s.memory_limit_refusals == 0, "a soft limit refused \(s.memory_limit_refusals) requests")
                childExpect(s.memory_limit_overshoots > 0, "memoryLimitOvershoots 0 although mixes took the heap past the limit")
            }
            freeAll(live)
            if let v = childHeapViolation() { childStop(v) }
        }

        // MARK: Go's out-of-memory trap

        /// Under the hard limit, with 200 MiB live, a 100 MiB GoSlice stops
        /// the process with Go's "runtime: out of memory".
        @Test func goSlicePastTheHardLimitTrapsOutOfMemory() async {
            let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                setenv("SPANALLOC", "memlimit=256M,memlimit_mode=hard", 1)
                var live: [UInt] = []
                for _ in 0..<200 {
                    guard let p = sa_alloc(1 << 20, 0) else { childStop("allocation under the limit failed") }
                    touchEveryPage(p, 1 << 20)
                    live.append(UInt(bitPattern: p))
                }
                let s = GoSlice<UInt8>(length: 100 << 20)
                childSurvived("a 100 MiB GoSlice past the hard limit (count \(s.count))")
                freeAll(live)
            }
            let err = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
            #expect(r == nil || (err.contains("runtime: out of memory") && !err.contains("survived")
                                 && !err.contains("child check failed")), "\(err.suffix(600))")
        }

        // MARK: The counters in both modes (also under the sanitizers)

        /// A 32 MiB soft limit under a 64 MiB live set: every allocation
        /// succeeds, the overshoots and the hits are counted; once the live
        /// set is freed the scavenger brings the counted memory back under
        /// the limit.
        @Test func softLimitCountsOvershoots() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                let heap = SpanHeap.default
                let small = 32 << 20
                childExpect(heap.memoryLimit == nil, "a limit before any was set: \(String(describing: heap.memoryLimit))")
                childExpect(heap.setMemoryLimit(small) == nil, "setMemoryLimit did not return nil, the previous limit")
                childExpect(heap.memoryLimit == small && heap.memoryLimitMode == .soft, "the limit did not take")
                var live: [UInt] = []
                for i in 0..<64 {
                    guard let p = sa_alloc(1 << 20, 0) else { childStop("allocation \(i) under a soft limit failed") }
                    touchEveryPage(p, 1 << 20)
                    live.append(UInt(bitPattern: p))
                }
                let s1 = heap.memStats
                childExpect(s1.memoryLimit == UInt64(small) && !s1.memoryLimitIsHard, "MemStats limit \(String(describing: s1.memoryLimit))")
                childExpect(s1.memoryCounted >= 64 << 20, "counted \(mib(s1.memoryCounted)) with 64 MiB live")
                childExpect(s1.memoryLimitOvershoots > 0, "no overshoot counted with 64 MiB live under a 32 MiB soft limit")
                childExpect(s1.memoryLimitHits > 0, "no hit counted with 64 MiB live under a 32 MiB soft limit")
                childExpect(s1.memoryLimitRefusals == 0, "a soft limit refused \(s1.memoryLimitRefusals) requests")
                freeAll(live)
                var s2 = s1
                let took = poll(timeout: 5 * sanitizerStretch) {
                    s2 = heap.memStats
                    return s2.memoryCounted <= UInt64(small)
                }
                childReport("memory limit (soft 32 MiB, 64 MiB live): counted \(mib(s1.memoryCounted)), overshoots "
                            + "\(s1.memoryLimitOvershoots), hits \(s1.memoryLimitHits); after the free counted "
                            + "\(mib(s2.memoryCounted)) " + (took.map { String(format: "after %.2f s", $0) } ?? "after 5 s")
                            + " (released by the limit \(s2.pagesReleasedLimit), background \(s2.pagesReleasedBackground) pages)")
                childExpect(took != nil, "counted \(mib(s2.memoryCounted)) 5 s after the live set was freed, "
                           + "over the \(mib(small)) soft limit")
                childExpect(heap.setMemoryLimit(nil) == small, "setMemoryLimit did not return the previous limit")
                childExpect(heap.memoryLimit == nil && heap.memStats.memoryLimit == nil, "the limit was not removed")
                if let v = childHeapViolation() { childStop(v) }
            }
            expectChildPasses(r, reporting: "memory limit")
        }

        /// A 128 MiB hard limit with 64 MiB live and 32 MiB of idle 1 MiB
        /// holes: a 48 MiB block, which fits in no hole, is served once the
        /// holes are released (pagesReleasedLimit); a 100 MiB request is
        /// refused with ENOMEM, counted, and leaves the heap usable.
        @Test func hardLimitReleasesIdlePagesBeforeRefusing() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                let heap = SpanHeap.default
                let hardLimit = 128 << 20
                childExpect(heap.setMemoryLimit(hardLimit, mode: .hard) == nil, "a limit was set before")
                var mode = SA_MEMLIMIT_SOFT
                childExpect(sa_memory_limit(&mode) == hardLimit && mode == SA_MEMLIMIT_HARD, "sa_memory_limit")
                var live: [UInt] = []
                for _ in 0..<64 {
                    guard let p = sa_alloc(1 << 20, 0) else { childStop("allocation under the limit failed") }
                    touchEveryPage(p, 1 << 20)
                    live.append(UInt(bitPattern: p))
                }
                let s0 = childStats()
                let keepers = freeSeparateRuns(count: 32, size: 1 << 20)
                let s1 = childStats()
                guard let big = sa_alloc(48 << 20, 0) else {
                    childStop("a 48 MiB block that fits once idle pages are released was refused: counted "
                              + "\(mib(childStats().memory_counted)); \(releaseSummary(childStats()))")
                }
                touchEveryPage(big, 48 << 20)
                let s2 = childStats()
                childExpect(s2.pages_released_limit - s1.pages_released_limit >= spanPages(16 << 20),
                           "the holes were not released by the limit: \(releaseSummary(s2))")
                childExpect(s2.memory_limit_hits > s0.memory_limit_hits, "memoryLimitHits did not rise")
                childExpect(s2.memory_counted <= UInt64(hardLimit), "counted \(mib(s2.memory_counted)) over the hard limit")
                let (p, e) = errnoAfter { sa_alloc(100 << 20, 0) }
                childExpect(p == nil && e == ENOMEM, "a 100 MiB request past the hard limit gave \(String(describing: p)), errno \(e)")
                childExpect(heap.allocateIfPossible(byteCount: 100 << 20) == nil, "allocateIfPossible(100 MiB) is not nil")
                let s3 = childStats()
                childExpect(s3.memory_limit_refusals - s2.memory_limit_refusals >= 2, "refusals +\(s3.memory_limit_refusals - s2.memory_limit_refusals)")
                childExpect(s3.memory_counted <= UInt64(hardLimit), "counted \(mib(s3.memory_counted)) over the hard limit")
                childReport("memory limit (hard 128 MiB): holes released by the limit \(s2.pages_released_limit - s1.pages_released_limit) "
                            + "pages, counted \(mib(s1.memory_counted)) -> \(mib(s2.memory_counted)) with the 48 MiB block; "
                            + "hits \(s3.memory_limit_hits), refusals \(s3.memory_limit_refusals)")
                // Still usable: free the block, a smaller one fits again.
                sa_free(big)
                guard let again = sa_alloc(40 << 20, 0) else { childStop("40 MiB under the limit refused after a refusal") }
                touchEveryPage(again, 40 << 20)
                sa_free(again)
                freeAll(keepers)
                freeAll(live)
                if let v = childHeapViolation() { childStop(v) }
            }
            expectChildPasses(r, reporting: "memory limit")
        }
    }
}
