// The system under test: ManagedThread, used the way its README says.
import Glibc
import ManagedThreads
import Synchronization

/// A counter that bodies bump once they are running; the spawn scenarios wait on it.
final class StartCounter: Sendable {
    let value = Atomic<Int>(0)

    func bump() { value.add(1, ordering: .sequentiallyConsistent) }

    /// Spins until the counter reaches `target` (inside a timed operation).
    func spin(until target: Int) throws {
        _ = try spinUntil("a thread to start") { value.load(ordering: .acquiring) >= target ? () : nil }
    }
}

/// How long a managed join may take before the benchmark calls it a failure.
let managedJoinTimeout = setupTimeout

enum ManagedSystem {
    /// The options for configuration `id`: the stack size asked for, and pooled or glibc stacks.
    static func options(_ id: SystemID, stackSize: Int?) -> ThreadOptions {
        ThreadOptions(stackSize: stackSize, stackAllocation: id.usesGlibcStacks ? .system : .pooled)
    }

    /// Untimed, after every managed run: unmaps the stack pool's stacks beyond its budget, so the
    /// next run (of any system) starts from the same address space. Returns how long it took:
    /// the part of a teardown the pool moves out of the shutdown.
    static func settle() -> Int64 {
        let start = ContinuousClock.now
        ManagedThread.trimStackPool()
        return start.nanosecondsSince
    }

    /// `spawn`: spawn a thread whose body returns at once, then join it. One sample per thread.
    static func spawnJoin(_ id: SystemID, count: Int, stackSize: Int?) throws -> [Int64] {
        let options = options(id, stackSize: stackSize)
        var samples: [Int64] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let start = ContinuousClock.now
            let thread = try ManagedThread.spawn(name: "bench-spawn", options: options) { _ in }
            guard try thread.join(timeout: managedJoinTimeout) else { throw BenchError("a managed thread did not exit") }
            samples.append(start.nanosecondsSince)
        }
        return samples
    }

    /// `spawnstop`: spawn a thread that blocks on its stop token, wait until it runs, stop it, join.
    static func spawnStopJoin(_ id: SystemID, count: Int, mechanism: StopMechanism, stackSize: Int?) throws -> [Int64] {
        let options = options(id, stackSize: stackSize)
        let started = StartCounter()
        var samples: [Int64] = []
        samples.reserveCapacity(count)
        for i in 0..<count {
            let start = ContinuousClock.now
            let thread: ManagedThread
            switch mechanism {
            case .futex:
                thread = try ManagedThread.spawn(name: "bench-stop", options: options) { token in
                    started.bump()
                    while !token.wait(until: .farFuture) {}
                }
            case .eventfd:
                thread = try ManagedThread.spawn(name: "bench-stop", options: options) { token in
                    let fd = try token.fileDescriptor
                    started.bump()
                    Poller.readable(fd)
                }
            }
            do {
                try started.spin(until: i + 1)
            } catch {
                thread.requestStop()
                _ = try? thread.join(timeout: managedJoinTimeout)
                throw thread.error ?? error
            }
            thread.requestStop()
            guard try thread.join(timeout: managedJoinTimeout) else { throw BenchError("a managed thread did not stop") }
            samples.append(start.nanosecondsSince)
        }
        return samples
    }

    /// The body a managed thread runs for `environment`'s workload.
    static func body(
        for environment: WorkloadEnvironment, index: Int, mechanism: StopMechanism?
    ) -> @Sendable (StopToken) throws -> Void {
        switch (environment.workload, mechanism) {
        case (.idle, .eventfd?):
            return { token in
                let fd = try token.fileDescriptor
                environment.enter()
                Poller.readable(fd)
            }
        case (.idle, _):
            return { token in
                environment.enter()
                while !token.wait(until: .farFuture) {}
            }
        case (.io, _):
            let pipe = environment.pipe(index)
            return { token in
                let stop = try token.fileDescriptor
                environment.enter()
                Poller.untilReadable(stop, alongside: pipe)
            }
        case (.cpu, _):
            return { token in
                environment.enterSpinning()
                var acc = UInt64(index)
                while !token.isStopRequested {
                    acc = environment.work.run(acc)
                }
                blackHole(acc)
            }
        case (.tick, .eventfd?):
            return { token in
                let fd = try token.fileDescriptor
                environment.enter()
                var acc = UInt64(index)
                while !Poller.readable(fd, timeoutMilliseconds: 100) {
                    acc = environment.work.run(acc)
                }
                blackHole(acc)
            }
        case (.tick, _):
            return { token in
                environment.enter()
                var acc = UInt64(index)
                while !token.wait(timeout: .milliseconds(100)) {
                    acc = environment.work.run(acc)
                }
                blackHole(acc)
            }
        }
    }
}

