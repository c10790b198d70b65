import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Who releases idle pages, when, and at what CPU cost: the background
/// scavenger with short delays, mode off (nobody), mode on (the page
/// heap's slow path, no thread), and the scavenger thread's CPU clock
/// (`scavengerCPUNanoseconds`) against its budget.
extension ScavengerTests {
    @Suite struct Pacing {
        /// 64 MiB of large blocks, every page written, then freed: 8192 span pages.
        static let burst = 64 << 20

        static func freeBurst() {
            var blocks: [UInt] = []
            for _ in 0..<(burst >> 20) {
                guard let p = sa_alloc(1 << 20, UInt32(SA_NOSCAN)) else { childStop("burst allocation failed") }
                touchEveryPage(p, 1 << 20)
                blocks.append(UInt(bitPattern: p))
            }
            freeAll(blocks)
        }

        /// Background mode, nothing retained, a 50 ms delay, a long idle time
        /// (so only the delay drives the release): after a burst is freed,
        /// pagesReleasedBackground covers it within 5 s, not before the delay
        /// has passed, and nobody else released anything.
        @Test func backgroundScavengerReleasesABurstAfterTheDelay() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                configureScavenger(mode: SA_SCAVENGE_BACKGROUND, retain: 0, percent: 0, delayMs: 50, floor: 0,
                                   idleMs: 60_000, cpuPercent: 1)
                let s0 = childStats()
                Pacing.freeBurst()
                let freed = monotonicSeconds()
                var first: Double?, s = s0, sawRunning = false
                let want = spanPages(Pacing.burst) * 9 / 10
                let took = poll(timeout: 5 * sanitizerStretch, every: 0.005) {
                    s = childStats()
                    sawRunning = sawRunning || s.scavenger_running != 0
                    if first == nil && s.pages_released_background > s0.pages_released_background {
                        first = monotonicSeconds() - freed
                    }
                    return s.pages_released_background - s0.pages_released_background >= want
                }
                childReport("pacing (background, delay 50 ms): first release seen "
                            + (first.map { String(format: "%.0f ms", $0 * 1000) } ?? "never")
                            + ", burst covered " + (took.map { String(format: "after %.2f s", $0) } ?? "not within 5 s")
                            + "; \(releaseSummary(s))")
                childExpect(took != nil, "pagesReleasedBackground +\(s.pages_released_background - s0.pages_released_background) "
                           + "of the burst's \(spanPages(Pacing.burst)) pages within 5 s; \(releaseSummary(s))")
                childExpect(first.map { $0 >= 0.045 } ?? false,
                           "pages released \(first.map { String(format: "%.0f ms", $0 * 1000) } ?? "?") after the free, "
                           + "before the 50 ms delay")
                childExpect(sawRunning, "scavengerRunning never true while it released")
                childExpect(s.pages_released_pacer == s0.pages_released_pacer && s.pages_released_demand == s0.pages_released_demand
                           && s.pages_released_limit == s0.pages_released_limit,
                           "pages released by others than the background scavenger: \(releaseSummary(s))")
                childExpect(s.pages_scavenged - s0.pages_scavenged == releasedPages(s) - releasedPages(s0),
                           "pagesScavenged is not the sum of the four release counters: \(releaseSummary(s))")
                childExpect(s.heap_released >= UInt64(Pacing.burst * 9 / 10), "HeapReleased \(mib(s.heap_released))")
                if let v = childHeapViolation() { childStop(v) }
            }
            expectChildPasses(r, reporting: "pacing")
        }

        /// The delay holds: with a 60 s delay (and idle time), a freed burst
        /// is still unreleased a second later.
        @Test func backgroundScavengerWaitsForTheDelay() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                configureScavenger(mode: SA_SCAVENGE_BACKGROUND, retain: 0, percent: 0, delayMs: 60_000, floor: 0,
                                   idleMs: 60_000, cpuPercent: 1)
                let s0 = childStats()
                Pacing.freeBurst()
                sleepSeconds(1)
                let s = childStats()
                childExpect(releasedPages(s) == releasedPages(s0) && s.heap_released == s0.heap_released,
                           "pages released within 1 s of the free although the delay is 60 s: \(releaseSummary(s))")
                if let v = childHeapViolation() { childStop(v) }
            }
            expectChildPasses(r)
        }

        /// Retained like Go while the program is busy, decayed to the floor
        /// once it is idle: the default 64 MiB retained amount keeps a
        /// 48 MiB burst, until the program has not allocated for idle_ms
        /// (100 ms here); then the scavenger releases down to the floor.
        @Test func retainedMemoryDecaysToTheFloorOnceIdle() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                let floor = 4 << 20
                configureScavenger(mode: SA_SCAVENGE_BACKGROUND, retain: 64 << 20, percent: 10, delayMs: 50, floor: floor,
                                   idleMs: 100, cpuPercent: 1)
                let s0 = childStats()
                var blocks: [UInt] = []
                for _ in 0..<48 {
                    guard let p = sa_alloc(1 << 20, UInt32(SA_NOSCAN)) else { childStop("allocation failed") }
                    touchEveryPage(p, 1 << 20)
                    blocks.append(UInt(bitPattern: p))
                }
                freeAll(blocks)
                // Every page of the burst but the floor (and a page of slack
                // per MiB) goes back; the retained 64 MiB would keep it all
                // while the program allocates.
                let want = spanPages(48 << 20) - spanPages(floor) - 48
                var s = s0
                let took = poll(timeout: 5 * sanitizerStretch, every: 0.01) {
                    s = childStats()
                    return s.pages_released_background - s0.pages_released_background >= want
                }
                // Idle pages still counted (used, not released): counted - in use - metadata.
                let kept = Int(s.memory_counted) - Int(s.heap_inuse) - Int(s.metadata_sys)
                childReport("pacing (decay to the floor, idle 100 ms): \(s.pages_released_background - s0.pages_released_background) "
                            + "of the 48 MiB burst's \(spanPages(48 << 20)) pages released "
                            + (took.map { String(format: "after %.2f s", $0) } ?? "in 5 s")
                            + ", idle pages still counted \(mib(kept)); \(releaseSummary(s))")
                childExpect(took != nil, "pagesReleasedBackground +\(s.pages_released_background - s0.pages_released_background) "
                           + "5 s after the program went idle: the 48 MiB burst must go back down to the \(mib(floor)) floor "
                           + "(\(want) pages); \(releaseSummary(s))")
                childExpect(kept <= floor + (1 << 20), "\(mib(kept)) of idle memory still counted toward the limit, floor \(mib(floor))")
                if let v = childHeapViolation() { childStop(v) }
            }
            expectChildPasses(r, reporting: "pacing")
        }

        /// Mode off: nobody releases anything — not the scavenger thread
        /// (which never exists), not the free path — until the program asks
        /// (sa_scavenge, counted as demand).
        @Test func scavengeOffReleasesNothingUntilAsked() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                configureScavenger(mode: SA_SCAVENGE_OFF, retain: 0, percent: 0, delayMs: 10, floor: 0, idleMs: 50,
                                   cpuPercent: 1)
                let s0 = childStats()
                let r0 = statmResident()
                Pacing.freeBurst()
                var running = false
                for _ in 0..<10 {
                    sleepSeconds(0.1)
                    // Slow-path frees a pacer would act on.
                    sa_free(sa_alloc(256 << 10, 0))
                    running = running || childStats().scavenger_running != 0
                }
                let s = childStats()
                childExpect(!running, "a scavenger thread runs with scavenge=off")
                childExpect(releasedPages(s) == releasedPages(s0) && s.heap_released == s0.heap_released,
                           "pages released with scavenge=off: \(releaseSummary(s))")
                if !Sanitizer.any {
                    let kept = statmResident() - r0
                    childExpect(kept >= Pacing.burst * 9 / 10, "resident +\(mib(kept)) after the freed burst with scavenge=off")
                }
                let released = sa_scavenge(Int.max)
                let s2 = childStats()
                childExpect(released >= Pacing.burst * 9 / 10, "sa_scavenge released \(mib(released))")
                childExpect(s2.pages_released_demand - s0.pages_released_demand >= spanPages(released),
                           "sa_scavenge's pages are not counted as demand: \(releaseSummary(s2))")
                childExpect(s2.pages_released_background == s0.pages_released_background
                           && s2.pages_released_pacer == s0.pages_released_pacer, "\(releaseSummary(s2))")
                childExpect(s2.scavenger_running == 0, "sa_scavenge started a scavenger thread with scavenge=off")
                if let v = childHeapViolation() { childStop(v) }
            }
            expectChildPasses(r)
        }

        /// Mode on: the page heap's slow path releases what exceeds the
        /// retained amount once it has been idle for the delay
        /// (pagesReleasedPacer), and no scavenger thread exists. The frees
        /// that take the slow path are of a block kept apart from the burst
        /// (a live block between them): freed next to the burst's run, it
        /// would merge with it, and a run is only as idle as its newest part.
        @Test func pacerReleasesOnTheFreePathWithoutAThread() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                configureScavenger(mode: SA_SCAVENGE_ON, retain: 0, percent: 0, delayMs: 50, floor: 0, idleMs: 50,
                                   cpuPercent: 1)
                guard var churn = sa_alloc(256 << 10, 0), let keeper = sa_alloc(40 << 10, 0) else { childStop("allocation failed") }
                let s0 = childStats()
                Pacing.freeBurst()
                var s = s0, running = false
                let want = spanPages(Pacing.burst) * 9 / 10
                let took = poll(timeout: 5 * sanitizerStretch, every: 0.05) {
                    // A large free: the page heap's slow path, where the pacer runs.
                    sa_free(churn)
                    guard let p = sa_alloc(256 << 10, 0) else { childStop("allocation failed") }
                    churn = p
                    s = childStats()
                    running = running || s.scavenger_running != 0
                    return s.pages_released_pacer - s0.pages_released_pacer >= want
                }
                childReport("pacing (on): burst released by the free path "
                            + (took.map { String(format: "after %.2f s", $0) } ?? "not within 5 s") + "; \(releaseSummary(s))")
                childExpect(took != nil, "pagesReleasedPacer +\(s.pages_released_pacer - s0.pages_released_pacer) of "
                           + "\(spanPages(Pacing.burst)) within 5 s; \(releaseSummary(s))")
                childExpect(!running, "scavengerRunning with scavenge=on")
                childExpect(s.pages_released_background == s0.pages_released_background,
                           "the background scavenger released pages with scavenge=on: \(releaseSummary(s))")
                childExpect(s.scavenger_cpu_ns == s0.scavenger_cpu_ns, "scavenger CPU time counted with scavenge=on")
                sa_free(churn)
                sa_free(keeper)
                if let v = childHeapViolation() { childStop(v) }
            }
            expectChildPasses(r, reporting: "pacing")
        }

        /// With nothing to release, the scavenger thread's CPU clock grows
        /// by at most 5 ms over 5 s (0.1% of a CPU). A burst released first
        /// makes sure it has run.
        @Test(.enabled(if: !Sanitizer.any, "the CPU figures would be the sanitizer runtime's"))
        func idleScavengerUsesAlmostNoCPU() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                configureScavenger(mode: SA_SCAVENGE_BACKGROUND, retain: 0, percent: 0, delayMs: 10, floor: 0,
                                   idleMs: 100, cpuPercent: 1)
                let s0 = childStats()
                Pacing.freeBurst()
                var s = s0
                let released = poll(timeout: 10, every: 0.01) {
                    s = childStats()
                    return s.pages_released_background - s0.pages_released_background >= spanPages(Pacing.burst) * 9 / 10
                }
                childExpect(released != nil, "the burst was not released within 10 s: \(releaseSummary(s))")
                // Let it finish what follows the release (cache claims, the decay).
                sleepSeconds(1.5)
                let s1 = childStats(), t1 = monotonicSeconds()
                sleepSeconds(5)
                let s2 = childStats(), t2 = monotonicSeconds()
                let cpu = s2.scavenger_cpu_ns - s1.scavenger_cpu_ns
                childReport(String(format: "pacing (idle CPU): scavenger used %.3f ms of CPU in %.2f s with nothing to release (%.4f%%)",
                                   Double(cpu) / 1e6, t2 - t1, Double(cpu) / 1e9 / (t2 - t1) * 100) + "; \(releaseSummary(s2))")
                childExpect(Double(cpu) <= 1e6 * (t2 - t1), "the idle scavenger used \(cpu / 1000) µs of CPU in "
                           + String(format: "%.2f s", t2 - t1) + " (bound 0.1% of a CPU)")
                childExpect(releasedPages(s2) == releasedPages(s1), "pages released while there was nothing to release")
            }
            expectChildPasses(r, reporting: "pacing")
        }

        /// While it releases a lot, the scavenger stays within 1.5x its CPU
        /// budget (cpu_percent, 1%) over the release period. 400 runs of
        /// 1 MiB are freed (separated by live blocks, so they do not
        /// coalesce) with 240 MiB retained: it must release about 160 MiB
        /// while idle memory is under twice its goal (no boost), ~16 ms of
        /// madvise here, so about 1.6 s at 1%. The period runs from the
        /// last sample before its first release to the first sample at its
        /// final count.
        @Test(.enabled(if: !Sanitizer.any, "the CPU figures would be the sanitizer runtime's"))
        func releasingStaysWithinTheCPUBudget() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                Pacing.releaseWithinBudget()
            }
            expectChildPasses(r, reporting: "pacing")
        }

        static func releaseWithinBudget() {
            let budget = 1.0 // percent of one CPU
            configureScavenger(mode: SA_SCAVENGE_BACKGROUND, retain: 240 << 20, percent: 0, delayMs: 10, floor: 240 << 20,
                               idleMs: 60_000, cpuPercent: UInt32(budget))
            let s0 = childStats()
            let keepers = freeSeparateRuns(count: 400, size: 1 << 20)
            var samples: [(t: Double, released: UInt64, cpu: UInt64)] = []
            samples.reserveCapacity(20_000)
            var lastChange = monotonicSeconds()
            let start = lastChange
            while monotonicSeconds() - start < 20 {
                let s = childStats(), t = monotonicSeconds()
                if let last = samples.last, s.pages_released_background != last.released { lastChange = t }
                samples.append((t, s.pages_released_background, s.scavenger_cpu_ns))
                // Done: released something and nothing more for 3 s.
                if s.pages_released_background > s0.pages_released_background && t - lastChange > 3 { break }
                sleepSeconds(0.005)
            }
            let final = samples.last!.released
            let released = final - s0.pages_released_background
            // CPU up to the last sample (a clock read lazily still counts the last chunk).
            guard let firstChange = samples.firstIndex(where: { $0.released != s0.pages_released_background }) else {
                childStop("nothing released in 20 s: \(releaseSummary(childStats()))")
            }
            let begin = samples[max(firstChange - 1, 0)]
            let end = samples.first { $0.released == final }!
            let wall = end.t - begin.t, cpu = Double(samples.last!.cpu - begin.cpu) / 1e9
            let share = wall > 0 ? cpu / wall * 100 : .infinity
            childReport(String(format: "pacing (CPU while releasing): %@ released in %.2f s using %.2f ms of CPU: %.2f%% of a CPU "
                               + "(budget %.0f%%, bound %.1f%%)", mib(Int(released) * Int(SA_PAGE_SIZE)), wall, cpu * 1000,
                               share, budget, budget * 1.5))
            childExpect(released * UInt64(SA_PAGE_SIZE) >= 100 << 20,
                       "only \(mib(Int(released) * Int(SA_PAGE_SIZE))) released: the workload did not give it a lot to release")
            childExpect(share <= budget * 1.5, String(format: "the scavenger used %.2f%% of a CPU while releasing "
                                                     + "(%.2f ms in %.3f s), over 1.5x its %.0f%% budget", share, cpu * 1000,
                                                     wall, budget))
            freeAll(keepers)
        }
    }
}
