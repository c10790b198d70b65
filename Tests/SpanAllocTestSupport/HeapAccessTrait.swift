import SpanAlloc
import Testing

/// Runs each test of a suite (or one test) under ``HeapTestLock``, and
/// optionally runs the heap checker after it.
///
/// ```swift
/// @Suite(.heapShared) struct GoSliceTests { ... }          // may run alongside others
/// @Suite(.serialized, .heapExclusive) struct CoreTests { ... } // alone, checked after each test
/// ```
public struct HeapAccessTrait: SuiteTrait, TestTrait, TestScoping {
    /// Whether the tests need the heap to themselves.
    public let exclusive: Bool
    /// Whether `SpanHeap.default.checkInvariants()` runs after each test
    /// (only meaningful with exclusive access, which the checker requires).
    public let checksHeap: Bool

    /// Applies to every test inside a suite it is attached to.
    public var isRecursive: Bool { true }

    /// One scope per test case, none for the suite itself.
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        testCase == nil ? nil : self
    }

    /// Takes the lock around the test and checks the heap after it.
    public func provideScope(
        for test: Test, testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        if exclusive {
            try await HeapTestLock.withExclusiveAccess {
                try await function()
                if checksHeap, let violation = SpanHeap.default.checkInvariants() {
                    Issue.record("heap checker after \(test.name): \(violation)",
                                 sourceLocation: test.sourceLocation)
                }
            }
        } else {
            try await HeapTestLock.withSharedAccess { try await function() }
        }
    }
}

extension Trait where Self == HeapAccessTrait {
    /// The tests allocate from `SpanHeap.default` and may run alongside
    /// other shared holders, never alongside an exclusive one.
    public static var heapShared: Self { HeapAccessTrait(exclusive: false, checksHeap: false) }

    /// Each test has the heap to itself and the heap checker runs after it.
    public static var heapExclusive: Self { HeapAccessTrait(exclusive: true, checksHeap: true) }
}
