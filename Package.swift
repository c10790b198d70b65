// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "SpanAlloc",
    products: [
        .library(name: "SpanAlloc", targets: ["SpanAlloc"]),
        // Linked into an executable, makes SpanAlloc the allocator of the whole
        // process (malloc, free, …, Swift runtime included). See docs/malloc.md.
        .library(name: "SpanAllocMalloc", targets: ["SpanAllocMalloc"]),
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
                // The heap profiler walks stacks by frame pointer (docs/profiling.md);
                // leaf functions, which call nothing that walks, keep rbp free.
                .unsafeFlags(["-fno-omit-frame-pointer", "-momit-leaf-frame-pointer"]),
            ]
        ),
        // The libc allocation API over CSpanAlloc. Only executables that want
        // SpanAlloc as their malloc link it; scripts/build-preload.sh builds the
        // same sources into the LD_PRELOAD library.
        .target(
            name: "SpanAllocMalloc",
            dependencies: ["CSpanAlloc"],
            cSettings: [
                .define("_GNU_SOURCE"),
                .define("NDEBUG", .when(configuration: .release)),
                // The core's inline fast paths (sa_fastpath.h), so malloc and
                // free cost no extra call.
                .headerSearchPath("../CSpanAlloc"),
                .unsafeFlags(["-fno-omit-frame-pointer", "-momit-leaf-frame-pointer"]),
            ]
        ),
        // A Swift program whose malloc is SpanAlloc's; prints what its MemStats saw.
        .executableTarget(name: "malloc-demo", dependencies: ["SpanAllocMalloc", "SpanAlloc"]),
        // A Swift program with allocation sites of known figures, for the heap profiler's check.
        .executableTarget(name: "profile-demo", dependencies: ["SpanAllocMalloc"]),
        // The Swift face: SpanHeap, MemStats, SpanInfo, GoSlice, GoChan.
        .target(name: "SpanAlloc", dependencies: ["CSpanAlloc"]),
        // Allocator workloads in C so every allocator runs identical code.
        .target(name: "CBenchKit", dependencies: ["CSpanAlloc"], path: "Sources/CBenchKit"),
        // `bench explain`: the Go allocator questions answered by live experiments.
        .target(name: "SpanAllocExplain", dependencies: ["SpanAlloc", "CSpanAlloc"]),
        .executableTarget(
            name: "bench",
            dependencies: [
                "SpanAlloc", "CSpanAlloc", "CBenchKit", "SpanAllocExplain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
            ]
        ),
        // HeapTestLock and the .heapShared / .heapExclusive traits, for every test target.
        .target(name: "SpanAllocTestSupport", dependencies: ["SpanAlloc"], path: "Tests/SpanAllocTestSupport"),
        .testTarget(name: "SpanAllocTests", dependencies: ["SpanAlloc", "CSpanAlloc", "SpanAllocTestSupport"]),
        .testTarget(name: "GoSliceTests", dependencies: ["SpanAlloc", "CSpanAlloc", "SpanAllocTestSupport"]),
        .testTarget(name: "GoChanTests", dependencies: ["SpanAlloc", "CSpanAlloc", "SpanAllocTestSupport"]),
        .testTarget(name: "ExplainTests", dependencies: ["SpanAllocExplain", "SpanAlloc", "CSpanAlloc", "SpanAllocTestSupport"]),
        .testTarget(name: "BenchTests", dependencies: ["SpanAlloc", "CSpanAlloc"]),
        // Stress, fault injection, the bad-input catalogue, ASan and memory return (docs/reliability.md).
        .testTarget(name: "ReliabilityTests", dependencies: ["SpanAlloc", "CSpanAlloc", "SpanAllocTestSupport"]),
        // Drives processes only (the C test program, real programs under
        // LD_PRELOAD, malloc-demo); it must not link SpanAllocMalloc itself.
        .testTarget(name: "MallocTests"),
    ],
    // Swift 6 language mode for every target: full data-race checking, which
    // GoChan's `sending` transfers and GoSlice's non-Sendability rely on.
    swiftLanguageModes: [.v6]
)
