import CoreMetrics
import Logging

/// What a group (or the set of ungrouped threads) logs to and counts with.
///
/// Made once per group, at its creation, so the hot paths (a thread starting or ending) touch
/// only ready-made handles: with no logging or metrics backend bootstrapped, that is a log-level
/// check and swift-metrics' no-op calls. Children inherit the logger and the metrics factory.
final class Instruments: Sendable {
    let logger: Logger
    let metricsFactory: any MetricsFactory
    /// Live threads of the group (not of its children).
    let alive: Meter
    let spawned: CoreMetrics.Counter
    let failed: CoreMetrics.Counter
    let stuck: CoreMetrics.Counter
    let stopToExit: CoreMetrics.Timer
    let shutdownDuration: CoreMetrics.Timer
    /// False when the factory is swift-metrics' no-op one (nothing bootstrapped): the per-thread
    /// events then skip the calls, which are existential dispatches into a no-op.
    private let counts: Bool

    /// The metric labels, for dashboards and tests.
    enum Label {
        static let alive = "managed_threads_alive"
        static let spawned = "managed_threads_spawned_total"
        static let failed = "managed_threads_failed_total"
        static let stuck = "managed_threads_stuck_total"
        static let stopToExit = "managed_threads_stop_to_exit"
        static let shutdownDuration = "managed_threads_shutdown_duration"
    }

    /// The value of the metrics' `group` dimension.
    let metricsLabel: String
    /// Whether someone chose `metricsLabel` (this group or an ancestor), rather than it being the
    /// group's path: children inherit a chosen label, so per-request groups add no series.
    let labelChosen: Bool

    init(groupPath: String, logger: Logger, metricsFactory: any MetricsFactory, chosenLabel: String? = nil) {
        self.logger = logger
        self.metricsFactory = metricsFactory
        self.counts = !(metricsFactory is NOOPMetricsHandler)
        self.metricsLabel = chosenLabel ?? groupPath
        self.labelChosen = chosenLabel != nil
        let dimensions = [("group", metricsLabel)]
        alive = Meter(label: Label.alive, dimensions: dimensions, factory: metricsFactory)
        spawned = CoreMetrics.Counter(label: Label.spawned, dimensions: dimensions, factory: metricsFactory)
        failed = CoreMetrics.Counter(label: Label.failed, dimensions: dimensions, factory: metricsFactory)
        stuck = CoreMetrics.Counter(label: Label.stuck, dimensions: dimensions, factory: metricsFactory)
        stopToExit = CoreMetrics.Timer(label: Label.stopToExit, dimensions: dimensions, factory: metricsFactory)
        shutdownDuration = CoreMetrics.Timer(label: Label.shutdownDuration, dimensions: dimensions, factory: metricsFactory)
    }

    /// The label of the library's default logger.
    static let defaultLoggerLabel = "ManagedThreads"

    /// For threads spawned with ``ManagedThread/spawn(name:purpose:options:fileID:line:_:)`` outside any group:
    /// the default logger and the bootstrapped metrics factory, as they are at the first such spawn.
    static let ungrouped = Instruments(
        groupPath: "", logger: Logger(label: defaultLoggerLabel), metricsFactory: MetricsSystem.factory)

    // MARK: Events

    func threadStarted(_ thread: ManagedThread, tid: Int32) {
        if counts {
            alive.increment()
            spawned.increment()
        }
        logger.debug("thread started", metadata: metadata(of: thread, tid: tid))
    }

    func threadEnded(_ thread: ManagedThread, tid: Int32, error: (any Error)?, stopRequestedAt: ContinuousClock.Instant?) {
        if counts {
            alive.decrement()
            if let stopRequestedAt {
                stopToExit.recordNanoseconds(stopRequestedAt.duration(to: .now).nanosecondsClamped)
            }
        }
        if let error {
            if counts { failed.increment() }
            logger.error("thread body threw", metadata: metadata(of: thread, tid: tid).merging(["error": "\(error)"]) { $1 })
        } else {
            logger.debug("thread exited", metadata: metadata(of: thread, tid: tid))
        }
    }

    /// Routine: debug, so a program that bootstrapped no logging (swift-log's default handler
    /// prints from info up) sees nothing of a clean shutdown.
    func stopRequested(groupPath: String, reason: StopReason) {
        logger.debug("stop requested", metadata: ["group": "\(groupPath)", "reason": "\(reason)"])
    }

    func shutdownFinished(_ report: ShutdownReport) {
        shutdownDuration.recordNanoseconds(report.durationNanoseconds)
        if report.stuck > 0 { stuck.increment(by: Int64(report.stuck)) }
        // Metadata is an autoclosure: built only when the level lets the event through. A clean
        // shutdown is routine (debug); one that left threads running or bodies that threw is
        // reported at warning, with the per-thread warnings and errors.
        let clean = report.isClean && report.failed == 0 && report.orphaned == 0
        logger.log(
            level: clean ? .debug : .warning,
            "shutdown finished",
            metadata: [
                "group": "\(report.groupPath)", "policy": "\(report.policy)",
                "total": "\(report.total)", "joined": "\(report.joined)", "stuck": "\(report.stuck)",
                "orphaned": "\(report.orphaned)", "failed": "\(report.failed)",
                "duration_ms": "\(report.duration.formattedMilliseconds)",
                "timeout_ms": "\(report.timeout.formattedMilliseconds)",
            ])
        guard report.stuck > 0, logger.logLevel <= .warning else { return }
        for entry in report.stuckThreads {
            if entry.kind == .task {
                logger.warning("task did not finish by the deadline", metadata: Self.metadata(of: entry))
            } else {
                logger.warning("thread did not stop by the deadline", metadata: Self.metadata(of: entry))
            }
        }
    }

    private func metadata(of thread: ManagedThread, tid: Int32) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["thread": "\(thread.name)", "tid": "\(tid)"]
        if let group = thread.group { metadata["group"] = "\(group.path)" }
        return metadata
    }

    /// A stuck thread's report entry as log metadata.
    static func metadata(of entry: ShutdownReport.ThreadEntry) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "group": "\(entry.groupPath)", "status": "\(entry.status.rawValue)",
        ]
        if entry.kind == .task {
            // A task has no token to acknowledge, nor a tid or kernel view.
            metadata["task"] = "\(entry.name)"
        } else {
            metadata["thread"] = "\(entry.name)"
            metadata["acknowledged"] = "\(entry.acknowledged)"
        }
        if let tid = entry.tid { metadata["tid"] = "\(tid)" }
        if let purpose = entry.purpose { metadata["purpose"] = "\(purpose)" }
        if let sinceStop = entry.sinceStop { metadata["since_stop_ms"] = "\(sinceStop.formattedMilliseconds)" }
        if let kernel = entry.kernel {
            metadata["kernel_state"] = "\(kernel.stateName)"
            if let channel = kernel.waitChannel { metadata["wchan"] = "\(channel)" }
            if let syscall = kernel.syscallName { metadata["syscall"] = "\(syscall)" }
            metadata["cpu_ms"] = "\(kernel.cpuTime.formattedMilliseconds)"
        }
        return metadata
    }
}
