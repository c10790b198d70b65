import ArgumentParser
import Foundation

/// Entry point: restarts with the TLS tunable jemalloc needs, then runs the command line.
@main
enum BenchMain {
    static func main() async {
        // jemalloc must be dlopen'ed into a process that reserved static TLS for it:
        // restart this very program with the glibc tunable before anything else runs.
        Reexec.ensureStaticTLS()
        // `bench --help` describes the default command's options too, not only the subcommand list.
        let args = Array(CommandLine.arguments.dropFirst())
        if args == ["--help"] || args == ["-h"] || args == ["help"] {
            print(BenchCommand.helpMessage())
            print("\nOPTIONS OF THE DEFAULT COMMAND (bench compare):\n")
            print(BenchCommand.helpMessage(for: Compare.self))
            return
        }
        await BenchCommand.main()
    }
}
