import Synchronization

/// Spawns unstructured Swift `Task`s and keeps track of them for a ``ThreadGroup``, so that a
/// group's shutdown cancels them and waits for them under its deadline like it does for threads.
///
/// ```swift
/// let tasks = try group.makeTaskTracker(name: "tasks")
/// try tasks.spawn(name: "refresh-feeds") {
///     while !Task.isCancelled { await refreshFeeds() }
/// }
/// let report = await group.shutdown(timeout: .seconds(2))
/// // A task still running at the deadline is listed: `stuck task "refresh-feeds": cancelled 2000.1ms ago, still running`
/// ```
///
/// Stopping the tracker (with its group, or by ``requestStop(reason:)``) cancels every task it
/// tracks and refuses new ones (``ThreadError/Code/groupStopped``). The group's join then waits
/// for the tasks to finish, blocking the joining thread (never beyond the deadline; the async
/// ``ThreadGroup/shutdown(until:policy:)-2tlmb`` joins on a dedicated thread, not on the
/// cooperative pool). Cancellation is cooperative: a task that does not look at it keeps running,
/// and the report names it, by the name given at spawn, as a `stuck task`. Tasks that finish leave
/// the tracker, so a long-lived tracker does not grow.
public final class TaskTracker: ThreadOwner, CustomStringConvertible {
    /// The tracker's name: its node's name in reports, the last component of its path.
    public let name: String

    struct Tracked {
        var name: String
        /// Nil for the moment between registration and the task's creation.
        var task: Task<Void, Never>?
    }

    struct State {
        /// Tasks running, by spawn order.
        var tasks: [UInt64: Tracked] = [:]
        var nextID: UInt64 = 0
        var stopReason: StopReason?
        var stopRequestedAt: ContinuousClock.Instant?
        /// Tasks that were running at the stop and have finished since.
        var finishedAfterStop = 0
        /// Joins asleep (or about to sleep) waiting for tasks to finish.
        var joiners = 0
    }

    private let state = Lock<State>(State())
    private let changes = EventCount()

    /// Creates a tracker that belongs to no group yet: ``ThreadGroup/adopt(_:stopPriority:)`` it,
    /// or use ``ThreadGroup/makeTaskTracker(name:stopPriority:)``, which does both.
    /// - Throws: ``ThreadError/Code/invalidArgument`` for an empty name or one containing `/`.
    public init(name: String) throws(ThreadError) {
        guard !name.isEmpty, !name.contains("/") else {
            throw .invalidArgument("a task tracker's name must be non-empty and contain no '/': \(name.debugDescription)")
        }
        self.name = name
    }

    /// Starts `operation` in a new unstructured `Task` (named `name`, at `priority`) and tracks it
    /// until it finishes.
    ///
    /// The task inherits task-local values as `Task.init` does, and runs on `operation`'s
    /// isolation. It should end soon after it is cancelled: check `Task.isCancelled`, or use
    /// cancellation-aware calls (`Task.sleep`, `withTaskCancellationHandler`).
    /// - Parameters:
    ///   - name: the name in reports (and the Swift task's name); must not be empty.
    ///   - priority: the task's priority; inherited as by `Task.init` if nil.
    ///   - operation: the work.
    /// - Returns: the task, to await or cancel on its own. Awaiting it waits for `operation`.
    /// - Throws: ``ThreadError/Code/groupStopped`` once the tracker is stopping or stopped (the
    ///   operation is not started); ``ThreadError/Code/invalidArgument`` for an empty name.
    @discardableResult
    public func spawn(
        name: String,
        priority: TaskPriority? = nil,
        operation: sending @escaping @isolated(any) () async -> Void
    ) throws(ThreadError) -> Task<Void, Never> {
        let id = try register(name: name)
        return attach(id, Task(name: name, priority: priority) {
            await operation()
            self.taskFinished(id)
        })
    }

    /// ``spawn(name:priority:operation:)`` for a task that prefers `executor` (a
    /// ``ManagedTaskExecutor``'s tracked tasks).
    func spawn(
        name: String, priority: TaskPriority?, executorPreference executor: any TaskExecutor,
        operation: sending @escaping () async -> Void
    ) throws(ThreadError) -> Task<Void, Never> {
        let id = try register(name: name)
        return attach(id, Task(name: name, executorPreference: executor, priority: priority) {
            await operation()
            self.taskFinished(id)
        })
    }

    /// Registers a task about to be created under `name`; returns its id.
    private func register(name: String) throws(ThreadError) -> UInt64 {
        guard !name.isEmpty else { throw .invalidArgument("a task's name must not be empty") }
        // Registered before the task exists, so a stop either comes first (nothing is started)
        // or finds the entry: a join then waits for the task, and the task, once attached below,
        // is cancelled at once if the stop came meanwhile.
        return try state.withLock { (state) throws(ThreadError) -> UInt64 in
            guard state.stopReason == nil else {
                throw ThreadError(
                    code: .groupStopped,
                    message: "cannot spawn task \(name.debugDescription): task tracker \(self.name.debugDescription) is stopping or stopped")
            }
            let id = state.nextID
            state.nextID += 1
            state.tasks[id] = Tracked(name: name, task: nil)
            return id
        }
    }

