// `stuck`: a shutdown with a deadline when S of the T threads ignore the stop.
//
// The S stuck threads wait on a private flag that the harness releases only after the
// measurement (`spin`: a sched_yield loop on an atomic; `block`: poll on a private eventfd); the
// others block on their stop signal. The timed section is the shutdown-with-deadline call; the
// figure is its overshoot: time taken minus the deadline. The notes say in how many rounds every
// stuck thread was named.
//
//   managed/<policy>: ThreadGroup.shutdown(timeout:policy:) over a group holding all T threads
//   pthread:          write the shared eventfd, then pthread_timedjoin_np each thread in turn
//                     against one absolute deadline (the timed-out ones are the stuck ones)
//
// Written against the ThreadGroup API of ManagedThreads: `ThreadGroup(name:)`,
// `spawn(name:purpose:options:_:)`, `shutdown(timeout:policy:) -> ShutdownReport`, the policies
// `.shared`, `.fair`, `.ordered`, and on the report `stuckThreads` (entries with `name`, `tid`),
// `joined` and `duration`. Those two report names are read in one place, `StuckReading` below.
import Glibc
import ManagedThreads
import Synchronization

/// How a stuck thread ignores its stop.
enum StuckMode: String, CaseIterable, Sendable {
    /// Busy: a `sched_yield` loop on an atomic flag.
    case spin
    /// Blocked in `poll` on a private eventfd.
    case block
}

/// One stuck configuration.
struct StuckPoint: Hashable {
    var threads: Int
    var stuck: Int
    var deadline: Duration
    var hogs: Int
    var mode: StuckMode

    var point: Point {
        Point(scenario: .stuck, workload: "\(stuck) stuck/\(mode.rawValue)/\(deadline.nanoseconds / 1_000_000)ms",
              threads: threads, hogs: hogs)
    }

    /// Whether thread `index` is one of the stuck ones: S threads spread evenly over the T.
    func isStuck(_ index: Int) -> Bool {
        let step = Swift.max(1, threads / Swift.max(1, stuck))
        return index % step == 0 && index / step < stuck
    }
}

/// What the report says, in the names this scenario needs.
private struct StuckReading {
    var stuckNames: Set<String>
    var joined: Int

    init(_ report: ShutdownReport) {
        stuckNames = Set(report.stuckThreads.map(\.name))
        joined = report.joined
    }
}

/// What holds the stuck threads until the measurement is over.
private final class Release: Sendable {
    let mode: StuckMode
    private let flag = Atomic<Bool>(false)
    private let event: EventFD

    init(mode: StuckMode) throws {
        self.mode = mode
        event = try EventFD()
    }

    /// Blocks the calling (stuck) thread until ``open()``.
    func hold() {
        switch mode {
        case .spin:
            while !flag.load(ordering: .acquiring) { sched_yield() }
        case .block:
            Poller.readable(event.fd)
        }
    }

    func open() {
        flag.store(true, ordering: .releasing)
        event.signal()
    }
}

enum StuckScenario {
    static let policies: [(String, ShutdownPolicy)] = [("shared", .shared), ("fair", .fair), ("ordered", .ordered)]
    static let systems: [SystemID] = policies.map { .managed($0.0) } + [.pthread]

    /// The outcome of one timed shutdown.
    struct Outcome {
        var overshoot: Int64
        var allNamed: Bool
        var allOthersJoined: Bool
    }

    static func run(_ runner: Runner, _ stuck: StuckPoint, rounds: Int, stackSize: Int?) {
        var named = [SystemID: Int]()
        var joined = [SystemID: Int]()
        runner.measure(stuck.point, systems: systems, rounds: rounds, sample: { id, _ in
            let outcome: Outcome
            if id.isBaseline {
                outcome = try baseline(stuck, stackSize: stackSize)
            } else {
                let policy = policies.first { $0.0 == id.config }!.1
                outcome = try managed(stuck, policy: policy, options: ManagedSystem.options(id, stackSize: stackSize))
            }
            if outcome.allNamed { named[id, default: 0] += 1 }
            if outcome.allOthersJoined { joined[id, default: 0] += 1 }
            return [outcome.overshoot]
        }, notes: { id in
            var notes = ["all \(stuck.stuck) stuck threads named in \(named[id] ?? 0)/\(rounds) rounds"]
            if (joined[id] ?? 0) < rounds {
                notes.append("the other threads were all joined in only \(joined[id] ?? 0)/\(rounds) rounds")
            }
            return notes
        })
    }

