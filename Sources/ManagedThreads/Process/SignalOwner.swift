import CShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The one owner of every piece of process-wide signal state the library touches: which signal
/// plays which role, the handlers, the descriptors a delivery is routed to, and the signals managed
/// threads unblock. Nothing else in the library calls `sigaction` or changes a mask.
///
/// Invariants:
/// 1. **No thread's mask is changed**, except that a managed thread, as it starts, unblocks the
///    interrupt signals (by default only SIGURG, which does not queue and whose default action is
///    to be ignored, so unblocking it can never end or disturb the process) and the stack-capture
///    signal (`SIGRTMAX - 3`, only once its handler is in place, at the first managed thread's
///    start, so its default action never applies). Shutdown signals are never blocked: threads
///    and child processes (`posix_spawn`, `Foundation.Process`) keep the mask the application
///    gave them.
/// 2. **A handler does one async-signal-safe thing**: the routing handler adds one to the
///    signal's eventfd (a watcher polls it); the interrupt handler clears the thread's
///    interrupt word; the capture handler unwinds the thread's stack into the slot armed for it
///    (CShims/capture.c: no allocation, no lock). In a forked child the routing handler puts the old action back and raises
///    the signal again, so the child behaves as it would without the library.
/// 3. **No delivery is lost or misdirected.** A signal's eventfd exists before its handler is
///    installed and stays open for the life of the process, so there is no window in which the
///    handler has nowhere to write, and no stale target (there are no target thread ids at all).
///    Unrouting puts the old action back first, then waits for handlers still running, then
///    hands what they counted to the caller: every delivery went either to the old action or to
///    the watcher.
/// 4. **One role per signal.** A signal is a shutdown signal or an interrupt signal, never both,
///    whichever is declared first; the second claim is a typed error.
/// 5. **At most one pending interrupt per thread.** A sender sets the thread's interrupt word
///    before `tgkill` and does not send while it is set; the handler clears it. A thread that
///    masks a queuing real-time interrupt signal so holds one copy, not one per retry, and the
///    per-user RLIMIT_SIGPENDING is not eaten.
enum SignalOwner {
    enum Role: Equatable {
        case shutdown
        case interrupt
        case capture
        case dump

        var description: String {
            switch self {
            case .shutdown: "a shutdown signal (ShutdownSignals)"
            case .interrupt: "an interrupt signal (Escalation)"
            case .capture: "the stack-capture signal (StackCapture)"
            case .dump: "a thread-dump signal (ThreadDump.installTrigger)"
            }
        }
    }

    private struct State {
        var roles: [Int32: Role] = [:]
        /// Per routed signal, its eventfd: created on first use, never closed (invariant 3).
        var routeDescriptors: [Int32: Int32] = [:]
        /// Interrupt signals whose handler is ours.
        var interrupters: Set<Int32> = []
        /// The outcome of installing the capture handler: nil until tried, then "" when it is in
        /// place, else why it is not.
        var capture: String?
    }

    /// Set once the capture handler is in place (or failed): the per-thread start skips the lock.
    private static let captureTried = Atomic<Bool>(false)

    private static let state = Lock<State>(State())

    /// Bit n set: managed threads unblock signal n as they start. SIGURG by default.
    private static let unblockMask = Atomic<UInt64>(1 << UInt64(SIGURG))

    // MARK: Validation

    /// Why `signal` cannot be used at all (not a catchable asynchronous signal), or nil.
    static func unusable(_ signal: Int32) -> String? {
        guard signal > 0, signal <= Signals.maximum, !Signals.reserved.contains(signal) else {
            return "\(Signals.name(signal)) is not a valid, catchable, asynchronous signal"
        }
        return nil
    }

    private static func conflict(_ signal: Int32, wanted: Role, in state: State) -> ThreadError? {
        guard let held = state.roles[signal], held != wanted else { return nil }
        return .invalidArgument(
            "\(Signals.name(signal)) is already \(held.description); one signal cannot also be \(wanted.description)")
    }

    // MARK: Shutdown signals

    /// Claims `signals` as shutdown signals and routes each to its eventfd. Returns the
    /// descriptors, in the order of `signals`. On any failure nothing stays claimed or routed.
    static func routeShutdownSignals(_ signals: [Int32]) throws(ThreadError) -> [Int32] {
        try routeSignals(signals, role: .shutdown)
    }

    /// Claims `signals` for `role` (shutdown or dump: both have a watcher thread) and routes each
    /// to its eventfd. Returns the descriptors, in the order of `signals`. On any failure nothing
    /// stays claimed or routed.
    static func routeSignals(_ signals: [Int32], role: Role) throws(ThreadError) -> [Int32] {
        try state.withLock { (state) throws(ThreadError) -> [Int32] in
            for signal in signals {
                if let error = conflict(signal, wanted: role, in: state) { throw error }
                if state.roles[signal] == role {
                    throw ThreadError(
                        code: .invalidState,
                        message: "\(Signals.name(signal)) is already watched as \(role.description); cancel that watcher first")
                }
            }
            var routed: [Int32] = []
            var descriptors: [Int32] = []
            do throws(ThreadError) {
                for signal in signals {
                    let fd: Int32
                    if let existing = state.routeDescriptors[signal] {
                        fd = existing
                    } else {
                        fd = try EventFD.create()
                        state.routeDescriptors[signal] = fd
                    }
                    // Deliveries counted after an earlier watcher's final read belong to nobody.
                    _ = try? readCounter(fd, .eventfdRead)
                    _ = try Signals.route(signal, to: fd)
                    routed.append(signal)
                    descriptors.append(fd)
                }
            } catch {
                for signal in routed { Signals.unroute(signal) }
                throw error
            }
            for signal in signals { state.roles[signal] = role }
            return descriptors
        }
    }

