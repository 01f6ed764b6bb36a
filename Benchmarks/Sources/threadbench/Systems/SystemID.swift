// Names for what is compared: systems, their configurations, and workloads.

/// A system under test with its configuration, shown as `system/config` ("managed/futex").
struct SystemID: Hashable, Sendable, CustomStringConvertible {
    /// `managed`, `pthread` or `foundation`.
    var system: String
    /// The configuration, when the system has more than one (stop mechanism, budget policy).
    var config: String?
    /// A variant of the managed system: `glibc-stack` runs it on stacks glibc allocates
    /// (`ThreadOptions.StackAllocation.system`) instead of the library's pooled stacks.
    var variant: String?
    /// How the managed threads are owned and stopped (shutdown only); nil means `handles`.
    var shape: GroupShape?

    var description: String {
        (config.map { "\(system)/\($0)" } ?? system) + (shape.map { "@\($0.rawValue)" } ?? "")
            + (variant.map { "+\($0)" } ?? "")
    }

    static let glibcStackVariant = "glibc-stack"

    /// Whether this managed configuration uses glibc-allocated stacks.
    var usesGlibcStacks: Bool { variant == Self.glibcStackVariant }

    /// Whether this is the baseline that ratios are taken against: raw pthreads, or for the
    /// executor scenario (where no pthread row runs) swift-nio's NIOThreadPool.
    var isBaseline: Bool { system == "pthread" || system == "nio" }

    static let pthread = SystemID(system: "pthread")
    static let foundation = SystemID(system: "foundation")
    static func managed(_ config: String? = nil) -> SystemID { SystemID(system: "managed", config: config) }
}

/// Which stacks the managed system runs on: the library's pool (its default), glibc's, or both
/// as separate rows.
enum StackChoice: String, CaseIterable, Sendable {
    case pooled, system, both

    /// `ids` with every managed configuration replaced by the chosen stack variants.
    func expand(_ ids: [SystemID]) -> [SystemID] {
        ids.flatMap { id -> [SystemID] in
            guard id.system == "managed" else { return [id] }
            var glibc = id
            glibc.variant = SystemID.glibcStackVariant
            switch self {
            case .pooled: return [id]
            case .system: return [glibc]
            case .both: return [id, glibc]
            }
        }
    }
}

/// How managed threads are owned and stopped in a shutdown: the join strategy and the group shape.
enum GroupShape: String, CaseIterable, Sendable {
    /// Plain `ManagedThread` handles: `requestStop()` on each, then `join(until:)` each in turn
    /// (sequential joins, like the pthread baseline).
    case handles
    /// One flat `ThreadGroup`; `shutdown(timeout:)` signals all, then reaps threads in the order
    /// they exit (exit notification, then join).
    case group
    /// A tree of depth 3 (root, 2 children, 4 grandchildren), threads spread over the 4 leaves;
    /// `shutdown` on the root.
    case tree

    /// `ids` with the first managed configuration also measured in each shape of `shapes` other
    /// than `handles` (the other managed configurations stay as handles, to keep the table short).
    static func expand(_ ids: [SystemID], shapes: [GroupShape]) -> [SystemID] {
        var result: [SystemID] = []
        var expanded = false
        for id in ids {
            guard id.system == "managed" else { result.append(id); continue }
            if shapes.contains(.handles) || expanded { result.append(id) }
            if !expanded {
                expanded = true
                for shape in shapes where shape != .handles {
                    var shaped = id
                    shaped.shape = shape
                    result.append(shaped)
                }
            }
        }
        return result
    }
}

/// How a managed thread's body waits for its stop.
enum StopMechanism: String, CaseIterable, Sendable {
    /// `token.wait(until:)` / `wait(timeout:)`: the token's futex, no descriptor.
    case futex
    /// `poll` on `try token.fileDescriptor`, the token's lazily created eventfd.
    case eventfd
}

/// What the threads of a shutdown measurement do while they wait to be stopped.
enum Workload: String, CaseIterable, Sendable {
    /// Blocked on the stop signal alone.
    case idle
    /// Blocked in `poll` on an empty pipe of its own plus the stop signal.
    case io
    /// Busy: about 1 µs of work between checks of the stop flag.
    case cpu
    /// Periodic: a unit of work every 100 ms, waiting on the stop signal in between.
    case tick

    /// The managed configurations that make sense for this workload: a body blocked in `poll` on
    /// its pipe can only be woken through the descriptor; a CPU loop only checks the flag.
    var managedMechanisms: [StopMechanism?] {
        switch self {
        case .idle, .tick: StopMechanism.allCases
        case .io: [.eventfd]
        case .cpu: [nil]
        }
    }

    /// Every system configuration measured for this workload, in round order.
    var systems: [SystemID] {
        managedMechanisms.map { SystemID.managed($0?.rawValue ?? (self == .cpu ? "flag" : nil)) }
            + [.pthread, .foundation]
    }

    /// Descriptors one run of `threads` threads needs for system `id` (pipes, token eventfds).
    func descriptors(threads: Int, system id: SystemID) -> Int {
        let pipes = self == .io ? 2 * threads : 0
        let tokens = id.system == "managed" && id.config == StopMechanism.eventfd.rawValue ? threads : 0
        return pipes + tokens + 16
    }
}
