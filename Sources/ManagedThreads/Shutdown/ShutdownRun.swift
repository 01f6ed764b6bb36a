import Synchronization

/// The joining half of a shutdown: applies a policy over a ``ShutdownPlan`` and records outcomes.
struct ShutdownRun {
    let queue: ExitQueue
    /// The deadline the caller gave.
    let baseDeadline: ContinuousClock.Instant
    /// The deadline in force: the caller's, or later if a thread was granted an extension.
    var deadline: ContinuousClock.Instant {
        guard let extended = queue.extendedDeadline else { return baseDeadline }
        return max(baseDeadline, extended)
    }
    /// Threads the escalation's interrupt step signalled.
    var interrupted: Set<ObjectIdentifier> = []
    /// Runners of the `onStop` callbacks this shutdown's signals collected.
    var runners: [CallbackRunner] = []
    /// Whether threads still running at the end are reported abandoned rather than stuck.
    var abandonStuck = false
    /// The whole time allowed, for sizing the report reserve.
    let timeout: Duration
    private let timeoutNanoseconds: Int64
    let callerTID = PThread.currentTID
    private var seenExited: Set<ObjectIdentifier> = []
    private var outcome: [ObjectIdentifier: ShutdownReport.Status] = [:]
    private var componentNodes: [ObjectIdentifier: ShutdownReport.Node] = [:]

    init(queue: ExitQueue, deadline: ContinuousClock.Instant) {
        self.queue = queue
        self.baseDeadline = deadline
        self.timeout = ContinuousClock.now.duration(to: deadline)
        self.timeoutNanoseconds = timeout.nanosecondsClamped
    }

    /// Time kept back before the deadline for writing the report (reading /proc for each thread
    /// still running, about 40 µs apiece here), so the call returns at the deadline rather than a
    /// report's worth after it: 100 µs plus 40 µs per pending thread, at most 2 ms and at most 5%
    /// of the timeout. Threads that exit inside the reserve are still reaped by the final sweep.
    /// In Int64 nanoseconds: Duration's `*` and `/` go through 128-bit arithmetic, which made this
    /// small formula a visible share of a one-thread shutdown's CPU time (perf).
    func reportReserve(pending: Int) -> Duration {
        let formula = Int64(100_000 + 40_000 * min(pending, 1_000))
        let measured = ReportCost.estimateNanoseconds * 5 / 4
        return .nanoseconds(min(max(formula, measured), 2_000_000, max(0, timeoutNanoseconds / 20)))
    }

    /// When the joins stopped waiting early to leave room for the report, if they did.
    private(set) var reserveStartedAt: ContinuousClock.Instant?

    /// Waits until every thread in `threads` has exited or `stageDeadline` passes, joining each as
    /// it exits (in exit order, not list order).
    mutating func join(_ threads: [ManagedThread], until stageDeadline: ContinuousClock.Instant) {
        var pending: [ObjectIdentifier: ManagedThread] = [:]
        for thread in threads {
            let id = ObjectIdentifier(thread)
            if outcome[id] == .joined { continue }
            if thread.isAlive && thread.tid == callerTID {
                // The shutdown runs on one of its own threads: it cannot wait for itself.
                outcome[id] = .stuck
            } else if seenExited.contains(id) || !thread.isAlive {
                reap(thread)
            } else {
                pending[id] = thread
            }
        }
        while !pending.isEmpty {
            let sequence = queue.sequence
            for thread in queue.drain() {
                let id = ObjectIdentifier(thread)
                seenExited.insert(id)
                if pending.removeValue(forKey: id) != nil { reap(thread) }
            }
            // A stage that runs to the shutdown's deadline runs to an extended one too.
            let deadline = self.deadline
            let stageEnd = stageDeadline >= baseDeadline ? deadline : stageDeadline
            let reserveStart = deadline.advanced(by: .zero - reportReserve(pending: pending.count))
            let waitUntil = min(stageEnd, reserveStart)
            if pending.isEmpty { break }
            if ContinuousClock.now >= waitUntil {
                if waitUntil == reserveStart && reserveStartedAt == nil { reserveStartedAt = waitUntil }
                break
            }
            if pending.count == 1, let (id, thread) = pending.first {
                // One thread left: wait in its kernel join, one sleep and one wake-up, instead of
                // for the exit queue's wake-up and then the join (two, each a context switch).
                if (try? thread.join(until: waitUntil)) == true {
                    outcome[id] = .joined
                    pending.removeValue(forKey: id)
                }
                continue
            }
            // Wake for a batch of exits, not each one; at most 64 are left to reap if the deadline
            // comes first, which the report reserve allows for.
            queue.wait(after: sequence, batch: min(pending.count, 64), until: waitUntil)
        }
        for id in pending.keys { outcome[id] = .stuck }
    }

