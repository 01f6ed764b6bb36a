import Synchronization

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
protocol QueuedJob: AnyObject, Sendable {
    /// Records the job's place in the queue (called once, as it is queued).
    func assign(slot: UInt64)
    /// Runs the work unless the job was cancelled; called once, by the worker that dequeued it.
    func run(token: StopToken, worker: String)
    /// Cancels the job if it has not started.
    func cancel(because cause: String) -> Bool
}

extension Job: QueuedJob {
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
