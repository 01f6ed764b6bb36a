import Logging
import ManagedThreads
import ServiceLifecycle

/// A ``ManagedThreads/ThreadGroup`` as a swift-service-lifecycle `Service`: when the
/// `ServiceGroup` shuts down gracefully (or the service's task is cancelled), the thread group is
/// shut down within ``timeout`` and the report is logged.
///
/// ```swift
/// let threads = try ThreadGroup.root.makeChild(name: "workers")
/// try threads.spawn(name: "indexer") { token in while !token.wait(timeout: .seconds(1)) { index() } }
///
/// let serviceGroup = ServiceGroup(configuration: .init(
///     services: [.init(service: httpServer), .init(service: ThreadGroupService(group: threads))],
///     gracefulShutdownSignals: [.sigterm, .sigint],
///     logger: logger))
/// try await serviceGroup.run()
/// ```
///
/// ``run()`` waits for the graceful shutdown without holding a thread, then runs the group's
/// shutdown on a thread of its own (never on the concurrency pool) and returns by the deadline,
/// however many threads are stuck. A clean report is logged at `info`, one with stuck threads at
/// `warning` with the whole report as metadata. Services are shut down in reverse order, so list
/// this one after the services that feed the threads work.
public struct ThreadGroupService: Service, CustomStringConvertible {
    /// The group it stops.
    public let group: ThreadGroup
    /// The time the group's shutdown may take.
    public let timeout: Duration
    /// How the deadline is shared in the group's tree.
    public let policy: ShutdownPolicy
    /// Whether ``run()`` throws ``StuckThreadsError`` when the shutdown left threads stuck, so the
    /// `ServiceGroup` sees a failure (and the process can exit non-zero).
    public let failsWhenStuck: Bool
    private let logger: Logger
    private let onReport: (@Sendable (ShutdownReport) -> Void)?

    /// Wraps `group`.
    /// - Parameters:
    ///   - group: the group to stop with the service group.
    ///   - timeout: the time its shutdown may take.
    ///   - policy: how the deadline is shared in its tree.
    ///   - failsWhenStuck: throw ``StuckThreadsError`` from ``run()`` when threads were stuck.
    ///   - logger: where the report goes; the group's own logger if nil.
    ///   - onReport: called with the report after it was logged.
    public init(
        group: ThreadGroup, timeout: Duration = .seconds(10), policy: ShutdownPolicy = .shared,
        failsWhenStuck: Bool = false, logger: Logger? = nil,
        onReport: (@Sendable (ShutdownReport) -> Void)? = nil
    ) {
        self.group = group
        self.timeout = timeout
        self.policy = policy
        self.failsWhenStuck = failsWhenStuck
        self.logger = logger ?? group.logger
        self.onReport = onReport
    }

    /// `ThreadGroupService(root/server)`.
    public var description: String { "ThreadGroupService(\(group.path))" }

    /// Waits for the service group's graceful shutdown or this task's cancellation, then shuts
    /// the thread group down within ``timeout``, logs the report and returns.
    /// - Throws: ``StuckThreadsError`` when ``failsWhenStuck`` is set and threads were stuck.
    public func run() async throws {
        do {
            try await gracefulShutdown()
        } catch {
            // Cancelled: stop the threads all the same; the group must not outlive its service.
        }
        let report = await group.shutdown(timeout: timeout, policy: policy)
        var metadata: Logger.Metadata = [
            "group": "\(report.groupPath)", "joined": "\(report.joined)", "stuck": "\(report.stuck)",
            "orphaned": "\(report.orphaned)", "failed": "\(report.failed)",
            "duration_ms": "\(Double(report.durationNanoseconds) / 1e6)",
        ]
        if report.isClean {
            logger.info("thread group stopped", metadata: metadata)
        } else {
            metadata["report"] = "\(report)"
            logger.warning("thread group stopped with stuck threads", metadata: metadata)
        }
        onReport?(report)
        if failsWhenStuck && !report.isClean {
            throw StuckThreadsError(report: report)
        }
    }
}

/// Thrown by ``ThreadGroupService/run()`` (when ``ThreadGroupService/failsWhenStuck`` is set) if
/// the group's shutdown left threads running; carries the report.
public struct StuckThreadsError: Error, CustomStringConvertible {
    /// The shutdown's report, naming the stuck threads.
    public let report: ShutdownReport

    /// How many threads were stuck, and the report.
    public var description: String {
        "\(report.stuck) threads of \(report.groupPath) did not stop by the deadline\n\(report)"
    }
}

extension ThreadGroup {
    /// This group as a `Service` for a `ServiceGroup`; see ``ThreadGroupService``.
    /// - Parameters:
    ///   - timeout: the time the group's shutdown may take.
    ///   - policy: how the deadline is shared in its tree.
    ///   - failsWhenStuck: throw ``StuckThreadsError`` from `run()` when threads were stuck.
    public func service(timeout: Duration = .seconds(10), policy: ShutdownPolicy = .shared, failsWhenStuck: Bool = false)
        -> ThreadGroupService
    {
        ThreadGroupService(group: self, timeout: timeout, policy: policy, failsWhenStuck: failsWhenStuck)
    }
}
