import ArgumentParser
import CBenchKit
import CSpanAlloc
import Foundation

/// The allocators `bench` compares. Each maps to one C table (bk_allocator).
enum AllocatorID: String, CaseIterable, Codable, Sendable {
    case spanAlloc = "SpanAlloc"
    case jemalloc
    case glibc
    case mimalloc
    case tcmalloc

    /// The default baseline every ratio is relative to (`--baseline` chooses another).
    static let defaultBaseline = AllocatorID.jemalloc

    var kind: bk_allocator_kind {
        switch self {
        case .spanAlloc: BK_SPANALLOC
        case .jemalloc: BK_JEMALLOC
        case .glibc: BK_GLIBC
        case .mimalloc: BK_MIMALLOC
        case .tcmalloc: BK_TCMALLOC
        }
    }

    /// Debian package that provides the allocator, for "install this" notes.
    var package: String? {
        switch self {
        case .jemalloc: "libjemalloc-dev"
        case .mimalloc: "libmimalloc-dev"
        case .tcmalloc: "libgoogle-perftools-dev"
        default: nil
        }
    }

    /// The shared library LD_PRELOAD uses (nil for glibc, which needs none, and SpanAlloc, whose path is given).
    var soname: String? { bk_allocator_soname(kind).map { String(cString: $0) } }

    /// Case-insensitive lookup by name.
    static func named(_ s: String) -> AllocatorID? {
        allCases.first { $0.rawValue.lowercased() == s.lowercased() }
    }
}

/// An allocator of a run: a built-in one, or a library given with `--allocator NAME=/path/lib.so`.
struct AllocatorSpec: Hashable, Sendable {
    var name: String
    /// Set for the built-in allocators.
    var builtin: AllocatorID?
    /// The shared library of a custom allocator (dlopen'ed by the child, LD_PRELOAD'ed by `bench preload`).
    var library: String?
    /// Variables set in this allocator's children only, on top of bench's environment: a SpanAlloc
    /// variant's `SPANALLOC`, jemalloc-bg's `MALLOC_CONF`.
    var environment: [String: String] = [:]

    init(_ id: AllocatorID) {
        name = id.rawValue
        builtin = id
    }

    /// A built-in allocator under another name, run with `environment` in its children.
    init(name: String, builtin: AllocatorID, environment: [String: String]) {
        self.name = name
        self.builtin = builtin
        self.environment = environment
    }

    init(name: String, library: String) {
        self.name = name
        self.library = library
    }

    /// Parses `NAME=/path/lib.so`.
    static func parseCustom(_ s: String) throws -> AllocatorSpec {
        let parts = s.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !parts[0].contains(",") else {
            throw ValidationError("--allocator takes NAME=/path/lib.so, not \(s)")
        }
        if AllocatorID.named(parts[0]) != nil {
            throw ValidationError("--allocator \(parts[0]): the name of a built-in allocator; choose another")
        }
        return AllocatorSpec(name: parts[0], library: parts[1])
    }

    /// Parses `--spanalloc-variant NAME=SETTINGS`: SpanAlloc again, as its own row named NAME, with
    /// `SPANALLOC=SETTINGS` in its children's environment (replacing whatever bench's own environment
    /// holds; an empty SETTINGS runs it with the variable empty, i.e. the defaults). SETTINGS goes to
    /// the allocator as it is: bench does not parse it.
    static func parseVariant(_ s: String) throws -> AllocatorSpec {
        guard let eq = s.firstIndex(of: "=") else {
            throw ValidationError("--spanalloc-variant takes NAME=SETTINGS (e.g. scav-on=scavenge=on), not \(s)")
        }
        let name = String(s[..<eq]), settings = String(s[s.index(after: eq)...])
        guard !name.isEmpty, !name.contains(","), !name.contains(" ") else {
            throw ValidationError("--spanalloc-variant \(s): NAME must be non-empty, without commas or spaces")
        }
        if AllocatorID.named(name) != nil {
            throw ValidationError("--spanalloc-variant \(name): the name of a built-in allocator; choose another")
        }
        return AllocatorSpec(name: name, builtin: .spanAlloc, environment: [spanallocVariable: settings])
    }

    /// The variable SpanAlloc reads its settings from.
    static let spanallocVariable = "SPANALLOC"

    /// The SPANALLOC settings of a SpanAlloc variant (nil for every other allocator).
    var variantSetting: String? {
        builtin == .spanAlloc && name != AllocatorID.spanAlloc.rawValue ? environment[Self.spanallocVariable] : nil
    }

    /// bench's environment with this allocator's own variables on top: what its children get.
    func childEnvironment(_ base: [String: String]) -> [String: String] {
        base.merging(environment) { $1 }
    }

    /// The child's arguments that name this allocator (a renamed built-in loads as the built-in).
    var childArguments: [String] {
        library.map { ["--allocator", name, "--library", $0] } ?? ["--allocator", builtin?.rawValue ?? name]
    }

    /// The library LD_PRELOAD uses (nil for glibc; SpanAlloc's comes from --spanalloc-so).
    var preloadLibrary: String? { library ?? builtin?.soname }
}

/// Fixed-size C character arrays (imported as tuples) to Swift strings.
func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}

