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
///         // First thing: threads started from here on inherit the blocked signals.
///         let signals = try ShutdownSignals.install(options: .init(timeout: .seconds(10)))
///         try startEverything(in: ThreadGroup.root)
///         let report = signals.waitForShutdown()   // a signal arrived and the tree is down
///         exit(report.isClean ? 0 : 1)
///     }
/// }
/// ```
///
/// How it works: ``install(for:options:onShutdown:)`` blocks the signals in the calling thread and
/// reads them from a `signalfd` on a watcher thread of its own, so no signal handler runs your
/// code and nothing is lost to a handler racing the rest of the process. It also installs a small
/// C handler for threads that were started earlier and do not block the signals (the Swift
/// concurrency pool, Dispatch, C libraries): it forwards the signal to the watcher instead of
/// letting the default action end the process. No Dispatch signal source is involved.
///
/// The first signal starts ``ThreadGroup/shutdown(until:policy:)-2d25y`` of the group with
/// ``Options/timeout``; its threads see a stop of kind ``StopReason/Kind/signal``. The report goes
/// to `onShutdown`, or, without one, to standard error. A further signal during the shutdown is
/// handled as ``Options/onSecondSignal`` says: by default the process exits at once with status
/// 128 + the signal number, after printing which threads are still running.
///
/// One watcher per signal in a process: installing a second one for a signal that is already
/// watched throws. ``cancel()`` stops watching and restores the signals' previous actions.
public final class ShutdownSignals: Sendable {
    /// What a signal that arrives while the shutdown is running does.
    public struct SecondSignal: Sendable, Hashable, CustomStringConvertible {
        let exits: Bool

        /// Print the threads still running to standard error (and the logger), then end the
        /// process at once with `_exit(128 + signal)`: no atexit handlers, nothing more waited for.
        /// The default, as an operator pressing Ctrl-C twice expects.
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
    private let descriptor: Int32
    private let previousActions: [(signal: Int32, action: sigaction)]
    private let installer: pthread_t
    /// The watched signals the installing thread did not block before `install` (a Dispatch
    /// thread blocks nearly all signals already); `cancel` unblocks only these.
    private let blockedByInstall: [Int32]
    private let watcher = Lock<ManagedThread?>(nil)

    /// The signals watched by installed watchers, process-wide.
    private static let watched = Lock<Set<Int32>>([])

    /// Starts watching `options.signals`: blocks them in the calling thread, installs the
    /// forwarding handler, and starts the watcher thread.
    ///
    /// Call it early, from the main thread, before starting other threads: threads started
    /// afterwards inherit the blocked signals, so the kernel delivers them straight to the
    /// watcher. Threads started before are covered by the forwarding handler.
    ///
    /// The watcher keeps itself alive until ``cancel()``: dropping the returned object does not
    /// stop it.
    /// - Parameters:
    ///   - group: the group to shut down; ``ThreadGroup/root`` by default.
    ///   - options: signals, deadline, policy and what a second signal does.
    ///   - onShutdown: called with the report once the shutdown returns, on the thread that ran
    ///     it; nil writes the report to standard error. ``waitForShutdown()-7eno4`` returns after it.
    /// - Returns: the watcher.
    /// - Throws: ``ThreadError/Code/invalidArgument`` for an empty or invalid signal list;
    ///   ``ThreadError/Code/invalidState`` if another watcher already handles one of the
    ///   signals; ``ThreadError/Code/systemCall`` if `signalfd`, `sigaction`, `pthread_sigmask` or
    ///   the watcher's `pthread_create` fails (nothing stays installed then).
    @discardableResult
    public static func install(
        for group: ThreadGroup = .root, options: Options = Options(),
        onShutdown: (@Sendable (ShutdownReport) -> Void)? = nil
    ) throws(ThreadError) -> ShutdownSignals {
        let signals = Array(Set(options.signals)).sorted()
        guard !signals.isEmpty else { throw .invalidArgument("no signals to watch") }
        for signal in signals where signal <= 0 || signal > Signals.maximum || Signals.reserved.contains(signal) {
            throw .invalidArgument("\(Signals.name(signal)) cannot start a shutdown: it is not a valid, catchable, asynchronous signal")
        }
        guard options.timeout >= .zero else {
            throw .invalidArgument("the shutdown timeout must not be negative: \(options.timeout)")
        }
        try watched.withLock { (watched) throws(ThreadError) in
            if let taken = signals.first(where: watched.contains) {
                throw ThreadError(
                    code: .invalidState,
                    message: "\(Signals.name(taken)) is already watched by another ShutdownSignals; cancel that one first")
            }
            watched.formUnion(signals)
        }
        var previousMask: sigset_t?
        var installed: [(signal: Int32, action: sigaction)] = []
        var descriptor: Int32 = -1
        do {
            previousMask = try Signals.block(signals)
            descriptor = try Signals.makeDescriptor(for: signals)
            for signal in signals { installed.append((signal, try Signals.installForwarder(signal))) }
            var before = previousMask!
            let instance = ShutdownSignals(
                group: group, options: Options(signals: signals, timeout: options.timeout, policy: options.policy, onSecondSignal: options.onSecondSignal),
                onShutdown: onShutdown, descriptor: descriptor, previousActions: installed,
                blockedByInstall: signals.filter { sigismember(&before, $0) != 1 })
            try instance.startWatcher()
            return instance
        } catch {
            for (signal, action) in installed.reversed() { Signals.restore(signal, action) }
            if descriptor >= 0 { closeDescriptor(descriptor) }
            if var mask = previousMask { pthread_sigmask(SIG_SETMASK, &mask, nil) }
            watched.withLock { $0.subtract(signals) }
            throw error
        }
    }

