import ArgumentParser
import Foundation

/// Entry point: restarts with the TLS tunable jemalloc needs, then runs the command line.
@main
enum BenchMain {
    static func main() async {
        // jemalloc must be dlopen'ed into a process that reserved static TLS for it:
        // restart this very program with the glibc tunable before anything else runs.
        Reexec.ensureStaticTLS()
        await BenchCommand.main()
    }
}
