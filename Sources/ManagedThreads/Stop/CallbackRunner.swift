import Synchronization

/// Runs `onStop` callbacks that a group stop or a shutdown collected, on a thread of its own, so
/// user code (a callback that calls `server.shutdown()` and blocks) can never hold a deadline
/// hostage. The shutdown waits for the runner under its deadline; what is still running or has
/// not started by then is named in the report (``ShutdownReport/runningCallbacks``).
///
/// Callbacks run one after another, in the order the threads were signalled. If no thread can be
/// had for the runner (EAGAIN), they run on the caller, as they would with ``StopSource``.
final class CallbackRunner: Sendable {
    struct Pending: Sendable {
        /// The thread whose token the callback was registered on.
        let owner: String
        let groupPath: String
        let state: StopState
        let callback: StopState.Callback
    }

    private let pending: [Pending]
    /// How many callbacks have returned.
    private let finished = Atomic<Int>(0)
    private let done = StopState()

    private init(_ pending: [Pending]) {
        self.pending = pending
    }

    /// Starts running `pending`; nil when there is nothing to run.
    static func start(_ pending: [Pending]) -> CallbackRunner? {
        guard !pending.isEmpty else { return nil }
        let runner = CallbackRunner(pending)
        do {
            _ = try ManagedThread.spawn(name: "stop-callbacks", purpose: "runs onStop callbacks off the stopping thread") { _ in
                runner.runAll()
            }
        } catch {
            runner.runAll()
        }
        return runner
    }

    private func runAll() {
        for item in pending {
            item.state.run(item.callback)
            finished.add(1, ordering: .releasing)
        }
        _ = done.requestStop(reason: .requested)
    }

    /// Waits until every callback returned or `deadline` passes; returns those still running or
    /// not started.
    func wait(until deadline: ContinuousClock.Instant) -> [ShutdownReport.RunningCallback] {
        _ = done.wait(until: deadline)
        let count = finished.load(ordering: .acquiring)
        return pending[count...].enumerated().map { offset, item in
            ShutdownReport.RunningCallback(name: item.owner, groupPath: item.groupPath, started: offset == 0)
        }
    }
}
