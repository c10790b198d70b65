// Process helpers for MallocTests. This target links nothing of SpanAlloc:
// every check runs in a child process — the C test program and real
// programs under LD_PRELOAD, and malloc-demo, which links SpanAllocMalloc.
import Foundation

/// What a finished child process left behind.
struct Outcome {
    /// Exit status, or the signal number when `signaled`.
    var status: Int32
    /// Whether the process was killed by a signal.
    var signaled: Bool
    var stdout: Data
    var stderr: Data

    var out: String { String(decoding: stdout, as: UTF8.self) }
    var err: String { String(decoding: stderr, as: UTF8.self) }
    var succeeded: Bool { !signaled && status == 0 }

    /// stderr without SpanAlloc's own report lines (the `stats=1` JSON).
    var errWithoutReports: String {
        err.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("{\"pid\":") }
            .joined(separator: "\n")
    }

    /// The `stats=1` exit reports on stderr, one per process, parsed.
    var reports: [[String: Any]] {
        err.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{\"pid\":") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    /// Mallocs counted by SpanAlloc in every process of the run.
    var reportedMallocs: Int {
        reports.reduce(0) { $0 + (($1["MemStats"] as? [String: Any])?["Mallocs"] as? Int ?? 0) }
    }

    var summary: String {
        "status \(status)\(signaled ? " (signal)" : "")\n--- stdout\n\(out.suffix(3000))\n--- stderr\n\(err.suffix(3000))"
    }
}

enum Paths {
    /// The package root (this file is Tests/MallocTests/Support.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// Directory of the running test bundle; SwiftPM puts the package's
    /// executables (malloc-demo) next to it.
    static let products = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        .deletingLastPathComponent()

    static let preloadDir = root.appendingPathComponent(".build/spanalloc-preload")
    static let library = preloadDir.appendingPathComponent("libspanalloc.so").path
    static let cTest = preloadDir.appendingPathComponent("malloc-test").path
    static let demo = products.appendingPathComponent("malloc-demo").path

    /// Builds the LD_PRELOAD library and the C test program once per test
    /// run (the script skips the work when they are up to date).
    static let built: Outcome = run("/bin/bash", [root.appendingPathComponent("scripts/build-preload.sh").path, "--tests"],
                                    directory: root)
}

/// Whether an executable exists at `path`.
func installed(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }

/// Whether this test process runs under a sanitizer (its runtime, not
/// SpanAlloc, then owns malloc in the executables SwiftPM builds).
let underSanitizer: Bool = {
    guard let handle = dlopen(nil, RTLD_NOW) else { return false }
    defer { dlclose(handle) }
    return dlsym(handle, "__tsan_init") != nil || dlsym(handle, "__asan_init") != nil
}()

/// Runs `path` with `arguments`; `environment` entries are added to (or with
/// nil, removed from) this process's environment, and LD_PRELOAD/SPANALLOC
/// are never inherited. Output goes through files, so nothing can block.
func run(_ path: String, _ arguments: [String], environment: [String: String?] = [:],
         directory: URL? = nil, stdin: URL? = nil) -> Outcome {
    var env = ProcessInfo.processInfo.environment
    env["LD_PRELOAD"] = nil
    env["SPANALLOC"] = nil
    for (k, v) in environment { env[k] = v }
    let tmp = FileManager.default.temporaryDirectory
        .appendingPathComponent("malloc-tests-\(UUID().uuidString)")
    let outURL = tmp.appendingPathExtension("out"), errURL = tmp.appendingPathExtension("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.environment = env
    if let directory { process.currentDirectoryURL = directory }
    do {
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        defer {
            try? out.close()
            try? err.close()
        }
        process.standardOutput = out
        process.standardError = err
        if let stdin { process.standardInput = try FileHandle(forReadingFrom: stdin) }
        try process.run()
        process.waitUntilExit()
    } catch {
        return Outcome(status: -1, signaled: false, stdout: Data(), stderr: Data("could not run \(path): \(error)".utf8))
    }
    return Outcome(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                   stdout: (try? Data(contentsOf: outURL)) ?? Data(), stderr: (try? Data(contentsOf: errURL)) ?? Data())
}

/// Runs a program plainly and under SpanAlloc (with `SPANALLOC=stats=1`, so
/// the run proves that SpanAlloc served it); `between` runs in between.
func runBoth(_ path: String, _ arguments: [String], environment: [String: String?] = [:],
             directories: (URL, URL)? = nil, stdin: URL? = nil,
             between: () -> Void = {}) -> (plain: Outcome, preloaded: Outcome) {
    let plain = run(path, arguments, environment: environment, directory: directories?.0, stdin: stdin)
    between()
    var env = environment
    env["LD_PRELOAD"] = Paths.library
    env["SPANALLOC"] = "stats=1"
    let preloaded = run(path, arguments, environment: env, directory: directories?.1, stdin: stdin)
    return (plain, preloaded)
}

/// A fresh temporary directory, removed by the caller.
func temporaryDirectory() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("malloc-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}