/// Managed threads running a workload. Stop, by shape: `handles`, `requestStop()` on every thread
/// then a join of each against one deadline; `group`/`tree`, one `shutdown` of the (root) group.
final class ManagedFleet: Fleet {
    private let environment: WorkloadEnvironment
    private let mechanism: StopMechanism?
    private let options: ThreadOptions
    private let shape: GroupShape
    private var threads: [ManagedThread] = []
    private var root: ThreadGroup?
    private var leaves: [ThreadGroup] = []
    /// Reports kept until the fleet is released (see stopAndJoin).
    private var retired: [ShutdownReport] = []

    init(environment: WorkloadEnvironment, id: SystemID, stackSize: Int?) {
        self.environment = environment
        self.mechanism = id.config.flatMap(StopMechanism.init(rawValue:))
        self.options = ManagedSystem.options(id, stackSize: stackSize)
        self.shape = id.shape ?? .handles
    }

    func spawnAll() throws {
        threads.reserveCapacity(environment.threadCount)
        let name = "bench-\(environment.workload)"
        do {
            switch shape {
            case .handles:
                break
            case .group:
                let group = ThreadGroup(name: "bench")
                root = group
                leaves = [group]
            case .tree:
                let group = ThreadGroup(name: "bench")
                root = group
                for i in 0..<2 {
                    let child = try group.makeChild(name: "mid-\(i)")
                    for j in 0..<2 { leaves.append(try child.makeChild(name: "leaf-\(j)")) }
                }
            }
            for index in 0..<environment.threadCount {
                let body = ManagedSystem.body(for: environment, index: index, mechanism: mechanism)
                if leaves.isEmpty {
                    threads.append(try ManagedThread.spawn(name: name, options: options, body))
                } else {
                    threads.append(try leaves[index % leaves.count].spawn(name: name, options: options, body))
                }
            }
        } catch {
            environment.abandon()
            try? stopAndJoin()
            throw error
        }
    }

    func stopAndJoin() throws {
        // The handles, the group and the report are released with the fleet, after the clock
        // stops: "all gone" means the threads, and the baselines' teardown is untimed too.
        if let root {
            let report = root.shutdown(timeout: managedJoinTimeout)
            retired.append(report)
            let count = threads.count
            guard report.joined == count, report.stuck == 0 else {
                throw BenchError("managed group shutdown joined \(report.joined) of \(count) threads:\n\(report)")
            }
            if report.failed > 0 { throw BenchError("\(report.failed) managed bodies threw") }
            return
        }
        for thread in threads { thread.requestStop() }
        let deadline = ContinuousClock.now.advanced(by: managedJoinTimeout)
        for thread in threads {
            guard try thread.join(until: deadline) else {
                throw BenchError("managed thread \(thread) did not exit within \(managedJoinTimeout)")
            }
        }
        let failed = threads.compactMap(\.error)
        if let first = failed.first { throw BenchError("\(failed.count) managed bodies threw, e.g. \(first)") }
    }
}
