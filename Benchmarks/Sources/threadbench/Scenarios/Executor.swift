// `executor`: running Swift tasks and closures on pools of threads.
//
// hop:        one unit of work at a time, the pool idle in between: the time from just before it
//             is handed over to the moment it starts running, on the pool's thread. Each round
//             makes `hopsPerRound` hops (one sample each).
// throughput: `throughputJobs` tiny units handed over back to back by one producer; the sample is
//             the whole batch's wall time divided by the number of units (ns per unit).
// shutdown:   one unit occupies the only worker (a spin that ends when it sees cancellation or the
//             pool's stop) while `queuedJobs` units wait behind it; from "shut down" until the
//             pool has stopped and every queued unit has been dealt with.
//
// Systems (T = threads in the pool):
//   managed/task      ManagedTaskExecutor: a unit is a Task(executorPreference:) (task creation included)
//   managed/blocking  BlockingExecutor: a unit is a submitted closure
//   global            the global concurrent executor (its own threads, T ignored): a unit is a Task.detached
//   nio               swift-nio's NIOThreadPool: a unit is a submitted closure — the baseline
//
// Shutdown, by system: managed/task cancels the tracked tasks and returns once every one has
// finished (the queued ones run, cancelled, on the global executor; see ManagedTaskExecutor);
// managed/blocking cancels every queued job (its waiters are resumed with .cancelled) before it
// returns; nio (syncShutdownGracefully) joins its threads and hands the queued closures their
// .cancelled call on a Dispatch queue *after* it may have returned, so it does less inside the
// timed section, and it has no deadline: a closure that never returns hangs it. The global
// executor cannot be shut down.
import Dispatch
import ManagedThreads
import NIOPosix
import Synchronization

enum ExecutorScenario {
    static let systems: [SystemID] = [.managed("task"), .managed("blocking"), SystemID(system: "global"), .nio]
    static let shutdownSystems: [SystemID] = [.managed("task"), .managed("blocking"), .nio]

    static func run(_ runner: Runner, threads: [Int], rounds: Int, hops: Int, jobs: Int, queued: Int) {
        for count in threads {
            let point = Point(scenario: .executor, workload: "hop", threads: count, hogs: 0)
            runner.measure(point, systems: systems, rounds: rounds) { id, _ in
                try withPool(id, threads: count) { try $0.hops(hops) }
            }
        }
        for count in threads {
            let point = Point(scenario: .executor, workload: "throughput", threads: count, hogs: 0)
            runner.measure(point, systems: systems, rounds: rounds) { id, _ in
                try withPool(id, threads: count) { [try $0.throughput(jobs)] }
            }
        }
        var reports: [SystemID: String] = [:]
        let point = Point(scenario: .executor, workload: "shutdown \(queued) queued", threads: 1, hogs: 0)
        runner.measure(point, systems: shutdownSystems, rounds: rounds, sample: { id, _ in
            let pool = try Pool(id, threads: 1)
            let (nanoseconds, summary) = try pool.shutdownWithQueue(queued)
            reports[id] = summary
            return [nanoseconds]
        }, notes: { id in reports[id].map { ["last round: \($0)"] } ?? [] })
    }

    /// Runs `body` on a fresh pool of `id` and shuts it down afterwards (untimed).
    private static func withPool(_ id: SystemID, threads: Int, _ body: (Pool) throws -> [Int64]) throws -> [Int64] {
        let pool = try Pool(id, threads: threads)
        defer { pool.stop() }
        return try body(pool)
    }
}

extension SystemID {
    static let nio = SystemID(system: "nio")
}

/// One pool of one system, and how a unit of work is handed to it.
private final class Pool {
    let id: SystemID
    private var taskExecutor: ManagedTaskExecutor?
    private var blocking: BlockingExecutor?
    private var nio: NIOThreadPool?
    private let group = ThreadGroup(name: "bench-executor")

    init(_ id: SystemID, threads: Int) throws {
        self.id = id
        switch (id.system, id.config) {
        case ("managed", "task"): taskExecutor = try group.makeTaskExecutor(name: "pool", threads: threads)
        case ("managed", _): blocking = try group.makeExecutor(name: "pool", threads: threads)
        case ("nio", _):
            let pool = NIOThreadPool(numberOfThreads: threads)
            pool.start()
            nio = pool
        default: break
        }
    }

    /// Hands `work` over as this system's unit of work.
    func submit(_ work: @escaping @Sendable () -> Void) throws {
        if let taskExecutor {
            Task(executorPreference: taskExecutor) { work() }
        } else if let blocking {
            _ = try blocking.submit { _ in work() }
        } else if let nio {
            nio.submit { _ in work() }
        } else {
            Task.detached { work() }
        }
    }

