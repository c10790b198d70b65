// Go's zero values, for the element types that have one.

/// A type with a zero value in Go's sense: the value every slot of a new or
/// grown ``GoSlice`` holds before it is written.
///
/// Go gives every type a zero value (`0`, `false`, `""`, `nil`); Swift does
/// not, and an all-zero bit pattern is not a valid value of every trivial
/// type (a non-optional `UnsafePointer<T>`, `UnsafeRawPointer`,
/// `OpaquePointer` or `Unmanaged<T>` must not be null). So `GoSlice` fills
/// slots with zeros only for element types that conform:
///
/// | Conforming type | `goZeroValue` |
/// | --- | --- |
/// | `Int`, `Int8` … `Int64`, `UInt`, `UInt8` … `UInt64` | `0` |
/// | `Float`, `Double` | `0.0` |
/// | `Bool` | `false` |
/// | `Optional` (any wrapped type) | `nil` (Go's nil pointer, interface, map, channel) |
/// | `String` | `""` |
/// | `GoSlice` | the nil slice |
///
/// Conform a type of your own when it has a meaningful zero, for example a
/// struct of numbers:
///
/// ```swift
/// struct Point { var x = 0.0, y = 0.0 }
/// extension Point: GoZeroValue {
///     static var goZeroValue: Point { Point() }
/// }
/// let points = GoSlice<Point>(length: 8)     // make([]Point, 8)
/// ```
///
/// `GoSlice` writes the zero value by zeroing memory when the type is
/// trivial and ``goZeroValue`` is the all-zero bit pattern; otherwise it
/// stores copies of ``goZeroValue``. For element types without a zero value,
/// use ``GoSlice/init(length:capacity:zero:)``.
public protocol GoZeroValue {
    /// The value a slot holds before anything is written to it (Go's zero
    /// value of the type).
    static var goZeroValue: Self { get }
}

extension Int: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: Int { 0 }
}

extension Int8: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: Int8 { 0 }
}

extension Int16: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: Int16 { 0 }
}

extension Int32: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: Int32 { 0 }
}

extension Int64: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: Int64 { 0 }
}

extension UInt: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: UInt { 0 }
}

extension UInt8: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: UInt8 { 0 }
}

extension UInt16: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: UInt16 { 0 }
}

extension UInt32: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: UInt32 { 0 }
}

extension UInt64: GoZeroValue {
    /// `0`.
    @inlinable public static var goZeroValue: UInt64 { 0 }
}

extension Float: GoZeroValue {
    /// `0.0` (positive zero, the all-zero bit pattern).
    @inlinable public static var goZeroValue: Float { 0 }
}

extension Double: GoZeroValue {
    /// `0.0` (positive zero, the all-zero bit pattern).
    @inlinable public static var goZeroValue: Double { 0 }
}

extension Bool: GoZeroValue {
    /// `false`.
    @inlinable public static var goZeroValue: Bool { false }
}

extension Optional: GoZeroValue {
    /// `nil`, Go's zero value of pointers, interfaces, maps and channels.
    @inlinable public static var goZeroValue: Wrapped? { nil }
}

extension String: GoZeroValue {
    /// `""`, Go's zero value of strings.
    @inlinable public static var goZeroValue: String { "" }
}

extension GoSlice: GoZeroValue {
    /// The nil slice, Go's zero value of slices.
    @inlinable public static var goZeroValue: GoSlice { GoSlice() }
}
