import Foundation

/// Debian's libjemalloc.so.2 uses initial-exec TLS, so `dlopen` fails with
/// "cannot allocate memory in static TLS block" unless the process started
/// with spare static TLS. `bench` therefore sets the glibc tunable and
/// re-executes itself (/proc/self/exe) once, at the top of `main`.
enum Reexec {
    static let tunable = "glibc.rtld.optional_static_tls=16384"
    static let marker = "SPANALLOC_BENCH_REEXECED"

    static func ensureStaticTLS() {
        let args = CommandLine.arguments
        // A workload program run under LD_PRELOAD only uses the process malloc: no restart.
        if args.count > 1, args[1] == "workload-main" { return }
        let current = getenv("GLIBC_TUNABLES").map { String(cString: $0) } ?? ""
        if current.contains("optional_static_tls") || getenv(marker) != nil { return }
        setenv("GLIBC_TUNABLES", current.isEmpty ? tunable : current + ":" + tunable, 1)
        setenv(marker, "1", 1)
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &cArgs)
        // exec failed: carry on; jemalloc's row will say why it could not load.
        cArgs.forEach { free($0) }
    }
}
