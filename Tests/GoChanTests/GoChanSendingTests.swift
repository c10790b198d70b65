import Testing
@testable import SpanAlloc

/// `GoChan` in Swift 6 language mode (the package's `swiftLanguageModes`):
/// it is `Sendable` for every element type, and values cross as `sending`,
/// so a non-`Sendable` `GoSlice` moves between tasks with the compiler's
/// data-race checks on. These tests are checked first by compiling: without
/// the `Sendable` conformance, `sending`, `nonisolated(nonsending)` and
/// `Hashable`, each of them is a compile error.
@Suite(.heapShared) struct GoChanSendingTests {
    private static func requireSendable<T: Sendable>(_: T.Type) {}

    @Test func channelIsSendableForNonSendableElements() {
        Self.requireSendable(GoChan<GoSlice<Int>>.self)
        Self.requireSendable(GoChan<GoSlice<Int>>.AsyncIterator.self)
    }

    /// One task makes slices and sends them; another receives each, appends
    /// to it and sends it back on a second channel. Each slice is owned by
    /// one task at a time, which the compiler checks (`sending`).
    @Test func goSliceMovesBetweenTasks() async throws {
        let toWorker = GoChan<GoSlice<Int>>()
        let back = GoChan<GoSlice<Int>>(capacity: 4)
        let worker = Task {
            var handled = 0
            while let s = try await toWorker.receive() {
                var t = s
                t.append(t.count * 10)
                try await back.send(t)
                handled += 1
            }
            back.close()
            return handled
        }
        let rounds = 200
        var returned: [GoSlice<Int>] = []
        for i in 0 ..< rounds {
            var s = GoSlice<Int>()
            for k in 0 ... i % 5 { s.append(i &* 100 &+ k) }
            try await toWorker.send(s)
            // Drain as we go so neither side waits on a full buffer forever.
            while case .value(let r) = back.tryReceive() { returned.append(r) }
        }
        toWorker.close()
        while let r = try await back.receive() { returned.append(r) }
        #expect(try await worker.value == rounds)
        #expect(returned.count == rounds)
        for (i, r) in returned.enumerated() {
            let n = i % 5 + 1
            #expect(r.count == n + 1)
            #expect(Array(r.prefix(n)) == (0 ..< n).map { i * 100 + $0 })
            #expect(r[n] == n * 10)
        }
    }

    /// The same move between two threads with the blocking forms.
    @Test func goSliceMovesBetweenThreads() {
        let ch = GoChan<GoSlice<Int>>(capacity: 2)
        let sums = GoChan<Int>(capacity: 1)
        let receiver = TestThread {
            var total = 0
            while let s = ch.receive() { total += s.reduce(0, +) }
            sums.send(total)
        }
        var expected = 0
        for i in 0 ..< 100 {
            let s: GoSlice<Int> = [i, i + 1]
            expected += 2 * i + 1
            ch.send(s)
        }
        ch.close()
        receiver.join()
        #expect(sums.receive() == expected)
    }

    /// An actor that hands each slice it receives to a detached task. A
    /// value received inside an actor would belong to the actor's region
    /// unless it comes out as `sending`: this compiles only because
    /// `receive()`, the iterator's `next()` and a select receive case's body
    /// get the value as `sending`.
    actor Forwarder {
        let slices = GoChan<GoSlice<Int>>(capacity: 4)

        func countByReceive() async throws -> Int {
            let s = try await slices.receive()
            return await Task.detached { s?.count ?? -1 }.value
        }

        func countByIterator() async -> Int {
            var it = slices.makeAsyncIterator()
            let s = await it.next()
            return await Task.detached { s?.count ?? -1 }.value
        }

        func countBySelect() async throws -> Int {
            let task = try await select(slices.onReceive { s in Task.detached { s?.count ?? -1 } })
            return await task.value
        }
    }

    @Test func receivedValuesLeaveTheActor() async throws {
        let f = Forwarder()
        try await f.slices.send([1])
        try await f.slices.send([1, 2])
        try await f.slices.send([1, 2, 3])
        #expect(try await f.countByReceive() == 1)
        #expect(await f.countByIterator() == 2)
        #expect(try await f.countBySelect() == 3)
    }

    /// An actor whose select bodies and receive results update its state
    /// synchronously: the async operations run on the caller's executor
    /// (`nonisolated(nonsending)`), so the bodies are isolated to the actor.
    actor Collector {
        let input = GoChan<Int>(capacity: 8)
        let stop = GoChan<Void>()
        var seen: [Int] = []
        var stopped = false

        func run() async throws {
            while !stopped {
                try await select(
                    input.onReceive { v in
                        self.assertIsolated("select body on the actor's executor")
                        if let v { self.seen.append(v) } else { self.stopped = true }
                    },
                    stop.onReceive { _ in
                        self.assertIsolated()
                        self.stopped = true
                    }
                )
            }
        }

        func receiveOne() async throws -> Int? {
            let v = try await input.receive()
            assertIsolated("after an async receive the actor's code continues on its executor")
            if let v { seen.append(v) }
            return v
        }
    }

    @Test func selectBodyTouchesActorState() async throws {
        let c = Collector()
        for i in 0 ..< 5 { try await c.input.send(i) }
        #expect(try await c.receiveOne() == 0)
        let runner = Task { try await c.run() }
        for i in 5 ..< 20 { try await c.input.send(i) }
        c.input.close()
        try await runner.value
        #expect(await c.seen == Array(0 ..< 20))
        #expect(await c.stopped)
    }

    /// Go's channels compare by identity; so do `GoChan`s, for any element type.
    @Test func hashableByIdentity() {
        let a = GoChan<GoSlice<Int>>(), b = GoChan<GoSlice<Int>>()
        let a2 = a
        #expect(a == a2)
        #expect(a != b)
        #expect(a.hashValue == a2.hashValue)
        let set: Set = [a, b, a2]
        #expect(set.count == 2)
        var names: [GoChan<GoSlice<Int>>: String] = [a: "a"]
        names[b] = "b"
        #expect(names[a2] == "a")
        #expect(names[b] == "b")
    }
}
