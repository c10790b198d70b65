// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "SpanAlloc",
    products: [
        .library(name: "SpanAlloc", targets: ["SpanAlloc"]),
        .executable(name: "bench", targets: ["bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms", from: "1.0.0"),
    ],
    targets: [
        // The allocator, in C11. Release builds are -O2 without assertions.
        .target(
            name: "CSpanAlloc",
            cSettings: [
                .define("NDEBUG", .when(configuration: .release)),
                .define("_GNU_SOURCE"),
            ]
        ),
        // The Swift face: SpanHeap, MemStats, SpanInfo, GoSlice, GoChan.
        .target(name: "SpanAlloc", dependencies: ["CSpanAlloc"]),
        // Allocator workloads in C so every allocator runs identical code.
        .target(name: "CBenchKit", path: "Sources/CBenchKit"),
        .executableTarget(
            name: "bench",
            dependencies: [
                "SpanAlloc", "CSpanAlloc", "CBenchKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
            ]
        ),
        // HeapTestLock and the .heapShared / .heapExclusive traits, for every test target.
        .target(name: "SpanAllocTestSupport", dependencies: ["SpanAlloc"], path: "Tests/SpanAllocTestSupport"),
        .testTarget(name: "SpanAllocTests", dependencies: ["SpanAlloc", "CSpanAlloc", "SpanAllocTestSupport"]),
        .testTarget(name: "GoSliceTests", dependencies: ["SpanAlloc", "CSpanAlloc"]),
        .testTarget(name: "GoChanTests", dependencies: ["SpanAlloc", "CSpanAlloc"]),
        .testTarget(name: "BenchTests", dependencies: ["SpanAlloc", "CSpanAlloc"]),
        // Stress, fault injection, the bad-input catalogue, ASan and memory return (docs/reliability.md).
        .testTarget(name: "ReliabilityTests", dependencies: ["SpanAlloc", "CSpanAlloc", "SpanAllocTestSupport"]),
    ]
)
