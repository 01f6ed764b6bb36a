// `spawn` and `spawnstop`: the cost of one thread's whole life, one thread at a time.
//
// spawn:     create + start a thread whose body returns at once, then join it.
// spawnstop: create + start a thread whose body blocks on its stop signal, wait until it runs,
//            request the stop, join.
// Every sample ends when the thread is really gone: joined, or (Foundation) absent from
// /proc/self/task.

enum SpawnScenarios {
    /// Systems of `spawn`: the stop mechanism plays no part.
    static let spawnSystems: [SystemID] = [.managed(), .pthread, .foundation]
    /// Systems of `spawnstop`: one managed row per stop mechanism.
    static let spawnStopSystems: [SystemID] = StopMechanism.allCases.map { .managed($0.rawValue) } + [.pthread, .foundation]

    /// Runs `spawn` with `operations` threads per system, split over the rounds.
    static func runSpawn(_ runner: Runner, operations: Int, rounds: Int, stackSize: Int?) {
        let perRound = max(1, operations / rounds)
        let point = Point(scenario: .spawn, workload: "trivial", threads: 1, hogs: 0)
        warmUp(runner.systems(spawnSystems)) { try spawnJoin($0, count: min(100, perRound), stackSize: stackSize) }
        runner.measure(point, systems: spawnSystems, rounds: rounds) { id, _ in
            try spawnJoin(id, count: perRound, stackSize: stackSize)
        }
    }

    /// Runs `spawnstop` with `operations` threads per system, split over the rounds.
    static func runSpawnStop(_ runner: Runner, operations: Int, rounds: Int, stackSize: Int?) {
        let perRound = max(1, operations / rounds)
        let point = Point(scenario: .spawnstop, workload: "blocked", threads: 1, hogs: 0)
        warmUp(runner.systems(spawnStopSystems)) { try spawnStopJoin($0, count: min(100, perRound), stackSize: stackSize) }
        runner.measure(point, systems: spawnStopSystems, rounds: rounds) { id, _ in
            try spawnStopJoin(id, count: perRound, stackSize: stackSize)
        }
    }

    private static func spawnJoin(_ id: SystemID, count: Int, stackSize: Int?) throws -> [Int64] {
        switch id.system {
        case "managed": try ManagedSystem.spawnJoin(id, count: count, stackSize: stackSize)
        case "pthread": try PThreadSystem.spawnJoin(count: count, stackSize: stackSize)
        default: try FoundationSystem.spawnJoin(count: count, stackSize: stackSize)
        }
    }

    private static func spawnStopJoin(_ id: SystemID, count: Int, stackSize: Int?) throws -> [Int64] {
        switch id.system {
        case "managed":
            let mechanism = id.config.flatMap(StopMechanism.init(rawValue:)) ?? .futex
            return try ManagedSystem.spawnStopJoin(id, count: count, mechanism: mechanism, stackSize: stackSize)
        case "pthread":
            return try PThreadSystem.spawnStopJoin(count: count, stackSize: stackSize)
        default:
            return try FoundationSystem.spawnStopJoin(count: count, stackSize: stackSize)
        }
    }

    /// A short untimed batch per system, so that the first measured round does not pay for
    /// first-use costs (lazy binding, the first stacks, malloc arenas). Failures surface later.
    private static func warmUp(_ systems: [SystemID], _ run: (SystemID) throws -> [Int64]) {
        for id in systems { _ = try? run(id) }
    }
}
