import Synchronization

/// A fixed-size pool of managed threads, owned by a ``ThreadGroup``, that runs *blocking* work:
/// calls into C libraries, synchronous file or database I/O, CPU-bound loops. It is not a
/// replacement for Swift concurrency; use it for the work that must not run on the cooperative
/// pool.
///
/// ```swift
/// let io = try group.makeExecutor(name: "io", threads: 4)
/// let job = try io.submit(name: "checksum") { token in try checksum(file, stopping: token) }
/// let sum = try await job.value            // suspends the task; blocks no cooperative thread
/// ```
///
/// The workers are the executor's threads, in a child group at ``path`` (`<group path>/<name>`),
/// named `<name>-0`, `<name>-1`, …. The executor stops with its group (or on its own
/// ``shutdown(until:)-69ssz``), under the group's deadline:
///
/// - jobs still queued are cancelled: their work never runs and waiting on them throws
///   ``ThreadError`` ``ThreadError/Code/cancelled``;
/// - running work sees the stop on the ``StopToken`` it was given (its worker's token) and should
///   return soon; a job that ignores it leaves its worker `stuck` in the shutdown report, and the
///   shutdown still returns by its deadline;
/// - ``submit(name:_:)`` throws ``ThreadError/Code/groupStopped`` from the moment the stop is
///   requested.
///
/// The queue is unbounded unless the executor was made with `maxQueued`; then a submit beyond
/// that many waiting jobs throws ``ThreadError/Code/queueFull`` at once (submit never blocks).
/// A job whose work throws fails with that error; its worker goes on with the next job.
public final class BlockingExecutor: Sendable, CustomStringConvertible {
    /// The executor's name, as given to ``ThreadGroup/makeExecutor(name:threads:maxQueued:options:stopPriority:fileID:line:)``.
    public let name: String
    /// Where its workers sit in the tree and in reports: `<group path>/<name>`.
    public var path: String { group.path }
    /// The worker threads, `<name>-0` first. Stopping any one of them stops the whole executor.
    public let threads: [ManagedThread]
    /// The most jobs that may wait to start, or nil for no limit.
    public let maxQueued: Int?

    /// The most worker threads one executor may have.
    public static let maximumThreads = 4096

    let group: ThreadGroup
    let queue: ExecutorQueue
    private let submitted = Atomic<UInt64>(0)

    init(name: String, group: ThreadGroup, queue: ExecutorQueue, threads: [ManagedThread]) {
        self.name = name
        self.group = group
        self.queue = queue
        self.threads = threads
        self.maxQueued = queue.maxQueued
    }

    /// Jobs submitted that have not started (nor been cancelled).
    public var queuedCount: Int { queue.count }

    /// Whether ``submit(name:_:)`` would accept work now (the executor and its group are running;
    /// a bounded queue may still be full).
    public var isAcceptingWork: Bool {
        queue.isOpen && group.state.withLock { $0.phase == .running }
    }

    /// Queues `work` to run on one of the workers, in submission order.
    ///
    /// - Parameters:
    ///   - name: the job's name in errors and descriptions; `job-<n>` (numbered from 1 per
    ///     executor) if nil.
    ///   - work: the blocking work. It receives its worker's ``StopToken``: check it, or wait on it,
    ///     so the job ends soon when the executor stops. What it returns or throws is the job's
    ///     outcome. It runs at most once; if the job is cancelled first, it never runs and its
    ///     captures are released.
    /// - Returns: the job's handle: wait for it with ``Job/value-swift.property`` (async) or
    ///   ``Job/value(until:)``, or ``Job/cancel()`` it while it waits.
    /// - Throws: ``ThreadError/Code/groupStopped`` once the executor or its group is stopping;
    ///   ``ThreadError/Code/queueFull`` when `maxQueued` jobs already wait. Either way nothing
    ///   was queued.
    public func submit<Value: Sendable>(
        name: String? = nil, _ work: sending @escaping (StopToken) throws -> Value
    ) throws(ThreadError) -> Job<Value> {
        try Fork.check("submit to executor \(self.name.debugDescription)")
        let number = submitted.add(1, ordering: .relaxed).newValue
        let jobName = name ?? "job-\(number)"
        let job = Job(name: jobName, executorPath: path, queue: queue, work: work)
        // The group's phase, beside the queue's own flag: under the ordered policy a group is
        // stopping (and refuses new work) before the stage that stops these workers comes.
        guard group.state.withLock({ $0.phase == .running }) else {
            throw ExecutorQueue.stoppedError(job: jobName, path: path)
        }
        try queue.enqueue(job, name: jobName)
        return job
    }

