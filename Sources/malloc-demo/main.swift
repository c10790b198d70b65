// malloc-demo — a Swift program that links the `SpanAllocMalloc` product, so
// SpanAlloc is its malloc: the Swift runtime's allocations (class instances,
// array and string buffers, dictionaries) go through SpanAlloc, as its
// MemStats show. Prints one JSON object on stdout (MallocTests checks it):
//
//     swift run malloc-demo [count]
//
// Nothing here calls SpanHeap to allocate: every block counted below was
// requested by the Swift runtime through malloc.
import SpanAlloc
import SpanAllocMalloc

/// A class instance: allocated by swift_allocObject → swift_slowAlloc → malloc.
final class Node {
    let value: Int
    let next: Node?
    init(value: Int, next: Node?) {
        self.value = value
        self.next = next
    }
}

let count = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 20_000
let heap = SpanHeap.default

let before = heap.memStats

var list: Node? = nil
for i in 0..<count { list = Node(value: i, next: list) }

var arrays: [[Int]] = []
arrays.reserveCapacity(count)
for i in 0..<count { arrays.append(Array(repeating: i, count: i % 100 + 1)) }

var strings: [String] = []
for i in 0..<count { strings.append("string number \(i), long enough for heap storage") }

var dictionary: [Int: String] = [:]
for i in 0..<count { dictionary[i] = strings[i] }

let after = heap.memStats

/// Whether SpanAlloc owns the memory at `pointer`.
func owned(_ pointer: UnsafeRawPointer?) -> Bool { pointer.map(heap.owns) ?? false }

let objectOwned = owned(UnsafeRawPointer(Unmanaged.passUnretained(list!).toOpaque()))
let arrayOwned = arrays[count - 1].withUnsafeBufferPointer { owned(UnsafeRawPointer($0.baseAddress)) }
let stringOwned = strings[count - 1].utf8.withContiguousStorageIfAvailable { owned(UnsafeRawPointer($0.baseAddress)) } ?? false

// The runtime sizes array capacity with malloc_usable_size: 5 Ints need
// 32 + 40 = 72 bytes, SpanAlloc's class is 80 bytes, so capacity is 6
// (glibc's usable size for 72 bytes is 72, capacity 5).
let fiveInts = Array(repeating: 7, count: 5)

var sum = 0
var node = list
while let n = node { sum &+= n.value; node = n.next }
sum &+= arrays.reduce(0) { $0 &+ $1.count } &+ strings.reduce(0) { $0 &+ $1.utf8.count } &+ dictionary.count

print("""
    {"overrideActive":\(sa_override_active()),"count":\(count),"checksum":\(sum),\
    "objectOwned":\(objectOwned),"arrayOwned":\(arrayOwned),"stringOwned":\(stringOwned),\
    "arrayCapacityFor5Ints":\(fiveInts.capacity),\
    "mallocsBefore":\(before.mallocs),"mallocsAfter":\(after.mallocs),\
    "heapObjectsBefore":\(before.heapObjects),"heapObjectsAfter":\(after.heapObjects),\
    "memStats":\(heap.memStatsJSON)}
    """)