    /// Joins a thread whose body has ended (or is about to): the wait is for the kernel to finish
    /// the exit, microseconds, bounded by the shutdown's deadline.
    private mutating func reap(_ thread: ManagedThread) {
        // Its body has ended; the wait is for the kernel to finish the exit. Bounded by the
        // report reserve, with a small grace so a thread caught mid-exit is not misreported; one
        // stuck in a TLS destructor is left as `exitedUnreaped` and re-checked at report time.
        let bound = max(deadline.advanced(by: .zero - reportReserve(pending: 1)), .now.advanced(by: .microseconds(200)))
        let joined = (try? thread.join(until: min(bound, deadline))) ?? false
        outcome[ObjectIdentifier(thread)] = joined ? .joined : (thread.isAlive ? .stuck : .exitedUnreaped)
    }

    mutating func join(component owner: any ThreadOwner, path: String, until stageDeadline: ContinuousClock.Instant) {
        componentNodes[ObjectIdentifier(owner)] = owner.join(until: stageDeadline, path: path)
    }

    /// ``ShutdownPolicy/fair``: the group's own threads, then each child, get an equal share of
    /// what remains; a child splits its share the same way.
    mutating func joinFair(_ plan: ShutdownPlan, until planDeadline: ContinuousClock.Instant) {
        let items = plan.children.count + 1
        for index in 0..<items {
            let stageDeadline = Self.share(of: planDeadline, among: items - index)
            if index == 0 {
                join(plan.ownForegroundThreads, until: stageDeadline)
                continue
            }
            switch plan.children[index - 1].child {
            case .group(let child): joinFair(child, until: stageDeadline)
            case .component(let owner, let path): join(component: owner, path: path, until: stageDeadline)
            case .stopped: break
            }
        }
    }

    /// ``ShutdownPolicy/ordered``: stages signalled and joined one after another.
    mutating func joinOrdered(_ plan: ShutdownPlan, until planDeadline: ContinuousClock.Instant) {
        // Threads that ended before the shutdown are simply reaped first.
        join(Self.allEnded(plan), until: planDeadline)
        let stages = Self.stages(of: plan, reason: .shutdown)
        for (index, stage) in stages.enumerated() {
            let stageDeadline = Self.share(of: planDeadline, among: stages.count - index)
            switch stage {
            case .threads(let threads, let reason):
                if let runner = CallbackRunner.start(threads.flatMap { $0.signal(reason: reason) }) { runners.append(runner) }
                join(threads.filter { !$0.isBackground }, until: stageDeadline)
            case .component(let owner, let path):
                owner.requestStop(reason: .parentStopped)
                join(component: owner, path: path, until: stageDeadline)
            }
        }
    }

    enum Stage {
        case threads([ManagedThread], StopReason)
        case component(any ThreadOwner, String)
    }

    private static func allEnded(_ plan: ShutdownPlan) -> [ManagedThread] {
        plan.ended + plan.childPlans.flatMap(allEnded)
    }

