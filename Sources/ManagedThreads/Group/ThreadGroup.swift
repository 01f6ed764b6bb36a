import CoreMetrics
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A node in a tree of threads that stops as a whole, under one deadline.
///
/// ```swift
/// let server = try ThreadGroup.root.makeChild(name: "server")
/// let workers = try server.makeChild(name: "workers")
/// for i in 0..<4 {
///     try workers.spawn(name: "worker-\(i)") { token in
///         while !token.wait(timeout: .seconds(1)) { work() }
///     }
/// }
/// let report = server.shutdown(timeout: .seconds(2))   // returns by the deadline, always
/// if !report.isClean { print(report) }                  // who is stuck, and in which syscall
/// ```
///
/// A group owns threads, child groups and adopted ``ThreadOwner`` components. Threads that end on
/// their own leave the group. ``shutdown(until:policy:)-2d25y`` signals everything below the group at
/// once, joins under one absolute deadline split by a ``ShutdownPolicy``, and returns a
/// ``ShutdownReport``. Shutdown is idempotent; spawning into a stopped group throws
/// ``ThreadError/Code/groupStopped``.
public final class ThreadGroup: ThreadOwner, CustomStringConvertible {
    /// The group's own name.
    public let name: String
    /// Names from the root down, joined with `/`.
    public let path: String
    weak let parent: ThreadGroup?
    let instruments: Instruments

    /// Where this group logs: thread start and exit (debug), stop requests and shutdown summaries
    /// (info), stuck threads (warning) and bodies that threw (error), with the report's fields as
    /// metadata. Given at creation; children inherit it.
    public var logger: Logger { instruments.logger }

    /// The process-wide root group, for whole-process shutdown.
    ///
    /// It logs to `Logger(label: "ManagedThreads")` and counts with `MetricsSystem.factory`, both
    /// taken when the root is first used: bootstrap `LoggingSystem` and `MetricsSystem` before
    /// that, or give a subtree its own logger with ``makeChild(name:stopPriority:logger:metricsLabel:)``.
    public static let root = ThreadGroup(
        name: "root", parent: nil,
        instruments: Instruments(
            groupPath: "root", logger: Logger(label: Instruments.defaultLoggerLabel), metricsFactory: MetricsSystem.factory))

    /// The group in effect for this task or thread: the innermost ``withThreadGroup(_:timeout:policy:_:)-921ub``
    /// scope, the group of the managed thread running this code, or ``root``.
    public static var current: ThreadGroup { scoped ?? root }

    @TaskLocal static var scoped: ThreadGroup?

    /// Runs `body` with this group as ``current``: threads spawned through `ThreadGroup.current`
    /// inside it (on this thread, or in tasks it starts) land here. Unlike
    /// ``withThreadGroup(_:timeout:policy:_:)-921ub``, stops nothing when `body` returns.
    public func withCurrent<R>(_ body: () throws -> R) rethrows -> R {
        try Self.$scoped.withValue(self, operation: body)
    }

    /// Async form of the synchronous `withCurrent(_:)`.
    public func withCurrent<R>(_ body: () async throws -> R) async rethrows -> R {
        try await Self.$scoped.withValue(self, operation: body)
    }

    enum Phase: Int, Comparable {
        case running, stopRequested, stopped
        static func < (a: Phase, b: Phase) -> Bool { a.rawValue < b.rawValue }
    }

    struct Member<Value> {
        var value: Value
        var serial: UInt64
        var priority: Int
    }

    struct State {
        var phase = Phase.running
        var shutdownInProgress = false
        var children: [ObjectIdentifier: Member<any ThreadOwner>] = [:]
        /// The group that adopted this one, if it was created parentless.
        weak var adoptedBy: ThreadGroup?
        var report: ShutdownReport?
        /// What happens after a shutdown that left threads running (see GroupAftermath.swift).
        var aftermath = Aftermath()
        /// Threads and children share one sequence, so the ordered policy can stop them in turn.
        var nextSerial: UInt64 = 0
        /// See ``ThreadGroup/extensionCap``.
        var extensionCap: Duration = .zero
        /// Callbacks that ``ThreadGroup/requestStop(reason:)`` handed off; the shutdown waits for them.
        var callbackRunners: [CallbackRunner] = []

        mutating func serial() -> UInt64 {
            nextSerial += 1
            return nextSerial
        }
    }

    let state = Lock<State>(State())
    /// Where each of the group's own threads is, from its spawn to its join (see ThreadLedger.swift).
    let ledger = ThreadLedger()
    /// Stops every member thread with one store and one wake (see GroupStop.swift).
    let stopWord = GroupStopWord()
    /// Fires when a shutdown of this group completes (for concurrent shutdown callers).
    let completed = StopState()

