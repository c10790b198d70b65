/// GoChan vs AsyncChannel vs mutex queue workloads (owned by the GoChan issue).
enum GoChanBench {
    static func run(repetitions: Int, quick: Bool) async -> [Measurement] { [] }
}
