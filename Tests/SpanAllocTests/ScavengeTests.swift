import CSpanAlloc
import SpanAlloc
import Testing

extension CoreAllocatorTests {
    /// The scavenger returns idle pages to the OS.
    @Suite struct Scavenger {
        /// 256 MiB of large objects are touched, freed and scavenged: the
        /// process's resident memory (/proc/self/statm) drops by most of it.
        @Test func scavengeLowersResidentMemory() throws {
            let chunk = 8 << 20, count = 32, total = chunk * count
            // Only this test's sa_scavenge releases meanwhile: the background
            // scavenger would release other tests' idle pages (and idle
            // threads' caches) between the RSS readings.
            let saved = heap.scavenger
            var off = saved
            off.mode = .off
            heap.scavenger = off
            defer { heap.scavenger = saved }
            heap.scavenge()
            let s0 = heap.memStats
            let r0 = residentBytes()
            var chunks: [UnsafeMutableRawPointer] = []
            for _ in 0..<count {
                let p = try #require(heap.allocateIfPossible(byteCount: chunk, noscan: true))
                for offset in stride(from: 0, to: chunk, by: osPageSize) {
                    (p + offset).storeBytes(of: 0xC3, as: UInt8.self)
                }
                chunks.append(p)
            }
            let r1 = residentBytes()
            #expect(r1 - r0 >= total * 9 / 10, "touching made the chunks resident (\(r0) → \(r1))")
            for p in chunks { heap.deallocate(p) }
            let released = heap.scavenge()
            let r2 = residentBytes()
            let s2 = heap.memStats
            #expect(r1 - r2 >= total * 3 / 4,
                    "resident \(r1 >> 20) MiB → \(r2 >> 20) MiB after scavenge (released \(released >> 20) MiB)")
            #expect(s2.heapReleased >= UInt64(total * 3 / 4))
            #expect(s2.heapReleased <= s2.heapIdle)
            #expect(s2.pagesScavenged - s0.pagesScavenged >= UInt64(total * 3 / 4 / spanPage))
            #expect(s2.scavengeRuns > s0.scavengeRuns)
            // Released pages serve new objects again, zeroed by the OS.
            let again = try #require(heap.allocateIfPossible(byteCount: chunk, noscan: true, zeroed: true))
            #expect(again.load(as: UInt8.self) == 0)
            #expect((again + chunk - 1).load(as: UInt8.self) == 0)
            again.storeBytes(of: 1, as: UInt8.self)
            heap.deallocate(again)
        }

        @Test func scavengeConfigRoundTrips() {
            var saved = sa_scavenge_config()
            sa_get_scavenge_config(&saved)
            var changed = saved
            changed.retain_bytes = 123 << 20
            changed.retain_percent = 7
            changed.delay_ms = 4321
            changed.mode = saved.mode == SA_SCAVENGE_OFF ? SA_SCAVENGE_ON : SA_SCAVENGE_OFF
            changed.floor_bytes = 5 << 20
            changed.idle_ms = 777
            changed.cpu_percent = 3
            sa_set_scavenge_config(&changed)
            var read = sa_scavenge_config()
            sa_get_scavenge_config(&read)
            sa_set_scavenge_config(&saved)
            #expect(read.retain_bytes == 123 << 20)
            #expect(read.retain_percent == 7)
            #expect(read.delay_ms == 4321)
            #expect(read.mode == changed.mode)
            #expect(read.floor_bytes == 5 << 20 && read.idle_ms == 777 && read.cpu_percent == 3)
        }
    }
}
