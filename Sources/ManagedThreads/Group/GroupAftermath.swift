// What a group does after a shutdown that left threads running.
//
// A child group whose shutdown was clean leaves its parent at once. One whose shutdown left
// threads running (stuck past the deadline, abandoned, background) stays, so that the parent
// still lists those threads (in `aliveThreads`, `status()` and the report of its own later
// shutdown, brought up to date). Once every one of them has ended, and every component below has
// finished, the group leaves too: the parent keeps the most recent `departedLimit` of them, and
// its later report lists what became of those threads (joined, or exited and not yet joined). Nothing
// grows without bound: 300 scopes whose thread overran its deadline and then ended leave no
// children behind.
//
// The events that can make a group leave are few, and each is handled where it happens:
// - a lingering thread ends: its group's closed exit queue refuses it, and its ledger records
//   the end (ThreadLedger.swift); when the last one of a group ends, the group waiting to leave
//   (the root of that shutdown, found by walking up) checks itself;
// - a child leaves: the parent checks itself (it may have been waiting for that child only);
// - a component that had not finished gives no event: `makeChild` sweeps the children that wait
//   to leave each time their number has doubled, so the cost per `makeChild` stays O(1).

extension ThreadGroup {
    /// The post-shutdown bookkeeping in a group's state.
    struct Aftermath {
        /// Set on the root of a shutdown that left threads running, while it still has a parent.
        var departWhenIdle = false
        /// The most recent children that left after such a shutdown (at most
        /// ``ThreadGroup/departedLimit``), oldest first: kept for their report nodes only.
        var departed: [ThreadGroup] = []
        /// The child count at which `makeChild` next sweeps.
        var nextSweepAt = ThreadGroup.sweepFloor
    }

    /// How many departed children a group lists in its later reports.
    static let departedLimit = 64
    /// The smallest child count at which `makeChild` sweeps.
    static let sweepFloor = 64

    /// Called at the end of a shutdown that left threads running: leave the parent once idle.
    func awaitDeparture() {
        state.withLock { $0.aftermath.departWhenIdle = true }
        // Threads may all have ended between the report and now.
        departIfIdle()
    }

    /// The last of this (stopped) group's threads that outlived its shutdown has ended.
    func lastOutliverEnded() {
        var group: ThreadGroup? = self
        while let current = group {
            if current.state.withLock({ $0.aftermath.departWhenIdle }) {
                current.departIfIdle()
                return
            }
            group = current.parent
        }
    }

    /// Leaves the parent if nothing below this group is still running.
    func departIfIdle() {
        guard let parent, state.withLock({ $0.aftermath.departWhenIdle }), threadsBelowEnded(),
            let node = currentReportNode(), node.count(.stuck) + node.count(.orphaned) + node.count(.abandoned) == 0
        else { return }
        // Once: concurrent checks may both get here.
        let claimed = state.withLock { state in
            defer { state.aftermath.departWhenIdle = false }
            return state.aftermath.departWhenIdle
        }
        if claimed { parent.childDeparted(self, threads: node.joinedTotal + node.count(.exitedUnreaped)) }
    }

    /// Whether every thread this group and the groups below it left running has ended.
    private func threadsBelowEnded() -> Bool {
        let children = state.withLock { $0.children.values.compactMap { $0.value as? ThreadGroup } }
        return ledger.outliversEnded && children.allSatisfy { $0.threadsBelowEnded() }
    }

    /// Removes a child whose lingering threads have all ended, keeping it for its report node.
    private func childDeparted(_ child: ThreadGroup, threads: Int) {
        let removed = state.withLock { state -> Bool in
            guard state.children.removeValue(forKey: ObjectIdentifier(child)) != nil else { return false }
            state.aftermath.departed.append(child)
            if state.aftermath.departed.count > Self.departedLimit { state.aftermath.departed.removeFirst() }
            return true
        }
        guard removed else { return }
        instruments.logger.debug(
            "child group left after its lingering threads ended",
            metadata: ["group": "\(path)", "child": "\(child.path)", "threads": "\(threads)"])
        departIfIdle()
    }

    /// Lets children waiting to leave check again (see the file's comment), when their number has
    /// doubled since the last sweep.
    func sweepDepartures() {
        let waiting = state.withLock { state -> [ThreadGroup] in
            guard state.children.count >= state.aftermath.nextSweepAt else { return [] }
            state.aftermath.nextSweepAt = Int.max  // one sweep at a time
            return state.children.values.compactMap { $0.value as? ThreadGroup }
        }
        guard !waiting.isEmpty else { return }
        for child in waiting where child.state.withLock({ $0.aftermath.departWhenIdle }) {
            child.departIfIdle()
        }
        state.withLock { state in
            state.aftermath.nextSweepAt = max(Self.sweepFloor, state.children.count * 2)
        }
    }

    /// This group's part of its finished shutdown's report, brought up to date: a thread reported
    /// stuck or orphaned that has exited since is reported `joined` if it was joined, else
    /// `exitedUnreaped`. Children are brought up to date the same way; a component that had not
    /// finished is asked again, with a deadline that has passed.
    func currentReportNode() -> ShutdownReport.Node? {
        let (report, members, departed) = state.withLock { state in
            (state.report?.root, state.children.values.map(\.value), state.aftermath.departed)
        }
        let lingering = ledger.lingering
        let children = members.compactMap { $0 as? ThreadGroup }
        guard var node = report else { return nil }
        // Looked up by tid, else by name: one pass, not one search per entry.
        var byTID: [Int32: WeakThread] = [:]
        var byName: [String: [WeakThread]] = [:]
        for record in lingering {
            if let tid = record.tid { byTID[tid] = record }
            byName[record.name, default: []].append(record)
        }
        for index in node.entries.indices {
            let entry = node.entries[index]
            guard entry.status == .stuck || entry.status == .orphaned || entry.status == .abandoned else { continue }
            // A thread that had not started when the report was written has no tid in its entry,
            // but may have one by the time the group recorded its stragglers.
            let record = entry.tid.flatMap { tid in byTID[tid].flatMap { $0.name == entry.name ? $0 : nil } }
                ?? byName[entry.name]?.first(where: { $0.tid == nil || entry.tid == nil || $0.tid == entry.tid })
            guard let record else { continue }
            let thread = record.thread
            if let thread, thread.isAlive { continue }
            // Gone: joined by its owner, or exited and dropped (the stack pool's orphan list reaps it).
            node.entries[index].status = thread?.isJoined == true ? .joined : .exitedUnreaped
            node.entries[index].kernel = nil
        }
        for index in node.children.indices {
            let childPath = node.children[index].path
            if let child = children.first(where: { $0.path == childPath }), let fresh = child.currentReportNode() {
                node.children[index] = fresh
            } else if let gone = departed.last(where: { $0.path == childPath }), let fresh = gone.currentReportNode() {
                node.children[index] = fresh
            } else if node.children[index].componentFinished == false,
                let component = members.first(where: { !($0 is ThreadGroup) && "\(path)/\($0.name)" == childPath })
            {
                // A TaskTracker's task, say, that has finished since: the join returns at once.
                node.children[index] = component.join(until: .now, path: childPath)
            }
        }
        return node
    }

    /// Threads a finished shutdown of this group (or of a group below) left running, still alive.
    func lingeringThreads() -> [ManagedThread] {
        let children = state.withLock { $0.children.values.compactMap { $0.value as? ThreadGroup } }
        return ledger.lingering.compactMap(\.thread).filter(\.isAlive) + children.flatMap { $0.lingeringThreads() }
    }
}