    /// Attaches the created task to its entry, and cancels it at once if a stop came meanwhile.
    private func attach(_ id: UInt64, _ task: Task<Void, Never>) -> Task<Void, Never> {
        let stoppedMeanwhile = state.withLock { state -> Bool in
            // Absent if the task has finished already.
            if state.tasks[id] != nil { state.tasks[id]?.task = task }
            return state.stopReason != nil
        }
        if stoppedMeanwhile { task.cancel() }
        return task
    }

    /// How many tracked tasks are running.
    public var count: Int { state.withLock { $0.tasks.count } }

    /// The names of the tracked tasks that are running, in spawn order.
    public var runningTaskNames: [String] {
        state.withLock { $0.tasks.sorted { $0.key < $1.key }.map(\.value.name) }
    }

    /// Whether a stop has been requested (spawns are refused).
    public var isStopRequested: Bool { state.withLock { $0.stopReason != nil } }

    /// The tracker's name, whether it is stopping, and how many tasks run.
    public var description: String {
        let (count, stopping) = state.withLock { ($0.tasks.count, $0.stopReason != nil) }
        return "TaskTracker(\(name.debugDescription), \(count) running\(stopping ? ", stopping" : ""))"
    }

    private func taskFinished(_ id: UInt64) {
        let wake = state.withLock { state -> Bool in
            guard state.tasks.removeValue(forKey: id) != nil else { return false }
            if state.stopReason != nil { state.finishedAfterStop += 1 }
            return state.joiners > 0
        }
        if wake { changes.signal() }
    }

    // MARK: ThreadOwner

    /// Refuses new spawns and cancels every tracked task, without waiting. Cancellation handlers
    /// of the tasks run on the calling thread, as `Task.cancel()` runs them. Idempotent.
    public func requestStop(reason: StopReason) {
        let tasks = state.withLock { state -> [Task<Void, Never>] in
            guard state.stopReason == nil else { return [] }
            state.stopReason = reason
            state.stopRequestedAt = .now
            return state.tasks.values.compactMap(\.task)
        }
        for task in tasks { task.cancel() }
    }

    /// Waits until every tracked task has finished or `deadline` passes, blocking the calling
    /// thread on a futex (never past the deadline), and reports each task still running as a
    /// `stuck` entry of kind ``ShutdownReport/ThreadEntry/Kind/task`` named as at spawn.
    ///
    /// Call it after ``requestStop(reason:)`` (a group's shutdown does): it cancels nothing itself.
    /// From async code, shut down the group with its async `shutdown`, which joins on a dedicated
    /// thread; blocking a cooperative thread here can keep the tasks from running to their end.
    public func join(until deadline: ContinuousClock.Instant, path: String) -> ShutdownReport.Node {
        var sleeping = false
        while true {
            let wasSleeping = sleeping
            let value = state.withLock { state -> UInt32? in
                if wasSleeping { state.joiners -= 1 }
                if state.tasks.isEmpty || ContinuousClock.now >= deadline { return nil }
                state.joiners += 1
                return changes.value
            }
            guard let value else { break }
            sleeping = true
            changes.wait(after: value, until: deadline)
        }
        let now = ContinuousClock.now
        let (remaining, finished, stoppedAt) = state.withLock { state in
            (state.tasks.sorted { $0.key < $1.key }.map(\.value.name), state.finishedAfterStop, state.stopRequestedAt)
        }
        let entries = remaining.map { taskName in
            ShutdownReport.ThreadEntry(
                name: taskName, groupPath: path, purpose: nil, tid: nil, status: .stuck, acknowledged: false,
                sinceStopNanoseconds: stoppedAt.map { $0.duration(to: now).nanosecondsClamped },
                error: nil, kernel: nil, kind: .task)
        }
        return ShutdownReport.Node(name: name, path: path, finished: remaining.isEmpty, entries: entries, joined: finished)
    }
}

extension ThreadGroup {
    /// Creates a ``TaskTracker`` owned by this group: stopping the group cancels its tasks, and
    /// the group's shutdown waits for them under its deadline. Its path is `<group path>/<name>`.
    /// - Parameters:
    ///   - name: the tracker's name; must not be empty or contain `/`.
    ///   - stopPriority: for ``ShutdownPolicy/ordered``: higher stops earlier.
    /// - Throws: ``ThreadError/Code/invalidArgument`` for a bad name;
    ///   ``ThreadError/Code/groupStopped`` once this group is stopping.
    public func makeTaskTracker(name: String, stopPriority: Int = 0) throws(ThreadError) -> TaskTracker {
        let tracker = try TaskTracker(name: name)
        try adopt(tracker, stopPriority: stopPriority)
        return tracker
    }
}