    /// Creates a group that is not part of any tree (``root`` and ``makeChild(name:stopPriority:logger:metricsLabel:)``
    /// cover most uses). A parentless group can be attached later with ``adopt(_:stopPriority:)``.
    /// - Parameters:
    ///   - name: the group's name, the first component of its path.
    ///   - logger: where the group and its children log; `Logger(label: "ManagedThreads")` if nil.
    ///   - metricsFactory: what the group and its children count with (live threads, spawns,
    ///     failures, stuck threads, stop-to-exit and shutdown durations, each with a `group`
    ///     dimension, see ``metricsLabel``); `MetricsSystem.factory` if nil.
    ///   - metricsLabel: the `group` dimension of this group's metrics and, unless they choose
    ///     their own, its descendants'; nil (or empty) for the group's path.
    public convenience init(
        name: String, logger: Logger? = nil, metricsFactory: (any MetricsFactory)? = nil, metricsLabel: String? = nil
    ) {
        self.init(
            name: name, parent: nil,
            instruments: Instruments(
                groupPath: name, logger: logger ?? Logger(label: Instruments.defaultLoggerLabel),
                metricsFactory: metricsFactory ?? MetricsSystem.factory,
                chosenLabel: metricsLabel.flatMap { $0.isEmpty ? nil : $0 }))
    }

    /// The value of the `group` dimension of this group's metrics: the label this group or its
    /// nearest ancestor chose (``makeChild(name:stopPriority:logger:metricsLabel:)``), else the
    /// group's ``path``. Choose one on a long-lived group (`server`) so that the short-lived
    /// groups below it (one per request, or per test) count into one series instead of a series
    /// each.
    public var metricsLabel: String { instruments.metricsLabel }

    init(name: String, parent: ThreadGroup?, instruments: Instruments) {
        self.name = name
        self.parent = parent
        self.path = parent.map { "\($0.path)/\(name)" } ?? name
        self.instruments = instruments
    }

    /// The group's path and how many threads below it are alive.
    public var description: String {
        "ThreadGroup(\(path.debugDescription), \(aliveThreads.count) alive)"
    }

    // MARK: Membership

    /// Starts a thread owned by this group; see ``ManagedThread/spawn(name:purpose:options:fileID:line:_:)``.
    /// Threads spawned from inside its body default to this group (``current``).
    /// - Parameters:
    ///   - name: the full name; must not be empty or contain NUL.
    ///   - purpose: what the thread is for, shown in status dumps and reports.
    ///   - options: stack size, stack allocation and the background flag.
    ///   - stopPriority: for ``ShutdownPolicy/ordered``: higher stops earlier.
    ///   - fileID: where the spawn is, for ``ManagedThread/spawnSite`` (leave the default).
    ///   - line: the line of the spawn (leave the default).
    ///   - body: the work; it should return soon after its token reports a stop.
    /// - Throws: ``ThreadError/Code/groupStopped`` once a stop was requested, or what
    ///   `ManagedThread.spawn` throws.
    @discardableResult
    public func spawn(
        name: String,
        purpose: String? = nil,
        options: ThreadOptions = ThreadOptions(),
        stopPriority: Int = 0,
        fileID: String = #fileID,
        line: Int = #line,
        _ body: sending @escaping (StopToken) throws -> Void
    ) throws(ThreadError) -> ManagedThread {
        try Fork.check("spawn \(name.debugDescription) in \(path)")
        try ManagedThread.validate(name: name, options: options)
        ledger.reapFinished(groupPath: path)
        let thread = ManagedThread(
            name: name, purpose: purpose, options: options, group: self, site: .here(fileID: fileID, line: line), body: body)
        try state.withLock { (state) throws(ThreadError) in
            guard state.phase == .running else { throw stoppedError(action: "spawn \(name.debugDescription)") }
            ledger.admit(thread, serial: state.serial(), priority: stopPriority)
        }
        try thread.start(options: options)
        return thread
    }

