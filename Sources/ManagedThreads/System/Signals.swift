import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over signal masks, `signalfd(2)`, `sigaction(2)` (through CShims, whose handlers
/// must be C) and `tgkill(2)`.
enum Signals {
    /// A `sigset_t` holding `signals`.
    static func set(of signals: [Int32]) -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        return set
    }

    /// Blocks `signals` in the calling thread and returns the mask it had before.
    /// The corresponding C function is `pthread_sigmask`.
    static func block(_ signals: [Int32]) throws(ThreadError) -> sigset_t {
        var add = set(of: signals)
        var previous = sigset_t()
        try pthreadCall(.pthreadSigmask) { pthread_sigmask(SIG_BLOCK, &add, &previous) }
        return previous
    }

    /// Unblocks `signals` in the calling thread.
    static func unblock(_ signals: [Int32]) throws(ThreadError) {
        var remove = set(of: signals)
        try pthreadCall(.pthreadSigmask) { pthread_sigmask(SIG_UNBLOCK, &remove, nil) }
    }

    /// Whether `signal` is blocked in the calling thread.
    static func isBlocked(_ signal: Int32) -> Bool {
        var current = sigset_t()
        pthread_sigmask(SIG_BLOCK, nil, &current)
        return sigismember(&current, signal) == 1
    }

    /// A non-blocking, close-on-exec signalfd for `signals` (which the threads reading it must
    /// block). The corresponding C function is `signalfd`.
    static func makeDescriptor(for signals: [Int32]) throws(ThreadError) -> Int32 {
        var mask = set(of: signals)
        let fd = try syscall(.signalfd) { signalfd(-1, &mask, Int32(SFD_CLOEXEC) | Int32(SFD_NONBLOCK)) }
        noteDescriptorOpened(fd, by: .signalfd)
        return fd
    }

    /// Reads every pending signal from a non-blocking signalfd; empty when none is pending.
    static func readPending(_ fd: Int32) throws(ThreadError) -> [Int32] {
        var received: [Int32] = []
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        while true {
            do {
                let n = try syscall(.signalfdRead) { read(fd, &info, size) }
                guard n == size else { return received }
                received.append(Int32(bitPattern: info.ssi_signo))
            } catch where error.errno == EAGAIN {
                return received
            }
        }
    }

    /// Installs the forwarding handler for `signal` (see `cshims_signal_install_forwarder`) and
    /// returns the action it replaced.
    static func installForwarder(_ signal: Int32) throws(ThreadError) -> sigaction {
        var previous = sigaction()
        _ = try syscall(.sigaction) { cshims_signal_install_forwarder(signal, &previous) }
        return previous
    }

    /// Installs the do-nothing handler without SA_RESTART for `signal` and returns the action it
    /// replaced (see `cshims_signal_install_interrupter`).
    static func installInterrupter(_ signal: Int32) throws(ThreadError) -> sigaction {
        var previous = sigaction()
        _ = try syscall(.sigaction) { cshims_signal_install_interrupter(signal, &previous) }
        return previous
    }

    /// Sends forwarded `signal`s to thread `tid` (0: drop them).
    static func setForwardTarget(_ signal: Int32, tid: Int32) {
        _ = cshims_signal_set_forward_target(signal, tid)
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
