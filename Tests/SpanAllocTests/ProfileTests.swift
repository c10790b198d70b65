import CSpanAlloc
import Foundation
import SpanAlloc
import SpanAllocTestSupport
import Testing

/// The heap profiler through the Swift API (docs/profiling.md). The rate is
/// process-wide, so the suite runs alone and restores it.
@Suite(.serialized, .heapExclusive)
struct ProfileTests {
    let heap = SpanHeap.default

    /// Allocates `count` objects of `size` bytes: a site the profile must name.
    @inline(never)
    func profiledSite(count: Int, size: Int) -> [UnsafeMutableRawPointer] {
        (0..<count).map { _ in heap.allocate(byteCount: size) }
    }

    @inline(never)
    func otherSite(count: Int, size: Int) -> [UnsafeMutableRawPointer] {
        (0..<count).map { _ in heap.allocate(byteCount: size) }
    }

    /// The folded profile's bytes per line whose stack mentions `name`.
    func foldedBytes(_ text: String, containing name: String) -> Int {
        text.split(separator: "\n").filter { $0.contains(name) }
            .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }
            .reduce(0, +)
    }

    @Test func rateIsSetAndRead() {
        let old = heap.heapProfileRate
        defer { heap.heapProfileRate = old }
        heap.heapProfileRate = 65536
        #expect(heap.heapProfileRate == 65536)
        heap.heapProfileRate = 0
        #expect(heap.heapProfileRate == 0)
        let before = heap.heapProfileCounts.samples
        let ps = profiledSite(count: 1000, size: 4096)
        ps.forEach { heap.deallocate($0) }
        #expect(heap.heapProfileCounts.samples == before, "rate 0 samples nothing")
    }

    @Test func rateOneIsExactAndNamesDemangledSwiftFunctions() throws {
        let old = heap.heapProfileRate
        defer { heap.heapProfileRate = old }
        heap.heapProfileRate = 1
        let keep = profiledSite(count: 500, size: 200)
        let freed = otherSite(count: 300, size: 64)
        freed.forEach { heap.deallocate($0) }
        let text = String(decoding: try heap.heapProfile(format: .folded), as: UTF8.self)
        heap.heapProfileRate = 0
        keep.forEach { heap.deallocate($0) }
        // Demangled: "ProfileTests.profiledSite(count: Swift.Int, size: Swift.Int)…", not "$s…".
        #expect(text.contains("ProfileTests.profiledSite("), "\(text.prefix(2000))")
        let frames = text.split(separator: "\n").flatMap { $0.split(separator: " ").first!.split(separator: ";") }
        #expect(!frames.contains { $0.hasPrefix("$s") }, "every Swift frame is demangled")
        #expect(foldedBytes(text, containing: "profiledSite(") == 500 * 200, "\(text.prefix(2000))")
        #expect(foldedBytes(text, containing: "otherSite(") == 0, "freed objects are not in use")
    }

    @Test func writesAGzippedProfileProtoToAPath() throws {
        let old = heap.heapProfileRate
        defer { heap.heapProfileRate = old }
        heap.heapProfileRate = 1
        let keep = profiledSite(count: 100, size: 1000)
        defer { keep.forEach { heap.deallocate($0) } }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sa-heap-%p.pb.gz").path
        try heap.writeHeapProfile(to: path)
        let real = path.replacingOccurrences(of: "%p", with: "\(getpid())")
        defer { try? FileManager.default.removeItem(atPath: real) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: real))
        #expect(bytes.prefix(2) == Data([0x1f, 0x8b]))
        let proto = try gunzip(bytes)
        let walk = try ProtoWalk(proto)
        #expect(walk.strings.contains("inuse_space") && walk.strings.contains("alloc_objects"))
        #expect(walk.samples > 0 && walk.locations > 0 && walk.mappings > 0)
        #expect(walk.strings.contains { $0.contains("ProfileTests.profiledSite(") })
    }

    @Test func bytesFormParsesAndAnUnwritablePathThrows() throws {
        let old = heap.heapProfileRate
        defer { heap.heapProfileRate = old }
        heap.heapProfileRate = 4096
        let keep = profiledSite(count: 2000, size: 512)
        defer { keep.forEach { heap.deallocate($0) } }
        let bytes = try heap.heapProfile()
        #expect(bytes.prefix(2) == [0x1f, 0x8b])
        let walk = try ProtoWalk(try gunzip(Data(bytes)))
        #expect(walk.samples > 0)
        #expect(walk.period == 4096)
        #expect(throws: SpanHeap.HeapProfileError(code: ENOENT)) {
            try heap.writeHeapProfile(to: "/nonexistent-dir/heap.pb.gz")
        }
        // A full disk: the device is written in place (never replaced) and refuses.
        #expect(throws: SpanHeap.HeapProfileError(code: ENOSPC)) {
            try heap.writeHeapProfile(to: "/dev/full")
        }
        var st = stat()
        #expect(stat("/dev/full", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR, "/dev/full is still the device")
    }

    @Test func threadExitsWithSampledObjectsLive() throws {
        let old = heap.heapProfileRate
        defer { heap.heapProfileRate = old }
        heap.heapProfileRate = 1
        let before = heap.heapProfileCounts.live
        let box = PointerBox()
        // A joined pthread: its exit (cache handed back) is complete before the checks.
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let box = Unmanaged<PointerBox>.fromOpaque(arg!).takeRetainedValue()
            box.pointers = (0..<200).map { _ in SpanHeap.default.allocate(byteCount: 3000) }
            return nil
        }, Unmanaged.passRetained(box).toOpaque())
        #expect(rc == 0)
        pthread_join(tid, nil)
        #expect(heap.heapProfileCounts.live >= before + 200)
        let text = String(decoding: try heap.heapProfile(format: .folded), as: UTF8.self)
        #expect(foldedBytes(text, containing: "threadExitsWithSampledObjectsLive") == 200 * 3000, "\(text.prefix(2000))")
        box.pointers.forEach { heap.deallocate($0) }
        #expect(heap.heapProfileCounts.live <= before, "the frees on another thread dropped the records")
    }

    @Test func profileWrittenWhileOtherThreadsAllocate() throws {
        let old = heap.heapProfileRate
        defer { heap.heapProfileRate = old }
        heap.heapProfileRate = 2048
        let stop = StopFlag()
        let group = DispatchGroup()
        for w in 0..<2 {
            DispatchQueue.global().async(group: group) {
                var live: [UnsafeMutableRawPointer] = []
                var i = 0
                while !stop.isSet {
                    live.append(SpanHeap.default.allocate(byteCount: 16 + (i * 37 + w) % 5000))
                    if live.count > 500 { SpanHeap.default.deallocate(live.removeFirst()) }
                    i += 1
                }
                live.forEach { SpanHeap.default.deallocate($0) }
            }
        }
        for _ in 0..<20 {
            let bytes = try heap.heapProfile()
            #expect(try ProtoWalk(try gunzip(Data(bytes))).samples >= 0)
        }
        stop.set()
        group.wait()
    }
}

