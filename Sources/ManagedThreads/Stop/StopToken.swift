#if canImport(Glibc)
import Glibc
#endif

/// The read side of a stop request: what a thread's body receives to learn that it should finish.
///
/// A token is cheap to copy and to check. It costs no file descriptor unless the body asks for
/// ``fileDescriptor``. Use it in place of sleeping and in place of blocking forever:
///
/// ```swift
/// while !token.wait(timeout: .seconds(1)) {   // returns at once when stop is requested
///     doPeriodicWork()
/// }
/// ```
public struct StopToken: Sendable {
    let state: StopState

    init(state: StopState) { self.state = state }

    /// Whether a stop has been requested: of this thread, or of its whole group. Two atomic loads
    /// (one for a token outside any group).
    public var isStopRequested: Bool {
        if state.isStopRequested {
            state.noteObserved()
            return true
        }
        return false
    }

    /// Why the stop was requested, or nil while none has been.
    public var reason: StopReason? { state.reason }

    /// Asks the shutdown that is stopping this thread for `more` time from now, because the
    /// thread is making progress (draining a queue, finishing a write) and will end soon.
    ///
    /// The grant is bounded by the group's ``ThreadGroup/extensionCap`` past the shutdown's
    /// deadline, shows in the report (``ShutdownReport/extensions``), and pushes the shutdown's
    /// return back to at most that deadline plus the cap. Ask again to extend further, up to the
    /// same cap. Nothing is granted (zero) outside a group shutdown, for a thread without a
    /// group, for a ``StopSource``'s token, or with a cap of zero.
    /// - Parameter more: the time wanted from now.
    /// - Returns: the time granted from now, at most `more`; zero when nothing was granted.
    public func requestExtension(_ more: Duration) -> Duration {
        guard more > .zero, let thread = state.owner else { return .zero }
        return thread.requestExtension(more)
    }

    /// Blocks the calling thread until stop is requested or `timeout` elapses.
    ///
    /// This replaces `sleep`: it returns as soon as the stop is requested.
    /// - Parameter timeout: the longest time to wait; zero or negative only checks.
    /// - Returns: true if stop was requested, false if the time ran out first.
    @available(*, noasync, message: "blocks the calling thread; check isStopRequested in async code")
    public func wait(timeout: Duration) -> Bool {
        wait(until: .after(timeout))
    }

    /// Blocks the calling thread until stop is requested or `deadline` passes.
    /// - Returns: true if stop was requested, false if the deadline passed first.
    @available(*, noasync, message: "blocks the calling thread; check isStopRequested in async code")
    public func wait(until deadline: ContinuousClock.Instant) -> Bool {
        if state.wait(until: deadline) {
            state.noteObserved()
            return true
        }
        return false
    }

    /// A descriptor that becomes readable (`POLLIN`) once stop is requested, for the body's own
    /// `poll`/`epoll` set beside its sockets and pipes. Do not read from it or close it.
    ///
    /// Created on first access (an `EFD_CLOEXEC | EFD_NONBLOCK` eventfd) and cached. For a managed
    /// thread it is closed when the body returns; for a standalone ``StopSource``, with the source.
    /// The corresponding C function is `eventfd`.
    /// - Throws: ``ThreadError`` with `errno` EMFILE/ENFILE when the process or system is out of
    ///   descriptors; ``ThreadError/Code/invalidState`` after the owning thread has ended.
    public var fileDescriptor: Int32 {
        get throws(ThreadError) {
            let fd = try state.descriptor()
            if state.isStopRequested { state.noteObserved() }
            return fd
        }
    }

    /// Registers `action` to run exactly once: when stop is requested, or, if the owning thread
    /// ends first (by returning, throwing or `pthread_exit`), on that thread as it ends. If either
    /// has already happened, `action` runs at once on the calling thread.
    ///
    /// Where a stop runs it: ``ManagedThread/requestStop(reason:)`` and
    /// ``StopSource/requestStop(reason:)`` run it on the requesting thread. A group's
    /// ``ThreadGroup/requestStop(reason:)``, a shutdown and ``ManagedThread/stop(timeout:reason:)-774ev``
    /// hand it to a library thread (`stop-callbacks`), so an action that blocks never holds their
    /// deadline hostage: the shutdown returns on time, and its report names every callback still
    /// running (``ShutdownReport/runningCallbacks``).
    ///
    /// This is how a body turns a stop into a call (`server.shutdown()`) without a bridge thread.
    /// - Returns: a handle whose ``StopCallback/cancel()`` guarantees the action will not run, or
    ///   has finished running.
    @discardableResult
    public func onStop(_ action: @escaping @Sendable () -> Void) -> StopCallback {
        StopCallback(state: state, id: state.addCallback(action))
    }

    /// The outcome of ``wait(forReadable:timeout:)``.
    public enum Readiness: Sendable, Hashable {
        /// The descriptor is readable (or has hung up or failed: the next read will say).
        case ready
        /// Stop was requested.
        case stopRequested
        /// The timeout elapsed.
        case timedOut
    }

    /// Blocks until `fd` is readable, stop is requested, or `timeout` elapses (nil: no timeout
    /// other than the stop itself). Checks the stop first, so a stopped token never reports ready.
    /// The corresponding C function is `poll`, over `fd` and ``fileDescriptor``.
    /// - Throws: ``ThreadError`` if the stop descriptor cannot be created or `poll` fails.
    @available(*, noasync, message: "blocks the calling thread")
    public func wait(forReadable fd: Int32, timeout: Duration? = nil) throws(ThreadError) -> Readiness {
        if isStopRequested { return .stopRequested }
        let deadline = timeout.map { ContinuousClock.Instant.after($0) }
        var fds = [
            pollfd(fd: try fileDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            let n = try Poll.wait(&fds, until: deadline)
            if fds[0].revents != 0 || isStopRequested { return .stopRequested }
            if n > 0 { return .ready }
            if let deadline, deadline <= .now { return .timedOut }
        }
    }
}

/// The write side of a stop request: owns the state that its ``token``s read.
///
/// ``ManagedThread`` has one inside; create your own to stop things that are not threads.
public final class StopSource: Sendable {
    let state: StopState

    /// Creates a source with no stop requested.
    public init() { state = StopState() }

    /// A token reading this source.
    public var token: StopToken { StopToken(state: state) }

    /// Whether a stop has been requested.
    public var isStopRequested: Bool { state.isStopRequested }

    /// Why the stop was requested, or nil.
    public var reason: StopReason? { state.reason }

    /// Requests the stop: wakes every waiter, makes the descriptor readable and runs the registered
    /// callbacks on the calling thread. Idempotent: only the first call has an effect.
    /// - Returns: true if this call made the request, false if one had been made already.
    @discardableResult
    public func requestStop(reason: StopReason = .requested) -> Bool {
        state.requestStop(reason: reason)
    }
}

/// A registration made with ``StopToken/onStop(_:)``.
public final class StopCallback: Sendable {
    private let state: StopState
    private let id: UInt64?

    init(state: StopState, id: UInt64?) {
        self.state = state
        self.id = id
    }

    /// Unregisters the action. If it is running on another thread right now, waits until it
    /// returns (as `std::stop_callback`'s destructor does), so that once this returns the action
    /// is certainly not running and what it touches can go; called from inside the action itself,
    /// returns at once.
    /// - Returns: true if the action had not run and now never will; false if it has already run
    ///   (or, called from inside it, is running), or was cancelled before.
    @discardableResult
    public func cancel() -> Bool {
        guard let id else { return false }
        return state.removeCallback(id)
    }
}
