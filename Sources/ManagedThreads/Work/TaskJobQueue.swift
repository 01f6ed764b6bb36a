import Synchronization

/// The queue of Swift concurrency jobs behind ``ManagedTaskExecutor`` and
/// ``ManagedSerialExecutor``: FIFO, unbounded (a job must never be refused: its task would hang),
/// and closed once its workers are done, after which every job goes where the executor says.
///
/// Workers sleep on an ``EventCount`` (the event-sequence protocol over ``FutexWord``): a push
/// wakes one sleeping worker, a stop wakes them all.
final class TaskJobQueue: Sendable {
    private struct State {
        /// Jobs in order from `head` on; the consumed prefix is dropped in bulk.
        var jobs: [UnownedJob] = []
        var head = 0
        var closed = false
        var idleWorkers = 0

        mutating func popFirst() -> UnownedJob? {
            guard head < jobs.count else { return nil }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1_024 && head * 2 >= jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            return job
        }
    }

    private let state = Lock(State())
    private let changes = EventCount()
    /// How long an idle worker sleeps before looking again on its own (a safety net: it is woken
    /// when a job comes and when it is stopped).
    private static let idleRecheck = Duration.seconds(10)

    /// Queues `job`; false (and nothing queued) once the queue is closed.
    func push(_ job: UnownedJob) -> Bool {
        let wake = state.withLock { state -> Bool? in
            guard !state.closed else { return nil }
            state.jobs.append(job)
            return state.idleWorkers > 0
        }
        guard let wake else { return false }
        if wake { changes.signal(waking: 1) }
        return true
    }

    /// Jobs waiting to run.
    var count: Int { state.withLock { $0.jobs.count - $0.head } }

    /// The next job for a worker, sleeping while there is none; nil once the worker's stop was
    /// requested or the queue closed (what still waits is for ``close()`` to hand on).
    func next(stop: StopState) -> UnownedJob? {
        var sleeping = false
        while true {
            let wasSleeping = sleeping
            let step = state.withLock { state -> (job: UnownedJob?, sleepAfter: UInt32?) in
                if wasSleeping { state.idleWorkers -= 1 }
                if state.closed || stop.isStopRequested { return (nil, nil) }
                if let job = state.popFirst() { return (job, nil) }
                state.idleWorkers += 1
                return (nil, changes.value)
            }
            guard let value = step.sleepAfter else { return step.job }
            sleeping = true
            changes.wait(after: value, until: .after(Self.idleRecheck))
        }
    }

    /// Wakes every sleeping worker so it looks at its token (called from the workers' `onStop`).
    func wakeAll() { changes.signal() }

    /// Closes the queue for good and returns what was still waiting, in order. Idempotent: later
    /// calls return nothing.
    func close() -> [UnownedJob] {
        let left = state.withLock { state -> [UnownedJob] in
            guard !state.closed else { return [] }
            state.closed = true
            defer { state.jobs = [] }
            return Array(state.jobs[state.head...])
        }
        changes.signal()
        return left
    }
}
