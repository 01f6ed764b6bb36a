// `shutdown`: T threads run a workload; L CPU hogs (outside the measured set) load the machine;
// the timed section runs from "stop requested" to "every thread is gone".
//
//   managed:    requestStop() on every thread, then join(until:) each against one deadline;
//               @group / @tree: one ThreadGroup.shutdown, which reaps threads in exit order
//   pthread:    write ONE shared eventfd once (cpu: set a flag), then pthread_join each in turn
//   foundation: NSCondition broadcast + flag (io: the shared eventfd; cpu: a flag), then wait
//               until every body returned and every tid has left /proc/self/task
//
// Setup (spawning, waiting until all T threads are in their loop, starting the hogs) and teardown
// (stopping the hogs, closing pipes and eventfds) are outside the timed section.
//
// `cpu`: the threads count themselves in and wait at a gate; the main thread opens it (at raised
// priority, restored before the clock starts) and requests the stop right away. So the stop finds
// T runnable CPU-bound threads, most of which have yet to get a CPU: each one has to be scheduled
// to see it. (Waiting until every spinner has run once would take about T time slices: seconds.)
import Glibc

/// One shutdown configuration.
struct ShutdownPoint: Hashable {
    var workload: Workload
    var threads: Int
    var hogs: Int

    var point: Point { Point(scenario: .shutdown, workload: workload.rawValue, threads: threads, hogs: hogs) }
}

enum ShutdownScenario {
    static func run(_ runner: Runner, _ shutdown: ShutdownPoint, rounds: Int, stackSize: Int?, work: WorkUnit) {
        let limit = DescriptorLimit.current
        var systems: [SystemID] = []
        var tooMany: [String] = []
        for id in GroupShape.expand(shutdown.workload.systems, shapes: runner.shapes) {
            let needed = shutdown.workload.descriptors(threads: shutdown.threads, system: id)
            if needed <= limit { systems.append(id) } else { tooMany.append("\(id) (\(needed))") }
        }
        if !tooMany.isEmpty {
            runner.notes.append("\(shutdown.point): not run for \(tooMany.joined(separator: ", ")): more descriptors than the limit of \(limit)")
        }
        guard !systems.isEmpty else {
            runner.skip(shutdown.point, because: "needs more descriptors than the limit of \(limit)")
            return
        }
        runner.measure(shutdown.point, systems: systems, rounds: rounds) { id, _ in
            [try once(id, shutdown, stackSize: stackSize, work: work)]
        }
    }

    /// One timed shutdown of `shutdown.threads` threads of system `id`. Returns nanoseconds.
    static func once(_ id: SystemID, _ shutdown: ShutdownPoint, stackSize: Int?, work: WorkUnit) throws -> Int64 {
        let environment = try WorkloadEnvironment(workload: shutdown.workload, threads: shutdown.threads, work: work)
        let fleet = try startFleet(id, environment: environment, stackSize: stackSize)
        let hogs: CPUHogs
        do {
            hogs = try CPUHogs(count: shutdown.hogs)
        } catch {
            environment.abandon()
            try fleet.stopAndJoin()
            throw error
        }
        defer { hogs.stop() }
        if environment.workload == .cpu {
            // Opening the gate wakes T spinners, and the scheduler lets each of them run a whole
            // time slice before the main thread's next turn: seconds at T = 1000 on two cores.
            // So the main thread opens it at raised priority, and is back at its own priority
            // before the clock starts. (The hogs are started before: threads inherit priority.)
            let boost = ThreadPriority.raise()
            environment.openGate()
            boost?.restore()
        }
        let start = ContinuousClock.now
        try fleet.stopAndJoin()
        return start.nanosecondsSince
    }
}

/// The process's descriptor limit, raised to the hard limit once at start-up.
enum DescriptorLimit {
    /// Raises the soft RLIMIT_NOFILE to the hard limit; returns the limit in force.
    @discardableResult
    static func raise() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return current }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return current
    }

    /// The soft RLIMIT_NOFILE now.
    static var current: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}
