import CShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Shuts a ``ThreadGroup`` down when the process receives SIGTERM or SIGINT (or signals you choose),
/// under a deadline, and hands you the report.
///
/// ```swift
/// @main enum Server {
///     static func main() throws {
///         let signals = try ShutdownSignals.install(options: .init(timeout: .seconds(10)))
///         try startEverything(in: ThreadGroup.root)
///         let report = signals.waitForShutdown()   // a signal arrived and the tree is down
///         exit(report.isClean ? 0 : 1)
///     }
/// }
/// ```
///
/// How it works: ``install(for:options:onShutdown:)`` installs, for each signal, a small C handler
/// whose only work is an async-signal-safe `write` to an eventfd that a watcher thread polls. No
/// signal mask is changed anywhere: whichever thread the kernel picks runs the handler, and
/// threads and child processes you start (with `posix_spawn`, `Foundation.Process`) keep the mask
/// you gave them, so a child stays stoppable with SIGTERM. No handler runs your code, and no
/// Dispatch signal source is involved. In a process forked from this one (without `exec`), the
/// handler gives the signal back to the action that was in place before `install`, so the child
/// is not left deaf to SIGTERM.
///
/// The first signal starts ``ThreadGroup/shutdown(until:policy:)-2d25y`` of the group with
/// ``Options/timeout``; its threads see a stop of kind ``StopReason/Kind/signal``. The report goes
/// to `onShutdown`, or, without one, to standard error. A further signal during the shutdown is
/// handled as ``Options/onSecondSignal`` says: by default the process exits at once with status
/// 128 + the signal number, after printing which threads are still running.
///
/// One watcher per signal in a process: installing a second one for a signal that is already
/// watched throws, and so does watching the interrupt signal of ``Escalation``. ``cancel()``
/// stops watching and restores the signals' previous actions.
public final class ShutdownSignals: Sendable {
    /// What a signal that arrives while the shutdown is running does.
    public struct SecondSignal: Sendable, Hashable, CustomStringConvertible {
        let exits: Bool

        /// Print the threads still running to standard error (and the logger), then end the
        /// process at once with `_exit(128 + signal)`: no atexit handlers, nothing more waited for.
        /// The default, as an operator pressing Ctrl-C twice expects.
        ///
        /// Before `_exit`, the C standard output stream (where `printf`, `fputs` and C libraries
        /// write; Swift's `print` flushes it after each call already) is flushed if no other thread
        /// holds its lock at that moment (`ftrylockfile`); if one does, its buffered output is lost
        /// rather than risking a deadlock on the way out. Other `FILE` streams and buffers of your
        /// own (a `Logger` handler's, say) are not flushed.
        public static let exitImmediately = SecondSignal(exits: true)
        /// Log it and let the shutdown run to its deadline.
        public static let keepWaiting = SecondSignal(exits: false)

        /// `exitImmediately` or `keepWaiting`.
        public var description: String { exits ? "exitImmediately" : "keepWaiting" }
    }

    /// How signals are watched and how the shutdown runs.
    public struct Options: Sendable {
        /// The signals that start a shutdown. Must not be empty, and must not include signals that
        /// cannot be caught (SIGKILL, SIGSTOP) or that report faults (SIGSEGV, SIGBUS, SIGFPE,
        /// SIGILL, SIGTRAP, SIGSYS, SIGABRT).
        public var signals: [Int32]
        /// The shutdown's deadline, counted from the signal's arrival.
        public var timeout: Duration
        /// How the deadline is shared in the tree.
        public var policy: ShutdownPolicy
        /// What a signal during the shutdown does.
        public var onSecondSignal: SecondSignal

        /// Creates options; the defaults watch SIGTERM and SIGINT and allow 10 seconds, shared,
        /// with a second signal exiting at once.
        public init(
            signals: [Int32] = [SIGTERM, SIGINT], timeout: Duration = .seconds(10), policy: ShutdownPolicy = .shared,
            onSecondSignal: SecondSignal = .exitImmediately
        ) {
            self.signals = signals
            self.timeout = timeout
            self.policy = policy
            self.onSecondSignal = onSecondSignal
        }
    }

