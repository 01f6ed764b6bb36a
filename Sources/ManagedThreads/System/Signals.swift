import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over signal masks, `sigaction(2)` (through CShims, whose handlers must be C) and
/// `tgkill(2)`. The policy (which signal does what, when handlers go in) is ``SignalOwner``'s.
enum Signals {
    /// A `sigset_t` holding `signals`.
    static func set(of signals: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        return set
    }

    /// Whether `signal` is blocked in the calling thread.
    static func isBlocked(_ signal: Int32) -> Bool {
        var current = sigset_t()
        pthread_sigmask(SIG_BLOCK, nil, &current)
        return sigismember(&current, signal) == 1
    }

    /// Routes `signal` to the eventfd `fd` (see `cshims_signal_route`) and returns the action it
    /// replaced. The corresponding C function is `sigaction`.
    static func route(_ signal: Int32, to fd: Int32) throws(ThreadError) -> sigaction {
        var previous = sigaction()
        _ = try syscall(.sigaction) { cshims_signal_route(signal, fd, &previous) }
        return previous
    }

    /// Puts back the action `route` replaced. Fails only for an invalid signal, which `route`
    /// refused already.
    static func unroute(_ signal: Int32) {
        _ = cshims_signal_unroute(signal)
    }

    /// Installs the do-nothing handler without SA_RESTART for `signal` and returns the action it
    /// replaced (see `cshims_signal_install_interrupter`).
    static func installInterrupter(_ signal: Int32) throws(ThreadError) -> sigaction {
        var previous = sigaction()
        _ = try syscall(.sigaction) { cshims_signal_install_interrupter(signal, &previous) }
        return previous
    }

    /// Puts back an action returned by an install function.
    static func restore(_ signal: Int32, _ previous: sigaction) {
        var previous = previous
        _ = cshims_signal_restore(signal, &previous)
    }

    /// Sends `signal` to thread `tid` of this process. Returns false if the thread is gone (ESRCH).
    /// The corresponding C function is `tgkill`.
    static func send(_ signal: Int32, toThread tid: Int32) throws(ThreadError) -> Bool {
        do {
            _ = try syscall(.tgkill) { cshims_tgkill(tid, signal) }
            return true
        } catch where error.errno == ESRCH {
            return false
        }
    }

    /// The conventional name of a signal number (`SIGTERM`), or `signal N`.
    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: return "SIGHUP"
        case SIGINT: return "SIGINT"
        case SIGQUIT: return "SIGQUIT"
        case SIGTERM: return "SIGTERM"
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        case SIGPIPE: return "SIGPIPE"
        case SIGALRM: return "SIGALRM"
        case SIGCHLD: return "SIGCHLD"
        case SIGWINCH: return "SIGWINCH"
        case SIGURG: return "SIGURG"
        default:
            let rtmin = __libc_current_sigrtmin()
            if signal >= rtmin && signal <= __libc_current_sigrtmax() { return "SIGRTMIN+\(signal - rtmin)" }
            return "signal \(signal)"
        }
    }

    /// Signals that cannot be caught, or that report a fault in the thread that raised them
    /// (blocking those is undefined behaviour): never valid for watching or interrupting.
    static let reserved: Set<Int32> = [SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT]

    /// The largest valid signal number here.
    static var maximum: Int32 { __libc_current_sigrtmax() }
}
