/// Anything a ``ThreadGroup`` can own and stop: its own threads, child groups, and your components
/// (a `Controller` or `Worker` type that runs threads or other work of its own).
///
/// A group stops an owner in two steps, so that one deadline can be shared by a whole tree:
/// first ``requestStop(reason:)`` everywhere (cheap, no waiting), then ``join(until:path:)`` on each.
public protocol ThreadOwner: AnyObject, Sendable {
    /// A name for reports.
    var name: String { get }
    /// Asks the owner to stop. Must not block.
    func requestStop(reason: StopReason)
    /// Waits for the owner to finish, returning by `deadline` whatever happens, and says what
    /// happened. `path` is where the owner sits in the tree, for the report.
    ///
    /// It may be called again after its group's shutdown, with a deadline that has passed, when
    /// that shutdown's report said the owner had not finished: a later shutdown of a parent group
    /// asks what became of it. Return at once with the owner's state then.
    func join(until deadline: ContinuousClock.Instant, path: String) -> ShutdownReport.Node
}

/// How a shutdown shares its one deadline among the members of a tree.
///
/// Whatever the policy, the call returns by the deadline (plus a small margin for the report).
public struct ShutdownPolicy: Sendable, Hashable, CustomStringConvertible {
    enum Kind: String, Hashable, Sendable {
        case shared, fair, ordered
    }

    let kind: Kind
    /// What happens past cooperation; ``Escalation/cooperative`` unless ``escalating(_:)`` says.
    public internal(set) var escalation = Escalation.cooperative

    init(kind: Kind) {
        self.kind = kind
    }

    /// Everything is signalled at once; every join uses what remains of the one deadline, and
    /// threads are reaped in the order they exit. The fastest policy.
    public static let shared = ShutdownPolicy(kind: .shared)
    /// Everything is signalled at once; then each member (the group's own threads, each child
    /// group, each component) gets at most an equal share of what remains, so one slow child cannot
    /// use up its siblings' time. Children split their share the same way.
    public static let fair = ShutdownPolicy(kind: .fair)
    /// Stages, each signalled only when the previous one is done or out of its share of the time:
    /// members with a higher `stopPriority` first, ties in reverse start order (a group's own
    /// threads of one priority form one stage). For pipelines that must drain in order.
    public static let ordered = ShutdownPolicy(kind: .ordered)

    /// The policy's name: `shared`, `fair` or `ordered`, followed by its escalation unless
    /// cooperative, as in `shared+interrupt(SIGURG after 50%)+abandon` (and in
    /// ``ShutdownReport/policy``).
    public var description: String {
        escalation == .cooperative ? kind.rawValue : "\(kind.rawValue)+\(escalation)"
    }
}
