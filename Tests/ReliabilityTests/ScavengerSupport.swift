import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Memory that goes back: the background scavenger, idle
/// threads letting go of their caches, the memory limit, and their
/// configuration. Every test runs in a child process of its own (an exit
/// test, or a C program under `LD_PRELOAD`), so the parent's heap is not
/// touched and the suite needs no heap lock: it runs alongside the other
/// suites. Its tests run one at a time, so two peaks of a gigabyte do not
/// meet and the CPU figures are not another test's.
///
/// Resident memory is read from /proc/self/statm and counted above the
/// value read before the workload; those tests are skipped under the
/// sanitizers, whose shadow memory is resident and not returned. Timing
/// bounds are generous (a noisy 2-core VM) and derived from the documented
/// behaviour (docs/malloc.md); a polling test passes as soon as its condition holds and fails
/// with the figures it saw at the deadline.
@Suite(.serialized) struct ScavengerTests {}

// MARK: - Checks in a child

/// A check in a ScavengerTests child. A failed one writes "child check
/// failed at …" and the message on stderr and exits with status 0: the
/// parent's `#expect(processExitsWith:)` returns no result when the status
/// is wrong, and so could not show the figures; `expectChildPasses` then
/// fails the test with the message. (A crash still fails the exit status.)
func childExpect(_ ok: Bool, _ message: @autoclosure () -> String, file: String = #fileID, line: Int = #line) {
    if !ok { childStop(message(), file: file, line: line) }
}

/// Stops the child after a failed check (see ``childExpect(_:_:file:line:)``).
func childStop(_ message: String, file: String = #fileID, line: Int = #line) -> Never {
    FileHandle.standardError.write(Data("child check failed at \(file):\(line): \(message)\n".utf8))
    fflush(nil)
    exit(0)
}

// MARK: - Time and polling

/// Monotonic seconds.
func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// Sleeps `seconds` (no allocation).
func sleepSeconds(_ seconds: Double) {
    var t = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var rest = timespec()
    while nanosleep(&t, &rest) != 0 { t = rest }
}

/// Evaluates `condition` every `interval` seconds until it holds (returns
/// the seconds it took) or `timeout` seconds have passed (returns nil).
func poll(timeout: Double, every interval: Double = 0.1, _ condition: () -> Bool) -> Double? {
    let start = monotonicSeconds()
    while true {
        if condition() { return monotonicSeconds() - start }
        if monotonicSeconds() - start >= timeout { return nil }
        sleepSeconds(interval)
    }
}

/// Timing bounds are stretched this much under a sanitizer (its runtime
/// slows the scavenger's bookkeeping, not its madvise calls).
let sanitizerStretch: Double = Sanitizer.any ? 3 : 1

// MARK: - Resident memory without allocating

/// Resident bytes from /proc/self/statm, read with open/read into a stack
/// buffer: no allocation by anyone (`residentMemory()` goes through
/// Foundation, which mallocs).
func statmResident() -> Int {
    let fd = open("/proc/self/statm", O_RDONLY)
    guard fd >= 0 else { return -1 }
    defer { close(fd) }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buf -> Int in
        let n = read(fd, buf.baseAddress, 127)
        guard n > 0 else { return -1 }
        // "size resident shared ...": the second field.
        var i = 0, field = 0, value = 0
        while i < n {
            let c = buf[i]
            if c == 0x20 { field += 1; if field == 2 { break } }
            else if field == 1 && c >= 0x30 && c <= 0x39 { value = value * 10 + Int(c - 0x30) }
            i += 1
        }
        return value * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// Peak resident bytes of the process so far (getrusage's ru_maxrss, KiB).
func peakResident() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return u.ru_maxrss * 1024
}

func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1048576) }
func mib(_ bytes: UInt64) -> String { mib(Int(bytes)) }

/// Writes one byte in every 4 KiB of the block and its last byte, so every
/// OS page of it is resident.
@inline(__always)
func touchEveryPage(_ p: UnsafeMutableRawPointer, _ size: Int, _ value: UInt8 = 0xA5) {
    var o = 0
    while o < size {
        p.storeBytes(of: value, toByteOffset: o, as: UInt8.self)
        o += 4096
    }
    p.storeBytes(of: value, toByteOffset: size - 1, as: UInt8.self)
}

// MARK: - Scavenger configuration in a child

/// The scavenger's configuration in effect.
func scavengeConfig() -> sa_scavenge_config {
    var c = sa_scavenge_config()
    sa_get_scavenge_config(&c)
    return c
}

/// Changes the named fields of the scavenger's configuration (the rest
/// stay as they are).
func configureScavenger(mode: sa_scavenge_mode? = nil, retain: Int? = nil, percent: UInt32? = nil,
                        delayMs: UInt32? = nil, floor: Int? = nil, idleMs: UInt32? = nil, cpuPercent: UInt32? = nil) {
    var c = scavengeConfig()
    if let mode { c.mode = mode }
    if let retain { c.retain_bytes = retain }
    if let percent { c.retain_percent = percent }
    if let delayMs { c.delay_ms = delayMs }
    if let floor { c.floor_bytes = floor }
    if let idleMs { c.idle_ms = idleMs }
    if let cpuPercent { c.cpu_percent = cpuPercent }
    sa_set_scavenge_config(&c)
}

/// Pages (8 KiB) in `bytes`.
func spanPages(_ bytes: Int) -> UInt64 { UInt64(bytes / Int(SA_PAGE_SIZE)) }

