import Foundation
import Logging
import ManagedThreadsTesting
import Synchronization
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

// Randomized stress: seeded scenarios build a random tree of groups and threads with random
// workloads, race spawns against the shutdown, shut down under a random policy and deadline, and
// then check that every thread ever spawned is accounted for.
//
// CI runs a fixed list of seeds (a few seconds). For a longer run:
//     STRESS_SCENARIOS=10000 [STRESS_SEED=<base>] swift test --filter StressTests
// Scenario i of a long run uses seed `StressSeeds.derive(base, i)`, and scenario 0 uses the base
// itself, so a failure printed as "seed S" replays with STRESS_SEED=S STRESS_SCENARIOS=1.

/// SplitMix64: small, fast and deterministic; good enough to drive scenarios.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

enum StressSeeds {
    /// The seeds CI runs.
    static let ci: [UInt64] = (0..<30).map { derive(0x5EED_CAFE, $0) }

    /// Scenario `index`'s seed in a run from `base`; index 0 is the base itself.
    static func derive(_ base: UInt64, _ index: Int) -> UInt64 {
        guard index > 0 else { return base }
        var rng = SplitMix64(seed: base ^ UInt64(index) &* 0xD134_2543_DE82_EF95)
        return rng.next()
    }

    static var environment: [String: String] { ProcessInfo.processInfo.environment }
    /// Set when STRESS_SCENARIOS asks for a long run.
    static var longRunCount: Int? { environment["STRESS_SCENARIOS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } }
    static var isLongRun: Bool { longRunCount != nil }

    static func parse(_ text: String) -> UInt64? {
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }
}

/// What a thread does.
enum Workload: Sendable, Hashable, CustomStringConvertible {
    /// Waits on its token.
    case idle
    /// Like idle, but a background thread (not waited for; orphaned if still alive).
    case background
    /// Polls its own pipe and the token's descriptor; `prefilled`: the pipe has a byte to read.
    case io(prefilled: Bool)
    /// Spins, checking `isStopRequested`.
    case cpu
    /// A `ticks(every:)` loop.
    case tick(milliseconds: Int)
    /// Waits on its token for a while, then throws.
    case throwing(afterMilliseconds: Int)
    /// Returns on its own after a while (or at the stop).
    case shortLived(milliseconds: Int)
    /// Ignores its token for up to this long (or until the scenario's gate opens).
    case stuck(milliseconds: Int)
    /// Ignores its token until the scenario's gate opens: always reported stuck.
    case gateHeld
    /// Spawns up to `count` threads (and sometimes child groups) into its own group, also while
    /// the stop is happening, then idles.
    case spawner(count: Int, seed: UInt64)

    var description: String {
        switch self {
        case .idle: return "idle"
        case .background: return "background"
        case .io(let prefilled): return prefilled ? "io+data" : "io"
        case .cpu: return "cpu"
        case .tick(let ms): return "tick\(ms)ms"
        case .throwing(let ms): return "throw@\(ms)ms"
        case .shortLived(let ms): return "short\(ms)ms"
        case .stuck(let ms): return "stuck\(ms)ms"
        case .gateHeld: return "gateHeld"
        case .spawner(let count, _): return "spawner×\(count)"
        }
    }

    var isBackground: Bool { self == .background }
    var throwsOnPurpose: Bool { if case .throwing = self { return true } else { return false } }
}

struct StressError: Error, CustomStringConvertible {
    var description: String { "intended failure" }
}

/// A scenario drawn from a seed.
struct ScenarioPlan: CustomStringConvertible {
    struct Group {
        var name: String
        var parent: Int?  // index into groups
        var stopPriority: Int
        var threads: [(workload: Workload, stopPriority: Int, systemStack: Bool)]
    }

    let seed: UInt64
    let policy: ShutdownPolicy
    let deadline: Duration
    let groups: [Group]
    let externalSpawner: Bool

    init(seed: UInt64) {
        self.seed = seed
        var rng = SplitMix64(seed: seed)
        policy = rng.pick([ShutdownPolicy.shared, .fair, .ordered])
        deadline = .milliseconds(rng.pick([10, 30, 60, 120, 250, 500]))
        externalSpawner = rng.chance(0.7)
        var groups: [Group] = [Group(name: "g0", parent: nil, stopPriority: 0, threads: [])]
        var depth = [1]
        // Grow a tree of depth ≤ 4.
        var frontier = [0]
        while let index = frontier.first {
            frontier.removeFirst()
            guard depth[index] < 4 else { continue }
            for _ in 0..<rng.int(0...(index == 0 ? 3 : 2)) where groups.count < 12 {
                groups.append(Group(name: "g\(groups.count)", parent: index, stopPriority: rng.int(0...2), threads: []))
                depth.append(depth[index] + 1)
                frontier.append(groups.count - 1)
            }
        }
        var cpu = 0, held = 0, spawners = 0
        for _ in 0..<rng.int(10...200) {
            var workload: Workload
            switch rng.int(0...99) {
            case 0..<28: workload = .idle
            case 28..<36: workload = .background
            case 36..<48: workload = .io(prefilled: rng.chance(0.5))
            case 48..<51: workload = .cpu
            case 51..<62: workload = .tick(milliseconds: rng.int(1...20))
            case 62..<70: workload = .throwing(afterMilliseconds: rng.int(0...40))
            case 70..<78: workload = .shortLived(milliseconds: rng.int(0...20))
            case 78..<88: workload = .stuck(milliseconds: rng.int(5...400))
            case 88..<93: workload = .gateHeld
            default: workload = .spawner(count: rng.int(1...12), seed: rng.next())
            }
            // Keep the machine usable: few spinners, few threads that hold a shutdown to its deadline.
            if workload == .cpu { cpu += 1; if cpu > 2 { workload = .idle } }
            if workload == .gateHeld { held += 1; if held > 3 { workload = .idle } }
            if case .spawner = workload { spawners += 1; if spawners > 4 { workload = .idle } }
            let group = rng.int(0...(groups.count - 1))
            groups[group].threads.append((workload, rng.int(0...2), rng.chance(0.1)))
        }
        self.groups = groups
    }

    var threadCount: Int { groups.reduce(0) { $0 + $1.threads.count } }

    var description: String {
        var lines = ["seed \(seed): policy \(policy), deadline \(deadline), \(threadCount) threads in \(groups.count) groups, external spawner \(externalSpawner ? "on" : "off")"]
        for group in groups {
            let parent = group.parent.map { groups[$0].name } ?? "-"
            var kinds: [String: Int] = [:]
            for thread in group.threads { kinds[StressTracker.prefix(thread.workload), default: 0] += 1 }
            let summary = kinds.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
            lines.append("  \(group.name) (parent \(parent), priority \(group.stopPriority)): \(summary)")
        }
        return lines.joined(separator: "\n")
    }
}

/// Everything spawned in a scenario, from any thread.
final class StressTracker: Sendable {
    struct Record: Sendable {
        let thread: ManagedThread
        let workload: Workload
    }

    private struct State {
        var records: [Record] = []
        var groups: [ThreadGroup] = []
        var refused = 0
        var problems: [String] = []
        var serial = 0
    }

    private let state = Lock<State>(State())
    /// Opens after the report: releases stuck and gate-held threads.
    let gate = StopSource()
    /// Set once the shutdown has returned (for the racing spawners).
    let shutdownReturned = StopSource()

    func name(_ prefix: String) -> String {
        state.withLock { state in
            state.serial += 1
            return "\(prefix)\(state.serial)"
        }
    }

    func add(_ thread: ManagedThread, _ workload: Workload) {
        state.withLock { $0.records.append(Record(thread: thread, workload: workload)) }
    }

    func add(_ group: ThreadGroup) { state.withLock { $0.groups.append(group) } }
    func refusedSpawn() { state.withLock { $0.refused += 1 } }
    func problem(_ text: String) { state.withLock { $0.problems.append(text) } }

    var records: [Record] { state.withLock { $0.records } }
    var groups: [ThreadGroup] { state.withLock { $0.groups } }
    var refused: Int { state.withLock { $0.refused } }
    var problems: [String] { state.withLock { $0.problems } }

    /// Spawns `workload` into `group` as `name`; records the thread, or the refusal. Anything but
    /// success or `.groupStopped` is a problem.
    func spawn(_ workload: Workload, into group: ThreadGroup, stopPriority: Int = 0, systemStack: Bool = false) {
        let name = name(Self.prefix(workload))
        let options = ThreadOptions(
            stackSize: 256 * 1024, isBackground: workload.isBackground,
            stackAllocation: systemStack ? .system : .pooled)
        do {
            let thread = try group.spawn(name: name, purpose: workload.description, options: options, stopPriority: stopPriority, body(workload))
            add(thread, workload)
        } catch where error.code == .groupStopped {
            refusedSpawn()
        } catch {
            problem("spawning \(name) (\(workload)) into \(group.path) threw \(error)")
        }
    }

    static func prefix(_ workload: Workload) -> String {
        switch workload {
        case .idle: return "idle"
        case .background: return "bg"
        case .io: return "io"
        case .cpu: return "cpu"
        case .tick: return "tick"
        case .throwing: return "throw"
        case .shortLived: return "short"
        case .stuck: return "stuck"
        case .gateHeld: return "held"
        case .spawner: return "spawner"
        }
    }

    private func body(_ workload: Workload) -> @Sendable (StopToken) throws -> Void {
        let far = Duration.seconds(60)  // a bound, never reached: every wait ends at the stop or the gate
        let gate = gate.token
        switch workload {
        case .idle, .background:
            return { token in _ = token.wait(until: .after(far)) }
        case .io(let prefilled):
            let pipe = Pipe()
            if prefilled {
                var byte: UInt8 = 1
                _ = write(pipe.writeEnd, &byte, 1)
            }
            return { token in
                while true {
                    switch try token.wait(forReadable: pipe.readEnd, timeout: far) {
                    case .ready:
                        var byte: UInt8 = 0
                        _ = read(pipe.readEnd, &byte, 1)
                    case .stopRequested, .timedOut:
                        return
                    }
                }
            }
        case .cpu:
            return { token in
                let end = ContinuousClock.Instant.after(far)
                var x: UInt64 = 0
                while !token.isStopRequested && ContinuousClock.now < end {
                    for i in 0..<10_000 { x &+= UInt64(i) }
                }
                withExtendedLifetime(x) {}
            }
        case .tick(let ms):
            return { token in
                for _ in try token.ticks(every: .milliseconds(ms)) {}
            }
        case .throwing(let ms):
            return { token in
                _ = token.wait(timeout: .milliseconds(ms))
                throw StressError()
            }
        case .shortLived(let ms):
            return { token in _ = token.wait(timeout: .milliseconds(ms)) }
        case .stuck(let ms):
            // Ignores its own token: blocks on the gate's instead, for at most `ms`.
            return { _ in _ = gate.wait(until: .after(.milliseconds(ms))) }
        case .gateHeld:
            return { _ in _ = gate.wait(until: .after(far)) }
        case .spawner(let count, let seed):
            return { [self] token in
                var rng = SplitMix64(seed: seed)
                var afterStop = 0
                for _ in 0..<count {
                    let stopping = token.isStopRequested
                    var target = ThreadGroup.current
                    if rng.chance(0.25) {
                        do throws(ThreadError) {
                            target = try target.makeChild(name: self.name("sg"), stopPriority: rng.int(0...2))
                            self.add(target)
                        } catch where error.code == .groupStopped {
                            self.refusedSpawn()
                        } catch {
                            self.problem("makeChild in \(target.path) threw \(error)")
                        }
                    }
                    let child = rng.pick([Workload.idle, .shortLived(milliseconds: rng.int(0...10)), .throwing(afterMilliseconds: rng.int(0...10))])
                    self.spawn(child, into: target, stopPriority: rng.int(0...2))
                    if stopping {
                        afterStop += 1
                        if afterStop >= 3 { return }
                    } else {
                        _ = token.wait(timeout: .milliseconds(rng.int(1...5)))
                    }
                }
                _ = token.wait(until: .after(far))
            }
        }
    }
}

/// Measures how late a sleeping thread gets to run while a shutdown is in progress: it wakes
/// every millisecond and records the worst lateness. It sees whole-machine stalls (the VM's vCPUs
/// descheduled by the host, a foreign load so heavy that even a waking thread waits), which are
/// then not blamed on the library; a shutdown that waits past its deadline leaves it on time.
/// It does not see a busy thread losing its core to threads it has just woken (a waking sleeper
/// is preferred by the scheduler, the probe included), so that cost stays in the overshoot.
final class LatencyProbe: Sendable {
    private final class State: Sendable {
        let measuring = Atomic<Bool>(false)
        let worstNanoseconds = Atomic<Int64>(0)
        let started = Atomic<Bool>(false)
    }

    private let state = State()
    private let thread: ManagedThread

    init() throws {
        let state = state
        thread = try ManagedThread.spawn(name: "latency-probe") { token in
            state.started.store(true, ordering: .releasing)
            while !token.isStopRequested {
                let due = ContinuousClock.now.advanced(by: .milliseconds(1))
                _ = token.wait(until: due)
                let late = due.duration(to: .now).nanosecondsClamped
                if state.measuring.load(ordering: .acquiring) && late > state.worstNanoseconds.load(ordering: .relaxed) {
                    state.worstNanoseconds.store(late, ordering: .relaxed)
                }
            }
        }
        try waitFor("the probe to run") { state.started.load(ordering: .acquiring) }
    }

    func begin() {
        state.worstNanoseconds.store(0, ordering: .relaxed)
        state.measuring.store(true, ordering: .releasing)
    }

    /// The worst lateness since ``begin()``.
    func end() -> Duration {
        state.measuring.store(false, ordering: .releasing)
        return .nanoseconds(state.worstNanoseconds.load(ordering: .relaxed))
    }

    func stop() -> Bool { (try? thread.stop(timeout: .seconds(30))) == true }
    var tid: Int32? { thread.tid }
}

/// Watches the thread running a shutdown: from `start` on, while the shutdown has not returned,
/// records every 50 ms what the kernel says that thread is doing (state, wait channel, system
/// call, the top of its kernel stack), so a shutdown that overruns says where it waited.
final class ShutdownWatch: Sendable {
    private let done = StopSource()
    private let samples = Locked<[String]>([])
    private let thread: ManagedThread?

    init(tid: Int32, start: ContinuousClock.Instant) {
        let done = done, samples = samples
        thread = try? ManagedThread.spawn(name: "shutdown-watch") { _ in
            guard !done.token.wait(until: start) else { return }
            for _ in 0..<40 {
                let at = start.duration(to: .now).formattedMilliseconds
                let kernel = KernelThreadState.read(tid: tid).map { "\($0)" } ?? "gone"
                let stack = (ProcFS.read("/proc/self/task/\(tid)/stack") ?? "")
                    .split(separator: "\n").prefix(6).map { $0.split(separator: " ").last.map(String.init) ?? "" }
                samples.withLock { $0.append("+\(at): \(kernel); kernel stack: \(stack.joined(separator: " < "))") }
                if done.token.wait(timeout: .milliseconds(50)) { return }
            }
        }
    }

    /// Stops watching; what was seen after `start`, oldest first.
    func finish() -> [String] {
        done.requestStop()
        _ = try? thread?.join(timeout: .seconds(30))
        return samples.value
    }
}

/// The figures of one scenario.
struct ScenarioOutcome {
    var spawned = 0
    var refused = 0
    var stuck = 0
    var unaccounted = 0
    var overshoot = Duration.zero
    /// How late the latency probe ran during the shutdown (CPU starvation).
    var starvation = Duration.zero
    var problems: [String] = []
    var report: ShutdownReport?
}

/// Runs one scenario and checks its invariants.
func runScenario(_ plan: ScenarioPlan, parent: ThreadGroup) -> ScenarioOutcome {
    let tracker = StressTracker()
    var outcome = ScenarioOutcome()
    var external: ManagedThread?
    var probe: LatencyProbe?
    let ((), ledger) = FaultInjection.recording {
        do {
            probe = try LatencyProbe()
            try scenarioBody(plan, parent: parent, tracker: tracker, probe: probe!, external: &external, outcome: &outcome)
        } catch {
            outcome.problems.append("unexpected error: \(error)")
        }
        if let probe, !probe.stop() { outcome.problems.append("the latency probe did not stop") }
        // Whatever happened: open the gate, stop and join everything, so nothing outlives the scenario.
        tracker.gate.requestStop()
        tracker.shutdownReturned.requestStop()
        if let external, (try? external.stop(timeout: .seconds(30))) != true {
            outcome.problems.append("the external spawner did not end")
        }
        // Released, everything ends and is joined. (The explicit stop matters only when a thread
        // escaped the shutdown, which the checks above report: the scenario still ends promptly.)
        for record in tracker.records where !record.thread.isJoined {
            record.thread.requestStop()
        }
        for record in tracker.records where !record.thread.isJoined {
            if (try? record.thread.join(timeout: .seconds(30))) != true {
                outcome.problems.append("\(record.thread.name) (\(record.workload)) did not end after the gate opened")
            }
        }
    }
    let records = tracker.records
    for record in records {
        let error = record.thread.error
        if record.workload.throwsOnPurpose {
            if !(error is StressError) { outcome.problems.append("\(record.thread.name) should have thrown, has \(String(describing: error))") }
        } else if let error {
            outcome.problems.append("\(record.thread.name) (\(record.workload)) threw \(error)")
        }
    }
    // Threads and descriptors back to where they were: every thread we created has left the
    // kernel, and every descriptor the library opened for the scenario is closed.
    let tids = records.compactMap(\.thread.tid) + [external?.tid, probe?.tid].compactMap { $0 }
    do {
        try waitFor("the scenario's threads to leave /proc/self/task", timeout: .seconds(30)) { tids.allSatisfy { !taskExists($0) } }
    } catch {
        outcome.problems.append("threads still in /proc/self/task: \(tids.filter(taskExists))")
    }
    if !ledger.openDescriptors.isEmpty {
        outcome.problems.append("descriptors the library opened and did not close: \(ledger.openDescriptors)")
    }
    outcome.spawned = records.count
    outcome.refused = tracker.refused
    outcome.problems += tracker.problems
    return outcome
}

private func scenarioBody(
    _ plan: ScenarioPlan, parent: ThreadGroup, tracker: StressTracker, probe: LatencyProbe, external: inout ManagedThread?,
    outcome: inout ScenarioOutcome
) throws {
    // The tree.
    var groups: [ThreadGroup] = []
    for spec in plan.groups {
        let group = try spec.parent.map { try groups[$0].makeChild(name: spec.name, stopPriority: spec.stopPriority) }
            ?? parent.makeChild(name: "stress-\(String(plan.seed, radix: 16))", logger: stressLogger)
        groups.append(group)
        tracker.add(group)
    }
    let root = groups[0]
    for (index, spec) in plan.groups.enumerated() {
        for thread in spec.threads {
            tracker.spawn(thread.workload, into: groups[index], stopPriority: thread.stopPriority, systemStack: thread.systemStack)
        }
    }
    // Another thread keeps spawning into the tree while the shutdown runs.
    if plan.externalSpawner {
        let seed = plan.seed
        external = try ManagedThread.spawn(name: "ext-spawner") { token in
            var rng = SplitMix64(seed: seed ^ 0xE87E)
            var afterShutdown = 0
            for _ in 0..<60 {
                let done = tracker.shutdownReturned.isStopRequested
                let target = rng.pick(tracker.groups)
                tracker.spawn(rng.pick([Workload.idle, .shortLived(milliseconds: rng.int(0...5)), .tick(milliseconds: 5)]), into: target)
                if done {
                    afterShutdown += 1
                    if afterShutdown >= 3 { return }
                } else {
                    _ = tracker.shutdownReturned.token.wait(timeout: .microseconds(rng.int(0...2_000)))
                }
            }
            _ = token.wait(until: .after(.seconds(60)))
        }
    }
    let planned = tracker.records
    try waitFor("every planned thread to start", timeout: .seconds(30)) { planned.allSatisfy { $0.thread.tid != nil } }

    // The shutdown, racing the spawners.
    let deadline = ContinuousClock.now.advanced(by: plan.deadline)
    probe.begin()
    let watch = ShutdownWatch(tid: PThread.currentTID, start: deadline.advanced(by: .milliseconds(100)))
    let report = root.shutdown(until: deadline, policy: plan.policy)
    let returned = ContinuousClock.now
    outcome.starvation = probe.end()
    let watched = watch.finish()
    tracker.shutdownReturned.requestStop()
    outcome.overshoot = max(.zero, deadline.duration(to: returned))
    // A sanity bound, not a speed test: past the deadline plus however long the machine let no
    // thread of ours run, the call may take 250 ms more, not the seconds a wait would cost.
    if outcome.overshoot - outcome.starvation > .milliseconds(250) {
        outcome.problems.append(
            "the shutdown returned \(outcome.overshoot.formattedMilliseconds) past its deadline, "
                + "while a probe thread ran at most \(outcome.starvation.formattedMilliseconds) late; "
                + "the shutdown's thread, from 100 ms past the deadline:\n" + watched.joined(separator: "\n"))
    }
    outcome.stuck = report.stuck
    outcome.report = report
    if let external {
        if try !external.stop(timeout: .seconds(30)) { outcome.problems.append("the external spawner did not stop") }
    }

    // Every thread ever spawned is joined, or named in the report as stuck, orphaned or
    // exitedUnreaped (by name and tid). Nothing else joins our threads until the gate opens.
    let records = tracker.records
    let byName = Dictionary(records.map { ($0.thread.name, $0) }, uniquingKeysWith: { first, _ in first })
    var entries: [String: ShutdownReport.ThreadEntry] = [:]
    for entry in report.root.allEntries {
        if entries[entry.name] != nil { outcome.problems.append("\(entry.name) is in the report twice") }
        entries[entry.name] = entry
        guard let record = byName[entry.name] else {
            outcome.problems.append("the report names \(entry.name), which was never spawned")
            continue
        }
        if entry.tid != nil && entry.tid != record.thread.tid {
            outcome.problems.append("\(entry.name): report tid \(entry.tid!), thread tid \(record.thread.tid.map(String.init) ?? "nil")")
        }
        switch entry.status {
        case .joined:
            if !record.thread.isJoined { outcome.problems.append("\(entry.name) reported joined but is not") }
        case .stuck, .exitedUnreaped:
            if record.thread.isJoined { outcome.problems.append("\(entry.name) reported \(entry.status) but was joined") }
            if record.workload.isBackground && entry.status == .stuck { outcome.problems.append("background \(entry.name) reported stuck") }
        case .orphaned:
            if !record.workload.isBackground { outcome.problems.append("foreground \(entry.name) reported orphaned") }
        case .abandoned:
            // The scenarios' policies never abandon.
            outcome.problems.append("\(entry.name) reported abandoned under a policy that does not abandon")
        }
    }
    var joinedHere = 0
    for record in records {
        let thread = record.thread
        let entry = entries[thread.name]
        if thread.isJoined {
            joinedHere += 1
            continue
        }
        guard let entry, [.stuck, .orphaned, .exitedUnreaped].contains(entry.status) else {
            outcome.unaccounted += 1
            outcome.problems.append("unaccounted: \(thread.name) (\(record.workload), tid \(thread.tid.map(String.init) ?? "nil"), alive \(thread.isAlive)) is neither joined nor named in the report (entry: \(entry.map { "\($0.status)" } ?? "none"))")
            continue
        }
        if record.workload == .gateHeld && (entry.status != .stuck || entry.acknowledged) {
            outcome.problems.append("gate-held \(thread.name) reported \(entry.status), acknowledged \(entry.acknowledged)")
        }
    }
    // Counts: the report's threads are ours; those not joined are exactly its unfinished entries.
    let unfinished = report.root.allEntries.filter { $0.status != .joined }.count
    if records.count - joinedHere != unfinished {
        outcome.problems.append("\(records.count - joinedHere) threads not joined, the report names \(unfinished)")
    }
    if report.total > records.count || report.joined > joinedHere {
        outcome.problems.append("report counts \(report.total) threads (\(report.joined) joined); spawned \(records.count), \(joinedHere) joined")
    }
    if report.stuck != report.stuckThreads.count {
        outcome.problems.append("report.stuck \(report.stuck) but \(report.stuckThreads.count) stuck entries")
    }
    if !outcome.problems.isEmpty { outcome.problems.append("report:\n\(report)") }
}

@Suite("Stress", .serialized, .managedThreads(timeout: .seconds(30)))
struct StressTests {
    @Test("random trees, workloads, policies and deadlines, with spawns racing the shutdown: every thread accounted for",
          .enabled(if: !StressSeeds.isLongRun, "STRESS_SCENARIOS runs the long form instead"), .exitTest,
          arguments: StressSeeds.ci)
    func scenario(seed: UInt64) async throws {
        let plan = ScenarioPlan(seed: seed)
        let outcome = try await offPool("scenario") { runScenario(plan, parent: ThreadGroup.current) }
        for problem in outcome.problems {
            Issue.record("\(problem)\n-- replay: STRESS_SEED=\(seed) STRESS_SCENARIOS=1\n\(plan)")
        }
    }

    @Test("the long form: STRESS_SCENARIOS scenarios from STRESS_SEED (or a fresh base)", .enabled(if: StressSeeds.isLongRun))
    func longRun() {
        let count = StressSeeds.longRunCount ?? 0
        let base = StressSeeds.environment["STRESS_SEED"].flatMap(StressSeeds.parse) ?? UInt64.random(in: 0...UInt64.max)
        print("stress: \(count) scenarios from base seed \(base)")
        let start = ContinuousClock.now
        var spawned = 0, refused = 0, stuck = 0, unaccounted = 0, failed = 0
        var overshoots: [Duration] = []
        var byPolicy: [String: [Duration]] = [:]
        var maxOvershoot = Duration.zero
        var maxStarvation = Duration.zero
        var maxNet = Duration.zero
        var overshootSeed: UInt64 = base
        for index in 0..<count {
            let seed = StressSeeds.derive(base, index)
            let plan = ScenarioPlan(seed: seed)
            let outcome = runScenario(plan, parent: ThreadGroup.current)
            spawned += outcome.spawned
            refused += outcome.refused
            stuck += outcome.stuck
            unaccounted += outcome.unaccounted
            overshoots.append(outcome.overshoot)
            maxStarvation = max(maxStarvation, outcome.starvation)
            maxNet = max(maxNet, outcome.overshoot - outcome.starvation)
            byPolicy["\(plan.policy)", default: []].append(outcome.overshoot)
            if outcome.overshoot > maxOvershoot {
                maxOvershoot = outcome.overshoot
                overshootSeed = seed
            }
            if count == 1 {
                // A replay: show what ran.
                print("\(plan)\n\(outcome.report.map(String.init(describing:)) ?? "no report")")
            }
            if !outcome.problems.isEmpty {
                failed += 1
                for problem in outcome.problems {
                    Issue.record("\(problem)\n-- replay: STRESS_SEED=\(seed) STRESS_SCENARIOS=1\n\(plan)")
                }
            }
            if (index + 1) % 100 == 0 || index + 1 == count {
                let sorted = overshoots.sorted()
                func percentile(_ p: Double) -> String { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))].formattedMilliseconds }
                print("stress: \(index + 1)/\(count) scenarios, \(spawned) threads spawned, \(refused) spawns refused, "
                    + "\(stuck) reported stuck, \(unaccounted) unaccounted, \(failed) failed; overshoot p50 \(percentile(0.5)) "
                    + "p99 \(percentile(0.99)) max \(maxOvershoot.formattedMilliseconds) (seed \(overshootSeed)); probe lateness max "
                    + "\(maxStarvation.formattedMilliseconds); overshoot beyond lateness max \(maxNet.formattedMilliseconds); \(start.duration(to: .now).formattedMilliseconds)")
            }
            if index + 1 == count && count > 1 {
                for (policy, values) in byPolicy.sorted(by: { $0.key < $1.key }) {
                    let sorted = values.sorted()
                    let p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
                    print("stress: \(policy): \(values.count) scenarios, overshoot p50 \(sorted[sorted.count / 2].formattedMilliseconds) p99 \(p99.formattedMilliseconds) max \(sorted.last!.formattedMilliseconds)")
                }
            }
        }
    }
}

/// The scenarios' logger: critical only. The overshoot check is about the shutdown, and a
/// shutdown writes its log lines (a warning per stuck thread, an error per throw) before it
/// returns; under a loaded run those writes onto the test output took hundreds of ms (one seed
/// failed the check that way in CI and locally). That logging cost is an open finding of its
/// own, not something this check should measure.
let stressLogger: Logger = {
    var logger = Logger(label: "stress")
    logger.logLevel = .critical
    return logger
}()
