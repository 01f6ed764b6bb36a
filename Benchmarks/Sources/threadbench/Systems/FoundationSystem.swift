// The Foundation baseline: `Foundation.Thread` with an `NSCondition` and a flag, the way Swift code
// without a thread library usually stops its threads.
//
// Foundation.Thread is detached and has no join. To measure until the thread is really gone, as
// for the other systems, each body records its kernel tid (`gettid`, through CBench) and the
// "join" is: wait until every body has returned (a counter and a condition), then poll
// /proc/self/task until none of the tids is listed any more. The polling makes this join a little
// slower than a futex-based one would be; that is the price of the missing API, and it is charged
// to Foundation in the figures.
import CBench
import Foundation
import Synchronization

/// What the threads of one Foundation run share.
final class FoundationShared: Sendable {
    /// The stop condition: `stopRequested` is read and written only with `condition` locked.
    let condition = NSCondition()
    // Protected by `condition`: written by the stopping thread and read by the bodies, each only
    // between condition.lock() and condition.unlock().
    nonisolated(unsafe) private var stopFlag = false

    /// Kernel ids of the threads, recorded by each body as it starts.
    let tids = Mutex<[pid_t]>([])
    /// Bodies that have returned.
    let finished = Atomic<Int>(0)
    /// How many bodies the stopper waits for; set before the stop is requested.
    let expected = Atomic<Int>(Int.max)
    /// Signalled by the last body to return.
    let done = NSCondition()

    /// Whether the stop was requested; call with `condition` locked.
    var stopRequestedLocked: Bool { stopFlag }

    /// Sets the flag and wakes every waiter (`NSCondition.broadcast`).
    func requestStop() {
        condition.lock()
        stopFlag = true
        condition.broadcast()
        condition.unlock()
    }

    /// Called by a body as it starts.
    func register() {
        let tid = cbench_gettid()
        tids.withLock { $0.append(tid) }
    }

    /// Called by a body as it returns.
    func bodyEnded() {
        let count = finished.add(1, ordering: .sequentiallyConsistent).newValue
        if count >= expected.load(ordering: .sequentiallyConsistent) {
            done.lock()
            done.broadcast()
            done.unlock()
        }
    }

    /// Blocks until `count` bodies have returned.
    func waitForBodies(_ count: Int) {
        done.lock()
        while finished.load(ordering: .sequentiallyConsistent) < count {
            done.wait()
        }
        done.unlock()
    }
}

enum FoundationSystem {
    /// `spawn`: start a `Thread` whose block only records its tid, then wait until the tid has
    /// left /proc/self/task.
    static func spawnJoin(count: Int, stackSize: Int?) throws -> [Int64] {
        let slot = TIDSlot()
        var samples: [Int64] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            slot.tid.store(0, ordering: .relaxed)
            let start = ContinuousClock.now
            let thread = Foundation.Thread { slot.tid.store(cbench_gettid(), ordering: .releasing) }
            if let stackSize { thread.stackSize = stackSize }
            thread.start()
            let tid = try spinUntil("a Foundation thread to start") { () -> pid_t? in
                let tid = slot.tid.load(ordering: .acquiring)
                return tid == 0 ? nil : tid
            }
            try TaskDirectory.waitUntilGone(tid)
            samples.append(start.nanosecondsSince)
        }
        return samples
    }

    /// `spawnstop`: the block waits on an NSCondition until a flag is set; stop = set the flag and
    /// broadcast; then wait until the tid has left /proc/self/task.
    static func spawnStopJoin(count: Int, stackSize: Int?) throws -> [Int64] {
        let slot = TIDSlot()
        var samples: [Int64] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            slot.tid.store(0, ordering: .relaxed)
            let shared = FoundationShared()  // untimed: one condition per thread
            let start = ContinuousClock.now
            let thread = Foundation.Thread {
                slot.tid.store(cbench_gettid(), ordering: .releasing)
                shared.condition.lock()
                while !shared.stopRequestedLocked { shared.condition.wait() }
                shared.condition.unlock()
            }
            if let stackSize { thread.stackSize = stackSize }
            thread.start()
            let tid = try spinUntil("a Foundation thread to start") { () -> pid_t? in
                let tid = slot.tid.load(ordering: .acquiring)
                return tid == 0 ? nil : tid
            }
            shared.requestStop()
            try TaskDirectory.waitUntilGone(tid)
            samples.append(start.nanosecondsSince)
        }
        return samples
    }

    /// Where a spawned thread leaves its tid.
    final class TIDSlot: Sendable {
        let tid = Atomic<pid_t>(0)
    }

    /// The block a Foundation thread runs for `environment`'s workload.
    static func body(for environment: WorkloadEnvironment, shared: FoundationShared, index: Int) -> @Sendable () -> Void {
        switch environment.workload {
        case .idle:
            return {
                shared.condition.lock()
                environment.enter()
                while !shared.stopRequestedLocked { shared.condition.wait() }
                shared.condition.unlock()
            }
        case .io:
            // Foundation has nothing to wake a thread blocked on a descriptor: like the raw
            // baseline, the poll set holds a shared eventfd beside the thread's pipe.
            let pipe = environment.pipe(index)
            return {
                environment.enter()
                Poller.untilReadable(environment.stopEvent.fd, alongside: pipe)
            }
        case .cpu:
            // The flag is read on every iteration: an atomic, not the condition's lock.
            return {
                environment.enterSpinning()
                var acc = UInt64(index)
                while !environment.stopFlag.load(ordering: .relaxed) {
                    acc = environment.work.run(acc)
                }
                blackHole(acc)
            }
        case .tick:
            return {
                var acc = UInt64(index)
                shared.condition.lock()
                environment.enter()
                while !shared.stopRequestedLocked {
                    if !shared.condition.wait(until: Date(timeIntervalSinceNow: 0.1)) {
                        shared.condition.unlock()
                        acc = environment.work.run(acc)
                        shared.condition.lock()
                    }
                }
                shared.condition.unlock()
                blackHole(acc)
            }
        }
    }
}

/// Foundation threads running a workload. Stop: set the flag and broadcast the condition (`io`:
/// write the shared eventfd; `cpu`: set the atomic flag); "join": see the top of this file.
final class FoundationFleet: Fleet {
    private let environment: WorkloadEnvironment
    private let stackSize: Int?
    private let shared = FoundationShared()
    private var launched = 0

    init(environment: WorkloadEnvironment, stackSize: Int?) {
        self.environment = environment
        self.stackSize = stackSize
    }

    func spawnAll() throws {
        for index in 0..<environment.threadCount {
            let body = FoundationSystem.body(for: environment, shared: shared, index: index)
            let thread = Foundation.Thread { [shared] in
                shared.register()
                body()
                shared.bodyEnded()
            }
            if let stackSize { thread.stackSize = stackSize }
            thread.start()  // Foundation cannot report a failure here: it traps
            launched += 1
        }
    }

    func stopAndJoin() throws {
        shared.expected.store(launched, ordering: .sequentiallyConsistent)
        switch environment.workload {
        case .idle, .tick: shared.requestStop()
        case .io: environment.stopEvent.signal()
        case .cpu: environment.stopFlag.store(true, ordering: .relaxed)
        }
        shared.waitForBodies(launched)
        try TaskDirectory.waitUntilGone(shared.tids.withLock { $0 })
        launched = 0
    }
}
