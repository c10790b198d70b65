import CSpanAlloc
import Foundation
import SpanAlloc
import Synchronization
import Testing

/// A blocking FIFO between threads.
final class Handoff<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []
    private var head = 0
    private var closed = false

    func send(_ batch: [Element]) {
        condition.lock()
        items.append(contentsOf: batch)
        condition.signal()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next batch (everything queued), or nil once closed and drained.
    func receive() -> [Element]? {
        condition.lock()
        defer { condition.unlock() }
        while head == items.count && !closed { condition.wait() }
        if head == items.count { return nil }
        let batch = Array(items[head...])
        items.removeAll(keepingCapacity: true)
        head = 0
        return batch
    }
}

/// One object handed to another thread: where, how big, which serial.
struct Parcel: Sendable {
    var address: Address
    var size: Int
    var serial: UInt64
}

extension CoreAllocatorTests {
    /// Frees from other threads, many threads at once, thread exit.
    @Suite struct Threads {
        /// A producer thread allocates and stamps objects; a consumer thread
        /// checks the stamp and frees them, while the producer keeps going.
        @Test func crossThreadFreesKeepContents() {
            heap.flushThreadCache()
            let s0 = heap.memStats
            let queue = Handoff<Parcel>()
            let total = runningUnderTSan ? 8_000 : 20_000
            let sizes = [8, 16, 24, 48, 100, 256, 1024, 3000, 8192, 20000, 32768, 40000, 300_000]
            let smallCount = (0..<total).filter { sizes[$0 % sizes.count] <= 32768 }.count
            let bad = Counter()
            runOnThreads(2) { role in
                if role == 0 {
                    var batch: [Parcel] = []
                    for i in 0..<total {
                        let size = sizes[i % sizes.count]
                        let p = heap.allocate(byteCount: size, noscan: i % 3 == 0)
                        stamp(p, size: size, serial: UInt64(i))
                        batch.append(Parcel(address: p.address, size: size, serial: UInt64(i)))
                        if batch.count == 64 { queue.send(batch); batch.removeAll(keepingCapacity: true) }
                    }
                    queue.send(batch)
                    queue.close()
                } else {
                    while let batch = queue.receive() {
                        for parcel in batch {
                            let p = UnsafeMutableRawPointer(address: parcel.address)
                            if !verifyStamp(p, size: parcel.size, serial: parcel.serial) {
                                bad.add()
                            }
                            heap.deallocate(p)
                        }
                    }
                }
            }
            let s1 = heap.memStats
            #expect(bad.value == 0, "objects whose bytes changed between threads")
            #expect(s1.remoteFrees >= s0.remoteFrees + UInt64(smallCount),
                    "every small free by the consumer is remote")
            #expect(s1.heapObjects == s0.heapObjects)
            #expect(s1.heapAlloc == s0.heapAlloc)
            #expect(s1.threadsExited >= s0.threadsExited + 2)
        }

