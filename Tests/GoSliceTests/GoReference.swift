// An independent statement of Go 1.27's slice growth, written from the rule
// in src/runtime/slice.go and src/runtime/msize.go with Go's size-class table
// typed in by hand (src/internal/runtime/gc/sizeclasses.go, class_to_size).
// It does not call SpanAlloc: the tests compare GoSlice against it.

import SpanAlloc

enum GoReference {
    /// Go's `class_to_size`: class 0 (large) and the 67 small classes.
    static let classToSize: [Int] = [
        0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
        288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280,
        1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528,
        6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072,
        20480, 21760, 24576, 27264, 28672, 32768,
    ]

    /// The capacity before rounding: `needed` when it is more than double;
    /// double below 256; else grow by a quarter plus 192 until it fits.
    static func nextCapacity(needed: Int, old: Int) -> Int {
        if needed > old * 2 { return needed }
        if old < 256 { return old * 2 }
        var c = old
        while c < needed { c += (c + 768) / 4 }
        return c
    }

    /// Usable bytes of the block Go allocates for `bytes` bytes.
    static func roundedBytes(_ bytes: Int, pointers: Bool) -> Int {
        guard bytes <= 32768 - 8 else {
            return (bytes + 8191) / 8192 * 8192
        }
        let header = pointers && bytes > 512 ? 8 : 0
        let block = classToSize.first { $0 >= bytes + header }!
        return block - header
    }

    /// The capacity after appending to a slice of capacity `old` so that it
    /// holds `needed` elements of `size` bytes.
    static func grownCapacity(needed: Int, old: Int, size: Int, pointers: Bool) -> Int {
        if size == 0 { return needed }
        let c = nextCapacity(needed: needed, old: old)
        return roundedBytes(c * size, pointers: pointers) / size
    }

    /// The capacities a slice passes through when elements are appended one
    /// at a time from empty until the capacity reaches `limit` elements.
    static func capacitiesAppendingOne(size: Int, pointers: Bool, limit: Int) -> [Int] {
        var caps: [Int] = []
        var cap = 0
        while cap < limit {
            cap = grownCapacity(needed: cap + 1, old: cap, size: size, pointers: pointers)
            caps.append(cap)
        }
        return caps
    }
}