    private init(
        group: ThreadGroup, options: Options, onShutdown: (@Sendable (ShutdownReport) -> Void)?, descriptor: Int32,
        previousActions: [(signal: Int32, action: sigaction)], blockedByInstall: [Int32]
    ) {
        self.blockedByInstall = blockedByInstall
        self.group = group
        self.options = options
        self.onShutdown = onShutdown
        self.descriptor = descriptor
        self.previousActions = previousActions
        self.installer = pthread_self()
    }

    private func startWatcher() throws(ThreadError) {
        let ready = StopState()
        let thread = try ManagedThread.spawn(name: "shutdown-signals", purpose: "watches \(options.signals.map(Signals.name).joined(separator: ", "))") { _ in
            // Inherited from the installer already; blocked again in case install ran on a thread
            // whose mask changes between the block and the spawn.
            _ = try? Signals.block(self.options.signals)
            let tid = cshims_gettid()
            _ = ExitAudit.infrastructure.withLock { $0.insert(tid) }
            defer { _ = ExitAudit.infrastructure.withLock { $0.remove(tid) } }
            for signal in self.options.signals { Signals.setForwardTarget(signal, tid: tid) }
            _ = ready.requestStop(reason: .requested)
            self.watch()
        }
        watcher.withLock { $0 = thread }
        // The forwarding target is set by the watcher itself; wait for it, boundedly (a thread
        // that was created starts; the bound only keeps a frozen machine from hanging install).
        _ = ready.wait(until: .after(.seconds(10)))
    }

    /// The watcher's loop: until cancelled, read signals and act on each.
    private func watch() {
        guard let stopFD = try? cancelled.token.fileDescriptor else {
            // No descriptor for the cancel wake-up: poll the signalfd with a short timeout instead.
            while !cancelled.token.isStopRequested {
                var fds = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
                _ = try? Poll.wait(&fds, until: .after(.milliseconds(100)))
                handlePending()
            }
            return
        }
        while !cancelled.token.isStopRequested {
            var fds = [
                pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0),
            ]
            do {
                _ = try Poll.wait(&fds, until: nil)
            } catch {
                // poll fails only for lack of memory; back off rather than spin.
                _ = cancelled.token.wait(timeout: .milliseconds(10))
            }
            handlePending()
        }
    }

    private func handlePending() {
        let received: [Int32]
        do {
            received = try Signals.readPending(descriptor)
        } catch {
            group.logger.error("could not read the signalfd", metadata: ["error": "\(error)"])
            _ = cancelled.token.wait(timeout: .milliseconds(10))
            return
        }
        for signal in received { handle(signal) }
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
        for status in running {
            text += "  - \(status)"
            if let tid = status.tid, let kernel = KernelThreadState.read(tid: tid) { text += "; kernel: \(kernel)" }
            text += "\n"
        }
        group.logger.critical(
            "\(Signals.name(signal)) received during shutdown: exiting now",
            metadata: ["group": "\(group.path)", "running": "\(running.count)"])
        StandardError.write(text)
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
        _ = done.wait(until: nil)
        return report
    }

    /// Like ``waitForShutdown()-7eno4``, giving up at `deadline`: nil if no signal's shutdown finished by then.
    @available(*, noasync, message: "blocks the calling thread; use the async waitForShutdown")
    public func waitForShutdown(until deadline: ContinuousClock.Instant) -> ShutdownReport? {
        _ = done.wait(until: deadline)
        return report
    }

    /// Suspends until a signal arrived and the shutdown it started returned, and returns its
    /// report; nil if the watcher was cancelled first. Does not block a Swift concurrency thread.
    public func waitForShutdown() async -> ShutdownReport? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Runs at once if the shutdown already finished.
            _ = done.addCallback { continuation.resume() }
        }
        return report
    }

    /// Stops watching: the watcher thread ends, the signals' previous actions come back, and the
    /// signals the install blocked are unblocked again in the installing thread if this is called on
    /// it (other threads keep the mask they inherited). A shutdown already started runs on. Idempotent.
    ///
    /// Signals that arrive after this take their previous action (for SIGTERM and SIGINT by
    /// default, ending the process).
    @available(*, noasync, message: "joins the watcher thread")
    public func cancel() {
        let first = phase.withLock { phase -> Bool in
            switch phase {
            case .cancelled: return false
            case .watching:
                phase = .cancelled
                return true
            case .shuttingDown, .finished:
                return true
            }
        }
        guard first, cancelled.requestStop(reason: .requested) else { return }
        let thread = watcher.withLock { $0 }
        // The watcher checks its token between polls, so it ends promptly.
        _ = try? thread?.join(until: .after(.seconds(10)))
        // Its wake-up eventfd is not needed any more: close it now rather than when the last
        // reference to this object goes (a shutdown thread may hold one a little longer).
        cancelled.state.retireDescriptor()
        for (signal, action) in previousActions {
            Signals.setForwardTarget(signal, tid: 0)
            Signals.restore(signal, action)
        }
        // A signal that arrived between the last read and the restore is still pending in the
        // process (every watcher-side thread blocks it); read it away so unblocking the installer
        // does not deliver it with its old action.
        _ = try? Signals.readPending(descriptor)
        closeDescriptor(descriptor)
        if pthread_equal(installer, pthread_self()) != 0 && !blockedByInstall.isEmpty {
            try? Signals.unblock(blockedByInstall)
        }
        _ = done.requestStop(reason: .requested)
        Self.watched.withLock { $0.subtract(options.signals) }
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