    /// Creates a child group.
    /// - Parameters:
    ///   - name: the child's name; its path is this group's path, `/`, and the name.
    ///   - stopPriority: for ``ShutdownPolicy/ordered``: higher stops earlier.
    ///   - logger: where the child (and its own children) log; this group's ``logger`` if nil.
    ///     The metrics factory is always inherited.
    ///   - metricsLabel: the `group` dimension of the child's metrics (and its descendants', unless
    ///     they choose their own); nil inherits this group's ``metricsLabel`` if one was chosen
    ///     here or above, else the child's path.
    /// - Throws: ``ThreadError/Code/invalidArgument`` for an empty name or one containing `/`, or
    ///   an empty `metricsLabel`; ``ThreadError/Code/groupStopped`` once a stop was requested.
    public func makeChild(
        name: String, stopPriority: Int = 0, logger: Logger? = nil, metricsLabel: String? = nil
    ) throws(ThreadError) -> ThreadGroup {
        try Fork.check("create group \(name.debugDescription) in \(path)")
        guard !name.isEmpty, !name.contains("/") else {
            throw .invalidArgument("a group name must be non-empty and contain no '/': \(name.debugDescription)")
        }
        if metricsLabel?.isEmpty == true { throw .invalidArgument("a metrics label must not be empty") }
        let childPath = "\(path)/\(name)"
        let child = ThreadGroup(
            name: name, parent: self,
            instruments: Instruments(
                groupPath: childPath, logger: logger ?? instruments.logger, metricsFactory: instruments.metricsFactory,
                chosenLabel: metricsLabel ?? (instruments.labelChosen ? instruments.metricsLabel : nil)))
        child.state.withLock { $0.extensionCap = extensionCap }
        try state.withLock { (state) throws(ThreadError) in
            guard state.phase == .running else { throw stoppedError(action: "create child group \(name.debugDescription)") }
            state.children[ObjectIdentifier(child)] = Member(value: child, serial: state.serial(), priority: stopPriority)
        }
        sweepDepartures()
        return child
    }

    /// Makes `owner` a member: it is stopped and joined with the group.
    /// - Throws: ``ThreadError/Code/invalidArgument`` when `owner` is already a member, is this
    ///   group or one of its ancestors (a cycle), or is a group that already has a parent;
    ///   ``ThreadError/Code/groupStopped`` once a stop was requested.
    public func adopt(_ owner: any ThreadOwner, stopPriority: Int = 0) throws(ThreadError) {
        try Fork.check("adopt into \(path)")
        // One adoption at a time in the process: the cycle check and the insertion span several
        // groups' locks, and two crossed adoptions (A into B, B into A) must not both pass.
        try Self.adoptionLock.withLock { (_: inout Void) throws(ThreadError) in
            if let group = owner as? ThreadGroup {
                var ancestor: ThreadGroup? = self
                while let current = ancestor {
                    if current === group {
                        throw .invalidArgument("adopting \(group.path.debugDescription) into \(path.debugDescription) would make a cycle")
                    }
                    ancestor = current.parent ?? current.state.withLock { $0.adoptedBy }
                }
                if group.parent != nil || group.state.withLock({ $0.adoptedBy }) != nil {
                    throw .invalidArgument("group \(group.path.debugDescription) already has a parent")
                }
                if group.isAncestor(of: self) {
                    throw .invalidArgument("adopting \(group.path.debugDescription) into \(path.debugDescription) would make a cycle")
                }
            }
            try state.withLock { (state) throws(ThreadError) in
                guard state.phase == .running else { throw stoppedError(action: "adopt \(owner.name.debugDescription)") }
                let key = ObjectIdentifier(owner)
                guard state.children[key] == nil else {
                    throw .invalidArgument("\(owner.name.debugDescription) is already a member of \(path.debugDescription)")
                }
                state.children[key] = Member(value: owner, serial: state.serial(), priority: stopPriority)
            }
            if let group = owner as? ThreadGroup {
                group.state.withLock { $0.adoptedBy = self }
            }
        }
    }

    private static let adoptionLock = Lock<Void>(())

    /// Whether `other` is reachable below this group through adopted or created children.
    private func isAncestor(of other: ThreadGroup) -> Bool {
        let children = state.withLock { $0.children.values.map(\.value) }
        for case let child as ThreadGroup in children {
            if child === other || child.isAncestor(of: other) { return true }
        }
        return false
    }

    private func stoppedError(action: String) -> ThreadError {
        ThreadError(code: .groupStopped, message: "cannot \(action): group \(path.debugDescription) is stopping or stopped")
    }

    /// Called on a member thread as it ends (see ThreadLedger.swift).
    func threadEnded(_ thread: ManagedThread) {
        if ledger.threadEnded(thread) { lastOutliverEnded() }
    }

    /// Removes a child that finished its own shutdown cleanly.
    func removeChild(_ child: ThreadGroup) {
        _ = state.withLock { $0.children.removeValue(forKey: ObjectIdentifier(child)) }
    }

    // MARK: Deadline extensions

