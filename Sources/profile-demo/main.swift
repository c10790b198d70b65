// profile-demo — a Swift program linked with the `SpanAllocMalloc` product,
// with allocation sites of known figures, for the heap profiler's check
// (scripts/profile-check.sh, docs/profiling.md):
//
//     SPANALLOC=profile=heap.pb.gz,profile_rate=65536 .build/debug/profile-demo
//     go tool pprof -top .build/debug/profile-demo heap.pb.gz
//
//   bigSite    holds 100 blocks of 1 MiB
//   smallSite  holds 131072 blocks of 96 bytes (12 MiB)
//   churnSite  allocates 524288 blocks of 1 KiB (512 MiB) in batches and frees them all
//
// Prints the true figures as "site alloc_bytes inuse_bytes" lines.
#if canImport(Glibc)
import Glibc
#endif
import SpanAllocMalloc

@inline(never)
func bigSite() -> [UnsafeMutableRawPointer] {
    (0..<100).map { _ in malloc(1 << 20)! }
}

@inline(never)
func smallSite() -> [UnsafeMutableRawPointer] {
    (0..<131_072).map { _ in malloc(96)! }
}

@inline(never)
func churnSite() {
    var batch: [UnsafeMutableRawPointer] = []
    batch.reserveCapacity(4096)
    for _ in 0..<128 {
        for _ in 0..<4096 { batch.append(malloc(1024)!) }
        for p in batch { free(p) }
        batch.removeAll(keepingCapacity: true)
    }
}

let big = bigSite()
let small = smallSite()
churnSite()
print("bigSite \(100 << 20) \(100 << 20)")
print("smallSite \(131_072 * 96) \(131_072 * 96)")
print("churnSite \(524_288 * 1024) 0")
withExtendedLifetime((big, small)) {}
