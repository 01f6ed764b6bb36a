import Synchronization

/// A snapshot of a group's subtree taken at the start of a shutdown.
///
/// Taking it hands every group's ``ThreadLedger`` over to the shutdown's ``ExitQueue``, so every
/// member thread is accounted for exactly once: it either ended before (it is in `ended`) or will
/// push itself onto the queue (the ledger's comment states the whole invariant).
final class ShutdownPlan {
    enum Child {
        case group(ShutdownPlan)
        /// A component, or a group already being shut down by another caller.
        case component(any ThreadOwner, path: String)
        /// A group that was shut down before; its report stands, brought up to date (threads it
        /// reported stuck that ended since) when this shutdown's report is written.
        case stopped(ThreadGroup)
    }

    let group: ThreadGroup
    let path: String
    let threads: [ThreadGroup.Member<ManagedThread>]
    let ended: [ManagedThread]
    /// Threads a spawn reaped before this shutdown: clean ones counted, failed ones as entries.
    let reapedJoined: Int
    let reapedFailures: [ShutdownReport.ThreadEntry]
    let children: [(child: Child, serial: UInt64, priority: Int)]
    /// Children that left after an earlier shutdown, listed for their report nodes (see
    /// GroupAftermath.swift).
    let departed: [ThreadGroup]
    /// Whether the group's parent is itself stopping (then the parent removes nothing).
    let parentIsStopping: Bool
    /// Filled in by ``ShutdownRun/node(for:)``.
    var node: ShutdownReport.Node?

    private init(
        group: ThreadGroup, path: String, threads: [ThreadGroup.Member<ManagedThread>], ended: [ManagedThread],
        reaped: (joined: Int, failures: [ShutdownReport.ThreadEntry]),
        children: [(child: Child, serial: UInt64, priority: Int)], departed: [ThreadGroup], parentIsStopping: Bool
    ) {
        self.group = group
        self.path = path
        self.threads = threads
        self.ended = ended
        self.reapedJoined = reaped.joined
        self.reapedFailures = reaped.failures
        self.children = children
        self.departed = departed
        self.parentIsStopping = parentIsStopping
    }

    /// Snapshots `group` and, recursively, the child groups it owns. `isRoot`: the caller already
    /// claimed the group's shutdown.
    ///
    /// With `stopReason`, the group's stop word is flipped as soon as its queue is installed, so
    /// its threads hear of the stop before the snapshot is sorted (O(threads), which on a loaded
    /// machine is slow) and can already ask the shutdown for more time; children are told
    /// `parentStopped` as each is reached. Without it (the ordered policy), threads are told stage
    /// by stage later.
    static func prepare(_ group: ThreadGroup, path: String, queue: ExitQueue, isRoot: Bool, stopReason: StopReason?) -> Child {
        enum Snapshot {
            // Copies of the dictionaries (O(1): copy on write), sorted outside the lock.
            case ok(ThreadLedger.Handover, [ObjectIdentifier: ThreadGroup.Member<any ThreadOwner>], departed: [ThreadGroup])
            case busy
            case stopped
        }
        let snapshot = group.state.withLock { state -> Snapshot in
            if !isRoot {
                if state.report != nil { return .stopped }
                if state.shutdownInProgress { return .busy }
                state.shutdownInProgress = true
            }
            state.phase = max(state.phase, .stopRequested)
            // Under the group's lock, so no spawn is admitted after the hand-over.
            let handover = group.ledger.handOver(to: queue)
            return .ok(handover, state.children, departed: state.aftermath.departed)
        }
        if case .ok = snapshot, let stopReason, group.stopWord.mayStopAtOnce { group.stopWord.stop(reason: stopReason) }
        switch snapshot {
        case .stopped:
            // Its report, once set, stays; it is brought up to date when this report is written.
            return .stopped(group)
        case .busy:
            return .component(group, path: path)
        case .ok(let handover, let memberTable, let departed):
            let threads = handover.running.values.sorted { $0.serial < $1.serial }
            let ended = handover.ended
            let reaped = (joined: handover.reapedJoined, failures: handover.reapedFailures)
            let members = memberTable.values.sorted { $0.serial < $1.serial }
            let children = members.map { member -> (child: Child, serial: UInt64, priority: Int) in
                let childPath = "\(path)/\(member.value.name)"
                let child: Child
                if let childGroup = member.value as? ThreadGroup {
                    child = prepare(
                        childGroup, path: childPath, queue: queue, isRoot: false,
                        stopReason: stopReason == nil ? nil : .parentStopped)
                } else {
                    child = .component(member.value, path: childPath)
                }
                return (child, member.serial, member.priority)
            }
            let parentStopping = group.parent.map { parent in
                parent.state.withLock { $0.phase != .running }
            } ?? false
            return .group(ShutdownPlan(
                group: group, path: path, threads: threads, ended: ended, reaped: reaped, children: children,
                departed: departed, parentIsStopping: isRoot ? parentStopping : true))
        }
    }