/// A burst of large blocks that free into separate page runs: `count`
/// blocks of `size` bytes, each followed by a 40 KiB keeper block that
/// stays live, so the freed blocks cannot coalesce. Every page of the
/// freed blocks is written. Returns the keepers (the caller frees them).
func freeSeparateRuns(count: Int, size: Int) -> [UInt] {
    var burst: [UInt] = [], keepers: [UInt] = []
    burst.reserveCapacity(count)
    keepers.reserveCapacity(count)
    for _ in 0..<count {
        guard let p = sa_alloc(size, UInt32(SA_NOSCAN)), let k = sa_alloc(40 << 10, UInt32(SA_NOSCAN)) else {
            childStop("burst allocation failed")
        }
        touchEveryPage(p, size)
        burst.append(UInt(bitPattern: p))
        keepers.append(UInt(bitPattern: k))
    }
    for a in burst { sa_free(UnsafeMutableRawPointer(bitPattern: a)) }
    return keepers
}

func freeAll(_ blocks: [UInt]) {
    for a in blocks { sa_free(UnsafeMutableRawPointer(bitPattern: a)) }
}

/// The four release counters added up (they make pages_scavenged).
func releasedPages(_ s: sa_mem_stats) -> UInt64 {
    s.pages_released_background + s.pages_released_pacer + s.pages_released_limit + s.pages_released_demand
}

func releaseSummary(_ s: sa_mem_stats) -> String {
    "released background \(s.pages_released_background), pacer \(s.pages_released_pacer), "
        + "limit \(s.pages_released_limit), demand \(s.pages_released_demand) pages (scavenged \(s.pages_scavenged)); "
        + "heap released \(mib(s.heap_released)), idle \(mib(s.heap_idle)), in use \(mib(s.heap_inuse)); "
        + "scavenger running \(s.scavenger_running), CPU \(s.scavenger_cpu_ns / 1000) µs; "
        + "idle cache flushes \(s.idle_cache_flushes), thread held max \(s.thread_held_max), "
        + "free cache objects \(s.free_cache_objects)"
}

// MARK: - Threads

/// A reusable pthread barrier for `count` threads.
final class Barrier: @unchecked Sendable {
    private let b = UnsafeMutablePointer<pthread_barrier_t>.allocate(capacity: 1)
    init(_ count: Int) { pthread_barrier_init(b, nil, UInt32(count)) }
    func wait() { pthread_barrier_wait(b) }
    deinit {
        pthread_barrier_destroy(b)
        b.deallocate()
    }
}

/// Threads that run `body(i)` and then stay blocked, alive, until
/// ``release()``; ``join()`` waits for them to exit. ``waitUntilBlocked()``
/// returns when every body has returned.
final class BlockedGang: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let go = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)
    let count: Int

    init(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        self.count = count
        let runner = Thread { [done, go, exited] in
            ThreadGang.run(count) { i in
                body(i)
                done.signal()
                go.wait()
            }
            exited.signal()
        }
        runner.stackSize = 1 << 20
        runner.start()
    }

    /// Waits until every thread has run its body (and is about to block).
    func waitUntilBlocked() { for _ in 0..<count { done.wait() } }

    /// Lets the threads exit.
    func release() { for _ in 0..<count { go.signal() } }

    /// Waits until every thread has exited (its cache handed back).
    func join() { exited.wait() }
}

// MARK: - Programs run under LD_PRELOAD

enum PreloadProgram {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static var library: String { root.appendingPathComponent(".build/spanalloc-preload/libspanalloc.so").path }
    static var source: String { root.appendingPathComponent("Tests/memory-return/idle_return.c").path }

    /// Whether the preloaded tests run: the library is built or
    /// scripts/test.sh asks for it (then a missing library fails).
    static var wanted: Bool {
        FileManager.default.fileExists(atPath: library)
            || ProcessInfo.processInfo.environment["SPANALLOC_REQUIRE_PRELOAD"] != nil
    }

    /// Brings the library up to date (scripts/build-preload.sh rebuilds only
    /// what is stale) and compiles the C program; returns its path.
    static func build(in dir: URL) throws -> String {
        let script = root.appendingPathComponent("scripts/build-preload.sh").path
        let built = try ReliabilityTests.MemoryReturn.run("/bin/bash", [script])
        try #require(built.status == 0, "scripts/build-preload.sh failed: \(built.text.suffix(2000))")
        let binary = dir.appendingPathComponent("idle_return").path
        let cc = try ReliabilityTests.MemoryReturn.run(
            "/usr/bin/env", ["cc", "-std=gnu11", "-O2", "-pthread", "-I", root.appendingPathComponent("Sources/CSpanAlloc/include").path,
                             "-o", binary, source])
        try #require(cc.status == 0, "cc idle_return.c: \(cc.text.suffix(2000))")
        return binary
    }

    /// Runs `mode` of the program under the preloaded library.
    static func run(_ binary: String, _ mode: String, spanalloc: String? = nil) throws -> (status: Int32, text: String) {
        var env = ["LD_PRELOAD": library]
        if let spanalloc { env["SPANALLOC"] = spanalloc }
        return try ReliabilityTests.MemoryReturn.run(binary, [mode], environment: env)
    }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spanalloc-idle-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// The child's stdout lines that start with `prefix`, for the parent's log.
func childLines(_ r: ExitTest.Result?, _ prefix: String) -> [String] {
    guard let r else { return [] }
    return String(decoding: r.standardOutputContent, as: UTF8.self).split(separator: "\n")
        .filter { $0.hasPrefix(prefix) }.map(String.init)
}

/// Prints the child's report lines (stdout lines starting with `prefix`)
/// in the parent's log, then expects the child to have passed.
func expectChildPasses(_ r: ExitTest.Result?, reporting prefix: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for line in childLines(r, prefix) { print(line) }
    expectChildPasses(r, sourceLocation: sourceLocation)
}

/// Prints a line for the parent's log from the child (stdout, flushed).
func childReport(_ line: String) {
    print(line)
    fflush(nil)
}