final class PointerBox: @unchecked Sendable { var pointers: [UnsafeMutableRawPointer] = [] }

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
    func set() { lock.lock(); flag = true; lock.unlock() }
}

/// `gzip -dc` of the bytes.
func gunzip(_ data: Data) throws -> Data {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/gzip")
    p.arguments = ["-dc"]
    let inPipe = Pipe(), outPipe = Pipe()
    p.standardInput = inPipe
    p.standardOutput = outPipe
    try p.run()
    let writer = Thread { inPipe.fileHandleForWriting.write(data); try? inPipe.fileHandleForWriting.close() }
    writer.start()
    let out = outPipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw CocoaError(.fileReadCorruptFile) }
    return out
}

/// The top level of a profile.proto message: its string table and counts.
struct ProtoWalk {
    var strings: [String] = []
    var samples = 0, locations = 0, mappings = 0, functions = 0
    var period = 0

    init(_ data: Data) throws {
        let b = [UInt8](data)
        var i = 0
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < b.count, shift < 64 else { throw CocoaError(.fileReadCorruptFile) }
                let c = b[i]; i += 1
                v |= UInt64(c & 0x7f) << shift
                if c < 0x80 { return v }
                shift += 7
            }
        }
        while i < b.count {
            let key = try varint()
            switch key & 7 {
            case 0:
                let v = try varint()
                if key >> 3 == 12 { period = Int(v) }
            case 2:
                let n = Int(try varint())
                guard i + n <= b.count else { throw CocoaError(.fileReadCorruptFile) }
                switch key >> 3 {
                case 2: samples += 1
                case 3: mappings += 1
                case 4: locations += 1
                case 5: functions += 1
                case 6: strings.append(String(decoding: b[i..<i + n], as: UTF8.self))
                default: break
                }
                i += n
            default:
                throw CocoaError(.fileReadCorruptFile)
            }
        }
    }
}

/// realloc (moving and in place), calloc, aligned and large allocations at rate 1.
@Suite(.serialized, .heapExclusive)
struct ProfileEntryPointTests {
    let heap = SpanHeap.default

    @inline(never)
    func resizeSite(_ ps: [UnsafeMutableRawPointer], to size: Int) -> [UnsafeMutableRawPointer] {
        ps.map { sa_realloc($0, size)! }
    }

    @inline(never)
    func otherEntryPointsSite() -> [UnsafeMutableRawPointer] {
        (0..<10).map { _ in sa_calloc(10, 100, 0)! } + (0..<10).map { _ in sa_alloc_aligned(500, 256, 0)! }
            + (0..<3).map { _ in sa_alloc(1 << 20, 0)! }
    }

    func bytes(_ text: String, _ name: String) -> Int {
        text.split(separator: "\n").filter { $0.contains(name) }
            .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
    }

    @Test func everyEntryPointIsCountedAndItsFreeDropsTheRecord() throws {
        let old = heap.heapProfileRate
        defer { heap.heapProfileRate = old }
        heap.heapProfileRate = 1
        let live0 = heap.heapProfileCounts.live
        let small = (0..<100).map { _ in heap.allocate(byteCount: 100) }
        let grown = resizeSite(small, to: 5000)          // moves: the records follow the new blocks
        let nudged = resizeSite(grown, to: 5100)         // same class (5376 B): in place, a new record of 5100 B
        let others = otherEntryPointsSite()
        let text = String(decoding: try heap.heapProfile(format: .folded), as: UTF8.self)
        #expect(bytes(text, "resizeSite(") == 100 * 5100, "\(text.prefix(3000))")
        #expect(bytes(text, "otherEntryPointsSite(") == 10 * 1000 + 10 * 500 + 3 << 20, "\(text.prefix(3000))")
        #expect(heap.heapProfileCounts.live == live0 + 100 + 23)
        (nudged + others).forEach { sa_free($0) }
        #expect(heap.heapProfileCounts.live == live0, "every free dropped its record")
    }
}
