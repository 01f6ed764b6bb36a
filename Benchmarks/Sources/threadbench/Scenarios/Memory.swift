// `memory`: resident memory per idle thread. RSS (/proc/self/statm) is read before starting N idle
// threads and again once all N are blocked; (after - before) / N is one sample. Every system runs
// in the same process, interleaved round by round, so they share one heap and one stack cache.
// The managed stack pool is trimmed to its budget after every managed run (see Runner).

enum MemoryScenario {
    static let systems: [SystemID] = StopMechanism.allCases.map { .managed($0.rawValue) } + [.pthread, .foundation]

    static func run(_ runner: Runner, threads: Int, rounds: Int, stackSize: Int?, work: WorkUnit) {
        let point = Point(scenario: .memory, workload: "idle", threads: threads, hogs: 0)
        let limit = DescriptorLimit.current
        let systems = systems.filter { Workload.idle.descriptors(threads: threads, system: $0) <= limit }
        runner.measure(point, systems: systems, rounds: rounds, unit: "bytes") { id, _ in
            let environment = try WorkloadEnvironment(workload: .idle, threads: threads, work: work)
            let before = ResidentMemory.bytes()
            let fleet = try startFleet(id, environment: environment, stackSize: stackSize)
            let after = ResidentMemory.bytes()
            try fleet.stopAndJoin()
            return [Int64((after - before) / threads)]
        }
        // The library's stack pool keeps up to 256 MiB (its default budget) of freed stacks mapped,
        // with the pages their threads touched still resident. Those count in "before", so a
        // managed run that reuses them shows no growth for them.
        let stack = stackSize ?? (MachineInfo.current().defaultStackBytes ?? 8 << 20)
        let reusable = (256 << 20) / max(stack, 1)
        if runner.stacks != .system, reusable * 4 >= threads {
            runner.notes.append(
                "memory T=\(threads): up to \(min(reusable, threads)) pooled stacks (256 MiB budget) are reused with their "
                    + "pages already resident, so the managed figure understates the per-thread cost at this size")
        }
        let rows = runner.measurements.filter { $0.scenario == Scenario.memory.rawValue && $0.threads == threads }
        if let baseline = rows.first(where: { $0.system == SystemID.pthread.description }) {
            for row in rows where row.system.hasPrefix("managed") {
                let delta = row.median - baseline.median
                runner.notes.append(
                    "memory T=\(threads): \(row.system) uses \(delta >= 0 ? "+" : "")\(delta) B/thread vs pthread "
                        + "(median \(row.median) vs \(baseline.median); target: within 2 KiB)")
            }
        }
    }
}
