/// GoSlice vs Array workloads (owned by the GoSlice issue).
enum GoSliceBench {
    static func run(repetitions: Int, quick: Bool) -> [Measurement] { [] }
}
