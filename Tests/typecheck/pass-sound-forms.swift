// expect: pass
// The sound forms compile, so the failing snippets cannot fail for an
// unrelated reason (a missing module, a wrong flag).
import SpanAlloc

struct Point: GoZeroValue { var x = 0.0, y = 0.0; static var goZeroValue: Point { Point() } }

func zeroValues() {
    _ = GoSlice<Int>(length: 3)
    _ = GoSlice<String>(length: 2, capacity: 4)
    _ = GoSlice<UnsafeRawPointer?>(length: 2)
    _ = GoSlice<Point>(length: 2)
    _ = GoSlice<UnsafeRawPointer>(length: 2, zero: UnsafeRawPointer(bitPattern: 8)!)
}

func moveThroughChannel() async throws {
    let ch = GoChan<GoSlice<Int>>(capacity: 1)
    let s: GoSlice = [1, 2]
    try await ch.send(s)
    let t = Task { try await ch.receive()?.count ?? 0 }
    _ = try await t.value
}

/// A value received by `for await`, `next()` or `receive()` is the
/// receiver's alone: it may be sent on, also from an actor.
actor Relay {
    var kept: [GoSlice<Int>] = []

    func relay(_ a: GoChan<GoSlice<Int>>, _ b: GoChan<GoSlice<Int>>) async throws {
        for await s in a { try await b.send(s) }
        var it = a.makeAsyncIterator()
        if let s = await it.next() { try await b.send(s) }
        if let s = try await a.receive() { kept.append(s) }
    }
}
