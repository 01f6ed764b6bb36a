import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// A group's shutdown: the entry points, the run of the plan under one deadline, the escalation's
// interrupt step, and what the group keeps once it is done (see GroupAftermath.swift for what
// happens after). The plan itself is ShutdownPlan.swift.

extension ThreadGroup {
    /// Stops everything below this group and joins it within `timeout`; see ``shutdown(until:policy:)-2d25y``.
    @available(*, noasync, message: "blocks the calling thread; use the async shutdown")
    @discardableResult
    public func shutdown(timeout: Duration, policy: ShutdownPolicy = .shared) -> ShutdownReport {
        shutdown(until: .after(timeout), policy: policy)
    }

    /// Stops everything below this group and joins it under one absolute deadline.
    ///
    /// 1. Signals every thread, child group and component below (except under
    ///    ``ShutdownPolicy/ordered``, which signals stage by stage).
    /// 2. Joins them, sharing the deadline as `policy` says; threads are reaped in the order they
    ///    exit. Background threads are signalled but not waited for.
    /// 3. Returns the report, with the kernel's view of every thread still running.
    ///
    /// Returns by the deadline however many threads are stuck, plus a small margin for the report.
    /// Idempotent: later calls return the first outcome at once; a call made while another is in
    /// progress waits for it (until its own deadline). A clean child group leaves its parent.
    @available(*, noasync, message: "blocks the calling thread; use the async shutdown")
    @discardableResult
    public func shutdown(until deadline: ContinuousClock.Instant, policy: ShutdownPolicy = .shared) -> ShutdownReport {
        // A thin entry: the checks come before any local type's metadata is touched, since in a
        // forked child a runtime lock may be held by a thread that does not exist there.
        if Fork.isChild { return .forkedChild(groupPath: path, name: name, policy: policy) }
        return runShutdown(until: deadline, policy: policy)
    }

    private func runShutdown(until deadline: ContinuousClock.Instant, policy: ShutdownPolicy) -> ShutdownReport {
        let start = ContinuousClock.now
        enum Entry { case run(firstStop: Bool), wait, done(ShutdownReport) }
        let entry = state.withLock { state -> Entry in
            if let report = state.report { return .done(report) }
            if state.shutdownInProgress { return .wait }
            state.shutdownInProgress = true
            let firstStop = state.phase == .running
            state.phase = max(state.phase, .stopRequested)
            return .run(firstStop: firstStop)
        }
        switch entry {
        case .done(let report):
            return report
        case .wait:
            _ = completed.wait(until: deadline)
            return state.withLock { $0.report } ?? provisionalReport(start: start, deadline: deadline, policy: policy)
        case .run(let firstStop):
            if firstStop { instruments.stopRequested(groupPath: path, reason: .shutdown) }
        }

        let queue = ExitQueue()
        queue.openExtensions(base: deadline)
        // Each group's threads are told through its stop word as soon as its queue is in place,
        // before the slow part of the plan (on a loaded machine, time is what this thread has
        // least of). The ordered policy tells them stage by stage instead.
        let plan = ShutdownPlan.prepareRoot(self, queue: queue, stopReason: policy.kind == .ordered ? nil : .shutdown)
        var run = ShutdownRun(queue: queue, deadline: deadline)
        let escalation = policy.escalation
        run.abandonStuck = escalation.final == .abandon
        // With an interrupt step, the cooperative part ends early; the rest is the interrupt's.
        let cooperativeEnd = escalation.interruptSignal == nil
            ? deadline : start.advanced(by: start.duration(to: deadline) * escalation.cooperativeShare)
        switch policy.kind {
        case .shared:
            if let runner = plan.signalAll(ownReason: .shutdown) { run.runners.append(runner) }
            run.join(plan.allForegroundThreads, until: cooperativeEnd)
            for (owner, ownerPath) in plan.allComponents { run.join(component: owner, path: ownerPath, until: cooperativeEnd) }
        case .fair:
            if let runner = plan.signalAll(ownReason: .shutdown) { run.runners.append(runner) }
            run.joinFair(plan, until: cooperativeEnd)
        case .ordered:
            run.joinOrdered(plan, until: cooperativeEnd)
        }
        if let signal = escalation.interruptSignal {
            interrupt(plan.allForegroundThreads, with: signal, run: &run)
        }
        // Threads that an earlier shutdown of a child group left running are still ours to wait
        // for, under the same deadline (they announce their end to that shutdown's closed queue,
        // so they are joined directly; usually none, or a few that are just ending).
        for straggler in plan.allStoppedGroups.flatMap({ $0.lingeringThreads() }) where straggler.tid != run.callerTID {
            _ = try? straggler.join(until: run.deadline)
        }
        // onStop callbacks run on their own thread; what they have not finished by the deadline
        // (less the report's reserve) is named, and the shutdown returns anyway.
        let earlier = plan.allGroups.flatMap { group in group.state.withLock { $0.callbackRunners } }
        let callbackDeadline = run.deadline.advanced(by: .zero - run.reportReserve(pending: 0))
        let runningCallbacks = (earlier + run.runners).flatMap { $0.wait(until: callbackDeadline) }
        run.sweep(plan.allThreads)
        let root = run.node(for: plan)
        let extended = queue.closeExtensions()
        let effectiveDeadline = max(deadline, extended.until ?? deadline)
        let end = ContinuousClock.now
        var report = ShutdownReport(
            groupPath: path, policy: policy.description,
            timeoutNanoseconds: start.duration(to: deadline).nanosecondsClamped,
            durationNanoseconds: start.duration(to: end).nanosecondsClamped,
            overshootNanoseconds: max(0, effectiveDeadline.duration(to: end).nanosecondsClamped),
            root: root)
        report.extensions = extended.records
        report.interrupted = run.interrupted.count
        report.runningCallbacks = runningCallbacks
        if escalation.final == .abort && report.stuck > 0 {
            StandardError.write("\(report)\nthreads did not stop by the deadline: aborting as the shutdown policy says\n")
            logger.critical("threads did not stop by the deadline: aborting", metadata: ["group": "\(path)", "stuck": "\(report.stuck)"])
            abort()
        }
        if let reserveStart = run.reserveStartedAt {
            ReportCost.record(reserveStart.duration(to: ContinuousClock.now))
        }
        plan.finish(report: report)
        instruments.shutdownFinished(report)
        if let parent, !plan.parentIsStopping {
            if report.isClean && report.orphaned == 0 {
                parent.removeChild(self)
            } else {
                awaitDeparture()
            }
        }
        return report
    }

