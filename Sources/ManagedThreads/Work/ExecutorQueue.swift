import Synchronization

/// The executor's queue: FIFO, optionally bounded, closed for good when the executor stops.
final class ExecutorQueue: Sendable {
    struct State {
        /// Queued jobs by slot; the order of the slots is the submission order. A cancelled job
        /// leaves at once, so `jobs.count` is what waits.
        var jobs: [UInt64: any QueuedJob] = [:]
        /// The next slot to run, and the next slot to fill.
        var head: UInt64 = 0
        var tail: UInt64 = 0
        /// Set when the queue closed.
        var closedBy: StopReason?
        /// Workers asleep (or about to sleep) waiting for a job.
        var idleWorkers = 0

        mutating func popFirst() -> (any QueuedJob)? {
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
    func enqueue(_ job: any QueuedJob, name: String) throws(ThreadError) {
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
    func next(stop: StopState) -> (any QueuedJob)? {
        var sleeping = false
        while true {
            enum Step {
                case run(any QueuedJob)
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
        let drained = state.withLock { state -> [any QueuedJob]? in
            guard state.closedBy == nil else { return nil }
            state.closedBy = reason
            var jobs: [any QueuedJob] = []
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
