import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The scavenger and the program's threads: caches of idle threads are
/// claimed and handed back, and stay usable; fork while it releases.
extension ScavengerTests {
    @Suite struct Threads {
        // MARK: Idle threads let go

        /// The sizes a parked thread allocates: several classes, so its
        /// cache holds bins, current spans and emptied spans of each.
        static let parkedSizes = [16, 32, 48, 64, 96, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 24576, 32768]

        /// Allocates and frees a batch of every parked size (each block
        /// written and checked), leaving the thread's cache full: bins of
        /// freed objects and spans.
        static func batch(_ seed: UInt64) {
            var blocks: [TrackedBlock] = []
            for size in parkedSizes {
                for i in 0..<max(8, (192 << 10) / size) {
                    guard let p = sa_alloc(size, 0) else { childStop("allocation of \(size) B failed") }
                    blocks.append(TrackedBlock(p, size: size, seed: seed &+ UInt64(i)))
                }
            }
            for b in blocks.reversed() {
                childExpect(b.isIntact, "block \(b.pointer) of \(b.size) B lost its contents")
                sa_free(b.pointer)
            }
        }

        /// Four threads allocate and free a batch, so their caches hold bins
        /// and spans, then block. With idle_ms 200, within 2 x idle_ms plus
        /// 3 s of margin every cache is claimed: MemStats shows no thread
        /// holding anything (threadHeldMax 0, freeCacheObjects 0) and
        /// idleCacheFlushes > 0. Then the threads wake, allocate and free
        /// again (their claimed caches usable), and the heap checker passes.
        @Test func idleThreadsCachesAreClaimedAndStayUsable() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                let idleMs: UInt32 = 200
                configureScavenger(mode: SA_SCAVENGE_BACKGROUND, idleMs: idleMs)
                let s0 = childStats()
                let wake = DispatchSemaphore(value: 0), woke = DispatchSemaphore(value: 0)
                let gang = BlockedGang(4) { t in
                    Threads.batch(UInt64(t) << 32)
                    ThreadSync.signalReady()
                    wake.wait()
                    // Woken: the cache the scavenger claimed serves again.
                    for round in 0..<3 { Threads.batch(UInt64(t) << 32 | UInt64(round + 1) << 16) }
                    woke.signal()
                }
                for _ in 0..<4 { ThreadSync.waitReady() }
                let s1 = childStats()
                childExpect(s1.thread_held_max > 0 && s1.free_cache_objects > 0,
                           "the parked threads' caches hold nothing to claim: \(releaseSummary(s1))")
                var s = s1
                let timeout = (2 * Double(idleMs) / 1000 + 3) * sanitizerStretch
                let took = poll(timeout: timeout, every: 0.02) {
                    s = childStats()
                    return s.thread_held_max == 0 && s.free_cache_objects == 0 && s.idle_cache_flushes > s0.idle_cache_flushes
                }
                childReport("idle threads (4 parked, idle_ms \(idleMs)): held \(mib(s1.thread_held_max)) max, "
                            + "\(s1.free_cache_objects) cached objects; "
                            + (took.map { String(format: "claimed after %.2f s", $0) } ?? String(format: "not claimed in %.1f s", timeout))
                            + "; \(releaseSummary(s))")
                childExpect(took != nil, String(format: "%.1f s after the threads went idle: ", timeout)
                           + "threadHeldMax \(s.thread_held_max), freeCacheObjects \(s.free_cache_objects), "
                           + "idleCacheFlushes +\(s.idle_cache_flushes - s0.idle_cache_flushes)")
                for _ in 0..<4 { wake.signal() }
                for _ in 0..<4 { woke.wait() }
                gang.waitUntilBlocked()
                if let v = childHeapViolation() { childStop("after the woken threads' batches: \(v)") }
                let s2 = childStats()
                childExpect(s2.heap_objects == s0.heap_objects, "objects \(s0.heap_objects) -> \(s2.heap_objects)")
                gang.release()
                gang.join()
                if let v = childHeapViolation() { childStop("after the threads exited: \(v)") }
            }
            expectChildPasses(r, reporting: "idle threads")
        }

        // MARK: Fork with the scavenger running

        /// Forks while the background scavenger is releasing a 512 MiB burst
        /// (400 separate runs, 1% of a CPU): in the child the heap is
        /// consistent (no run lost half-released), the child allocates and
        /// frees a 64 MiB burst of its own and its scavenger starts again
        /// (scavengerRunning, pagesReleasedBackground rising), and it exits
        /// 0; 20 more quick forks during the release must not hang. The
        /// parent goes on: its scavenger finishes the release.
        ///
        /// Not under ThreadSanitizer: a forked child that starts a thread
        /// aborts unless TSAN_OPTIONS has die_after_fork=0, which only the
        /// test binary's own start-up reads (an exit test cannot set it for
        /// its child); Tests/stress/scavenge_stress.c forks with the option
        /// set by scripts/stress.sh instead.
        @Test(.enabled(if: !Sanitizer.thread, "ThreadSanitizer aborts a forked child that starts threads (die_after_fork)"))
        func forkWhileTheScavengerReleases() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
                Threads.forkWhileReleasing()
            }
            expectChildPasses(r, reporting: "fork")
        }

        static func forkWhileReleasing() {
            configureScavenger(mode: SA_SCAVENGE_BACKGROUND, retain: 0, percent: 0, delayMs: 10, floor: 0, idleMs: 200,
                               cpuPercent: 1)
            let s0 = childStats()
            let keepers = freeSeparateRuns(count: 400, size: 1 << 20)
            let total = spanPages(400 << 20)
            // Wait until the scavenger is at work, not done.
            var s = s0
            let started = poll(timeout: 10 * sanitizerStretch, every: 0.001) {
                s = childStats()
                return s.scavenger_running != 0 && s.pages_released_background > s0.pages_released_background
            }
            childExpect(started != nil, "the scavenger did not start releasing within 10 s: \(releaseSummary(s))")
            let atFork = childStats()
            let releasing = atFork.pages_released_background - s0.pages_released_background < total * 9 / 10
            let pid = fork()
            if pid == 0 { forkChild(atFork) }
            childExpect(pid > 0, "fork failed: errno \(errno)")
            let status = waitWithTimeout(pid, seconds: 30)
            childExpect(status == 0, "the fork child exited with status \(status)")
            // Quick forks while the parent's scavenger works.
            for i in 0..<20 {
                let q = fork()
                if q == 0 {
                    let p = sa_alloc(256 << 10, 0)
                    sa_free(p)
                    sa_free(sa_alloc(48, 0))
                    var msg = [CChar](repeating: 0, count: 512)
                    _exit(p == nil ? 3 : sa_check_heap_quiescent(&msg, msg.count) == 0 ? 0 : 4)
                }
                childExpect(q > 0, "fork \(i) failed")
                let st = waitWithTimeout(q, seconds: 10)
                childExpect(st == 0, "quick fork child \(i) exited with status \(st) (3: allocation failed, 4: heap checker)")
                sleepSeconds(0.005)
            }
            // The parent's scavenger finishes the release.
            let done = poll(timeout: 20 * sanitizerStretch, every: 0.05) {
                s = childStats()
                return s.pages_released_background - s0.pages_released_background >= total * 9 / 10
            }
            childReport("fork: forked while the scavenger had released \(atFork.pages_released_background - s0.pages_released_background) "
                        + "of \(total) pages (\(releasing ? "still releasing" : "nearly done")); child passed; parent "
                        + (done.map { String(format: "finished %.2f s later", $0) } ?? "did not finish") + "; \(releaseSummary(s))")
            childExpect(done != nil, "the parent's scavenger did not finish the release after the forks: \(releaseSummary(s))")
            freeAll(keepers)
            Threads.batch(7)
            if let v = childHeapViolation() { childStop("parent after the forks: \(v)") }
        }

        /// The fork child: reports failures on stderr with _exit(1).
        static func forkChild(_ atFork: sa_mem_stats) -> Never {
            func fail(_ m: String) -> Never {
                let line = "child check failed: fork child: \(m)\n"
                _ = line.withCString { write(2, $0, strlen($0)) }
                _exit(1)
            }
            var err = [CChar](repeating: 0, count: 512)
            if sa_check_heap_quiescent(&err, err.count) != 0 {
                fail("heap checker right after the fork: \(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
            }
            // A burst of its own, written, freed: enough to need the scavenger.
            var blocks: [UInt] = []
            for _ in 0..<64 {
                guard let p = sa_alloc(1 << 20, UInt32(SA_NOSCAN)) else { fail("allocation failed") }
                touchEveryPage(p, 1 << 20)
                blocks.append(UInt(bitPattern: p))
            }
            freeAll(blocks)
            var s = childStats(), sawRunning = false
            let t0 = monotonicSeconds()
            while monotonicSeconds() - t0 < 10 * sanitizerStretch {
                s = childStats()
                sawRunning = sawRunning || s.scavenger_running != 0
                if sawRunning && s.pages_released_background >= atFork.pages_released_background + spanPages(32 << 20) { break }
                sleepSeconds(0.01)
            }
            if !sawRunning { fail("no scavenger thread in the child after its burst: \(releaseSummary(s))") }
            if s.pages_released_background < atFork.pages_released_background + spanPages(32 << 20) {
                fail("the child's scavenger released \(s.pages_released_background - atFork.pages_released_background) pages "
                     + "of its 64 MiB burst in 10 s: \(releaseSummary(s))")
            }
            if sa_check_heap_quiescent(&err, err.count) != 0 {
                fail("heap checker after the child's burst: \(String(decoding: err.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))")
            }
            _exit(0)
        }

        /// waitpid with a deadline: kills a child that hangs (a deadlock) and
        /// returns -1 for it.
        static func waitWithTimeout(_ pid: pid_t, seconds: Double) -> Int32 {
            var status: Int32 = 0
            let t0 = monotonicSeconds()
            while waitpid(pid, &status, WNOHANG) == 0 {
                if monotonicSeconds() - t0 > seconds * sanitizerStretch {
                    kill(pid, SIGKILL)
                    waitpid(pid, &status, 0)
                    return -1
                }
                usleep(2000)
            }
            return status
        }
    }
}

/// A counting semaphore the parked threads signal once their batch is done.
enum ThreadSync {
    static let ready = DispatchSemaphore(value: 0)
    static func signalReady() { ready.signal() }
    static func waitReady() { ready.wait() }
}