    private enum Phase {
        case watching
        case shuttingDown(signal: Int32)
        case finished(signal: Int32, ShutdownReport)
        case cancelled
    }

    /// The group this watcher shuts down.
    public let group: ThreadGroup
    /// The options it was installed with.
    public let options: Options
    private let onShutdown: (@Sendable (ShutdownReport) -> Void)?
    private let phase = Lock<Phase>(.watching)
    private let done = StopState()
    private let cancelled = StopSource()
    /// The eventfd each watched signal is routed to, in the order of `options.signals`. Owned by
    /// ``SignalOwner`` (kept open for the life of the process); this watcher only reads them.
    private let descriptors: [Int32]
    private let watcher = Lock<ManagedThread?>(nil)

    /// Starts watching `options.signals`: installs the routing handler and starts the watcher
    /// thread. No thread's signal mask changes.
    ///
    /// A signal that arrives while this runs is never lost: before the handler is in place it
    /// takes its previous action; from then on the watcher gets it.
    ///
    /// The watcher keeps itself alive until ``cancel()``: dropping the returned object does not
    /// stop it.
    /// - Parameters:
    ///   - group: the group to shut down; ``ThreadGroup/root`` by default.
    ///   - options: signals, deadline, policy and what a second signal does.
    ///   - onShutdown: called with the report once the shutdown returns, on the thread that ran
    ///     it; nil writes the report to standard error. ``waitForShutdown()-7eno4`` returns after it.
    /// - Returns: the watcher.
    /// - Throws: ``ThreadError/Code/invalidArgument`` for an empty or invalid signal list, or a
    ///   signal that is an ``Escalation`` interrupt signal; ``ThreadError/Code/invalidState`` if
    ///   another watcher already handles one of the signals; ``ThreadError/Code/systemCall`` if
    ///   `eventfd`, `sigaction` or the watcher's `pthread_create` fails (nothing stays installed then).
    @discardableResult
    public static func install(
        for group: ThreadGroup = .root, options: Options = Options(),
        onShutdown: (@Sendable (ShutdownReport) -> Void)? = nil
    ) throws(ThreadError) -> ShutdownSignals {
        try Fork.check("install ShutdownSignals")
        let signals = Array(Set(options.signals)).sorted()
        guard !signals.isEmpty else { throw .invalidArgument("no signals to watch") }
        for signal in signals {
            if let problem = SignalOwner.unusable(signal) { throw .invalidArgument("\(problem): it cannot start a shutdown") }
        }
        guard options.timeout >= .zero else {
            throw .invalidArgument("the shutdown timeout must not be negative: \(options.timeout)")
        }
        let descriptors = try SignalOwner.routeShutdownSignals(signals)
        let instance = ShutdownSignals(
            group: group, options: Options(signals: signals, timeout: options.timeout, policy: options.policy, onSecondSignal: options.onSecondSignal),
            onShutdown: onShutdown, descriptors: descriptors)
        do {
            try instance.startWatcher()
        } catch {
            SignalOwner.unrouteSignals(signals)
            // Deliveries counted meanwhile have no watcher to go to; the old action is back.
            _ = SignalOwner.releaseSignals(signals)
            throw error
        }
        return instance
    }

    private init(
        group: ThreadGroup, options: Options, onShutdown: (@Sendable (ShutdownReport) -> Void)?, descriptors: [Int32]
    ) {
        self.group = group
        self.options = options
        self.onShutdown = onShutdown
        self.descriptors = descriptors
    }

    private func startWatcher() throws(ThreadError) {
        let thread = try ManagedThread.spawn(name: "shutdown-signals", purpose: "watches \(options.signals.map(Signals.name).joined(separator: ", "))") { _ in
            ExitAudit.asInfrastructure { self.watch() }
        }
        watcher.withLock { $0 = thread }
    }