    /// `count` hops, one at a time: handed over → running, in ns.
    func hops(_ count: Int) throws -> [Int64] {
        let done = DispatchSemaphore(value: 0)
        let latency = Mutex<Int64>(0)
        var samples: [Int64] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let start = ContinuousClock.now
            try submit {
                latency.withLock { $0 = start.nanosecondsSince }
                done.signal()
            }
            done.wait()
            samples.append(latency.withLock { $0 })
        }
        return samples
    }

    /// `count` units back to back; ns per unit.
    func throughput(_ count: Int) throws -> Int64 {
        let done = DispatchSemaphore(value: 0)
        let remaining = Atomic<Int>(count)
        let start = ContinuousClock.now
        for _ in 0..<count {
            try submit {
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done.signal() }
            }
        }
        done.wait()
        return start.nanosecondsSince / Int64(count)
    }

    /// The shutdown point: a spinning unit on the one worker, `queued` units behind it, then the
    /// timed shutdown. Returns its duration and a one-line summary of what it reported.
    func shutdownWithQueue(_ queued: Int) throws -> (Int64, String) {
        let spinning = DispatchSemaphore(value: 0)
        let finished = Atomic<Int>(0)
        if let taskExecutor {
            try taskExecutor.spawn(name: "spinner") {
                spinning.signal()
                while !Task.isCancelled {}
            }
            spinning.wait()
            for index in 0..<queued {
                try taskExecutor.spawn(name: "queued-\(index)") { @Sendable in finished.add(1, ordering: .relaxed) }
            }
            let start = ContinuousClock.now
            let report = group.shutdown(timeout: managedJoinTimeout)
            let took = start.nanosecondsSince
            guard report.isClean else { throw BenchError("the task executor's shutdown was not clean: \(report)") }
            return (took, "\(report.total) in the report (tasks and the worker), \(report.stuck) stuck; \(finished.load(ordering: .relaxed)) queued tasks ran, cancelled, \(taskExecutor.jobsRunElsewhere) jobs ran elsewhere")
        } else if let blocking {
            _ = try blocking.submit { token in
                spinning.signal()
                while !token.isStopRequested {}
            }
            spinning.wait()
            var jobs: [Job<Void>] = []
            jobs.reserveCapacity(queued)
            for _ in 0..<queued { jobs.append(try blocking.submit { @Sendable _ in finished.add(1, ordering: .relaxed) }) }
            let start = ContinuousClock.now
            let report = group.shutdown(timeout: managedJoinTimeout)
            let took = start.nanosecondsSince
            guard report.isClean else { throw BenchError("the blocking executor's shutdown was not clean: \(report)") }
            let cancelled = jobs.filter { $0.status == .cancelled }.count
            return (took, "\(report.total) in the report, \(report.stuck) stuck; \(cancelled) queued jobs cancelled, \(finished.load(ordering: .relaxed)) ran")
        } else if let nio {
            let stop = Atomic<Bool>(false)
            nio.submit { _ in
                spinning.signal()
                while !stop.load(ordering: .relaxed) {}
            }
            spinning.wait()
            let cancelledRuns = Atomic<Int>(0)
            for _ in 0..<queued {
                nio.submit { state in
                    if state == .cancelled { cancelledRuns.add(1, ordering: .relaxed) } else { finished.add(1, ordering: .relaxed) }
                }
            }
            let start = ContinuousClock.now
            // NIO has no way to interrupt the running closure: tell it, as the managed pools' stop does.
            stop.store(true, ordering: .relaxed)
            try nio.syncShutdownGracefully()
            let took = start.nanosecondsSince
            self.nio = nil
            // NIO hands the queued closures their .cancelled call on a Dispatch queue and returns
            // without waiting for it: count them at the return, and once they have all been called.
            let atReturn = cancelledRuns.load(ordering: .relaxed)
            try waitUntil("NIO's queued closures to be called") {
                cancelledRuns.load(ordering: .relaxed) + finished.load(ordering: .relaxed) >= queued
            }
            return (took, "no report; at the return \(atReturn) of \(queued) queued closures had been called with .cancelled (the rest after it, on a Dispatch queue); \(finished.load(ordering: .relaxed)) ran as active")
        }
        throw BenchError("\(id) has no shutdown")
    }

    /// Stops the pool (untimed).
    func stop() {
        _ = group.shutdown(timeout: managedJoinTimeout)
        try? nio?.syncShutdownGracefully()
    }
}