    /// Puts the old actions of `signals` back and waits (boundedly) for routing handlers still
    /// running, so that every delivery from here on takes the old action and every earlier one
    /// is counted in the eventfd. The signals stay claimed until ``releaseSignals(_:)``,
    /// so no new watcher can share the descriptors with the one still ending.
    static func unrouteSignals(_ signals: [Int32]) {
        state.withLock { _ in
            for signal in signals { Signals.unroute(signal) }
        }
        // A handler is a few instructions and one write; 100 ms is far beyond any of them
        // (a handler preempted for longer only means its count is read by the next install's drain).
        let deadline = ContinuousClock.Instant.after(.milliseconds(100))
        while cshims_signal_handlers_running() > 0 && ContinuousClock.now < deadline { sched_yield() }
    }

    /// Frees `signals` (after ``unrouteSignals(_:)`` and the watcher's end) and returns the
    /// deliveries counted since the watcher's last read, per signal, so they are handled rather
    /// than lost.
    static func releaseSignals(_ signals: [Int32]) -> [(signal: Int32, count: UInt64)] {
        state.withLock { state -> [(signal: Int32, count: UInt64)] in
            var counted: [(signal: Int32, count: UInt64)] = []
            for signal in signals {
                if let fd = state.routeDescriptors[signal], let count = try? readCounter(fd, .eventfdRead), count > 0 {
                    counted.append((signal, count))
                }
                state.roles[signal] = nil
            }
            return counted
        }
    }

    // MARK: Interrupt signals

    /// Declares `signal` an interrupt signal: claims the role, installs the interrupt handler
    /// (before any thread unblocks it, so it is never unblocked while its action would end the
    /// process) and adds it to what managed threads unblock as they start.
    static func reserveInterrupt(_ signal: Int32) throws(ThreadError) {
        if let problem = unusable(signal) { throw .invalidArgument(problem) }
        if let problem = prepareInterrupt(signal) { throw .invalidArgument(problem) }
        if signal < 64 { unblockMask.bitwiseOr(1 << UInt64(signal), ordering: .relaxed) }
    }

    /// Makes `signal` ready to interrupt threads: claims the role and installs the handler once.
    /// Returns why it cannot be used, or nil when it is ready.
    static func prepareInterrupt(_ signal: Int32) -> String? {
        if let problem = unusable(signal) { return problem }
        return state.withLock { state -> String? in
            if let error = conflict(signal, wanted: .interrupt, in: state) { return error.message }
            if state.interrupters.contains(signal) {
                return cshims_signal_is_ours(signal) == 1 ? nil : "the handler for \(Signals.name(signal)) was replaced by someone else"
            }
            guard cshims_signal_is_default(signal) == 1 else {
                return "\(Signals.name(signal)) already has an action installed by the application; choose another interrupt signal"
            }
            do {
                _ = try Signals.installInterrupter(signal)
            } catch {
                return "\(error)"
            }
            state.interrupters.insert(signal)
            state.roles[signal] = .interrupt
            return nil
        }
    }

    // MARK: The capture signal

    /// Installs the stack-capture handler on `signal` once, and adds the signal to what managed
    /// threads unblock (after the handler is in, so it is never unblocked while its default
    /// action would end the process). Returns why captures cannot run, or nil.
    static func prepareCapture(_ signal: Int32) -> String? {
        state.withLock { state -> String? in
            if let outcome = state.capture {
                if !outcome.isEmpty { return outcome }
                return cshims_capture_is_installed(signal) == 1 ? nil : "the handler for \(Signals.name(signal)) was replaced by someone else"
            }
            let outcome: String
            if let error = conflict(signal, wanted: .capture, in: state) {
                outcome = error.message
            } else if cshims_signal_is_default(signal) != 1 {
                outcome = "\(Signals.name(signal)) already has an action installed by the application"
            } else {
                var previous = sigaction()
                if cshims_capture_install(signal, &previous) == 0 {
                    state.roles[signal] = .capture
                    if signal < 64 { unblockMask.bitwiseOr(1 << UInt64(signal), ordering: .relaxed) }
                    outcome = ""
                } else {
                    outcome = "sigaction(\(Signals.name(signal))) failed: errno \(errno)"
                }
            }
            state.capture = outcome
            captureTried.store(true, ordering: .releasing)
            return outcome.isEmpty ? nil : outcome
        }
    }

    /// Unblocks the interrupt signals in the calling thread (a managed thread starting) and points
    /// the interrupt handler at the thread's word.
    static func threadStarted(interruptWord: FutexWord) {
        if !captureTried.load(ordering: .acquiring) { _ = StackCapture.prepare() }
        cshims_thread_set_interrupt_word(interruptWord.pointer)
        var mask = unblockMask.load(ordering: .relaxed)
        var set = sigset_t()
        sigemptyset(&set)
        while mask != 0 {  // the set bits only (usually one: SIGURG)
            sigaddset(&set, Int32(mask.trailingZeroBitCount))
            mask &= mask - 1
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// The thread is ending: the handler must not touch its word any more.
    static func threadEnding() {
        cshims_thread_set_interrupt_word(nil)
    }

    /// Sends `signal` to `tid` unless a copy sent earlier is still pending there (its word is
    /// set). Returns whether this call sent one.
    static func interrupt(tid: Int32, word: FutexWord, with signal: Int32) -> Bool {
        guard word.compareExchange(0, 1) else { return false }
        if (try? Signals.send(signal, toThread: tid)) == true { return true }
        word.store(0)  // gone, or refused: nothing is pending
        return false
    }
}
