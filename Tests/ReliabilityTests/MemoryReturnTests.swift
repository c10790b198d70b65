import CSpanAlloc
import Foundation
import SpanAlloc
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// After a peak of 1 GiB of live memory is freed, the scavenger gives it
/// back: resident memory falls to within 10% + 8 MiB of the level before
/// the peak (/proc/self/statm).
extension ReliabilityTests {
    @Suite struct MemoryReturn {
        static let peak = 1 << 30
        static let slack = 8 << 20

        static func touchPages(_ p: UnsafeMutableRawPointer, _ size: Int) {
            for o in stride(from: 0, to: size, by: 4096) { p.storeBytes(of: 0xA5, toByteOffset: o, as: UInt8.self) }
            p.storeBytes(of: 0xA5, toByteOffset: size - 1, as: UInt8.self)
        }

        /// An eighth of the peak in small objects of several classes, the
        /// rest in large objects from 64 KiB to 4 MiB, every page written;
        /// then all freed from two threads and `SpanHeap.default.scavenge()`.
        ///
        /// Span structures stay resident after their spans are freed (as in
        /// Go, they are recycled, never unmapped): about 256 bytes per span,
        /// so a peak made only of 8 KiB small-object spans would keep ~1.5%
        /// of it (16 MiB per GiB) — the figure is printed.
        @Test(.enabled(if: !Sanitizer.any, "sanitizer shadow memory is resident and is not returned by scavenging"))
        func residentMemoryFallsAfterAGigabytePeak() throws {
            spanHeap.flushThreadCache()
            spanHeap.scavenge()
            let s0 = spanHeap.memStats
            let r0 = residentMemory()
            var blocks: [UnsafeMutableRawPointer] = []
            var live = 0
            let smallSizes = [256, 1024, 4096, 24576]
            var i = 0
            while live < Self.peak / 8 {
                let size = smallSizes[i % smallSizes.count]
                i += 1
                let p = try #require(sa_alloc(size, UInt32(SA_NOSCAN)))
                Self.touchPages(p, size)
                blocks.append(p)
                live += size
            }
            while live < Self.peak {
                let size = min((64 << 10) << (i % 7), Self.peak - live + Int(SA_PAGE_SIZE))
                i += 1
                let p = try #require(sa_alloc(size, UInt32(SA_NOSCAN)))
                Self.touchPages(p, size)
                blocks.append(p)
                live += size
            }
            let spansAtPeak = spanHeap.memStats.spansInuse
            let r1 = residentMemory()
            #expect(r1 - r0 >= Self.peak * 9 / 10, "the peak is resident: \(r0 >> 20) → \(r1 >> 20) MiB")

            // Free half on this thread and half on another (remote frees).
            let half = blocks.count / 2
            let others = blocks[half...].map { UInt(bitPattern: $0) }
            ThreadGang.run(1) { _ in
                for a in others { sa_free(UnsafeMutableRawPointer(bitPattern: a)) }
            }
            for p in blocks[..<half] { sa_free(p) }
            spanHeap.flushThreadCache()
            let released = spanHeap.scavenge()
            let r2 = residentMemory()
            let s2 = spanHeap.memStats
            let limit = r0 + r0 / 10 + Self.slack
            print("memory return: resident \(r0 >> 20) MiB before, \(r1 >> 20) MiB at the 1 GiB peak, "
                  + "\(r2 >> 20) MiB after scavenge (limit \(limit >> 20) MiB, released \(released >> 20) MiB; "
                  + "\(spansAtPeak) spans at the peak, metadata mapped +\((s2.metadataSys - s0.metadataSys) >> 20) MiB)")
            #expect(r2 <= limit, "resident after scavenge \(r2 >> 20) MiB > \(limit >> 20) MiB")
            #expect(released >= Self.peak * 9 / 10)
        }

        /// The same through the preloaded malloc (docs/malloc.md), when the
        /// drop-in library has been built: a C program mallocs 1 GiB, frees
        /// it, asks SpanAlloc to scavenge via malloc_trim, and reports its
        /// resident memory before, at the peak and after.
        /// scripts/test.sh builds the library first and sets
        /// SPANALLOC_REQUIRE_PRELOAD=1, so there a missing library fails
        /// the test instead of skipping it.
        @Test(.enabled(if: FileManager.default.fileExists(atPath: MemoryReturn.preloadLibrary)
                           || ProcessInfo.processInfo.environment["SPANALLOC_REQUIRE_PRELOAD"] != nil,
                       "needs .build/spanalloc-preload/libspanalloc.so (scripts/build-preload.sh)"),
              .enabled(if: !Sanitizer.any, "the sanitizer owns malloc"))
        func residentMemoryFallsUnderThePreloadedMalloc() throws {
            try #require(FileManager.default.fileExists(atPath: Self.preloadLibrary),
                         "\(Self.preloadLibrary) missing: run scripts/build-preload.sh")
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spanalloc-return-\(getpid())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let source = dir.appendingPathComponent("peak.c"), binary = dir.appendingPathComponent("peak")
            try Self.peakProgram.write(to: source, atomically: true, encoding: .utf8)
            #expect(try Self.run("/usr/bin/env", ["cc", "-O1", "-o", binary.path, source.path]).status == 0)
            let out = try Self.run(binary.path, [], environment: ["LD_PRELOAD": Self.preloadLibrary])
            #expect(out.status == 0, "\(out.text)")
            let figures = out.text.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            try #require(figures.count == 3, "the program prints three figures: \(out.text)")
            let (r0, r1, r2) = (figures[0], figures[1], figures[2])
            print("memory return (LD_PRELOAD): \(r0 >> 20) → \(r1 >> 20) → \(r2 >> 20) MiB")
            #expect(r1 - r0 >= Self.peak * 9 / 10)
            #expect(r2 <= r0 + r0 / 10 + Self.slack)
        }

        static var preloadLibrary: String {
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent(".build/spanalloc-preload/libspanalloc.so").path
        }

        static let peakProgram = #"""
            #include <malloc.h>
            #include <stdio.h>
            #include <stdlib.h>
            #include <string.h>
            #include <unistd.h>
            static long resident(void) {
                long size, res; FILE *f = fopen("/proc/self/statm", "r");
                if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) return -1;
                fclose(f); return res * sysconf(_SC_PAGESIZE);
            }
            int main(void) {
                enum { N = 1024 };
                static char *blocks[N];
                malloc_trim(0);
                long r0 = resident();
                for (int i = 0; i < N; i++) {
                    size_t size = i % 2 ? (1 << 20) : (1 << 20) - 4096 * (i % 5);
                    blocks[i] = malloc(i < N / 2 ? 16384 * 64 : size);
                    if (!blocks[i]) return 2;
                    memset(blocks[i], 0xA5, i < N / 2 ? 16384 * 64 : size);
                }
                long r1 = resident();
                for (int i = 0; i < N; i++) free(blocks[i]);
                malloc_trim(0);
                long r2 = resident();
                printf("%ld %ld %ld\n", r0, r1, r2);
                return 0;
            }
            """#

        static func run(_ path: String, _ args: [String], environment: [String: String] = [:]) throws
            -> (status: Int32, text: String)
        {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = args
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            try p.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }
    }
}
