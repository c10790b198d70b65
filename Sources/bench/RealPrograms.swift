import Foundation

/// The named programs of `bench preload --programs`: real programs whose
/// allocation patterns bench's own workloads only imitate. Their inputs live
/// in the repository's bench/programs/ directory.
enum RealPrograms {
    /// Names `--programs` accepts: `workloads` (bench's core workloads, the default), `driver` (the
    /// newer workloads through the C driver, bench/programs/workload_driver.c), `real` (every real
    /// program) and each real program by name.
    static let realNames = ["python", "gcc"]
    static let allNames = ["workloads", "driver", "real"] + realNames

    /// What a `--programs` list selects: whether the core workloads and the C driver's run, and which
    /// real programs.
    struct Selection: Equatable {
        var workloads = false
        var driver = false
        var real: [String] = []
    }

    static func parse(_ list: String) throws -> Selection {
        var selection = Selection()
        let items = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            .filter { !$0.isEmpty }
        guard !items.isEmpty else { throw Failure("--programs needs at least one of " + allNames.joined(separator: ", ")) }
        for item in items {
            switch item {
            case "workloads": selection.workloads = true
            case "driver": selection.driver = true
            case "real": selection.real += realNames
            case let name where realNames.contains(name): selection.real.append(name)
            default: throw Failure("unknown program \(item) in --programs; known: " + allNames.joined(separator: ", "))
            }
        }
        var seen: Set<String> = []
        selection.real = selection.real.filter { seen.insert($0).inserted }
        return selection
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// The directory with the programs' files: `explicit`, else bench/programs under the current
    /// directory, else under an ancestor of this executable (.build/<triple>/release/bench).
    static func directory(explicit: String?) -> String? {
        let marker = "alloc_heavy.py"
        func has(_ dir: String) -> Bool { FileManager.default.fileExists(atPath: dir + "/" + marker) }
        if let explicit { return has(explicit) ? explicit : nil }
        let cwd = FileManager.default.currentDirectoryPath + "/bench/programs"
        if has(cwd) { return cwd }
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: Spawn.selfExe) else { return nil }
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<6 {
            dir = dir.deletingLastPathComponent()
            let candidate = dir.appendingPathComponent("bench/programs").path
            if has(candidate) { return candidate }
        }
        return nil
    }

    /// An executable: `explicit` (path or PATH name), else the first of `preferred` that exists, else
    /// `name` on PATH. /usr/bin comes first: a PATH entry may be a wrapper script (pyenv's shims are
    /// bash scripts that exec the interpreter), which would be timed and preloaded too.
    static func executable(explicit: String?, preferred: [String], name: String) -> String? {
        if let explicit { return PreloadRunner.resolve(explicit) }
        if let p = preferred.first(where: { access($0, X_OK) == 0 }) { return p }
        return PreloadRunner.resolve(name)
    }

    /// The settings the real programs are made from.
    struct Setup {
        var directory: String
        var python: String?
        var cc: String?
        var quick: Bool
        var scale: Double
        /// A fresh directory for generated input and compiler output; the caller removes it.
        var workDir: String
    }

    /// Operation scale of the python script (1: 3-4 s under glibc on the project's 2-core machine).
    static func pythonScale(quick: Bool, scale: Double) -> Double { (quick ? 0.05 : 1) * scale }

    /// Functions in the generated C file (100: 3.5-5.5 s of gcc -O2 under glibc on the project's machine).
    static func gccFunctions(quick: Bool, scale: Double) -> Int { Swift.max(1, Int(((quick ? 4 : 100) * scale).rounded())) }

    /// The python program: bench/programs/alloc_heavy.py with PYTHONMALLOC=malloc.
    static func python(_ setup: Setup, notes: inout [String]) -> PreloadRunner.Program? {
        guard let python = setup.python else {
            notes.append("preload: python skipped, no python3 found (scripts/setup.sh installs it; or pass --python PATH)")
            return nil
        }
        let script = setup.directory + "/alloc_heavy.py"
        let scale = pythonScale(quick: setup.quick, scale: setup.scale)
        return PreloadRunner.Program(
            id: "preload:python", title: "python3 alloc_heavy.py: dicts, lists, strings, objects (PYTHONMALLOC=malloc)",
            argv: [python, script, "--scale", String(scale)],
            // pymalloc would serve every object below 512 B from its own arenas; the fixed hash seed
            // makes dict layouts, and so the allocation sequence, the same in every launch.
            environment: ["PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"],
            checkedOutputFile: "",
            detail: "\(python) \(script) --scale \(scale); every launch must print the same line")
    }

    /// The compiler program: gcc -O2 -c of a file made by bench/programs/gen_compile_input.py
    /// (generated once, before the first launch, outside the timed launches).
    static func gcc(_ setup: Setup, notes: inout [String]) -> PreloadRunner.Program? {
        guard let cc = setup.cc else {
            notes.append("preload: gcc skipped, no gcc found (scripts/setup.sh installs it; or pass --cc PATH)")
            return nil
        }
        guard let python = setup.python else {
            notes.append("preload: gcc skipped, no python3 to run the generator (or pass --python PATH)")
            return nil
        }
        let functions = gccFunctions(quick: setup.quick, scale: setup.scale)
        let generator = setup.directory + "/gen_compile_input.py"
        let input = setup.workDir + "/input.c", object = setup.workDir + "/input.o"
        var env = ProcessInfo.processInfo.environment
        env["LD_PRELOAD"] = nil
        let gen = try? Spawn.run(python, [python, generator, "--functions", String(functions), "--output", input], env: env)
        guard let gen, gen.status == 0, FileManager.default.fileExists(atPath: input) else {
            notes.append("preload: gcc skipped, \(generator) failed (status \(gen.map { String($0.status) } ?? "not started"))")
            return nil
        }
        let bytes = (try? FileManager.default.attributesOfItem(atPath: input)[.size] as? Int) ?? 0
        return PreloadRunner.Program(
            id: "preload:gcc", title: "gcc -O2 -c of a generated C file (\(functions) functions with switches, structs, inlining)",
            argv: [cc, "-std=c11", "-O2", "-c", input, "-o", object],
            checkedOutputFile: object,
            detail: "driver, cc1 and as all run with LD_PRELOAD; input: gen_compile_input.py --functions \(functions) "
                + "(\(Format.bytes(bytes))); every launch must write the same object file")
    }
}
