/// One measured variant of a workload, e.g. variant "GoSlice" of workload
/// "slice.append-int". Shared by every workload group of `bench`.
struct Measurement: Codable, Sendable {
    /// Workload id, e.g. "slice.append-int" or "chan.buffered-threads".
    var workload: String
    /// What was measured, e.g. "GoSlice", "Array", "AsyncChannel".
    var variant: String
    /// Unit of `samples`, normally "ns/op".
    var unit: String
    /// One value per repetition (after warm-up), in `unit`.
    var samples: [Double]
    /// Peak resident memory when the variant ran in a child process of its own.
    var peakRSSBytes: Int?
}
