// expect: error: conformance of 'GoSlice<Element>' to 'Sendable' is unavailable
import SpanAlloc
func requireSendable<T: Sendable>(_: T) {}
let s: GoSlice = [1]
requireSendable(s)
