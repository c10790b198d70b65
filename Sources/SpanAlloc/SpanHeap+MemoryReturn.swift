import CSpanAlloc

extension SpanHeap {
    /// What the memory limit does when the heap reaches it (C `sa_memlimit_mode`).
    public enum MemoryLimitMode: Sendable, Hashable {
        /// As Go's `GOMEMLIMIT`: near the limit the heap hands back idle
        /// thread caches and releases idle pages before it maps more, and
        /// allocation still succeeds past it.
        case soft
        /// A request that would take the counted memory past the limit
        /// fails: `allocateIfPossible` returns `nil`, `GoSlice` and `GoChan`
        /// stop with Go's "runtime: out of memory".
        case hard
    }

    /// The memory limit in bytes, `nil` when there is none (the default;
    /// `SPANALLOC=memlimit=512M` sets one at start).
    ///
    /// Counted toward it, as Go counts mapped memory minus what was
    /// released: heap pages that are mapped, were used at least once and
    /// were not released since, plus the metadata mapped for spans, bitmaps
    /// and the arena index (``MemStats/memoryCounted``).
    public var memoryLimit: Int? {
        let l = sa_memory_limit(nil)
        return l == Self.noMemoryLimit ? nil : l
    }

    /// C's SIZE_MAX ("no limit") as Swift imports `size_t`: -1.
    private static let noMemoryLimit = Int(bitPattern: UInt.max)

    /// The mode of the memory limit.
    public var memoryLimitMode: MemoryLimitMode {
        var m = SA_MEMLIMIT_SOFT
        _ = sa_memory_limit(&m)
        return m == SA_MEMLIMIT_HARD ? .hard : .soft
    }

    /// Sets the memory limit (`nil`: none) and returns the previous one, as
    /// Go's `debug.SetMemoryLimit`.
    @discardableResult
    public func setMemoryLimit(_ bytes: Int?, mode: MemoryLimitMode = .soft) -> Int? {
        if let bytes { precondition(bytes >= 0, "SpanHeap.setMemoryLimit: negative byte count") }
        let old = sa_set_memory_limit(bytes ?? Self.noMemoryLimit, mode == .hard ? SA_MEMLIMIT_HARD : SA_MEMLIMIT_SOFT)
        return old == Self.noMemoryLimit ? nil : old
    }

    /// How idle memory goes back to the OS (C `sa_scavenge_config`,
    /// `SPANALLOC=scavenge=…`).
    public struct Scavenger: Sendable, Hashable {
        /// Who releases idle memory besides ``SpanHeap/scavenge(byteCount:)``.
        public enum Mode: Sendable, Hashable {
            /// Nobody.
            case off
            /// The thread that frees a span to the page heap, on that slow path.
            case onFree
            /// A background thread paced to ``cpuPercent`` of one CPU (the
            /// default): it also lets the retained memory decay to
            /// ``floorBytes`` once the program has been idle for
            /// ``idleMilliseconds``, and hands back idle threads' caches.
            case background
        }
        /// Who releases idle memory: the background thread by default.
        public var mode: Mode
        /// Idle memory kept mapped while the program allocates.
        public var retainBytes: Int
        /// Or this share of in-use memory (percent), whichever is more.
        public var retainPercent: Int
        /// A free page run must be idle this long before it is released.
        public var delayMilliseconds: Int
        /// What stays retained once the program is idle.
        public var floorBytes: Int
        /// Time without allocation after which the program, or a thread, is idle.
        public var idleMilliseconds: Int
        /// The background thread's CPU budget, percent of one CPU.
        public var cpuPercent: Int

        /// A configuration; the defaults are those the C library starts
        /// with (`SPANALLOC=scavenge=background,scavenge_retain=64M,…`).
        ///
        /// Traps when a setting is negative or `cpuPercent` is not positive.
        public init(mode: Mode = .background, retainBytes: Int = 64 << 20, retainPercent: Int = 10,
                    delayMilliseconds: Int = 1000, floorBytes: Int = 4 << 20, idleMilliseconds: Int = 1000,
                    cpuPercent: Int = 1) {
            precondition(retainBytes >= 0 && retainPercent >= 0 && delayMilliseconds >= 0 && floorBytes >= 0
                         && idleMilliseconds >= 0 && cpuPercent > 0, "SpanHeap.Scavenger: negative setting")
            self.mode = mode
            self.retainBytes = retainBytes
            self.retainPercent = retainPercent
            self.delayMilliseconds = delayMilliseconds
            self.floorBytes = floorBytes
            self.idleMilliseconds = idleMilliseconds
            self.cpuPercent = cpuPercent
        }
    }

    /// The scavenger's settings in effect.
    public var scavenger: Scavenger {
        get {
            var c = sa_scavenge_config()
            sa_get_scavenge_config(&c)
            let mode: Scavenger.Mode = c.mode == SA_SCAVENGE_OFF ? .off : c.mode == SA_SCAVENGE_ON ? .onFree : .background
            return Scavenger(mode: mode, retainBytes: Int(c.retain_bytes), retainPercent: Int(c.retain_percent),
                             delayMilliseconds: Int(c.delay_ms), floorBytes: Int(c.floor_bytes),
                             idleMilliseconds: Int(c.idle_ms), cpuPercent: Int(c.cpu_percent))
        }
        nonmutating set {
            var c = sa_scavenge_config()
            c.mode = newValue.mode == .off ? SA_SCAVENGE_OFF : newValue.mode == .onFree ? SA_SCAVENGE_ON : SA_SCAVENGE_BACKGROUND
            c.retain_bytes = newValue.retainBytes
            c.retain_percent = UInt32(clamping: newValue.retainPercent)
            c.delay_ms = UInt32(clamping: newValue.delayMilliseconds)
            c.floor_bytes = newValue.floorBytes
            c.idle_ms = UInt32(clamping: newValue.idleMilliseconds)
            c.cpu_percent = UInt32(clamping: newValue.cpuPercent)
            sa_set_scavenge_config(&c)
        }
    }
}
