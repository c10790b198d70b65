import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SPANALLOC='s memory-return items (scavenge=off|on|background,
/// scavenge_delay_ms, scavenge_cpu_percent, scavenge_floor,
/// scavenge_idle_ms, memlimit, memlimit_mode), natively (an exit-test child
/// sets the variable before its first allocator call) and under the
/// LD_PRELOAD library; the documented defaults; bad values reported on
/// stderr and ignored; the Swift API's round trips.
extension ScavengerTests {
    @Suite struct Config {
        /// The documented defaults (spanalloc.h), with no SPANALLOC.
        @Test func defaultsAreTheDocumentedOnes() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                unsetenv("SPANALLOC")
                Config.expectDefaults("no SPANALLOC")
            }
            expectChildPasses(r)
        }

        static func expectDefaults(_ what: String) {
            let c = scavengeConfig()
            childExpect(c.mode == SA_SCAVENGE_BACKGROUND, "\(what): mode \(c.mode), not background")
            childExpect(c.retain_bytes == 64 << 20 && c.retain_percent == 10 && c.delay_ms == 1000,
                       "\(what): retain \(c.retain_bytes), percent \(c.retain_percent), delay \(c.delay_ms)")
            childExpect(c.floor_bytes == 4 << 20 && c.idle_ms == 1000 && c.cpu_percent == 1,
                       "\(what): floor \(c.floor_bytes), idle \(c.idle_ms), cpu \(c.cpu_percent)")
            var mode = SA_MEMLIMIT_HARD
            childExpect(sa_memory_limit(&mode) == Int(bitPattern: UInt.max) && mode == SA_MEMLIMIT_SOFT,
                       "\(what): limit \(sa_memory_limit(nil)), mode \(mode)")
            let heap = SpanHeap.default
            childExpect(heap.memoryLimit == nil && heap.memoryLimitMode == .soft, "\(what): Swift limit \(String(describing: heap.memoryLimit))")
            childExpect(heap.scavenger == SpanHeap.Scavenger(), "\(what): Swift scavenger \(heap.scavenger)")
            let s = heap.memStats
            childExpect(s.memoryLimit == nil && !s.memoryLimitIsHard, "\(what): MemStats limit \(String(describing: s.memoryLimit))")
        }

        /// Every new item is parsed.
        @Test func everyNewItemIsParsed() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                setenv("SPANALLOC", "scavenge=on,scavenge_delay_ms=77,scavenge_cpu_percent=3,scavenge_floor=5M,"
                       + "scavenge_idle_ms=222,memlimit=300M,memlimit_mode=hard", 1)
                sa_free(sa_alloc(100, 0))
                let c = scavengeConfig()
                childExpect(c.mode == SA_SCAVENGE_ON && c.delay_ms == 77 && c.cpu_percent == 3 && c.floor_bytes == 5 << 20
                           && c.idle_ms == 222, "config mode \(c.mode) delay \(c.delay_ms) cpu \(c.cpu_percent) "
                           + "floor \(c.floor_bytes) idle \(c.idle_ms)")
                childExpect(c.retain_bytes == 64 << 20 && c.retain_percent == 10, "items not given changed")
                var mode = SA_MEMLIMIT_SOFT
                childExpect(sa_memory_limit(&mode) == 300 << 20 && mode == SA_MEMLIMIT_HARD,
                           "limit \(sa_memory_limit(nil)) mode \(mode)")
                let heap = SpanHeap.default
                let sc = heap.scavenger
                childExpect(sc.mode == .onFree && sc.delayMilliseconds == 77 && sc.cpuPercent == 3 && sc.floorBytes == 5 << 20
                           && sc.idleMilliseconds == 222, "Swift scavenger \(sc)")
                childExpect(heap.memoryLimit == 300 << 20 && heap.memoryLimitMode == .hard, "Swift limit")
                let s = heap.memStats
                childExpect(s.memoryLimit == 300 << 20 && s.memoryLimitIsHard, "MemStats limit \(String(describing: s.memoryLimit))")
            }
            let err = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
            #expect(!err.contains("ignored"), "valid items reported: \(err.suffix(600))")
            expectChildPasses(r)
        }

        /// scavenge=background and the other spellings of the mode; memlimit
        /// alone keeps the soft mode, memlimit_mode alone sets the mode of no
        /// limit; GiB and KiB suffixes.
        @Test func modeSpellingsAndSuffixes() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                setenv("SPANALLOC", "scavenge=off,scavenge=background,scavenge_floor=1536K,memlimit=2G", 1)
                let c = scavengeConfig()
                childExpect(c.mode == SA_SCAVENGE_BACKGROUND, "the last scavenge= item did not win: mode \(c.mode)")
                childExpect(c.floor_bytes == 1536 << 10, "floor \(c.floor_bytes)")
                var mode = SA_MEMLIMIT_HARD
                childExpect(sa_memory_limit(&mode) == 2 << 30 && mode == SA_MEMLIMIT_SOFT, "limit \(sa_memory_limit(nil)) mode \(mode)")
            }
            expectChildPasses(r)
        }

        /// Bad values are reported on stderr (naming the item) and ignored:
        /// the configuration stays at its defaults, and a good item after
        /// the bad ones still applies.
        @Test func badValuesAreReportedAndIgnored() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                setenv("SPANALLOC", Config.badItems.joined(separator: ",") + ",stats=0", 1)
                sa_free(sa_alloc(100, 0))
                Config.expectDefaults("bad items")
            }
            let err = r.map { String(decoding: $0.standardErrorContent, as: UTF8.self) } ?? ""
            for item in Self.badItems {
                #expect(err.contains("'\(item)' ignored"), "'\(item)' was not reported: \(err.suffix(1500))")
            }
            #expect(!err.contains("'stats=0' ignored"))
            expectChildPasses(r)
        }

        static let badItems = [
            "scavenge=sometimes", "scavenge_delay_ms=soon", "scavenge_cpu_percent=0", "scavenge_cpu_percent=101",
            "scavenge_cpu_percent=x", "scavenge_floor=12Q", "scavenge_floor", "scavenge_idle_ms=-5", "scavenge_idle_ms=",
            "memlimit=lots", "memlimit=", "memlimit_mode=medium", "memlimit_mode",
            // A signal a fault or the kernel relies on is not the profile's.
            "profile_signal=11", "profile_signal=9", "profile_signal=HUP",
        ]

        /// A bad item does not stop the good ones after it.
        @Test func goodItemsAfterBadOnesApply() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                setenv("SPANALLOC", "scavenge_floor=12Q,scavenge_idle_ms=333,memlimit_mode=medium,memlimit=100M", 1)
                let c = scavengeConfig()
                childExpect(c.idle_ms == 333 && c.floor_bytes == 4 << 20, "idle \(c.idle_ms) floor \(c.floor_bytes)")
                childExpect(sa_memory_limit(nil) == 100 << 20, "limit \(sa_memory_limit(nil))")
            }
            expectChildPasses(r)
        }

        /// SpanHeap.scavenger and setMemoryLimit round-trip through the C
        /// configuration; a later set wins over SPANALLOC.
        @Test func swiftSettingsRoundTrip() async {
            let r = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
                setenv("SPANALLOC", "scavenge=off,memlimit=1G", 1)
                let heap = SpanHeap.default
                let wanted = SpanHeap.Scavenger(mode: .background, retainBytes: 3 << 20, retainPercent: 7, delayMilliseconds: 40,
                                                floorBytes: 2 << 20, idleMilliseconds: 300, cpuPercent: 5)
                heap.scavenger = wanted
                childExpect(heap.scavenger == wanted, "read back \(heap.scavenger)")
                let c = scavengeConfig()
                childExpect(c.mode == SA_SCAVENGE_BACKGROUND && c.retain_bytes == 3 << 20 && c.retain_percent == 7
                           && c.delay_ms == 40 && c.floor_bytes == 2 << 20 && c.idle_ms == 300 && c.cpu_percent == 5,
                           "C config mode \(c.mode) retain \(c.retain_bytes) delay \(c.delay_ms) floor \(c.floor_bytes)")
                heap.scavenger.mode = .off
                childExpect(scavengeConfig().mode == SA_SCAVENGE_OFF, "mode off did not take")
                heap.scavenger.mode = .onFree
                childExpect(scavengeConfig().mode == SA_SCAVENGE_ON, "mode onFree did not take")
                childExpect(heap.setMemoryLimit(64 << 20, mode: .hard) == 1 << 30, "previous limit not returned")
                childExpect(heap.memoryLimit == 64 << 20 && heap.memoryLimitMode == .hard, "hard 64 MiB did not take")
                childExpect(heap.setMemoryLimit(nil) == 64 << 20, "previous limit not returned")
                childExpect(heap.memoryLimit == nil, "the limit was not removed")
                childExpect(sa_set_memory_limit(5 << 20, SA_MEMLIMIT_SOFT) == Int(bitPattern: UInt.max), "C: previous limit not SIZE_MAX")
                childExpect(heap.memoryLimit == 5 << 20 && heap.memoryLimitMode == .soft, "C limit not seen from Swift")
            }
            expectChildPasses(r)
        }

        /// The same items reach the LD_PRELOAD library (idle_return.c prints
        /// what the heap got).
        @Test(.enabled(if: PreloadProgram.wanted, "needs .build/spanalloc-preload/libspanalloc.so (scripts/build-preload.sh)"),
              .enabled(if: !Sanitizer.any, "the sanitizer owns malloc"))
        func itemsReachThePreloadedMalloc() throws {
            let dir = try PreloadProgram.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let binary = try PreloadProgram.build(in: dir)
            let cases: [(env: String?, expected: String)] = [
                (nil, "mode=2 retain=67108864 percent=10 delay_ms=1000 floor=4194304 idle_ms=1000 cpu_percent=1 "
                      + "memlimit=18446744073709551615 memlimit_mode=soft"),
                ("scavenge=on,scavenge_delay_ms=77,scavenge_cpu_percent=3,scavenge_floor=5M,scavenge_idle_ms=222,"
                 + "memlimit=300M,memlimit_mode=hard",
                 "mode=1 retain=67108864 percent=10 delay_ms=77 floor=5242880 idle_ms=222 cpu_percent=3 "
                 + "memlimit=314572800 memlimit_mode=hard"),
                ("scavenge=off", "mode=0 "),
                ("scavenge=background,memlimit=1G", "mode=2 "),
                ("scavenge=sometimes,scavenge_cpu_percent=0,memlimit=lots,memlimit_mode=medium",
                 "mode=2 retain=67108864 percent=10 delay_ms=1000 floor=4194304 idle_ms=1000 cpu_percent=1 "
                 + "memlimit=18446744073709551615 memlimit_mode=soft"),
            ]
            for c in cases {
                let out = try PreloadProgram.run(binary, "config", spanalloc: c.env)
                #expect(out.status == 0, "SPANALLOC=\(c.env ?? "(unset)"): \(out.text.suffix(1500))")
                #expect(out.text.contains("config: " + c.expected), "SPANALLOC=\(c.env ?? "(unset)"): \(out.text.suffix(1500))")
            }
            let bad = try PreloadProgram.run(binary, "config", spanalloc: "scavenge=sometimes,scavenge_cpu_percent=0,memlimit=lots,memlimit_mode=medium")
            for item in ["scavenge=sometimes", "scavenge_cpu_percent=0", "memlimit=lots", "memlimit_mode=medium"] {
                #expect(bad.text.contains("'\(item)' ignored"), "'\(item)' not reported under LD_PRELOAD: \(bad.text.suffix(1500))")
            }
            let limited = try PreloadProgram.run(binary, "config", spanalloc: "memlimit=1G")
            #expect(limited.text.contains("memlimit=1073741824 memlimit_mode=soft"), "\(limited.text.suffix(1500))")
        }
    }
}
