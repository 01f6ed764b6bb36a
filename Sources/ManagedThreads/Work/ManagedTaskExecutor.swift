import Logging
import Synchronization

/// A Swift `TaskExecutor` whose jobs run on managed threads: blocking work in async code, off
/// the cooperative pool, stopped with its group under one deadline.
///
/// ```swift
/// let pool = try group.makeTaskExecutor(name: "db", threads: 4)
/// let rows = await withTaskExecutorPreference(pool) {
///     await database.query(sql)          // and every child task: on db-0 … db-3
/// }
/// try pool.spawn(name: "vacuum") { await database.vacuum() }   // tracked: cancelled at shutdown
/// ```
///
/// Jobs (the pieces of a task between two suspension points) run in the order they were enqueued,
/// so the jobs of many tasks interleave fairly; a job that blocks in a system call blocks only
/// its thread. The workers are the threads of a child group at ``path``, named `<name>-0`, ….
///
/// **Shutdown**, with the group (or `shutdown(until:)`), under the group's deadline:
/// - the tasks started with ``spawn(name:priority:operation:)`` are cancelled, and the report lists
///   each one still running at the deadline as a `stuck task`, by name;
/// - the queue closes: jobs still waiting in it, and **every job enqueued afterwards, are never
///   dropped**: they run on Swift's global concurrent executor, and the executor logs one warning
///   saying so. (Dropping one would leave its task suspended forever; crashing would take the
///   process down for a late `await`.) Tasks that prefer this executor therefore always finish;
///   after a shutdown they finish on the cooperative pool;
/// - the workers finish the job they are running and end; a worker still inside a job at the
///   deadline is reported `stuck`, like any thread, and the shutdown returns anyway.
public final class ManagedTaskExecutor: TaskExecutor, Sendable, CustomStringConvertible {
    /// The executor's name: its group's name and its workers' name prefix.
    public let name: String
    /// Where the workers sit in the tree and in reports: `<group path>/<name>`.
    public var path: String { group.path }
    /// The worker threads, `<name>-0` first.
    public var threads: [ManagedThread] { workers.withLock { $0 } }

    /// The most worker threads one executor may have.
    public static let maximumThreads = 4096

    let group: ThreadGroup
    let queue = TaskJobQueue()
    private let tracker: TaskTracker
    fileprivate let workers = Lock<[ManagedThread]>([])
    private let warnedLate = Atomic<Bool>(false)
    private let lateJobs = Atomic<Int>(0)

    init(name: String, group: ThreadGroup, tracker: TaskTracker) {
        self.name = name
        self.group = group
        self.tracker = tracker
    }

