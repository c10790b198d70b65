// swift-tools-version: 6.1
// SpanAllocMetrics: MemStats as swift-metrics gauges and counters. A package of
// its own beside the root, so that depending on SpanAlloc alone does not bring
// in swift-metrics.
import PackageDescription

let package = Package(
    name: "SpanAllocMetrics",
    products: [
        .library(name: "SpanAllocMetrics", targets: ["SpanAllocMetrics"]),
    ],
    dependencies: [
        .package(name: "SpanAlloc", path: ".."),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        // Tests only: the DocC article's Prometheus example, compiled and run.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .target(
            name: "SpanAllocMetrics",
            dependencies: [
                .product(name: "SpanAlloc", package: "SpanAlloc"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "SpanAllocMetricsTests",
            dependencies: [
                "SpanAllocMetrics",
                .product(name: "SpanAlloc", package: "SpanAlloc"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
    ]
)
