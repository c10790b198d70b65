import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Regression tests for defects found by reading the core (docs/reliability.md,
/// "Defects and their tests"). Most run in an exit-test child: a fresh
/// process whose heap holds only what the test made, so placement is known
/// and a defect that crashes or corrupts the heap cannot take the test
/// process with it. A child reports a failed check on stderr and exits 1.
extension ReliabilityTests {
    @Suite struct Defects {}
}

// MARK: - Child-process helpers

/// Stops the exit-test child with a message (the parent prints it).
func childFail(_ message: String, file: String = #fileID, line: Int = #line) -> Never {
    FileHandle.standardError.write(Data("child check failed at \(file):\(line): \(message)\n".utf8))
    exit(1)
}

func childCheck(_ ok: Bool, _ message: @autoclosure () -> String, file: String = #fileID, line: Int = #line) {
    if !ok { childFail(message(), file: file, line: line) }
}

func childStats() -> sa_mem_stats {
    var s = sa_mem_stats()
    sa_read_mem_stats(&s)
    return s
}

/// The quiescent heap checker's verdict, or nil when the heap is consistent.
func childHeapViolation() -> String? {
    var buf = [CChar](repeating: 0, count: 512)
    if sa_check_heap_quiescent(&buf, buf.count) == 0 { return nil }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Expects the child to exit 0; shows its stderr otherwise.
func expectChildPasses(_ r: ExitTest.Result?, sourceLocation: SourceLocation = #_sourceLocation) {
    guard let r else { return }
    let err = String(decoding: r.standardErrorContent, as: UTF8.self)
    #expect(!err.contains("child check failed"), "\(err.suffix(1500))", sourceLocation: sourceLocation)
}

/// Runs `body` on a POSIX thread and joins it.
func onThread(_ body: @escaping @Sendable () -> Void) {
    ThreadGang.run(1) { _ in body() }
}

extension ReliabilityTests.Defects {
    // MARK: 1. The scavenger marks released only what was released

    /// madvise fails (a process that called mlockall): the pages stay dirty,
    /// so a zeroed allocation on them is cleared, and HeapReleased stays 0.
    @Test func failedReleaseLeavesPagesDirty() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let size = 256 << 10
            guard let p = sa_alloc(size, 0) else { childFail("alloc") }
            memset(p, 0xAB, size)
            sa_free(p)
            sa_debug_set_release_mode(Int32(SA_DEBUG_RELEASE_FAILS))
            let released = sa_scavenge(Int.max)
            sa_debug_set_release_mode(Int32(SA_DEBUG_RELEASE_NORMAL))
            childCheck(released == 0, "sa_scavenge reported \(released) bytes released by a failing madvise")
            childCheck(childStats().heap_released == 0, "HeapReleased \(childStats().heap_released) after failed releases")
            guard let q = sa_alloc(size, UInt32(SA_ZERO)) else { childFail("alloc 2") }
            childCheck(q == p, "placement: the second block is not on the first one's pages")
            let bytes = UnsafeRawBufferPointer(start: q, count: size)
            if let i = bytes.firstIndex(where: { $0 != 0 }) {
                childFail("SA_ZERO block holds old byte \(bytes[i]) at offset \(i)")
            }
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    /// On a 64 KiB-page kernel a release covers only the whole OS pages of
    /// a run: the 8 KiB pages at its edges stay dirty and unreleased.
    @Test func partialReleaseMarksOnlyWholeOSPages() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            // Three large blocks laid out from the start of a fresh arena:
            // x [0, 40 KiB), y [40 KiB, 168 KiB), z [168 KiB, 208 KiB).
            guard let x = sa_alloc(40 << 10, 0), let y = sa_alloc(128 << 10, 0),
                  let z = sa_alloc(40 << 10, 0) else { childFail("alloc") }
            let base = UInt(bitPattern: x)
            childCheck(base % (64 << 20) == 0 && UInt(bitPattern: y) == base + (40 << 10)
                       && UInt(bitPattern: z) == base + (168 << 10), "placement: blocks not laid out from an arena start")
            memset(y, 0xCD, 128 << 10)
            sa_free(y)
            sa_debug_set_release_mode(Int32(SA_DEBUG_RELEASE_64K_PAGES))
            let released = sa_scavenge(Int.max)
            sa_debug_set_release_mode(Int32(SA_DEBUG_RELEASE_NORMAL))
            // Whole 64 KiB pages: [64 KiB, 128 KiB) of y's run. The arena's
            // tail run from 208 KiB was never used (not resident): not released.
            let expected = 64 << 10
            childCheck(released == expected, "released \(released) bytes, whole 64 KiB pages make \(expected)")
            childCheck(childStats().heap_released == UInt64(expected),
                       "HeapReleased \(childStats().heap_released), expected \(expected)")
            guard let y2 = sa_alloc(128 << 10, UInt32(SA_ZERO)) else { childFail("alloc 2") }
            childCheck(y2 == y, "placement: the zeroed block is not on y's pages")
            let bytes = UnsafeRawBufferPointer(start: y2, count: 128 << 10)
            if let i = bytes.firstIndex(where: { $0 != 0 }) {
                childFail("SA_ZERO block holds old byte \(bytes[i]) at offset \(i)")
            }
            if let v = childHeapViolation() { childFail(v) }
            sa_free(x); sa_free(y2); sa_free(z)
        }
        expectChildPasses(r)
    }

    // MARK: 2. The out-of-memory fallback returns a valid slot or nil

    /// Nine or more partial spans of a class, mmap failing and no free run:
    /// every block the heap still hands out is a free slot inside its span.
    @Test func outOfMemoryFallbackStaysInsideItsSpan() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let size = 64, perSpan = Int(sa_class_objects(Int32(sa_size_to_class(64))))
            var live = Set<UInt>()
            var blocks: [UnsafeMutableRawPointer] = []
            for _ in 0..<(11 * perSpan) {
                guard let p = sa_alloc(size, 0) else { childFail("alloc") }
                blocks.append(p)
                live.insert(UInt(bitPattern: p))
            }
            // One free in each of the first ten (full) spans: the last slot of
            // each, so none is the block allocated last.
            for span in 0..<10 {
                let p = blocks[span * perSpan + perSpan - 1]
                live.remove(UInt(bitPattern: p))
                sa_free(p)
            }
            sa_debug_fail_mmap_after(0)
            let held = holdEveryFreeRun()
            var got = 0
            while let q = sa_alloc(size, 0) {
                let a = UInt(bitPattern: q)
                childCheck(!live.contains(a), "block \(q) handed out while it is live")
                var info = sa_span_info()
                childCheck(sa_span_of(q, &info), "block \(q) is in no span")
                childCheck(info.elemsize == size && a >= info.base && a < info.base + UInt(info.nelems * size)
                           && (a - info.base) % UInt(size) == 0, "block \(q) is not a slot of its span")
                live.insert(a)
                got += 1
                childCheck(got <= 10, "more blocks than free slots")
            }
            childCheck(errno == ENOMEM, "errno \(errno)")
            sa_debug_fail_mmap_after(-1)
            for p in held { sa_free(p) }
            for a in live { sa_free(UnsafeMutableRawPointer(bitPattern: a)) }
            sa_thread_flush()
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    // MARK: 3. Sizes the page map cannot serve get ENOMEM

    static let hugeSizes: [Int] = [
        (1 << 45) - 8191, (1 << 45) + 3 * 8192, 1 << 46, (1 << 46) + 1, Int(bitPattern: UInt.max),
        (1 << 38) + 1,
    ]

    /// Every native entry point refuses them with ENOMEM (no crash, nothing
    /// committed); so does an aligned request whose padding crosses the bound.
    @Test func hugeRequestsFailWithENOMEM() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let small = sa_alloc(100, 0)!
            for n in ReliabilityTests.Defects.hugeSizes {
                let calls: [(String, () -> UnsafeMutableRawPointer?)] = [
                    ("sa_alloc", { sa_alloc(n, 0) }),
                    ("sa_alloc zeroed", { sa_alloc(n, UInt32(SA_ZERO)) }),
                    ("sa_calloc", { sa_calloc(1, n, 0) }),
                    ("sa_alloc_aligned 4 KiB", { sa_alloc_aligned(n, 4096, 0) }),
                    ("sa_alloc_aligned 1 MiB", { sa_alloc_aligned(n, 1 << 20, 0) }),
                    ("sa_realloc", { sa_realloc(small, n) }),
                ]
                for (name, call) in calls {
                    errno = 0
                    let p = call()
                    childCheck(p == nil && errno == ENOMEM, "\(name)(\(n)) gave \(String(describing: p)), errno \(errno)")
                }
            }
            // Near the bound, the alignment padding makes it too large.
            errno = 0
            let p = sa_alloc_aligned((1 << 38) - 8192, 1 << 30, 0)
            childCheck(p == nil && errno == ENOMEM, "aligned request near the bound gave \(String(describing: p))")
            childCheck(SpanHeap.default.allocateIfPossible(byteCount: 1 << 45) == nil, "SpanHeap.allocateIfPossible")
            sa_free(small)
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    /// The Swift types stop with Go's out-of-memory message.
    @Test func hugeGoSliceTrapsOutOfMemory() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let s = GoSlice<UInt8>(length: (1 << 45) - 8191)
            print(s.count)
        }
        let err = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(r == nil || err.contains("out of memory"), "\(err.suffix(500))")
    }

    @Test func hugeGoChanTrapsOutOfMemory() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let c = GoChan<UInt8>(capacity: (1 << 45) + 3 * 8192)
            print(c.capacity)
        }
        let err = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(r == nil || err.contains("out of memory"), "\(err.suffix(500))")
    }

    // MARK: 4. realloc of a block its owner freed stops

    @Test func crossThreadReallocOfFreedBlockStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let p = sa_alloc(100, 0)!
            let keep = sa_alloc(100, 0)! // p is not the block allocated last
            print(String(UInt(bitPattern: p), radix: 16))
            fflush(nil)
            sa_free(p)
            let a = UInt(bitPattern: p)
            onThread { _ = sa_realloc(UnsafeMutableRawPointer(bitPattern: a), 104) }
            sa_free(keep)
        }
        guard let r else { return }
        let printed = String(decoding: r.standardOutputContent, as: UTF8.self)
            .split(separator: "\n").last.map(String.init) ?? "?"
        let err = String(decoding: r.standardErrorContent, as: UTF8.self)
        #expect(err.contains(printed) && err.contains("realloc"), "\(err.suffix(500))")
    }

    /// Another thread frees a block its owner already freed: stopped at once.
    @Test func crossThreadFreeOfFreedBlockStops() async {
        let r = await #expect(processExitsWith: .failure,
                              observing: [\.standardOutputContent, \.standardErrorContent]) {
            let p = sa_alloc(100, 0)!
            let keep = sa_alloc(100, 0)!
            print(String(UInt(bitPattern: p), radix: 16))
            fflush(nil)
            sa_free(p)
            let a = UInt(bitPattern: p)
            onThread { sa_free(UnsafeMutableRawPointer(bitPattern: a)) }
            FileHandle.standardError.write(Data("survived the second free\n".utf8))
            sa_free(keep)
        }
        guard let r else { return }
        let printed = String(decoding: r.standardOutputContent, as: UTF8.self)
            .split(separator: "\n").last.map(String.init) ?? "?"
        let err = String(decoding: r.standardErrorContent, as: UTF8.self)
        #expect(err.contains(printed) && err.contains("double free") && !err.contains("survived"),
                "\(err.suffix(500))")
    }

    // MARK: 5. Fork

    /// A child forked while other threads read the statistics and allocate
    /// can read the statistics and allocate (the fork handlers hold the
    /// stats lock too, and are registered without the malloc override).
    @Test(.enabled(if: !Sanitizer.thread, "ThreadSanitizer's runtime is not fork-safe in a multithreaded parent"))
    func forkWhileOtherThreadsWorkDoesNotDeadlock() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let stop = Guarded(false)
            let workers = (0..<2).map { i -> Thread in
                let t = Thread {
                    var n = 0
                    while !stop.withLock({ $0 }) {
                        if i == 0 { _ = childStats() } else { sa_free(sa_alloc(64 << 10, 0)); sa_free(sa_alloc(48, 0)) }
                        n += 1
                    }
                }
                t.start()
                return t
            }
            _ = workers
            for round in 0..<100 {
                let pid = fork()
                if pid == 0 {
                    var s = sa_mem_stats()
                    sa_read_mem_stats(&s)
                    let p = sa_alloc(64 << 10, 0)
                    sa_free(p)
                    sa_free(sa_alloc(48, 0))
                    _exit(p == nil ? 3 : 0)
                }
                childCheck(pid > 0, "fork failed")
                var status: Int32 = 0
                var waited = 0
                while waitpid(pid, &status, WNOHANG) == 0 {
                    if waited > 10_000 { kill(pid, SIGKILL); childFail("fork child \(round) hung (deadlock)") }
                    usleep(1000)
                    waited += 1
                }
                childCheck(status == 0, "fork child \(round) exited with status \(status)")
            }
            stop.withLock { $0 = true }
            usleep(20_000)
        }
        expectChildPasses(r)
    }

    /// The child of a fork hands back the caches of the parent's other
    /// threads, which do not exist in the child.
    @Test(.enabled(if: !Sanitizer.thread, "ThreadSanitizer's runtime is not fork-safe in a multithreaded parent"))
    func forkChildHandsBackVanishedThreadsCaches() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let ready = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
            let t = Thread {
                // Empty spans the thread keeps for its next batch.
                let blocks = (0..<2000).map { _ in sa_alloc(64, 0)! }
                for p in blocks { sa_free(p) }
                ready.signal()
                done.wait()
            }
            t.start()
            ready.wait()
            let before = childStats()
            let pid = fork()
            if pid == 0 {
                sa_thread_flush() // emptied spans from mcentral's empty lists to mheap
                let after = childStats()
                let violation = childHeapViolation()
                if after.spans_inuse >= before.spans_inuse || after.threads_exited <= before.threads_exited
                    || violation != nil {
                    let msg = "child: spans \(before.spans_inuse) -> \(after.spans_inuse), threads exited "
                        + "\(before.threads_exited) -> \(after.threads_exited), checker: \(violation ?? "ok")\n"
                    _ = msg.withCString { write(2, $0, strlen($0)) }
                    _exit(1)
                }
                _exit(0)
            }
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            done.signal()
            childCheck(status == 0, "fork child found the other thread's cache still held (status \(status))")
        }
        expectChildPasses(r)
    }

    // MARK: 6. A failed multi-arena grow leaves no arena index entries

    @Test func failedMultiArenaGrowLeavesNoIndexEntries() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            sa_free(sa_alloc(100, 0)) // metadata in place
            for k in 1...5 {
                sa_debug_fail_mmap_after(k)
                let p = sa_alloc(200 << 20, UInt32(SA_NOSCAN))
                sa_debug_fail_mmap_after(-1)
                if let p { sa_free(p) }
                if let v = childHeapViolation() { childFail("after a grow failing at mmap \(k): \(v)") }
            }
            // Memory that another allocator maps there later is not SpanAlloc's.
            let len = 512 << 20
            guard let m = mmap(nil, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                  m != MAP_FAILED else { childFail("mmap") }
            var a = (UInt(bitPattern: m) + UInt(64 << 20) - 1) & ~UInt((64 << 20) - 1)
            while a + 64 < UInt(bitPattern: m) + UInt(len) {
                childCheck(!sa_free_if_ours(UnsafeMutableRawPointer(bitPattern: a + 64)),
                           "memory mapped by someone else at \(a) taken for SpanAlloc's")
                a += UInt(64 << 20)
            }
        }
        expectChildPasses(r)
    }

    // MARK: 8. Allocations after the thread's cache is handed back

    /// glibc frees its own per-thread buffers after the TSD destructors, and
    /// a destructor of another library may allocate in the last round: an
    /// allocation or free then is served without a cache that outlives the
    /// thread, and counted.
    ///
    /// Not under ThreadSanitizer: its runtime finishes the thread in its own
    /// last-round key destructor, and a call intercepted after that faults.
    @Test(.enabled(if: !Sanitizer.thread, "ThreadSanitizer finishes the thread before glibc's last destructor round"))
    func allocationAfterCacheDestructorLeavesNothingBehind() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            sa_free(sa_alloc(8, 0)) // SpanAlloc's key exists before the test's
            var key = pthread_key_t()
            let rc = pthread_key_create(&key, { value in
                // Re-armed each round up to glibc's last (PTHREAD_DESTRUCTOR_ITERATIONS
                // = 4); SpanAlloc's destructor ran in the first.
                let round = Int(bitPattern: value)
                if round < 4 {
                    pthread_setspecific(lateKey, UnsafeRawPointer(bitPattern: round + 1))
                    return
                }
                let ps = (0..<50).map { _ in sa_alloc(80, 0)! }
                for p in ps { sa_free(p) }
                sa_free(sa_alloc(80 << 10, 0))
                sa_free(UnsafeMutableRawPointer(bitPattern: lateBlock)) // allocated before the destructors
            })
            childCheck(rc == 0, "pthread_key_create")
            lateKey = key
            sa_thread_flush()
            let before = childStats()
            onThread {
                pthread_setspecific(lateKey, UnsafeRawPointer(bitPattern: 1))
                let ps = (0..<100).map { _ in sa_alloc(80, 0)! }
                for p in ps { sa_free(p) }
                lateBlock = UInt(bitPattern: sa_alloc(200, 0))
            }
            sa_thread_flush() // emptied spans from mcentral's empty lists to mheap
            let after = childStats()
            childCheck(after.mallocs - before.mallocs == 152, "mallocs counted: \(after.mallocs - before.mallocs)")
            childCheck(after.heap_objects == before.heap_objects, "objects \(before.heap_objects) -> \(after.heap_objects)")
            childCheck(after.spans_inuse == before.spans_inuse, "spans \(before.spans_inuse) -> \(after.spans_inuse)")
            childCheck(after.heap_inuse == before.heap_inuse, "heap in use \(before.heap_inuse) -> \(after.heap_inuse)")
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    // MARK: 9. pthread_key_create failing leaves other keys alone

    /// Runs on a plain POSIX thread: the Swift concurrency runtime creates
    /// thread keys lazily and cannot run while none is left.
    @Test func exhaustedThreadKeysAreNotOverwritten() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            onThread {
                let values = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 1024)
                let created = UnsafeMutablePointer<pthread_key_t>.allocate(capacity: 1024)
                var n = 0
                // Take every free key before SpanAlloc creates its own.
                while n < 1024, pthread_key_create(created + n, nil) == 0 { n += 1 }
                for key in 0..<1024 { values[key] = pthread_getspecific(pthread_key_t(key)) }
                var blocks: [UnsafeMutableRawPointer?] = Array(repeating: nil, count: 1000)
                for i in 0..<1000 { blocks[i] = sa_alloc(16 + i % 200, 0) }
                var overwritten = -1
                for key in 0..<1024 where pthread_getspecific(pthread_key_t(key)) != values[key] { overwritten = key }
                for i in 0..<1000 { sa_free(blocks[i]) }
                for i in 0..<n { pthread_key_delete(created[i]) }
                childCheck(overwritten < 0, "thread key \(overwritten) was overwritten")
                childCheck(!blocks.contains(nil), "allocation failed without thread keys")
            }
            onThread { for _ in 0..<1000 { sa_free(sa_alloc(64, 0)) } }
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    // MARK: 10. Tagged pointers are not SpanAlloc's

    @Test func taggedPointerIsForeign() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let p = sa_alloc(64, 0)!
            let keep = sa_alloc(64, 0)!
            for tag in [UInt(1) << 48, UInt(1) << 56, UInt(0xA5) << 56] {
                let tagged = UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: p) | tag)!
                childCheck(!sa_free_if_ours(tagged), "a tagged copy of \(p) was freed as SpanAlloc's")
                childCheck(!sa_owns(tagged), "sa_owns took a tagged pointer")
            }
            var info = sa_span_info()
            childCheck(sa_span_of(p, &info) && info.alloc_count == 2, "the block was freed through its tagged copy")
            sa_free(p)
            sa_free(keep)
            if let v = childHeapViolation() { childFail(v) }
        }
        expectChildPasses(r)
    }

    // MARK: 12. SPANALLOC= reaches native users

    @Test func environmentConfiguresTheNativeHeap() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            setenv("SPANALLOC", "scavenge=off,scavenge_retain=3M,scavenge_percent=7,scavenge_delay_ms=123", 1)
            sa_free(sa_alloc(100, 0))
            var c = sa_scavenge_config()
            sa_get_scavenge_config(&c)
            childCheck(c.retain_bytes == 3 << 20 && c.retain_percent == 7 && c.delay_ms == 123 && c.mode == SA_SCAVENGE_OFF,
                       "config \(c.retain_bytes) \(c.retain_percent) \(c.delay_ms) \(c.mode)")
        }
        expectChildPasses(r)
    }

    /// stats=1 prints MemStats as JSON at exit for a native program too.
    @Test func environmentStatsReportForNativeUse() async {
        let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            setenv("SPANALLOC", "stats=1,bogus_option=1", 1)
            for _ in 0..<100 { sa_free(sa_alloc(100, 0)) }
            exit(0)
        }
        let err = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
        #expect(r == nil || (err.contains("\"Mallocs\":100,") && err.contains("unknown option 'bogus_option=1'")),
                "\(err.suffix(600))")
    }
}

