import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over `timerfd_create(2)` and friends, imported from Glibc.
enum TimerFD {
    /// A non-blocking, close-on-exec timer on CLOCK_MONOTONIC.
    /// The corresponding C function is `timerfd_create`.
    static func create() throws(ThreadError) -> Int32 {
        let fd = try syscall(.timerfdCreate) {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC) | Int32(TFD_NONBLOCK))
        }
        noteDescriptorOpened(fd, by: .timerfdCreate)
        return fd
    }

    /// Arms the timer: first expiry after `initial`, then every `interval` (zero: one-shot).
    /// The corresponding C function is `timerfd_settime`.
    static func arm(_ fd: Int32, initial: Duration, interval: Duration) throws(ThreadError) {
        var spec = itimerspec(it_interval: interval.timespec, it_value: initial.timespec)
        if spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0 {
            spec.it_value.tv_nsec = 1  // zero would disarm the timer
        }
        _ = try syscall(.timerfdSettime) { timerfd_settime(fd, 0, &spec, nil) }
    }

    /// Time until the next expiry (zero when one is already pending).
    /// The corresponding C function is `timerfd_gettime`.
    static func remaining(_ fd: Int32) throws(ThreadError) -> Duration {
        var spec = itimerspec()
        _ = try syscall(.timerfdGettime) { timerfd_gettime(fd, &spec) }
        return Duration(spec.it_value)
    }

    /// The number of expirations since the last read; 0 when none (the descriptor is non-blocking).
    static func expirations(_ fd: Int32) throws(ThreadError) -> UInt64 {
        try readCounter(fd, .timerfdRead)
    }
}
