import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A `SerialExecutor` that runs every job on one managed thread: for an actor whose code must
/// always run on the same thread (a C library with thread-affine state, a render loop).
///
/// ```swift
/// actor Renderer {
///     nonisolated let executor: ManagedSerialExecutor
///     nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
///     init(group: ThreadGroup) throws { executor = try group.makeSerialExecutor(name: "render") }
///     func draw() { /* always on the thread "render" */ }
/// }
/// ```
///
/// The thread is ``thread``, in a child group at ``path``. `checkIsolated()` and
/// `isIsolatingCurrentContext()` answer for the thread that runs the jobs, so
/// `assumeIsolated` and isolation checks work from code the thread runs outside a task (a C
/// callback on it, say).
///
/// **Shutdown**, with the group (or `shutdown(until:)`): the thread finishes the job it
/// is running and ends (if the job does not end by the deadline, the thread is reported `stuck`).
/// Jobs still queued then, and jobs enqueued afterwards, are **never dropped**: they run one at a
/// time, in order, on a short-lived thread named `<name>-late` outside the group, which ends
/// when none are left; the executor logs one warning saying so. They cannot go to the global
/// concurrent executor, which would run two of the actor's jobs at once.
public final class ManagedSerialExecutor: SerialExecutor, Sendable, CustomStringConvertible {
    /// The executor's name: its group's and its thread's.
    public let name: String
    /// Where the thread sits in the tree and in reports: `<group path>/<name>`.
    public var path: String { group.path }
    /// The one thread that runs the jobs while the executor runs.
    public var thread: ManagedThread { worker.withLock { $0! } }

    let group: ThreadGroup
    let queue = TaskJobQueue()
    fileprivate let worker = Lock<ManagedThread?>(nil)
    /// The pthread that runs jobs now (the worker, or the late runner); 0 when none does.
    private let runner = Atomic<UInt>(0)
    /// Jobs after the worker stopped, and whether a late runner is draining them.
    private let late = Lock<(jobs: [UnownedJob], draining: Bool, warned: Bool)>(([], false, false))
    private let lateJobs = Atomic<Int>(0)

    init(name: String, group: ThreadGroup) {
        self.name = name
        self.group = group
    }

    /// Runs `job` on the thread; once it has stopped, on the late runner.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if !queue.push(job) { runLate { [job] } }
    }

    /// This executor as the runtime refers to it (return it from an actor's `unownedExecutor`).
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Whether the calling thread is the one running this executor's jobs.
    public var isCurrent: Bool {
        let current = runner.load(ordering: .acquiring)
        return current != 0 && pthread_equal(pthread_t(current), pthread_self()) != 0
    }

    /// Traps unless called on the thread running this executor's jobs (the runtime calls it for
    /// `assumeIsolated` and `preconditionIsolated` when it cannot tell by itself).
    public func checkIsolated() {
        precondition(isCurrent, "not on the thread of serial executor \(path.debugDescription)")
    }

    /// Whether the calling thread is the one running this executor's jobs.
    public func isIsolatingCurrentContext() -> Bool? { isCurrent }

    /// Jobs waiting to run on the thread.
    public var queuedCount: Int { queue.count }

    /// How many jobs ran on the late runner because the thread had stopped.
    public var jobsRunLate: Int { lateJobs.load(ordering: .relaxed) }

    /// Stops the thread and joins it within `timeout`; see `shutdown(until:)`.
    @available(*, noasync, message: "blocks the calling thread; use the async shutdown")
    @discardableResult
    public func shutdown(timeout: Duration) -> ShutdownReport {
        group.shutdown(until: .after(timeout))
    }

    /// Stops the thread under one deadline, as ``ThreadGroup/shutdown(until:policy:)-2d25y`` on its
    /// group. Idempotent.
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

    /// The path and the number of queued jobs.
    public var description: String {
        "ManagedSerialExecutor(\(path.debugDescription), \(queuedCount) queued)"
    }

    /// The thread's body: runs jobs until its token is stopped, then hands on what is left.
    func runWorker(token: StopToken) {
        let queue = self.queue
        token.onStop { queue.wakeAll() }
        let executor = asUnownedSerialExecutor()
        runner.store(UInt(pthread_self()), ordering: .releasing)
        while let job = queue.next(stop: token.state) {
            job.runSynchronously(on: executor)
        }
        runner.store(0, ordering: .releasing)
        // No job runs here any more: the late runner may start. Closing under the late lock keeps
        // the order: what was queued goes before what is enqueued once the queue is closed.
        runLate { queue.close() }
    }

    /// Queues jobs for the late runner, starting it if none drains. `take` runs under the lock.
    private func runLate(_ take: () -> [UnownedJob]) {
        let (start, warn, count) = late.withLock { late -> (Bool, Bool, Int) in
            let jobs = take()
            guard !jobs.isEmpty else { return (false, false, 0) }
            late.jobs += jobs
            let start = !late.draining
            late.draining = true
            defer { late.warned = true }
            return (start, !late.warned, jobs.count)
        }
        guard count > 0 else { return }
        lateJobs.add(count, ordering: .relaxed)
        if warn {
            group.logger.warning(
                "jobs for a stopped serial executor run on a late runner thread",
                metadata: ["executor": "\(path)", "jobs": "\(count)"])
        }
        guard start else { return }
        do {
            _ = try ManagedThread.spawn(name: "\(name)-late", purpose: "late jobs of serial executor \(path)") { _ in
                self.drainLate()
            }
        } catch {
            // No thread to be had: drain here, on the enqueuing thread (the jobs stay serial: this
            // thread holds the draining flag).
            drainLate()
        }
    }

    /// Runs late jobs one at a time until none are left.
    private func drainLate() {
        let executor = asUnownedSerialExecutor()
        let previous = runner.exchange(UInt(pthread_self()), ordering: .acquiringAndReleasing)
        defer { runner.store(previous, ordering: .releasing) }
        while let job = late.withLock({ late -> UnownedJob? in
            if late.jobs.isEmpty {
                late.draining = false
                return nil
            }
            return late.jobs.removeFirst()
        }) {
            job.runSynchronously(on: executor)
        }
    }
}

extension ThreadGroup {
    /// Creates a ``ManagedSerialExecutor``: a child group named `name` with one thread, also named
    /// `name`, that runs every job.
    /// - Parameters:
    ///   - name: the executor's and the thread's name; must not be empty or contain `/` or NUL.
    ///   - options: the thread's options.
    ///   - stopPriority: for ``ShutdownPolicy/ordered``: higher stops earlier.
    ///   - fileID: where the call is, the thread's ``ManagedThread/spawnSite`` (leave the default).
    ///   - line: the line of the call (leave the default).
    /// - Throws: ``ThreadError/Code/invalidArgument`` for a bad name or stack size;
    ///   ``ThreadError/Code/groupStopped`` once this group is stopping; a
    ///   ``ThreadError/Code/systemCall`` error when the system refuses the thread.
    public func makeSerialExecutor(
        name: String, options: ThreadOptions = ThreadOptions(), stopPriority: Int = 0,
        fileID: String = #fileID, line: Int = #line
    ) throws(ThreadError) -> ManagedSerialExecutor {
        try ManagedThread.validate(name: name, options: options)
        let group = try makeChild(name: name, stopPriority: stopPriority)
        let executor = ManagedSerialExecutor(name: name, group: group)
        let thread = try group.spawn(
            name: name, purpose: "thread of serial executor \(group.path)", options: options, fileID: fileID, line: line
        ) { token in
            executor.runWorker(token: token)
        }
        executor.worker.withLock { $0 = thread }
        return executor
    }
}