/// The late destructor's key and a block it frees (a C callback cannot capture them).
nonisolated(unsafe) var lateKey = pthread_key_t()
nonisolated(unsafe) var lateBlock: UInt = 0

// MARK: - Emptied spans kept by mcentral

extension ReliabilityTests {
    @Suite struct CentralEmptySpans {
        /// Spans emptied by remote frees stay on their mcentral's empty list;
        /// the next refills take them instead of new spans from the page heap;
        /// sa_scavenge hands them all back.
        @Test func emptiedSpansAreReusedFromMcentral() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                let perSpan = Int(sa_class_objects(Int32(sa_size_to_class(256))))
                let spans = 12
                let made = Guarded<[UInt]>([])
                onThread {
                    let blocks = (0..<(spans * perSpan)).map { _ in UInt(bitPattern: sa_alloc(256, 0)!) }
                    made.withLock { $0 = blocks }
                } // the thread's cache goes back: the full spans are uncached
                let before = childStats()
                for a in made.withLock({ $0 }) { sa_free(UnsafeMutableRawPointer(bitPattern: a)) }
                let emptied = childStats()
                childCheck(emptied.central_empty_spans - before.central_empty_spans == UInt64(spans),
                           "kept \(emptied.central_empty_spans - before.central_empty_spans) of \(spans) emptied spans")
                let spanBytes = UInt64(sa_class_pages(Int32(sa_size_to_class(256)))) * UInt64(SA_PAGE_SIZE)
                childCheck(emptied.central_empty_bytes == emptied.central_empty_spans * spanBytes,
                           "kept bytes \(emptied.central_empty_bytes) for \(emptied.central_empty_spans) spans")
                childCheck(emptied.spans_inuse == before.spans_inuse, "kept spans stay in use")
                if let v = childHeapViolation() { childFail(v) }
                onThread {
                    let blocks = (0..<(spans * perSpan)).map { _ in UInt(bitPattern: sa_alloc(256, 0)!) }
                    made.withLock { $0 = blocks }
                }
                let again = made.withLock { $0 }.map { UnsafeMutableRawPointer(bitPattern: $0)! }
                let reused = childStats()
                childCheck(reused.central_empty_reuses - emptied.central_empty_reuses == UInt64(spans),
                           "reused \(reused.central_empty_reuses - emptied.central_empty_reuses) kept spans")
                childCheck(reused.spans_fresh == emptied.spans_fresh && reused.spans_reused == emptied.spans_reused,
                           "refills went to the page heap")
                for p in again { sa_free(p) }
                _ = sa_scavenge(Int.max)
                let scavenged = childStats()
                childCheck(scavenged.central_empty_spans == 0 && scavenged.central_empty_bytes == 0,
                           "sa_scavenge left \(scavenged.central_empty_spans) kept spans")
                if let v = childHeapViolation() { childFail(v) }
            }
            expectChildPasses(r)
        }
    }
}
