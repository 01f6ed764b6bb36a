// `report`: what writing a shutdown report costs. S threads, all of them stuck (blocked in poll on
// a private eventfd, so they take no CPU), ignore a group shutdown with a 50 ms deadline; the
// figure is the overshoot past the deadline, as in `stuck`, with the stacks of the stuck threads
// captured (managed/stacks, the default) or not (managed/nostacks,
// `StackCapture.capturesInReports = false`). Kernel views and stacks are taken for at most 32
// threads per report; the rest are named only.
import ManagedThreads

enum ReportScenario {
    static let systems: [SystemID] = [.managed("stacks"), .managed("nostacks")]

    static func run(_ runner: Runner, stuck counts: [Int], rounds: Int, stackSize: Int?) {
        for count in counts {
            let point = StuckPoint(threads: count, stuck: count, deadline: .milliseconds(50), hogs: 0, mode: .block)
            var named = [SystemID: Int]()
            let shown = Point(scenario: .report, workload: "\(count) stuck/block/50ms", threads: count, hogs: 0)
            runner.measure(shown, systems: systems, rounds: rounds, sample: { id, _ in
                StackCapture.capturesInReports = id.config == "stacks"
                defer { StackCapture.capturesInReports = true }
                let outcome = try StuckScenario.managed(point, policy: .shared, options: ManagedSystem.options(id, stackSize: stackSize))
                if outcome.allNamed { named[id, default: 0] += 1 }
                return [outcome.overshoot]
            }, notes: { id in ["all \(count) stuck threads named in \(named[id] ?? 0)/\(rounds) rounds"] })
        }
    }
}