    /// Members by descending priority, ties in reverse start order; a group's own threads of one
    /// priority form one stage; a child group contributes its own stages in place.
    static func stages(of plan: ShutdownPlan, reason: StopReason) -> [Stage] {
        enum Item {
            case threads([ManagedThread])
            case child(ShutdownPlan.Child)
        }
        var items: [(priority: Int, serial: UInt64, item: Item)] = []
        let byPriority = Dictionary(grouping: plan.threads, by: \.priority)
        for (priority, members) in byPriority {
            items.append((priority, members.map(\.serial).max() ?? 0, .threads(members.map(\.value))))
        }
        for entry in plan.children {
            items.append((entry.priority, entry.serial, .child(entry.child)))
        }
        items.sort { ($0.priority, $0.serial) > ($1.priority, $1.serial) }
        return items.flatMap { entry -> [Stage] in
            switch entry.item {
            case .threads(let threads): return [.threads(threads, reason)]
            case .child(.group(let child)): return stages(of: child, reason: .parentStopped)
            case .child(.component(let owner, let path)): return [.component(owner, path)]
            case .child(.stopped): return []
            }
        }
    }

    /// The deadline for one of `count` remaining members: an equal share of what is left.
    static func share(of deadline: ContinuousClock.Instant, among count: Int) -> ContinuousClock.Instant {
        let now = ContinuousClock.now
        let remaining = now.duration(to: deadline)
        guard remaining > .zero, count > 1 else { return deadline }
        return now.advanced(by: remaining / count)
    }

    /// Final pass: threads that ended after their own share ran out are reaped now (they cost no
    /// waiting); the rest are stuck, or orphaned if background.
    mutating func sweep(_ threads: [ManagedThread]) {
        let now = ContinuousClock.now
        // Past the deadline nothing more is reaped: a thread that ended late is left for the stack
        // pool's orphan list (its handle's release hands it over) rather than delay the return.
        let reapNow = now < deadline
        // A thread whose body has ended is microseconds from its kernel exit: give all of them
        // together a short grace (never past the deadline) rather than call one that is still in
        // the kernel's exit path "exited, unreaped" (seen when a reap had failed just before).
        let grace = min(deadline, now.advanced(by: .milliseconds(2)))
        for thread in threads {
            let id = ObjectIdentifier(thread)
            if outcome[id] == .joined { continue }
            if thread.isAlive {
                outcome[id] = thread.isBackground ? .orphaned : .stuck
            } else {
                let joined = reapNow && (try? thread.join(until: grace)) == true
                outcome[id] = joined ? .joined : .exitedUnreaped
            }
        }
    }

    /// Kernel views (three /proc reads each, ~40 µs) taken per report; beyond this many stuck or
    /// orphaned threads the entries still name every thread but carry no kernel view, so a
    /// shutdown that leaves thousands running does not spend its margin reading /proc.
    static let kernelViewLimit = 32
    private var kernelViewsTaken = 0

    /// The report node for `plan` (and, recursively, its children); also stored in each plan.
    mutating func node(for plan: ShutdownPlan) -> ShutdownReport.Node {
        let now = ContinuousClock.now
        var joined = plan.reapedJoined
        var entries = plan.reapedFailures
        let members = plan.threads.map(\.value) + plan.ended
        // Each thread that gets a kernel view is signalled for its stack right after its /proc
        // files were read (a thread in the capture handler would read as running), so its capture
        // runs while the next thread's /proc is read; all are collected after the loop.
        var captures = StackCapture.Pending()
        for thread in members {
            var status = outcome[ObjectIdentifier(thread)] ?? (thread.isAlive ? .stuck : .exitedUnreaped)
            if status != .joined && now < deadline && !thread.isAlive && (try? thread.join(until: now)) == true {
                status = .joined  // ended inside the report reserve
            }
            if status == .stuck && abandonStuck { status = .abandoned }
            if status == .joined && thread.error == nil {
                joined += 1
            } else {
                let alive = status == .stuck || status == .orphaned
                let withKernel = alive && kernelViewsTaken < Self.kernelViewLimit
                if withKernel { kernelViewsTaken += 1 }
                var entry = Self.entry(for: thread, status: status, path: plan.path, now: now, kernelView: withKernel)
                entry.interrupted = interrupted.contains(ObjectIdentifier(thread))
                if withKernel, StackCapture.capturesInReports, let tid = entry.tid, tid != callerTID, entry.kernel != nil {
                    StackCapture.begin(tid, into: &captures)
                }
                entries.append(entry)
            }
        }
        attachStacks(captures, to: &entries)
        var children: [ShutdownReport.Node] = []
        for entry in plan.children {
            switch entry.child {
            case .group(let child): children.append(node(for: child))
            case .component(let owner, _): componentNodes[ObjectIdentifier(owner)].map { children.append($0) }
            case .stopped(let group): group.currentReportNode().map { children.append($0) }
            }
        }
        children += plan.departed.compactMap { $0.currentReportNode() }
        let node = ShutdownReport.Node(name: plan.group.name, path: plan.path, joined: joined, entries: entries, children: children)
        plan.node = node
        return node
    }