    /// The interrupt step: until the deadline, every 10 ms, sends `signal` to each thread still
    /// running that is not cooperating already (it acknowledged the stop, or holds a deadline
    /// extension), never while an earlier copy is pending on it, and reaps those that end.
    private func interrupt(_ threads: [ManagedThread], with signal: Int32, run: inout ShutdownRun) {
        var running = threads.filter { $0.isAlive && $0.tid != run.callerTID }
        guard !running.isEmpty else { return }
        if let problem = SignalOwner.prepareInterrupt(signal) {
            logger.error("interrupt step skipped", metadata: ["group": "\(path)", "reason": "\(problem)"])
            return
        }
        while !running.isEmpty && ContinuousClock.now < run.deadline {
            for thread in running where !thread.acknowledgedStop && !run.queue.holdsExtension(thread) {
                guard let tid = thread.tid else { continue }
                // False: it ended meanwhile (the join below reaps it), or a copy is still pending.
                if SignalOwner.interrupt(tid: tid, word: thread.interruptWord, with: signal) {
                    run.interrupted.insert(ObjectIdentifier(thread))
                }
            }
            run.join(running, until: min(run.deadline, .after(.milliseconds(10))))
            running = running.filter(\.isAlive)
        }
    }

    /// Marks the group stopped with its report (called for every group of a finished plan).
    func finishShutdown(report: ShutdownReport) {
        ledger.close()
        state.withLock { state in
            state.phase = .stopped
            state.shutdownInProgress = false
            state.report = report
        }
        completed.requestStop(reason: .shutdown)
    }

    /// For a caller that waited on another caller's shutdown and ran out of time: what is alive now.
    private func provisionalReport(start: ContinuousClock.Instant, deadline: ContinuousClock.Instant, policy: ShutdownPolicy) -> ShutdownReport {
        let end = ContinuousClock.now
        let entries = aliveThreads.map { ShutdownRun.entry(for: $0, status: .stuck, path: path, now: end) }
        return ShutdownReport(
            groupPath: path, policy: policy.description,
            timeoutNanoseconds: start.duration(to: deadline).nanosecondsClamped,
            durationNanoseconds: start.duration(to: end).nanosecondsClamped,
            overshootNanoseconds: max(0, deadline.duration(to: end).nanosecondsClamped),
            root: .init(name: name, path: path, joined: 0, entries: entries, children: []))
    }
}

extension ThreadGroup {
    /// Shuts down without blocking a Swift concurrency thread: the joins run on a dedicated
    /// thread. Same semantics as the blocking ``shutdown(until:policy:)-2d25y``.
    public func shutdown(until deadline: ContinuousClock.Instant, policy: ShutdownPolicy = .shared) async -> ShutdownReport {
        await withCheckedContinuation { (continuation: CheckedContinuation<ShutdownReport, Never>) in
            do {
                _ = try ManagedThread.spawn(name: "shutdown", purpose: "async shutdown of \(path)") { _ in
                    continuation.resume(returning: self.shutdown(until: deadline, policy: policy))
                }
            } catch {
                // No thread to be had: do it here rather than fail a shutdown.
                continuation.resume(returning: self.blockingShutdown(until: deadline, policy: policy))
            }
        }
    }

    /// Async form of ``shutdown(timeout:policy:)``.
    public func shutdown(timeout: Duration, policy: ShutdownPolicy = .shared) async -> ShutdownReport {
        await shutdown(until: .after(timeout), policy: policy)
    }

    private func blockingShutdown(until deadline: ContinuousClock.Instant, policy: ShutdownPolicy) -> ShutdownReport {
        shutdown(until: deadline, policy: policy)
    }
}
