// expect: error: sending 's' risks causing data races
// A slice given to a channel belongs to the receiver: the sender may not use it.
import SpanAlloc
func producer(_ ch: GoChan<GoSlice<Int>>) async throws {
    let s: GoSlice = [1, 2, 3]
    try await ch.send(s)
    print(s[0])
}