    /// Asks the workers to stop, without waiting: cancels every queued job and sets the workers'
    /// tokens. ``shutdown(until:)-69ssz`` does this and then joins.
    public func requestStop(reason: StopReason = .requested) {
        group.requestStop(reason: reason)
    }

    /// Stops the executor and joins its workers within `timeout`; see ``shutdown(until:)-69ssz``.
    @available(*, noasync, message: "blocks the calling thread; use the async shutdown")
    @discardableResult
    public func shutdown(timeout: Duration) -> ShutdownReport {
        shutdown(until: .after(timeout))
    }

    /// Stops the executor and joins its workers under one deadline, like
    /// ``ThreadGroup/shutdown(until:policy:)-2d25y`` on its group: queued jobs are cancelled,
    /// running ones see their token, and the call returns by the deadline with a report that
    /// names every worker still stuck in a job. Idempotent.
    @available(*, noasync, message: "blocks the calling thread; use the async shutdown")
    @discardableResult
    public func shutdown(until deadline: ContinuousClock.Instant) -> ShutdownReport {
        group.shutdown(until: deadline)
    }

    /// Async form of ``shutdown(until:)-69ssz``: the joins run on a dedicated thread, not on the Swift
    /// concurrency pool.
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
        "BlockingExecutor(\(path.debugDescription), \(threads.count) threads, \(queuedCount) queued)"
    }

    /// A worker's body: runs jobs until the queue closes or the worker's token is stopped.
    static func runWorker(queue: ExecutorQueue, token: StopToken, name: String) {
        // A stop of any worker (the group's stop reaches them all) closes the queue and cancels
        // what waits in it. onStop runs at once if the stop came before this line.
        token.onStop { queue.close(reason: token.reason ?? .requested) }
        while let job = queue.next(stop: token.state) {
            job.run(token: token, worker: name)
        }
    }
}

extension ThreadGroup {
    /// Creates a ``BlockingExecutor``: a child group named `name` with `threads` worker threads
    /// (`<name>-0`, …) that take jobs from one queue.
    ///
    /// - Parameters:
    ///   - name: the executor's name; the child group's name, and the workers' name prefix. Must
    ///     not be empty or contain `/` or NUL.
    ///   - threads: how many workers, 1 through ``BlockingExecutor/maximumThreads``.
    ///   - maxQueued: the most jobs that may wait to start; nil (the default) for no limit.
    ///   - options: the workers' thread options (stack size, stack allocation, background flag).
    ///   - stopPriority: for ``ShutdownPolicy/ordered``: higher stops earlier.
    ///   - fileID: where the call is, the workers' ``ManagedThread/spawnSite`` (leave the default).
    ///   - line: the line of the call (leave the default).
    /// - Throws: ``ThreadError/Code/invalidArgument`` for a bad name, thread count, `maxQueued`
    ///   or stack size; ``ThreadError/Code/groupStopped`` once this group is stopping; a
    ///   ``ThreadError/Code/systemCall`` error when the system refuses a worker (the workers
    ///   already started are then stopped, and reaped with this group).
    public func makeExecutor(
        name: String,
        threads: Int,
        maxQueued: Int? = nil,
        options: ThreadOptions = ThreadOptions(),
        stopPriority: Int = 0,
        fileID: String = #fileID,
        line: Int = #line
    ) throws(ThreadError) -> BlockingExecutor {
        guard (1...BlockingExecutor.maximumThreads).contains(threads) else {
            throw .invalidArgument(
                "an executor needs 1...\(BlockingExecutor.maximumThreads) threads, not \(threads)")
        }
        if let maxQueued, maxQueued < 1 {
            throw .invalidArgument("maxQueued must be at least 1 (or nil for no limit), not \(maxQueued)")
        }
        // The workers' names and options, checked before anything is created.
        try ManagedThread.validate(name: "\(name)-\(threads - 1)", options: options)
        let group = try makeChild(name: name, stopPriority: stopPriority)
        let queue = ExecutorQueue(path: group.path, maxQueued: maxQueued)
        var workers: [ManagedThread] = []
        do throws(ThreadError) {
            for index in 0..<threads {
                let workerName = "\(name)-\(index)"
                workers.append(
                    try group.spawn(
                        name: workerName, purpose: "worker of executor \(group.path)", options: options, fileID: fileID, line: line
                    ) { token in
                        BlockingExecutor.runWorker(queue: queue, token: token, name: workerName)
                    })
            }
        } catch {
            // Nothing was handed out yet: stop the workers that did start (they are idle and end
            // at once); the group reaps them at its shutdown.
            group.requestStop(reason: .user("executor \(group.path) could not start all its workers"))
            queue.close(reason: .requested)
            throw error
        }
        return BlockingExecutor(name: name, group: group, queue: queue, threads: workers)
    }
}