        /// Threads allocate random sizes (small, medium and large), keep
        /// them a random while, and free them themselves or hand them to a
        /// neighbour thread, checking every object's stamp at its free.
        @Test(arguments: [4, 6])
        func threadsAllocateAndFreeAtOnce(threads: Int) {
            heap.flushThreadCache()
            let s0 = heap.memStats
            let operations = runningUnderTSan ? 12_000 : 40_000
            let mailboxes = (0..<threads).map { _ in Locked<[Parcel]>([]) }
            let bad = Counter()
            let remoteSent = Counter()
            @Sendable func release(_ parcel: Parcel) {
                let p = UnsafeMutableRawPointer(address: parcel.address)
                if !verifyStamp(p, size: parcel.size, serial: parcel.serial, edge: 128) {
                    bad.add()
                }
                heap.deallocate(p)
            }
            runOnThreads(threads) { me in
                var rng = SplitMix64(seed: 0x5EED_0000 + UInt64(me))
                var live: [Parcel] = []
                for op in 0..<operations {
                    let roll = rng.next() % 100
                    if live.isEmpty || (live.count < 512 && roll < 52) {
                        let kind = rng.next() % 100
                        let size: Int
                        if kind < 80 { size = Int(rng.next() % 1024) + 1 }
                        else if kind < 97 { size = Int(rng.next() % 32768) + 1 }
                        else { size = Int(rng.next() % (512 << 10)) + 32769 }
                        let p = heap.allocate(byteCount: size, noscan: kind % 2 == 0)
                        let serial = UInt64(me) << 32 | UInt64(op)
                        stamp(p, size: size, serial: serial, edge: 128)
                        live.append(Parcel(address: p.address, size: size, serial: serial))
                    } else {
                        let parcel = live.swapRemoveAt(Int(rng.next() % UInt64(live.count)))
                        if roll % 3 == 0 {
                            mailboxes[(me + 1) % threads].withLock { $0.append(parcel) }
                            remoteSent.add()
                        } else {
                            release(parcel)
                        }
                    }
                    if op % 64 == 0 {
                        for parcel in mailboxes[me].withLock({ box in defer { box.removeAll() }; return box }) {
                            release(parcel)
                        }
                    }
                }
                for parcel in live { release(parcel) }
            }
            for box in mailboxes {
                for parcel in box.value { release(parcel) }
            }
            let s1 = heap.memStats
            #expect(bad.value == 0, "objects whose bytes changed while live")
            #expect(s1.heapObjects == s0.heapObjects)
            #expect(s1.heapAlloc == s0.heapAlloc)
            #expect(s1.mallocs - s0.mallocs == s1.frees - s0.frees)
            #expect(s1.threadsExited >= s0.threadsExited + UInt64(threads))
            #expect(s1.remoteFrees > s0.remoteFrees)
            #expect(remoteSent.value > 0)
        }

        /// A thread allocates, frees some of it, and exits: its cache goes
        /// back to mcentral, its live objects stay live, its cached span
        /// serves this thread afterwards.
        @Test func threadExitHandsBackItsCache() throws {
            let go = goSizeClasses[9]     // class 10: 128 B, 64 objects, 1 page
            heap.flushThreadCache()
            let s0 = heap.memStats
            struct Result: Sendable { var live: [Address] = []; var cachedSpan: UInt64 = 0 }
            let result = Locked(Result())
            runOnThread {
                var objects = (0..<(go.objects + go.objects / 2)).map { _ in heap.allocate(byteCount: go.size) }
                let cached = heap.span(containing: objects.last!)!.id
                // Free every other object of the span the thread still caches.
                var kept: [UnsafeMutableRawPointer] = []
                for (i, p) in objects.enumerated() {
                    if heap.span(containing: p)!.id == cached && i % 2 == 0 { heap.deallocate(p) } else { kept.append(p) }
                }
                objects = kept
                result.withLock { $0 = Result(live: objects.map(\.address), cachedSpan: cached) }
            }
            let r = result.value
            let s1 = heap.memStats
            #expect(s1.threadsExited >= s0.threadsExited + 1)
            // The exited thread's objects are still live and counted.
            let live = r.live.map { UnsafeMutableRawPointer(address: $0) }
            #expect(s1.heapObjects == s0.heapObjects + UInt64(live.count))
            let cachedObject = try #require(live.first { heap.span(containing: $0)?.id == r.cachedSpan })
            let cached = try #require(heap.span(containing: cachedObject))
            #expect(cached.allocatedCount == live.filter { cached.contains($0) }.count,
                    "the span counts the frees made before the thread exited")
            // Its cached span now serves this thread.
            heap.flushThreadCache()
            var mine: [UnsafeMutableRawPointer] = []
            var served = false
            for _ in 0..<(8 * go.objects) {
                let p = heap.allocate(byteCount: go.size)
                mine.append(p)
                if heap.span(containing: p)?.id == r.cachedSpan { served = true; break }
            }
            #expect(served, "the exited thread's span was handed back and reused")
            #expect(Set(mine).isDisjoint(with: Set(live)), "no live object handed out again")
            for p in mine + live { heap.deallocate(p) }
            let s2 = heap.memStats
            #expect(s2.heapObjects == s0.heapObjects)
        }
    }
}

extension Array {
    /// Removes the element at `i` by moving the last element into its place.
    mutating func swapRemoveAt(_ i: Int) -> Element {
        swapAt(i, count - 1)
        return removeLast()
    }
}