    /// How long a report waits for the stacks of its stuck threads, all captured at once. The
    /// report's reserve learns what reports cost (``ReportCost``), this wait included.
    static let stackBudget = Duration.milliseconds(2)

    /// What the report still has to do after its captures (the rest of the tree, the report
    /// itself, marking the groups stopped), kept out of the captures' wait.
    static let stackTail = Duration.microseconds(300)

    /// Collects the captures into the entries that got a kernel view. The wait ends
    /// ``stackTail`` before the shutdown's deadline, leaving that for the rest of the report, but
    /// is at least 200 µs and at most ``stackBudget``: a thread not scheduled by then is reported so.
    private func attachStacks(_ pending: StackCapture.Pending, to entries: inout [ShutdownReport.ThreadEntry]) {
        guard !pending.isEmpty else { return }
        let now = ContinuousClock.now
        let until = min(
            max(deadline.advanced(by: .zero - Self.stackTail), now.advanced(by: .microseconds(200))),
            now.advanced(by: Self.stackBudget))
        let stacks = StackCapture.finish(pending, until: until)
        for index in entries.indices where entries[index].kernel != nil {
            if let tid = entries[index].tid, let stack = stacks[tid] { entries[index].stack = stack.trace }
        }
    }

    static func entry(
        for thread: ManagedThread, status: ShutdownReport.Status, path: String, now: ContinuousClock.Instant,
        kernelView: Bool = true
    ) -> ShutdownReport.ThreadEntry {
        let alive = kernelView && (status == .stuck || status == .orphaned || status == .abandoned)
        var entry = ShutdownReport.ThreadEntry(
            name: thread.name, groupPath: path, purpose: thread.purpose, tid: thread.tid, status: status,
            acknowledged: thread.acknowledgedStop,
            sinceStopNanoseconds: thread.stopRequestedAt.map { $0.duration(to: now).nanosecondsClamped },
            error: thread.error.map { String(describing: $0) },
            kernel: alive ? thread.tid.flatMap { KernelThreadState.read(tid: $0) } : nil)
        entry.spawnSite = thread.spawnSite
        return entry
    }
}

/// What writing a report has recently cost on this machine, from the start of the reserve to the
/// return (the futex timer's slack, the /proc reads, and whatever the CPU contention of the stuck
/// threads adds). Each shutdown that used its reserve records its cost; the estimate is the larger
/// of that and the previous estimate decayed by an eighth, so a one-off spike fades.
enum ReportCost {
    // Two estimates: reports that capture stacks cost more than those that do not, and a process
    // that switches between the two must not size one kind's reserve from the other's cost.
    private static let withStacks = Atomic<Int64>(0)
    private static let withoutStacks = Atomic<Int64>(0)

    /// Runs `body` on the estimate for the reports being written now.
    private static func estimate<R>(_ body: (borrowing Atomic<Int64>) -> R) -> R {
        StackCapture.capturesInReports ? body(withStacks) : body(withoutStacks)
    }

    static var estimateNanoseconds: Int64 { estimate { $0.load(ordering: .relaxed) } }

    static func record(_ cost: Duration) {
        let observed = min(max(cost.nanosecondsClamped, 0), 2_000_000)
        estimate { estimate in
            var current = estimate.load(ordering: .relaxed)
            while true {
                let next = max(observed, current - current / 8)
                let (exchanged, original) = estimate.compareExchange(
                    expected: current, desired: next, ordering: .relaxed)
                if exchanged { return }
                current = original
            }
        }
    }
}
