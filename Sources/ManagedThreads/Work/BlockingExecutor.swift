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
    /// The executor's name, as given to ``ThreadGroup/makeExecutor(name:threads:maxQueued:options:stopPriority:)``.
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
    /// - Throws: ``ThreadError/Code/invalidArgument`` for a bad name, thread count, `maxQueued`
    ///   or stack size; ``ThreadError/Code/groupStopped`` once this group is stopping; a
    ///   ``ThreadError/Code/systemCall`` error when the system refuses a worker (the workers
    ///   already started are then stopped, and reaped with this group).
    public func makeExecutor(
        name: String,
        threads: Int,
        maxQueued: Int? = nil,
        options: ThreadOptions = ThreadOptions(),
        stopPriority: Int = 0
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
                    try group.spawn(name: workerName, purpose: "worker of executor \(group.path)", options: options) { token in
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

/// What became of a ``Job``.
public enum JobStatus: String, Sendable, Hashable, CustomStringConvertible {
    /// Submitted, waiting for a worker.
    case queued
    /// A worker is running its work.
    case running
    /// The work returned a value.
    case succeeded
    /// The work threw; the job's value rethrows that error.
    case failed
    /// Cancelled before it started; the work never ran.
    case cancelled

    /// The status's name.
    public var description: String { rawValue }
}

/// The handle of one piece of work submitted to a ``BlockingExecutor``.
///
/// Wait for the outcome with ``value-swift.property`` (async: suspends the task, blocks no
/// thread) or ``value(until:)`` (blocking, with a deadline). Both return what the work returned,
/// or throw what it threw; ``ThreadError/Code/cancelled`` when the job was cancelled before it
/// started. Any number of waiters may wait at once, from threads and tasks alike.
public final class Job<Value: Sendable>: Sendable, CustomStringConvertible {
    /// The name given at submit, or `job-<n>`.
    public let name: String
    /// The path of the executor it was submitted to.
    public let executorPath: String
    /// When it was submitted.
    public let submittedAt: ContinuousClock.Instant

    enum Phase {
        case queued
        case running(worker: String, since: ContinuousClock.Instant)
        case finished(Result<Value, any Error>, cancelled: Bool)
    }

    struct State {
        var phase = Phase.queued
        /// Tasks suspended in `value`, by waiter id.
        var waiters: [UInt64: CheckedContinuation<Value, any Error>] = [:]
        /// Waiters whose task was cancelled before they registered.
        var abandoned: Set<UInt64> = []
        var nextWaiter: UInt64 = 0
    }

    private let state = Lock<State>(State())
    /// Fires when the job finishes, for blocking waiters.
    private let finished = StopState()
    /// The queue, to take a cancelled job out of it at once (weak: the queue holds queued jobs).
    private weak let queue: ExecutorQueue?
    /// Where the job sits in the queue, assigned as it is queued.
    private let slotValue = Atomic<UInt64>(.max)
    // The work. Written once in init, before the job is queued (the queue's lock publishes it);
    // then taken exactly once by whoever moves the phase out of `queued` under `state`'s lock — the
    // worker that starts it, or the canceller, which drops it — so no two threads touch it.
    private nonisolated(unsafe) var work: ((StopToken) throws -> Value)?

    init(name: String, executorPath: String, queue: ExecutorQueue, work: sending @escaping (StopToken) throws -> Value) {
        self.name = name
        self.executorPath = executorPath
        self.queue = queue
        self.submittedAt = .now
        self.work = work
    }

    // MARK: State

    /// Where the job is: queued, running, or how it ended.
    public var status: JobStatus {
        state.withLock { state in
            switch state.phase {
            case .queued: .queued
            case .running: .running
            case .finished(_, cancelled: true): .cancelled
            case .finished(.success, _): .succeeded
            case .finished(.failure, _): .failed
            }
        }
    }

    /// Whether the job has ended (succeeded, failed or cancelled): waiting returns at once.
    public var isFinished: Bool { result != nil }

    /// The outcome once the job has ended, without waiting; nil while it is queued or running.
    public var result: Result<Value, any Error>? {
        state.withLock { state in
            if case .finished(let result, _) = state.phase { return result }
            return nil
        }
    }

    /// The name of the worker running the job, while it runs.
    public var worker: String? {
        state.withLock { state in
            if case .running(let worker, _) = state.phase { return worker }
            return nil
        }
    }

    /// The name, the executor and the status.
    public var description: String {
        let place = worker.map { " on \($0)" } ?? ""
        return "Job(\(name.debugDescription) in \(executorPath.debugDescription), \(status)\(place))"
    }

    // MARK: Waiting

    /// Waits for the job's outcome, suspending the task (no thread is blocked).
    ///
    /// Returns what the work returned, or throws what it threw, or ``ThreadError`` with
    /// ``ThreadError/Code/cancelled`` if the job was cancelled before it started.
    ///
    /// If the awaiting task is cancelled: a job still queued is cancelled (every waiter gets the
    /// ``ThreadError/Code/cancelled`` error, and the work never runs); a job already running cannot
    /// be interrupted, so this waiter alone stops waiting and throws `CancellationError`, and the
    /// job goes on (its outcome stays readable through ``result``).
    public var value: Value {
        get async throws {
            let id = state.withLock { state in
                defer { state.nextWaiter += 1 }
                return state.nextWaiter
            }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
                    let ready = state.withLock { state -> Result<Value, any Error>? in
                        if case .finished(let result, _) = state.phase { return result }
                        if state.abandoned.remove(id) != nil { return .failure(CancellationError()) }
                        state.waiters[id] = continuation
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            } onCancel: {
                self.awaitingTaskCancelled(waiter: id)
            }
        }
    }

    /// Tasks suspended in ``value`` right now (for tests: each one gave its thread back).
    var suspendedWaiters: Int { state.withLock { $0.waiters.count } }

    /// Waits for the job's outcome, blocking the calling thread at most until `deadline`.
    ///
    /// Safe from anywhere, including a worker of the same executor: the wait is bounded, so a job
    /// that cannot start because its waiter occupies the worker it needs ends in a timeout, not
    /// a deadlock.
    /// - Returns: what the work returned.
    /// - Throws: what the work threw; ``ThreadError`` with ``ThreadError/Code/cancelled`` if the
    ///   job was cancelled before it started; ``ThreadError/Code/timedOut`` if the deadline
    ///   passed first (the job goes on; nothing is cancelled).
    @available(*, noasync, message: "blocks the calling thread; use `await job.value`")
    public func value(until deadline: ContinuousClock.Instant) throws -> Value {
        if let result { return try result.get() }
        _ = finished.wait(until: deadline)
        if let result { return try result.get() }
        throw timedOutError()
    }

    /// Waits for the job's outcome for at most `timeout`; see ``value(until:)``.
    @available(*, noasync, message: "blocks the calling thread; use `await job.value`")
    public func value(timeout: Duration) throws -> Value {
        try value(until: .after(timeout))
    }

    // MARK: Cancelling

    /// Cancels the job if it has not started: its work never runs (its captures are released),
    /// it leaves the queue, and every waiter gets ``ThreadError`` with
    /// ``ThreadError/Code/cancelled``.
    ///
    /// Running work cannot be interrupted from outside; it sees a stop through its token when
    /// the executor stops.
    /// - Returns: true if this call cancelled the job; false if it had already started or ended.
    @discardableResult
    public func cancel() -> Bool {
        cancel(because: "cancel() was called")
    }

    /// Cancels the job if it is still queued, with `cause` in the error's message.
    func cancel(because cause: String) -> Bool {
        guard end(with: .failure(cancelledError(cause)), cancelling: true) else { return false }
        queue?.remove(slot: slotValue.load(ordering: .relaxed))
        return true
    }

    private func awaitingTaskCancelled(waiter id: UInt64) {
        if cancel(because: "the task awaiting it was cancelled") { return }
        // Running (or ended): stop this waiter only.
        let continuation = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            if case .finished = state.phase { return nil }
            if let continuation = state.waiters.removeValue(forKey: id) { return continuation }
            // The handler ran before the waiter registered: it finds this mark and stops at once.
            state.abandoned.insert(id)
            return nil
        }
        continuation?.resume(throwing: CancellationError())
    }

    // MARK: Running

    /// Ends the job with `result` unless it has ended; with `cancelling`, only if it has not
    /// started. Wakes every waiter. Returns whether this call ended it.
    private func end(with result: Result<Value, any Error>, cancelling: Bool) -> Bool {
        let waiters = state.withLock { state -> [CheckedContinuation<Value, any Error>]? in
            switch state.phase {
            case .finished: return nil
            case .running where cancelling: return nil
            default: break
            }
            state.phase = .finished(result, cancelled: cancelling)
            state.abandoned.removeAll()
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        guard let waiters else { return false }
        // Cancelled from `queued`: this call owns `work` now (see its declaration); drop it.
        if cancelling { work = nil }
        finished.requestStop(reason: .requested)
        for waiter in waiters { waiter.resume(with: result) }
        return true
    }

    private func cancelledError(_ cause: String) -> ThreadError {
        ThreadError(
            code: .cancelled,
            message: "job \(name.debugDescription) on executor \(executorPath.debugDescription) was cancelled before it started (\(cause)); its work did not run")
    }

    private func timedOutError() -> ThreadError {
        let now = ContinuousClock.now
        let whereabouts = state.withLock { state -> String in
            switch state.phase {
            case .queued:
                return "still queued after \(submittedAt.duration(to: now).formattedMilliseconds)"
            case .running(let worker, let since):
                return "running on \(worker) for \(since.duration(to: now).formattedMilliseconds)"
            case .finished:
                return "finished just now"
            }
        }
        return ThreadError(
            code: .timedOut,
            message: "job \(name.debugDescription) on executor \(executorPath.debugDescription) had not finished by the deadline (\(whereabouts)); it goes on: wait again, or cancel() it while it is queued")
    }
}

/// What a worker runs, whatever the job's value type.
protocol ExecutorJob: AnyObject, Sendable {
    /// Records the job's place in the queue (called once, as it is queued).
    func assign(slot: UInt64)
    /// Runs the work unless the job was cancelled; called once, by the worker that dequeued it.
    func run(token: StopToken, worker: String)
    /// Cancels the job if it has not started.
    func cancel(because cause: String) -> Bool
}

extension Job: ExecutorJob {
    func assign(slot: UInt64) {
        slotValue.store(slot, ordering: .relaxed)
    }

    func run(token: StopToken, worker: String) {
        let started = state.withLock { state -> Bool in
            guard case .queued = state.phase else { return false }
            state.phase = .running(worker: worker, since: .now)
            return true
        }
        // Cancelled between leaving the queue and starting: the canceller dropped the work.
        guard started, let work else { return }
        self.work = nil
        let result = Result<Value, any Error> { try work(token) }
        _ = end(with: result, cancelling: false)
    }
}

/// The executor's queue: FIFO, optionally bounded, closed for good when the executor stops.
final class ExecutorQueue: Sendable {
    struct State {
        /// Queued jobs by slot; the order of the slots is the submission order. A cancelled job
        /// leaves at once, so `jobs.count` is what waits.
        var jobs: [UInt64: any ExecutorJob] = [:]
        /// The next slot to run, and the next slot to fill.
        var head: UInt64 = 0
        var tail: UInt64 = 0
        /// Set when the queue closed.
        var closedBy: StopReason?
        /// Workers asleep (or about to sleep) waiting for a job.
        var idleWorkers = 0

        mutating func popFirst() -> (any ExecutorJob)? {
            while head < tail {
                let slot = head
                head += 1
                if let job = jobs.removeValue(forKey: slot) { return job }
            }
            return nil
        }
    }

    let path: String
    let maxQueued: Int?
    private let state = Lock<State>(State())
    private let changes = EventCount()
    /// How long an idle worker sleeps before looking again on its own (a safety net: it is woken
    /// when work comes and when the queue closes).
    private static let idleRecheck = Duration.seconds(10)

    init(path: String, maxQueued: Int?) {
        self.path = path
        self.maxQueued = maxQueued
    }

    var count: Int { state.withLock { $0.jobs.count } }
    var isOpen: Bool { state.withLock { $0.closedBy == nil } }

    static func stoppedError(job: String, path: String) -> ThreadError {
        ThreadError(
            code: .groupStopped,
            message: "cannot submit job \(job.debugDescription): executor \(path.debugDescription) is stopping or stopped")
    }

    /// Queues `job`, or throws without queuing it.
    func enqueue(_ job: any ExecutorJob, name: String) throws(ThreadError) {
        let wake = try state.withLock { (state) throws(ThreadError) -> Bool in
            if state.closedBy != nil { throw Self.stoppedError(job: name, path: path) }
            if let maxQueued, state.jobs.count >= maxQueued {
                throw ThreadError(
                    code: .queueFull,
                    message: "cannot submit job \(name.debugDescription): executor \(path.debugDescription) already has \(maxQueued) jobs waiting (maxQueued); retry later, shed the work, or raise maxQueued")
            }
            let slot = state.tail
            state.tail += 1
            job.assign(slot: slot)
            state.jobs[slot] = job
            return state.idleWorkers > 0
        }
        if wake { changes.signal(waking: 1) }
    }

    /// Takes a cancelled job out of the queue.
    func remove(slot: UInt64) {
        _ = state.withLock { $0.jobs.removeValue(forKey: slot) }
    }

    /// The next job for a worker, sleeping while there is none; nil when the worker should end:
    /// the queue closed, or the worker's own stop was requested (then it starts nothing more, and
    /// what waits is left for `close`, which its stop runs, to cancel).
    func next(stop: StopState) -> (any ExecutorJob)? {
        var sleeping = false
        while true {
            enum Step {
                case run(any ExecutorJob)
                case exit
                case sleep(UInt32)
            }
            let wasSleeping = sleeping
            let step = state.withLock { state -> Step in
                if wasSleeping { state.idleWorkers -= 1 }
                if state.closedBy != nil || stop.isStopRequested { return .exit }
                if let job = state.popFirst() { return .run(job) }
                state.idleWorkers += 1
                return .sleep(changes.value)
            }
            switch step {
            case .run(let job):
                return job
            case .exit:
                return nil
            case .sleep(let value):
                sleeping = true
                changes.wait(after: value, until: .after(Self.idleRecheck))
            }
        }
    }

    /// Closes the queue for good and cancels every job in it. Idempotent.
    func close(reason: StopReason) {
        let drained = state.withLock { state -> [any ExecutorJob]? in
            guard state.closedBy == nil else { return nil }
            state.closedBy = reason
            var jobs: [any ExecutorJob] = []
            while let job = state.popFirst() { jobs.append(job) }
            return jobs
        }
        guard let drained else { return }
        changes.signal()
        for job in drained {
            _ = job.cancel(because: "executor \(path.debugDescription) stopped: \(reason)")
        }
    }
}
