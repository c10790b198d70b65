// ExpressibleByArrayLiteral, Equatable, Hashable and the descriptions.

extension GoSlice: ExpressibleByArrayLiteral {
    /// Go's composite literal `[]T{a, b, c}`: length and capacity are the
    /// number of elements.
    @inlinable
    public init(arrayLiteral elements: Element...) {
        self.init(elements)
    }
}

extension GoSlice: Equatable where Element: Equatable {
    /// Whether the two slices have the same length and equal elements
    /// (Go compares slices only with nil; this is Swift's collection equality,
    /// so a nil slice equals an empty one).
    @inlinable
    public static func == (lhs: GoSlice, rhs: GoSlice) -> Bool {
        guard lhs._count == rhs._count else { return false }
        if lhs._base == rhs._base { return true }
        return lhs.elementsEqual(rhs)
    }
}

extension GoSlice: Hashable where Element: Hashable {
    /// Hashes the length and the elements, consistently with `==`.
    @inlinable
    public func hash(into hasher: inout Hasher) {
        hasher.combine(_count)
        for e in self { hasher.combine(e) }
    }
}

extension GoSlice: CustomStringConvertible, CustomDebugStringConvertible {
    /// The elements as Go's `fmt` prints a slice: `[1 2 3]` (`[]` when empty
    /// or nil).
    public var description: String {
        var s = "["
        var first = true
        for e in self {
            if !first { s += " " }
            first = false
            s += String(describing: e)
        }
        return s + "]"
    }

    /// The header and the elements: `GoSlice<Int>(len: 3, cap: 4) [1 2 3]`,
    /// or `GoSlice<Int>(nil)`.
    public var debugDescription: String {
        if isNil { return "GoSlice<\(Element.self)>(nil)" }
        return "GoSlice<\(Element.self)>(len: \(_count), cap: \(_capacity)) \(description)"
    }
}

/// `GoSlice` is not `Sendable`: like Go's slices, copies alias one mutable
/// backing array, so sharing them across threads without synchronization is
/// a data race. (Declared unavailable so no module can add the conformance.)
@available(*, unavailable, message: "GoSlice copies alias mutable memory, like Go's slices")
extension GoSlice: Sendable {}