    /// Runs `job` on a worker; after the workers stopped, on the global concurrent executor.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !queue.push(job) { runElsewhere([job]) }
    }

    /// Jobs waiting for a worker.
    public var queuedCount: Int { queue.count }

    /// How many jobs ran on the global concurrent executor because the workers had stopped.
    public var jobsRunElsewhere: Int { lateJobs.load(ordering: .relaxed) }

    /// Starts `operation` in a new task that prefers this executor, tracked by it: a shutdown
    /// cancels it and waits for it under its deadline, and names it if it is still running then.
    /// - Parameters:
    ///   - name: the task's name (Swift's task name, and the name in reports); must not be empty.
    ///   - priority: the task's priority; inherited as by `Task.init` if nil.
    ///   - operation: the work; it should end soon after it is cancelled.
    /// - Returns: the task, to await or cancel on its own.
    /// - Throws: ``ThreadError/Code/groupStopped`` once the executor is stopping;
    ///   ``ThreadError/Code/invalidArgument`` for an empty name.
    @discardableResult
    public func spawn(
        name: String, priority: TaskPriority? = nil, operation: sending @escaping () async -> Void
    ) throws(ThreadError) -> Task<Void, Never> {
        try tracker.spawn(name: name, priority: priority, executorPreference: self, operation: operation)
    }

    /// Stops the executor and joins its workers and tasks within `timeout`; see `shutdown(until:)`.
    @available(*, noasync, message: "blocks the calling thread; use the async shutdown")
    @discardableResult
    public func shutdown(timeout: Duration) -> ShutdownReport {
        group.shutdown(until: .after(timeout))
    }

    /// Stops the executor under one deadline, as ``ThreadGroup/shutdown(until:policy:)-2d25y`` on
    /// its group: tracked tasks are cancelled, running jobs finish, and the report names every
    /// worker still busy and every tracked task still running at the deadline. Idempotent.
    @available(*, noasync, message: "blocks the calling thread; use the async shutdown")
    @discardableResult
    public func shutdown(until deadline: ContinuousClock.Instant) -> ShutdownReport {
        group.shutdown(until: deadline)
    }

    /// Async form of `shutdown(until:)`: the joins run on a dedicated thread.
    @discardableResult
    public func shutdown(until deadline: ContinuousClock.Instant) async -> ShutdownReport {
        await group.shutdown(until: deadline)
    }

    /// Async form of ``shutdown(timeout:)``.
    @discardableResult
    public func shutdown(timeout: Duration) async -> ShutdownReport {
        await group.shutdown(until: .after(timeout))
    }

    /// The path, the number of workers and of queued jobs.
    public var description: String {
        "ManagedTaskExecutor(\(path.debugDescription), \(threads.count) threads, \(queuedCount) queued)"
    }

    /// Hands jobs the workers will not run to the global concurrent executor, warning once.
    func runElsewhere(_ jobs: [UnownedJob]) {
        guard !jobs.isEmpty else { return }
        lateJobs.add(jobs.count, ordering: .relaxed)
        if !warnedLate.exchange(true, ordering: .relaxed) {
            group.logger.warning(
                "jobs for a stopped task executor run on the global concurrent executor",
                metadata: ["executor": "\(path)", "jobs": "\(jobs.count)"])
        }
        for job in jobs { globalConcurrentExecutor.enqueue(ExecutorJob(job)) }
    }

    /// A worker's body: runs jobs until its token is stopped. The stop closes the queue and hands
    /// what waits in it to the global executor at once (after the tracked tasks were cancelled:
    /// a group signals its components before it runs its threads' `onStop` callbacks), so queued
    /// tasks do not wait for a worker stuck in a job.
    func runWorker(token: StopToken) {
        let queue = self.queue
        token.onStop { self.runElsewhere(queue.close()) }
        let executor = asUnownedTaskExecutor()
        while let job = queue.next(stop: token.state) {
            job.runSynchronously(on: executor)
        }
        runElsewhere(queue.close())
    }
}

extension ThreadGroup {
    /// Creates a ``ManagedTaskExecutor``: a child group named `name` with `threads` worker threads
    /// (`<name>-0`, …) and a task tracker (`<name>/tasks`) for ``ManagedTaskExecutor/spawn(name:priority:operation:)``.
    ///
    /// - Parameters:
    ///   - name: the executor's name; must not be empty or contain `/` or NUL.
    ///   - threads: how many workers, 1 through ``ManagedTaskExecutor/maximumThreads``.
    ///   - options: the workers' thread options.
    ///   - stopPriority: for ``ShutdownPolicy/ordered``: higher stops earlier.
    ///   - fileID: where the call is, the workers' ``ManagedThread/spawnSite`` (leave the default).
    ///   - line: the line of the call (leave the default).
    /// - Throws: ``ThreadError/Code/invalidArgument`` for a bad name, thread count or stack size;
    ///   ``ThreadError/Code/groupStopped`` once this group is stopping; a
    ///   ``ThreadError/Code/systemCall`` error when the system refuses a worker (those already
    ///   started are then stopped, and reaped with this group).
    public func makeTaskExecutor(
        name: String, threads: Int, options: ThreadOptions = ThreadOptions(), stopPriority: Int = 0,
        fileID: String = #fileID, line: Int = #line
    ) throws(ThreadError) -> ManagedTaskExecutor {
        guard (1...ManagedTaskExecutor.maximumThreads).contains(threads) else {
            throw .invalidArgument("a task executor needs 1...\(ManagedTaskExecutor.maximumThreads) threads, not \(threads)")
        }
        try ManagedThread.validate(name: "\(name)-\(threads - 1)", options: options)
        let group = try makeChild(name: name, stopPriority: stopPriority)
        let executor = ManagedTaskExecutor(name: name, group: group, tracker: try group.makeTaskTracker(name: "tasks"))
        do throws(ThreadError) {
            for index in 0..<threads {
                let worker = try group.spawn(
                    name: "\(name)-\(index)", purpose: "worker of task executor \(group.path)", options: options,
                    fileID: fileID, line: line
                ) { token in
                    executor.runWorker(token: token)
                }
                executor.workers.withLock { $0.append(worker) }
            }
        } catch {
            group.requestStop(reason: .user("task executor \(group.path) could not start all its workers"))
            throw error
        }
        return executor
    }
}
