import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

extension CoreAllocatorTests {
    /// MemStats, its JSON form, and the alloc/free hook.
    @Suite struct Stats {
        /// Allocating moves every count by exactly what was allocated;
        /// freeing everything brings the live counts back to the baseline.
        @Test func statsReturnToBaseline() {
            heap.flushThreadCache()
            let s0 = heap.memStats
            var live: [(UnsafeMutableRawPointer, Int)] = []
            for go in goSizeClasses {
                for i in 0..<4 {
                    let p = heap.allocate(byteCount: go.size - (i % 2), noscan: i >= 2)
                    live.append((p, go.index))
                }
            }
            for size in [40000, 1 << 20, 9 << 20] {
                live.append((heap.allocate(byteCount: size), 0))
            }
            let n = UInt64(live.count)
            let bytes = UInt64(live.reduce(0) { $0 + heap.usableSize(of: $1.0) })
            let s1 = heap.memStats
            #expect(s1.heapObjects == s0.heapObjects + n)
            #expect(s1.heapAlloc == s0.heapAlloc + bytes)
            #expect(s1.alloc == s1.heapAlloc)
            #expect(s1.mallocs == s0.mallocs + n)
            #expect(s1.frees == s0.frees)
            #expect(s1.totalAlloc == s0.totalAlloc + bytes)
            #expect(s1.largeAllocs == s0.largeAllocs + 3)
            for go in goSizeClasses {
                #expect(s1.bySize[go.index].mallocs == s0.bySize[go.index].mallocs + 4, "class \(go.index)")
                #expect(s1.bySize[go.index].size == go.size)
            }
            #expect(s1.bySize.count == Int(SA_NUM_CLASSES))
            #expect(s1.heapInuse >= s1.heapAlloc)
            #expect(s1.heapSys == s1.heapInuse + s1.heapIdle, "HeapSys = HeapInuse + HeapIdle, as in Go")
            #expect(s1.heapReleased <= s1.heapIdle)
            #expect(s1.sys >= s1.heapSys + s1.metadataSys)
            #expect(s1.arenasMapped >= 1)
            #expect(s1.spansInuse >= UInt64(2 * goSizeClasses.count + 3))
            for (p, _) in live { heap.deallocate(p) }
            heap.flushThreadCache()
            let s2 = heap.memStats
            #expect(s2.heapObjects == s0.heapObjects)
            #expect(s2.heapAlloc == s0.heapAlloc)
            #expect(s2.alloc == s0.alloc)
            #expect(s2.frees == s0.frees + n)
            #expect(s2.mallocs &- s2.frees == s0.mallocs &- s0.frees)
            #expect(s2.largeFrees == s0.largeFrees + 3)
            #expect(s2.totalAlloc == s1.totalAlloc, "cumulative")
            for go in goSizeClasses {
                #expect(s2.bySize[go.index].frees == s0.bySize[go.index].frees + 4, "class \(go.index)")
            }
            #expect(s2.heapSys == s2.heapInuse + s2.heapIdle)
        }