    /// One managed shutdown of a fresh group.
    static func managed(_ stuck: StuckPoint, policy: ShutdownPolicy, options: ThreadOptions) throws -> Outcome {
        let group = ThreadGroup(name: "bench")
        let release = try Release(mode: stuck.mode)
        let started = StartCounter()
        var threads: [ManagedThread] = []
        var stuckNames = Set<String>()
        threads.reserveCapacity(stuck.threads)
        defer {
            // Whatever happened: let the stuck ones go and join everything.
            release.open()
            _ = group.shutdown(timeout: setupTimeout)
            for thread in threads { _ = try? thread.join(timeout: setupTimeout) }
        }
        for index in 0..<stuck.threads {
            if stuck.isStuck(index) {
                let name = "stuck-\(index)"
                stuckNames.insert(name)
                threads.append(try group.spawn(name: name, purpose: "ignores its stop", options: options) { _ in
                    started.bump()
                    release.hold()
                })
            } else {
                threads.append(try group.spawn(name: "idle-\(index)", options: options) { token in
                    started.bump()
                    while !token.wait(until: .farFuture) {}
                })
            }
        }
        try waitUntil("\(stuck.threads) threads to start") { started.value.load(ordering: .acquiring) >= stuck.threads }
        let hogs = try CPUHogs(count: stuck.hogs)
        let start = ContinuousClock.now
        let report = group.shutdown(timeout: stuck.deadline, policy: policy)
        let elapsed = start.nanosecondsSince
        hogs.stop()
        let reading = StuckReading(report)
        return Outcome(
            overshoot: elapsed - stuck.deadline.nanoseconds,
            allNamed: reading.stuckNames == stuckNames,
            allOthersJoined: reading.joined == stuck.threads - stuckNames.count)
    }

    /// One raw-pthread shutdown with sequential `pthread_timedjoin_np` against one deadline.
    private static func baseline(_ stuck: StuckPoint, stackSize: Int?) throws -> Outcome {
        let context = StuckBaselineContext(release: try Release(mode: stuck.mode), stop: try EventFD())
        var handles: [pthread_t] = []
        var pending: [pthread_t] = []  // still to be joined at cleanup
        handles.reserveCapacity(stuck.threads)
        defer {
            context.release.open()
            context.stop.signal()
            pending.forEach(RawPThread.join)
        }
        let arg = Unmanaged.passUnretained(context).toOpaque()
        for index in 0..<stuck.threads {
            let handle = try RawPThread.create(
                stackSize: stackSize, start: stuck.isStuck(index) ? baselineStuck : baselineWaiting, arg: arg)
            handles.append(handle)
            pending.append(handle)
        }
        try waitUntil("\(stuck.threads) threads to start") { context.started.value.load(ordering: .acquiring) >= stuck.threads }
        let hogs = try CPUHogs(count: stuck.hogs)
        let start = ContinuousClock.now
        context.stop.signal()
        let deadline = RawPThread.realtimeDeadline(after: stuck.deadline)
        var timedOut: [Int] = []
        for (index, handle) in handles.enumerated() where !RawPThread.join(handle, realtimeDeadline: deadline) {
            timedOut.append(index)
        }
        let elapsed = start.nanosecondsSince
        hogs.stop()
        pending = timedOut.map { handles[$0] }
        let expected = (0..<stuck.threads).filter(stuck.isStuck)
        return Outcome(
            overshoot: elapsed - stuck.deadline.nanoseconds,
            allNamed: timedOut == expected,
            allOthersJoined: handles.count - timedOut.count == stuck.threads - expected.count)
    }
}

/// What the baseline's threads share.
private final class StuckBaselineContext: Sendable {
    let release: Release
    let stop: EventFD
    let started = StartCounter()

    init(release: Release, stop: EventFD) {
        self.release = release
        self.stop = stop
    }
}

private func baselineStuck(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<StuckBaselineContext>.fromOpaque(arg!).takeUnretainedValue()
    context.started.bump()
    context.release.hold()
    return nil
}

private func baselineWaiting(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<StuckBaselineContext>.fromOpaque(arg!).takeUnretainedValue()
    context.started.bump()
    Poller.readable(context.stop.fd)
    return nil
}
