#if canImport(Glibc)
import Glibc
#endif

/// Calls a libc function that returns -1 and sets `errno` on failure, reading `errno` at once.
///
/// - EINTR is retried when `restartable` (the default); otherwise it is thrown like any other error.
/// - EBADF and EFAULT mean the library passed a bad descriptor or pointer: a bug, so a precondition.
/// - Everything else is thrown as a ``ThreadError`` naming the call.
@inline(never)
func syscall<T: FixedWidthInteger>(
    _ call: SystemCall, restartable: Bool = true, _ body: () -> T
) throws(ThreadError) -> T {
    while true {
        let err: Int32
        if let forced = injectedFault(call) {
            // A forced errno takes the same path as a real one.
            err = forced
        } else {
            let result = body()
            if result != -1 { return result }
            err = Errno.current
        }
        if err == EINTR && restartable { continue }
        precondition(err != EBADF && err != EFAULT, "\(call.rawValue) failed with \(Errno.name(err)): a bug in ManagedThreads")
        throw ThreadError.system(call, err)
    }
}

/// Calls a pthread function, which returns its error code instead of setting `errno`.
@inline(never)
func pthreadCall(_ call: SystemCall, _ body: () -> Int32) throws(ThreadError) {
    let rc = injectedFault(call) ?? body()
    if rc != 0 {
        throw ThreadError.system(call, rc)
    }
}

/// Closes a descriptor the library owns. Never retried: on Linux the descriptor is released even
/// when `close` reports EINTR, and a retry could close a descriptor another thread just opened.
func closeDescriptor(_ fd: Int32) {
    noteDescriptorClosing(fd)
    let rc = Glibc.close(fd)
    if rc == -1 {
        let err = Errno.current
        precondition(err != EBADF, "close(\(fd)) failed with EBADF: ManagedThreads closed a descriptor it did not own")
    }
}

/// Reads the 8-byte counter of a non-blocking eventfd or timerfd; 0 when there is nothing to read
/// (EAGAIN).
func readCounter(_ fd: Int32, _ call: SystemCall) throws(ThreadError) -> UInt64 {
    var value: UInt64 = 0
    do {
        _ = try syscall(call) { read(fd, &value, 8) }
    } catch where error.errno == EAGAIN {
        return 0
    }
    return value
}
