import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Options for a new ``ManagedThread``.
public struct ThreadOptions: Sendable, Hashable {
    /// Where a thread's stack comes from.
    public struct StackAllocation: Sendable, Hashable, CustomStringConvertible {
        let pooled: Bool
        /// The library maps the stack and reuses it for later threads after a join (the default).
        /// A shutdown then does no memory-management system calls; see ``ManagedThread/trimStackPool()``.
        public static let pooled = StackAllocation(pooled: true)
        /// glibc allocates the stack (and caches or unmaps it at join), as for a raw pthread.
        public static let system = StackAllocation(pooled: false)
        /// `pooled` or `system`.
        public var description: String { pooled ? "pooled" : "system" }
    }

    /// Stack size in bytes; nil uses glibc's default size (the soft RLIMIT_STACK, usually 8 MiB).
    /// Must be at least ``ThreadOptions/minimumStackSize`` (64 KiB). Pooled stacks are mapped `MAP_NORESERVE`: a large size costs address
    /// space, not memory.
    public var stackSize: Int?
    /// Where the stack comes from; ``StackAllocation/pooled`` by default.
    public var stackAllocation: StackAllocation
    /// A background thread is not waited for by group shutdowns; if still alive then, it is
    /// reported as orphaned. Joins on the thread itself still work as usual.
    public var isBackground: Bool

    /// Creates options; the defaults are a foreground thread on a pooled stack of glibc's default size.
    public init(stackSize: Int? = nil, isBackground: Bool = false, stackAllocation: StackAllocation = .pooled) {
        self.stackSize = stackSize
        self.isBackground = isBackground
        self.stackAllocation = stackAllocation
    }

    /// glibc's default thread stack size here: the soft RLIMIT_STACK, or 8 MiB.
    public static let defaultStackSize = Memory.defaultThreadStackSize

    // The smallest accepted stack, measured rather than taken from PTHREAD_STACK_MIN (16 KiB on
    // x86_64), which is far too small for Swift: a thread's deepest library path is its end after
    // a throw, where the log line describes the error and the Swift runtime's reflection does deep
    // type lookups the first time in a process. In a fresh process, with the heaviest path
    // (group, onStop, stop, throw, log), on pooled and glibc stacks alike: debug builds need
    // 45-48 KiB (44 KiB crashes), AddressSanitizer builds 49-52 KiB (48 KiB crashes). 64 KiB
    // keeps 12 KiB or more of headroom over both. glibc's descriptor and static TLS come out of
    // the same stack, so they are included. MinimumStackTests checks it in a cold process and
    // says how to measure again. On aarch64 glibc's own minimum (128 KiB) is larger.
    #if arch(arm64)
    /// The smallest accepted stack: 128 KiB (glibc's PTHREAD_STACK_MIN here).
    public static let minimumStackSize = 128 * 1024
    #else
    /// The smallest accepted stack: 64 KiB, measured as what the library's own deepest path needs
    /// in a process where the Swift runtime's caches are still cold, plus headroom.
    ///
    /// A body's own frames come on top: a body that calls deep code needs a larger stack.
    public static let minimumStackSize = 64 * 1024
    #endif
    /// The largest accepted stack (1 GiB).
    public static let maximumStackSize = 1 << 30
}
