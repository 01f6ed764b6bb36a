// A fleet: the threads of one system running one workload, and what they share.
import Glibc
import Synchronization

/// Everything the threads of one run share. Created before any thread starts and released (its
/// descriptors closed) only after every thread is gone.
final class WorkloadEnvironment: Sendable {
    let workload: Workload
    /// How many threads the fleet starts.
    let threadCount: Int
    /// The `cpu` and `tick` workloads' unit of work.
    let work: WorkUnit
    /// Threads that have reached their loop (or their blocking call).
    let running = Atomic<Int>(0)
    /// The baselines' stop flag for the `cpu` workload.
    let stopFlag = Atomic<Bool>(false)
    /// The raw baseline's one shared stop eventfd (also the Foundation baseline's, for `io`).
    let stopEvent: EventFD
    /// `cpu` only: threads block here until every one of them has started.
    let gate: EventFD?
    /// `io` only: one empty pipe per thread.
    let pipes: PipeSet?

    init(workload: Workload, threads: Int, work: WorkUnit) throws {
        self.workload = workload
        self.threadCount = threads
        self.work = work
        self.stopEvent = try EventFD()
        self.gate = workload == .cpu ? try EventFD() : nil
        self.pipes = workload == .io ? try PipeSet(count: threads) : nil
    }

    /// Called by a body once it is in its loop.
    /// - Returns: how many threads have entered, this one included.
    @discardableResult
    func enter() -> Int { running.add(1, ordering: .sequentiallyConsistent).newValue }

    /// Called by a `cpu` body before its loop: counts itself in, then sleeps at the gate until
    /// ``openGate()``. None spins while the others are still being started: on two cores each
    /// spinner holds a CPU for a whole time slice, and a thousand of them would delay the start
    /// of the rest (and every wake-up of the main thread) by seconds.
    func enterSpinning() {
        enter()
        if let gate { Poller.readable(gate.fd) }
    }

    /// Lets the `cpu` threads into their loops.
    func openGate() { gate?.signal() }

    /// Releases every thread waiting at the barrier, for a teardown after a failed start.
    func abandon() { gate?.signal() }

    /// Waits (sleeping, untimed) until every thread has called ``enter()``.
    func waitUntilAllRunning() throws {
        try waitUntil("\(threadCount) \(workload) threads to start (\(running.load(ordering: .relaxed)) so far)") {
            running.load(ordering: .acquiring) >= threadCount
        }
    }

    /// The pipe of thread `index` (`io` only).
    func pipe(_ index: Int) -> Int32 { pipes!.readEnd(index) }
}

/// The threads of one system running one workload.
protocol Fleet: AnyObject {
    /// Spawns the environment's `threadCount` threads. On failure it stops and joins the ones it
    /// started, then throws.
    func spawnAll() throws
    /// The timed part of a shutdown: request the stop and wait until every thread is really gone
    /// (joined; for Foundation, absent from /proc/self/task). Also used to clean up after a
    /// partial start.
    func stopAndJoin() throws
}

/// Creates the fleet for `system`.
func makeFleet(_ system: SystemID, environment: WorkloadEnvironment, stackSize: Int?) -> Fleet {
    switch system.system {
    case "managed":
        ManagedFleet(environment: environment, id: system, stackSize: stackSize)
    case "pthread":
        PThreadFleet(environment: environment, stackSize: stackSize)
    default:
        FoundationFleet(environment: environment, stackSize: stackSize)
    }
}

/// Starts a fleet and waits until all its threads are in their loops (`cpu`: at the gate, which
/// the caller opens). Whatever fails, nothing is left running.
func startFleet(_ system: SystemID, environment: WorkloadEnvironment, stackSize: Int?) throws -> Fleet {
    let fleet = makeFleet(system, environment: environment, stackSize: stackSize)
    try fleet.spawnAll()
    do {
        try environment.waitUntilAllRunning()
    } catch {
        environment.abandon()
        try? fleet.stopAndJoin()
        throw error
    }
    return fleet
}