    /// The watcher's loop: until cancelled, wait for a routed delivery and act on it.
    private func watch() {
        // Without a descriptor for the cancel wake-up, poll with a short timeout instead.
        let stopFD = try? cancelled.token.fileDescriptor
        while !cancelled.token.isStopRequested {
            var fds = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if let stopFD { fds.append(pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)) }
            do {
                _ = try Poll.wait(&fds, until: stopFD == nil ? .after(.milliseconds(100)) : nil)
            } catch {
                // poll fails only for lack of memory; back off rather than spin.
                _ = cancelled.token.wait(timeout: .milliseconds(10))
            }
            handlePending()
        }
    }

    private func handlePending() {
        for (index, fd) in descriptors.enumerated() {
            let count: UInt64
            do {
                count = try readCounter(fd, .eventfdRead)
            } catch {
                group.logger.error("could not read a signal's eventfd", metadata: ["error": "\(error)"])
                _ = cancelled.token.wait(timeout: .milliseconds(10))
                continue
            }
            deliver(options.signals[index], count: count)
        }
    }

    /// Acts on `count` deliveries of `signal`: the first starts the shutdown, a later one is a
    /// second signal (two are enough to decide anything).
    private func deliver(_ signal: Int32, count: UInt64) {
        for _ in 0..<min(count, 2) { handle(signal) }
    }

    private func handle(_ signal: Int32) {
        enum Action { case start, second, ignore }
        let action = phase.withLock { phase -> Action in
            switch phase {
            case .watching:
                phase = .shuttingDown(signal: signal)
                return .start
            case .shuttingDown, .finished:
                return .second
            case .cancelled:
                return .ignore
            }
        }
        switch action {
        case .start:
            group.logger.notice(
                "\(Signals.name(signal)) received: shutting down",
                metadata: ["group": "\(group.path)", "timeout": "\(options.timeout)", "policy": "\(options.policy)"])
            startShutdown(signal: signal)
        case .second:
            secondSignal(signal)
        case .ignore:
            break
        }
    }

    private func startShutdown(signal: Int32) {
        let deadline = ContinuousClock.Instant.after(options.timeout)
        let run: @Sendable () -> Void = { [self] in
            let tid = cshims_gettid()
            _ = ExitAudit.infrastructure.withLock { $0.insert(tid) }
            defer { _ = ExitAudit.infrastructure.withLock { $0.remove(tid) } }
            group.requestStop(reason: StopReason(.signal, message: Signals.name(signal)))
            let report = group.shutdown(until: deadline, policy: options.policy)
            if let onShutdown {
                onShutdown(report)
            } else {
                StandardError.write("\(report)\n")
            }
            phase.withLock { $0 = .finished(signal: signal, report) }
            _ = done.requestStop(reason: .shutdown)
        }
        do {
            // Not in the group it stops, or it would wait for itself.
            _ = try ManagedThread.spawn(name: "signal-shutdown", purpose: "shutdown of \(group.path) on \(Signals.name(signal))") { _ in run() }
        } catch {
            // No thread to be had: run it on the watcher. A second signal then waits until the
            // deadline, which still bounds it.
            run()
        }
    }

    private func secondSignal(_ signal: Int32) {
        guard options.onSecondSignal.exits else {
            group.logger.warning(
                "\(Signals.name(signal)) received during shutdown: still waiting for the deadline",
                metadata: ["group": "\(group.path)"])
            return
        }
        let running = group.status().filter { $0.state != "exited" }
        var text = "\(Signals.name(signal)) received during shutdown of \(group.path): exiting now; \(running.count) threads still running\n"
        let stacks = StackCapture.capturesInReports
            ? StackCapture.capture(running.compactMap(\.tid), until: .after(ShutdownRun.stackBudget)) : [:]
        for status in running {
            text += "  - \(status)"
            if let tid = status.tid, let kernel = KernelThreadState.read(tid: tid) { text += "; kernel: \(kernel)" }
            text += "\n"
            if let tid = status.tid, let stack = stacks[tid]?.trace {
                text += ShutdownReport.stackLines(stack, indent: "      ").joined(separator: "\n") + "\n"
            }
        }
        group.logger.critical(
            "\(Signals.name(signal)) received during shutdown: exiting now",
            metadata: ["group": "\(group.path)", "running": "\(running.count)"])
        StandardError.write(text)
        // Buffered output of the program would die with the process. A stream locked by another
        // thread (mid-print) could never be unlocked now: skip it rather than hang here.
        _ = cshims_flush_stdout_if_unlocked()
        _exit(128 + signal)
    }

    /// The signal that started the shutdown, if one arrived.
    public var receivedSignal: Int32? {
        phase.withLock { phase in
            switch phase {
            case .shuttingDown(let signal), .finished(let signal, _): return signal
            case .watching, .cancelled: return nil
            }
        }
    }

    /// The report of the shutdown a signal started, once it finished.
    public var report: ShutdownReport? {
        phase.withLock { phase in
            if case .finished(_, let report) = phase { return report }
            return nil
        }
    }

    /// Blocks until a signal arrived and the shutdown it started returned (after `onShutdown`),
    /// and returns its report. The wait for the signal has no end of its own, which is the point
    /// of a process's main thread; once the signal is in, the shutdown's deadline bounds the rest.
    /// Returns nil only if the watcher was cancelled first.
    @available(*, noasync, message: "blocks the calling thread; use the async waitForShutdown")
    public func waitForShutdown() -> ShutdownReport? {
        if Fork.isChild { return nil }
        _ = done.wait(until: nil)
        return report
    }

    /// Like ``waitForShutdown()-7eno4``, giving up at `deadline`: nil if no signal's shutdown finished by then.
    @available(*, noasync, message: "blocks the calling thread; use the async waitForShutdown")
    public func waitForShutdown(until deadline: ContinuousClock.Instant) -> ShutdownReport? {
        if Fork.isChild { return nil }
        _ = done.wait(until: deadline)
        return report
    }

    /// Suspends until a signal arrived and the shutdown it started returned, and returns its
    /// report; nil if the watcher was cancelled first. Does not block a Swift concurrency thread.
    public func waitForShutdown() async -> ShutdownReport? {
        if Fork.isChild { return nil }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Runs at once if the shutdown already finished.
            _ = done.addCallback { continuation.resume() }
        }
        return report
    }

    /// Stops watching: the signals' previous actions come back, then the watcher thread ends. A
    /// shutdown already started runs on. Idempotent.
    ///
    /// A signal that reached the handler before its previous action was back is handled as if it
    /// had come while watching (it may start the shutdown); one that arrives after takes the
    /// previous action (for SIGTERM and SIGINT by default, ending the process). None is dropped.
    @available(*, noasync, message: "joins the watcher thread")
    public func cancel() {
        guard cancelled.requestStop(reason: .requested) else { return }
        SignalOwner.unrouteSignals(options.signals)
        let thread = watcher.withLock { $0 }
        // The watcher wakes on its cancel descriptor and ends promptly.
        _ = try? thread?.join(until: .after(.seconds(10)))
        // Its wake-up eventfd is not needed any more: close it now rather than when the last
        // reference to this object goes (a shutdown thread may hold one a little longer).
        cancelled.state.retireDescriptor()
        for (signal, count) in SignalOwner.releaseSignals(options.signals) { deliver(signal, count: count) }
        phase.withLock { phase in
            if case .watching = phase { phase = .cancelled }
        }
        if case .cancelled = phase.withLock({ $0 }) { _ = done.requestStop(reason: .requested) }
    }
}

/// Writes straight to descriptor 2, unbuffered: for reports printed while the process may be
/// about to end.
enum StandardError {
    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + offset, $0.count - offset) }
            if n > 0 {
                offset += n
            } else if n == -1 && Errno.current == EINTR {
                continue
            } else {
                return
            }
        }
    }
}