        @Test func memStatsJSONHasEveryField() throws {
            heap.flushThreadCache()
            let json = heap.memStatsJSON
            let stats = heap.memStats
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8))
            let dict = try #require(object as? [String: Any], "a JSON object: \(json.prefix(200))")
            // Accept heap_alloc, heapAlloc or HeapAlloc.
            func normalized(_ s: String) -> String { s.lowercased().replacingOccurrences(of: "_", with: "") }
            let values = Dictionary(dict.map { (normalized($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })
            for child in Mirror(reflecting: stats).children {
                guard let label = child.label else { continue }
                let key = normalized(label)
                guard let value = values[key] else {
                    Issue.record("JSON lacks \(label): \(json.prefix(300))")
                    continue
                }
                if let number = child.value as? UInt64 {
                    #expect((value as? NSNumber)?.uint64Value == number, "\(label)")
                }
            }
            let bySize = try #require(values["bysize"] as? [Any])
            #expect(bySize.count == Int(SA_NUM_CLASSES) || bySize.count == Int(SA_NUM_CLASSES) - 1)
            // The length query matches the text.
            #expect(sa_mem_stats_json(nil, 0) >= json.utf8.count - 64)
        }

        /// `MemStats` encodes with its property names as keys (Go's
        /// spelling: `heapInuse`, `spansInuse`) and decodes to an equal
        /// value, the per-class counts and the optional limit included.
        @Test func memStatsCodableRoundTrip() throws {
            let p = heap.allocate(byteCount: 48)
            defer { heap.deallocate(p) }
            let stats = heap.memStats
            let data = try JSONEncoder().encode(stats)
            let decoded = try JSONDecoder().decode(MemStats.self, from: data)
            #expect(decoded == stats)
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect((object["heapInuse"] as? NSNumber)?.uint64Value == stats.heapInuse)
            #expect((object["spansInuse"] as? NSNumber)?.uint64Value == stats.spansInuse)
            #expect(object["spansInUse"] == nil, "the former name is not a key")
            let bySize = try #require(object["bySize"] as? [[String: Any]])
            #expect(bySize.count == stats.bySize.count)
            // Every stored property is a key (a field added later is encoded too).
            for child in Mirror(reflecting: stats).children {
                guard let label = child.label, label != "memoryLimit" || stats.memoryLimit != nil else { continue }
                #expect(object[label] != nil, "\(label) missing from the encoding")
            }
        }

        /// The former name `spansInUse` still compiles (deprecated) and reads
        /// and writes ``MemStats/spansInuse``.
        @available(*, deprecated)
        @Test func deprecatedSpansInUseAlias() {
            var stats = heap.memStats
            #expect(stats.spansInUse == stats.spansInuse)
            stats.spansInUse = 7
            #expect(stats.spansInuse == 7)
        }

        /// The hook sees one alloc event and one free event per object, with
        /// the object's span, and nothing once removed.
        @Test func hookSeesEveryAllocAndFree() {
            final class Log: Sendable {
                struct Event { var kind: Int32; var address: UInt; var size: Int; var span: sa_span_info }
                let events = Locked<[Event]>([])
            }
            let log = Log()
            sa_set_hook({ kind, ptr, size, span, ctx in
                let log = Unmanaged<Log>.fromOpaque(ctx!).takeUnretainedValue()
                let event = Log.Event(kind: kind, address: UInt(bitPattern: ptr), size: size, span: span.pointee)
                log.events.withLock { $0.append(event) }
            }, Unmanaged.passUnretained(log).toOpaque())
            let sizes = [1, 8, 100, 1000, 5000, 32768, 40000, 1 << 20]
            var objects: [(UnsafeMutableRawPointer, Int)] = []
            for (i, size) in sizes.enumerated() {
                for _ in 0..<4 { objects.append((heap.allocate(byteCount: size, noscan: i % 2 == 0), size)) }
            }
            let spans = objects.map { heap.span(containing: $0.0)! }
            for (p, _) in objects { heap.deallocate(p) }
            sa_set_hook(nil, nil)
            let countAtRemoval = log.events.withLock { $0.count }
            heap.deallocate(heap.allocate(byteCount: 64))
            heap.deallocate(heap.allocate(byteCount: 100_000))

            let events = log.events.withLock { $0 }
            for ((p, size), span) in zip(objects, spans) {
                let mine = events.filter { $0.address == p.address }
                #expect(mine.map(\.kind) == [Int32(SA_EVENT_ALLOC), Int32(SA_EVENT_FREE)],
                        "events for a \(size)-byte object")
                for e in mine {
                    #expect(e.size == size || e.size == span.elementSize,
                            "hook size \(e.size) for a \(size)-byte object")
                    #expect(e.span.id == span.id)
                    #expect(Int(e.span.size_class) == span.sizeClass)
                    #expect(Int(e.span.span_class) == span.spanClass)
                }
            }
            #expect(events.count == countAtRemoval, "no events once the hook is removed")
            #expect(events.count >= 2 * objects.count)
        }
    }
}