enum Allocators {
    /// Loads the C table of an allocator, or returns why it cannot be used.
    static func load(_ id: AllocatorID) -> Result<bk_allocator, LoadError> {
        var table = bk_allocator()
        if bk_allocator_load(id.kind, &table) { return .success(table) }
        return .failure(LoadError(message: cString(table.error)))
    }

    /// Loads a built-in or custom allocator. A custom table's name is kept alive for the process.
    static func load(_ spec: AllocatorSpec) -> Result<bk_allocator, LoadError> {
        if let id = spec.builtin { return load(id) }
        guard let path = spec.library else { return .failure(LoadError(message: "no library for \(spec.name)")) }
        var table = bk_allocator()
        let name = UnsafePointer(strdup(spec.name)!)  // lives as long as the process
        if bk_allocator_load_custom(name, path, &table) { return .success(table) }
        return .failure(LoadError(message: cString(table.error)))
    }

    struct LoadError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// True when SpanAlloc's statistics stay at zero after allocating, i.e.
    /// the temporary glibc stub is linked instead of the real allocator.
    static func spanAllocIsStub() -> Bool {
        var before = sa_mem_stats()
        sa_read_mem_stats(&before)
        var ptrs: [UnsafeMutableRawPointer] = []
        for _ in 0..<64 { if let p = sa_alloc(48, 0) { ptrs.append(p) } }
        var after = sa_mem_stats()
        sa_read_mem_stats(&after)
        ptrs.forEach { sa_free($0) }
        return after.mallocs == before.mallocs
    }

    /// Loads every allocator once to report which are available, their versions and jemalloc's
    /// configuration; SpanAlloc variants follow the built-ins, custom libraries come last.
    static func probe(custom: [AllocatorSpec] = [], variants: [AllocatorSpec] = []) -> [AllocatorInfo] {
        let builtin = builtins()
        let spanAlloc = builtin.first { $0.name == AllocatorID.spanAlloc.rawValue }
        return builtin + variants.map { spec in
            var info = AllocatorInfo(name: spec.name, available: spanAlloc?.available ?? false,
                                     version: spanAlloc?.version ?? "")
            info.spanallocSetting = spec.variantSetting
            info.note = "SpanAlloc with SPANALLOC=\(spec.variantSetting ?? "") in its children's environment"
            return info
        } + custom.map { spec in
            switch load(spec) {
            case .success:
                return AllocatorInfo(name: spec.name, available: true, version: "custom",
                                     note: "loaded from \(spec.library ?? "?") (dlopen + dlsym of malloc/free/realloc)",
                                     library: spec.library)
            case .failure(let err):
                return AllocatorInfo(name: spec.name, available: false, version: "", note: "not loaded: \(err.message)",
                                     library: spec.library)
            }
        }
    }

    static func builtins() -> [AllocatorInfo] {
        AllocatorID.allCases.map { id in
            switch load(id) {
            case .success(var table):
                var info = AllocatorInfo(name: id.rawValue, available: true, version: cString(table.version))
                if id == .spanAlloc {
                    if spanAllocIsStub() {
                        info.version = "stub"
                        info.note = "temporary stub over glibc malloc: the real allocator has not been merged"
                    } else {
                        info.version = "native"
                    }
                }
                if id == .jemalloc {
                    var buf = [CChar](repeating: 0, count: 1024)
                    bk_jemalloc_config(&table, &buf, buf.count)
                    info.config = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                }
                return info
            case .failure(let err):
                var note = "not loaded: \(err.message)"
                if let pkg = id.package { note += " (install: apt-get install \(pkg))" }
                return AllocatorInfo(name: id.rawValue, available: false, version: "", note: note)
            }
        }
    }
}

enum Environment {
    /// Peak RSS of an idle child process (Swift runtime, Foundation, bench itself).
    static func idleChildRSS() -> Int? { idleChild()?.rss }

    /// Peak RSS and wait4 usage of an idle child (medians of `runs` children): the floor
    /// subtracted from every row's CPU time and page faults.
    static func idleChild(runs: Int = 5) -> (rss: Int, usage: Usage)? {
        var rss: [Int] = []
        var usages: [Usage] = []
        for _ in 0..<runs {
            guard let run = try? Spawn.run(Spawn.selfExe, ["bench", "idle-child"], env: ProcessInfo.processInfo.environment),
                  run.status == 0, let r = Int(run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else { continue }
            rss.append(r)
            usages.append(Usage(run.usage))
        }
        guard !rss.isEmpty else { return nil }
        return (Int(Statistics.median(rss.map(Double.init))), Usage.median(usages))
    }

    /// Reads the machine's description for the report header.
    static func current() -> EnvironmentInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n")
            .first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
        var uts = utsname()
        uname(&uts)
        let kernel = "\(cString(uts.sysname)) \(cString(uts.release)) \(cString(uts.machine))"
        let osRelease = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        let os = osRelease.split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }
            .map { $0.dropFirst("PRETTY_NAME=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            ?? "unknown"
        let formatter = ISO8601DateFormatter()
        return EnvironmentInfo(
            date: formatter.string(from: Date()),
            cpuModel: model,
            cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            kernel: kernel,
            os: os,
            glibc: String(cString: bk_glibc_version()),
            hostname: cString(uts.nodename)
        )
    }
}
