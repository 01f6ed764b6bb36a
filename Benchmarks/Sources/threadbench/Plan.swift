// What a run measures: the default comparison, the full matrix, the CI smoke test, and the
// command line's narrowing of them.

/// The measurements of one run, in the order they are taken.
struct Plan {
    var scenarios: [Scenario]
    var rounds: Int
    /// Threads per system for `spawn` and `spawnstop`, spread over the rounds.
    var spawnOperations: Int
    var shutdown: [ShutdownPoint]
    var stuck: [StuckPoint]
    /// Rounds of the stuck scenario: more than elsewhere, since its figure of merit is a p99.
    var stuckRounds: Int
    var memoryThreads: [Int]
    /// Rounds of the memory figure (deterministic enough that fewer do).
    var memoryRounds: Int
    /// Short threads per `churn` round (spawned and reaped, 100 at a time).
    var churnThreads = 1_000_000
    var churnRounds = 1
    /// Pool sizes of the executor scenario, hops per round, units per throughput sample, and
    /// units queued behind a busy worker for its shutdown point.
    var executorThreads = [1, 2, 4]
    var executorHops = 200
    var executorJobs = 20_000
    var executorQueued = 10_000
    /// Stuck thread counts of the report scenario, and its rounds.
    var reportStuck = [1, 10, 100]
    var reportRounds = 30

    /// How many points the plan runs (for the progress line).
    var pointCount: Int {
        scenarios.reduce(0) { total, scenario in
            switch scenario {
            case .spawn, .spawnstop: total + 1
            case .shutdown: total + shutdown.count
            case .stuck: total + stuck.count
            case .memory: total + memoryThreads.count
            case .churn: total + 1
            case .executor: total + 2 * executorThreads.count + 1
            case .report: total + reportStuck.count
            }
        }
    }

    /// The representative comparison the bare command runs (well under two minutes on 2 cores).
    static var standard: Plan {
        let workloads = Workload.allCases
        var shutdown = workloads.flatMap { workload in [0, 2].map { ShutdownPoint(workload: workload, threads: 1000, hogs: $0) } }
        shutdown.append(ShutdownPoint(workload: .idle, threads: 10_000, hogs: 0))
        // The scale users reach: where a lock convoy or a per-thread stop loop on a starved
        // controller shows (a group shutdown here once took tens of seconds), and 10,000 tickers.
        shutdown.append(ShutdownPoint(workload: .cpu, threads: 10_000, hogs: 2))
        shutdown.append(ShutdownPoint(workload: .tick, threads: 10_000, hogs: 0))
        return Plan(
            scenarios: Scenario.allCases, rounds: 5, spawnOperations: 2000, shutdown: shutdown,
            stuck: [StuckPoint(threads: 100, stuck: 5, deadline: .milliseconds(100), hogs: 0, mode: .spin)],
            // 100 rounds: enough that the p99 is not simply the largest sample.
            stuckRounds: 100, memoryThreads: [10_000], memoryRounds: 3)
    }

    /// Every workload × thread count × background load. Long: the `cpu` workload at 10,000
    /// threads alone takes many minutes on two cores.
    static var full: Plan {
        let shutdown = Workload.allCases.flatMap { workload in
            fullThreadCounts.flatMap { threads in fullHogs.map { ShutdownPoint(workload: workload, threads: threads, hogs: $0) } }
        }
        let stuck = [100, 1000].flatMap { threads in
            [0, 2].map { StuckPoint(threads: threads, stuck: 5, deadline: .milliseconds(100), hogs: $0, mode: .spin) }
        }
        return Plan(
            scenarios: Scenario.allCases, rounds: 5, spawnOperations: 10_000, shutdown: shutdown, stuck: stuck,
            stuckRounds: 100, memoryThreads: [1000, 10_000], memoryRounds: 5)
    }

    /// Tiny sizes for CI: every scenario and workload, seconds in all.
    static var smoke: Plan {
        let shutdown = Workload.allCases.flatMap { workload in
            [1, 10].flatMap { threads in [0, 1].map { ShutdownPoint(workload: workload, threads: threads, hogs: $0) } }
        }
        return Plan(
            scenarios: Scenario.allCases, rounds: 2, spawnOperations: 40, shutdown: shutdown,
            stuck: [StuckPoint(threads: 10, stuck: 2, deadline: .milliseconds(20), hogs: 0, mode: .spin)],
            stuckRounds: 2, memoryThreads: [50], memoryRounds: 2, churnThreads: 2_000,
            executorThreads: [1, 2], executorHops: 20, executorJobs: 200, executorQueued: 100,
            reportStuck: [1, 5], reportRounds: 2)
    }

    static let fullThreadCounts = [1, 10, 100, 1000, 10_000]
    static let fullHogs = [0, 1, 2]

    /// Narrows or reshapes the plan as the command line asks.
    mutating func apply(
        scenarios selected: [Scenario]?, workloads: [Workload]?, threads: [Int]?, hogs: [Int]?,
        rounds: Int?, operations: Int?, stuckCount: Int?, deadline: Duration?, stuckMode: StuckMode?
    ) {
        if let selected { scenarios = Scenario.allCases.filter(selected.contains) }
        if let rounds {
            self.rounds = rounds
            memoryRounds = rounds
            stuckRounds = rounds
        }
        if let operations { spawnOperations = operations }

        // Shutdown: an explicit thread count or hog level makes a full grid of what is selected.
        let chosenWorkloads = workloads ?? Workload.allCases
        if threads != nil || hogs != nil {
            let threadCounts = threads ?? Array(Set(shutdown.map(\.threads))).sorted()
            let hogLevels = hogs ?? Array(Set(shutdown.map(\.hogs))).sorted()
            shutdown = chosenWorkloads.flatMap { workload in
                threadCounts.flatMap { t in hogLevels.map { ShutdownPoint(workload: workload, threads: t, hogs: $0) } }
            }
        } else {
            shutdown = shutdown.filter { chosenWorkloads.contains($0.workload) }
        }

        // Stuck: same thread counts and hog levels, with the stuck count and deadline asked for.
        let template = stuck.first ?? StuckPoint(threads: 100, stuck: 5, deadline: .milliseconds(100), hogs: 0, mode: .spin)
        let stuckThreads = threads ?? Array(Set(stuck.map(\.threads))).sorted()
        let stuckHogs = hogs ?? Array(Set(stuck.map(\.hogs))).sorted()
        stuck = stuckThreads.flatMap { t in
            stuckHogs.map { level in
                StuckPoint(
                    threads: t, stuck: min(t, stuckCount ?? template.stuck), deadline: deadline ?? template.deadline,
                    hogs: level, mode: stuckMode ?? template.mode)
            }
        }

        if let threads { memoryThreads = threads }
    }
}
