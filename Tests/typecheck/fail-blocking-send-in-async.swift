// expect: error: instance method 'send' is unavailable from asynchronous contexts
// The blocking form in an async closure (where the call needs no `await`, so
// the blocking overload is the one chosen). Swift 6 reports noasync as a
// warning; the script compiles with -warnings-as-errors.
import SpanAlloc
func run(_ body: @escaping () async -> Void) async { await body() }
func f(_ ch: GoChan<Int>) async {
    await run { ch.send(1) }
}