    /// Convenience for the root, which is always a group.
    static func prepareRoot(_ group: ThreadGroup, queue: ExitQueue, stopReason: StopReason?) -> ShutdownPlan {
        guard case .group(let plan) = prepare(group, path: group.path, queue: queue, isRoot: true, stopReason: stopReason) else {
            preconditionFailure("the root of a shutdown plan is always a group")
        }
        return plan
    }

    var ownForegroundThreads: [ManagedThread] {
        threads.map(\.value).filter { !$0.isBackground } + ended
    }

    /// Foreground threads of the whole subtree, plus those that ended before the shutdown.
    var allForegroundThreads: [ManagedThread] {
        ownForegroundThreads + childPlans.flatMap(\.allForegroundThreads)
    }

    /// Every thread of the subtree, background included.
    var allThreads: [ManagedThread] {
        threads.map(\.value) + ended + childPlans.flatMap(\.allThreads)
    }

    /// Components of the subtree, with their paths.
    var allComponents: [(any ThreadOwner, String)] {
        children.compactMap { entry -> (any ThreadOwner, String)? in
            if case .component(let owner, let path) = entry.child { return (owner, path) }
            return nil
        } + childPlans.flatMap(\.allComponents)
    }

    /// Groups below that had been shut down before this shutdown began.
    var allStoppedGroups: [ThreadGroup] {
        children.compactMap { entry -> ThreadGroup? in
            if case .stopped(let group) = entry.child { return group }
            return nil
        } + childPlans.flatMap(\.allStoppedGroups)
    }

    var childPlans: [ShutdownPlan] {
        children.compactMap { entry in
            if case .group(let plan) = entry.child { return plan }
            return nil
        }
    }

    /// Requests a stop of everything in the subtree. The `onStop` callbacks are handed to a
    /// ``CallbackRunner`` (returned, nil when there are none), so user code runs off this thread
    /// and cannot delay the signal reaching the rest, or the deadline.
    func signalAll(ownReason: StopReason) -> CallbackRunner? {
        var callbacks: [CallbackRunner.Pending] = []
        collectSignals(ownReason: ownReason, into: &callbacks)
        return CallbackRunner.start(callbacks)
    }

    private func collectSignals(ownReason: StopReason, into callbacks: inout [CallbackRunner.Pending]) {
        for member in threads { callbacks += member.value.signal(reason: ownReason) }
        // Flipped already unless members held callbacks (see GroupStop.swift).
        group.stopWord.stop(reason: ownReason)
        for entry in children {
            switch entry.child {
            case .group(let plan): plan.collectSignals(ownReason: .parentStopped, into: &callbacks)
            case .component(let owner, _): owner.requestStop(reason: .parentStopped)
            case .stopped: break
            }
        }
    }

    /// Every group of the subtree that this plan shuts down.
    var allGroups: [ThreadGroup] { [group] + childPlans.flatMap(\.allGroups) }

    /// Stores each group's part of the report and marks it stopped.
    func finish(report: ShutdownReport) {
        for plan in childPlans {
            guard let node = plan.node else { continue }
            var sub = report
            sub.groupPath = plan.path
            sub.root = node
            plan.finish(report: sub)
        }
        group.finishShutdown(report: report)
    }
}