    /// How far past a shutdown's deadline a thread of this group may ask to run on with
    /// ``StopToken/requestExtension(_:)``; zero (the default) grants nothing. Children created
    /// afterwards start with the parent's cap. Negative values count as zero.
    ///
    /// The shutdown then returns by its deadline plus the largest grant, and the report lists every
    /// thread that asked (``ShutdownReport/extensions``): the in-process cousin of systemd's
    /// `EXTEND_TIMEOUT_USEC`, for a thread that is making progress (flushing a buffer, finishing a
    /// transaction) and can say so.
    public var extensionCap: Duration {
        get { state.withLock { $0.extensionCap } }
        set { state.withLock { $0.extensionCap = max(.zero, newValue) } }
    }

    // MARK: Inspection

    /// Alive threads of this group and every group below it.
    /// Threads a finished shutdown reported stuck stay listed here until they end.
    public var aliveThreads: [ManagedThread] {
        let children = state.withLock { $0.children.values.map(\.value) }
        return ledger.listed.filter(\.isAlive) + children.compactMap { $0 as? ThreadGroup }.flatMap(\.aliveThreads)
    }

    /// One line of ``status()``.
    public struct ThreadStatus: Sendable, Hashable, CustomStringConvertible {
        /// Full name.
        public var name: String
        /// Group path.
        public var groupPath: String
        /// `running`, `stopping` (stop requested, still running) or `exited`.
        public var state: String
        /// Time since spawn.
        public var age: Duration
        /// Purpose given at spawn.
        public var purpose: String?
        /// Kernel thread id.
        public var tid: Int32?
        /// Whether it is a background thread.
        public var isBackground: Bool
        /// Where it was spawned, and by which thread.
        public var spawnSite: SpawnSite?

        /// One line: path, name, state, tid, age, background flag and purpose.
        public var description: String {
            "\(groupPath)/\(name) [\(state)] tid \(tid.map(String.init) ?? "-") age \(age.formattedMilliseconds)"
                + (isBackground ? " background" : "") + (purpose.map { " — \($0)" } ?? "")
                + (spawnSite.map { ", spawned at \($0)" } ?? "")
        }
    }

    /// A status dump of every thread in this group and below: name, group path, state, age,
    /// purpose. `status().map(\.description).joined(separator: "\n")` prints it.
    public func status() -> [ThreadStatus] {
        let now = ContinuousClock.now
        let children = state.withLock { $0.children.values.sorted { $0.serial < $1.serial }.map(\.value) }
        let mine = ledger.running.sorted { $0.serial < $1.serial }.map(\.value).map { thread in
            ThreadStatus(
                name: thread.name, groupPath: path,
                state: !thread.isAlive ? "exited" : thread.isStopRequested ? "stopping" : "running",
                age: thread.spawnTime.duration(to: now), purpose: thread.purpose, tid: thread.tid,
                isBackground: thread.isBackground, spawnSite: thread.spawnSite)
        }
        return mine + children.compactMap { $0 as? ThreadGroup }.flatMap { $0.status() }
    }

    // MARK: Stopping

    /// Signals every thread and member below this group to stop, without waiting, and refuses
    /// new spawns. ``shutdown(until:policy:)-2d25y`` does this and then joins.
    public func requestStop(reason: StopReason) {
        if Fork.isChild { return }
        let (first, children) = state.withLock { state in
            let first = state.phase == .running
            state.phase = max(state.phase, .stopRequested)
            return (first, state.children.values.map(\.value))
        }
        let threads = ledger.running.map(\.value)
        // Every thread here hears of it at once, unless some hold onStop callbacks (see
        // GroupStop.swift); the per-thread part (reasons, descriptors, callbacks) follows.
        if stopWord.mayStopAtOnce { stopWord.stop(reason: reason) }
        if first { instruments.stopRequested(groupPath: path, reason: reason) }
        let callbacks = threads.flatMap { $0.signal(reason: reason) }
        stopWord.stop(reason: reason)
        for child in children { child.requestStop(reason: .parentStopped) }
        // User callbacks run off this thread once every thread here has been told, so a slow one
        // delays nothing; a shutdown that follows waits for them under its deadline.
        if let runner = CallbackRunner.start(callbacks) {
            state.withLock { $0.callbackRunners.append(runner) }
        }
    }

    /// ``ThreadOwner`` conformance: a shutdown with the ``ShutdownPolicy/shared`` policy.
    public func join(until deadline: ContinuousClock.Instant, path: String) -> ShutdownReport.Node {
        shutdown(until: deadline, policy: .shared).root
    }
}

