// swift-tools-version: 6.1
// The package-benchmark suite of SpanAlloc's Swift API. A package of its own
// so that the root's `swift build` / `swift test` never build the benchmark
// dependencies. Run from this folder:
//
//   swift package --allow-writing-to-package-directory benchmark
//
import Foundation
import PackageDescription

// The root package is `..`; SwiftPM names a path dependency after its folder,
// so derive that name instead of hard-coding it (a clone may use any name).
let rootIdentity = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "SpanAllocBenchmarks",
    dependencies: [
        // The default trait pulls a package that is not available here; MallocInterposer gives malloc counts.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(path: ".."),
    ],
    targets: [
        .executableTarget(
            name: "SpanHeapBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SpanAlloc", package: rootIdentity),
            ],
            path: "Benchmarks/SpanHeapBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
