import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Swift wrappers over the pthread shims.
enum PThread {
    /// Creates a joinable thread running `start(arg)`.
    /// The corresponding C function is `pthread_create` (through `cshims_thread_create`).
    static func create(
        stack: UnsafeMutableRawPointer?, stackSize: Int,
        start: cshims_thread_start_t, arg: UnsafeMutableRawPointer?
    ) throws(ThreadError) -> pthread_t {
        var handle = pthread_t()
        try pthreadCall(.pthreadCreate) { cshims_thread_create(&handle, stack, stackSize, start, arg) }
        return handle
    }

    /// Sets the calling thread's kernel name (at most 15 bytes; see ``kernelName(for:)``).
    static func setCurrentName(_ name: String) throws(ThreadError) {
        try pthreadCall(.pthreadSetname) { name.withCString { cshims_thread_setname(pthread_self(), $0) } }
    }

    /// The kernel name of `thread`, as `pthread_getname_np` reports it.
    static func name(of thread: pthread_t) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 16) { buf -> String? in
            guard cshims_thread_getname(thread, buf.baseAddress!, 16) == 0 else { return nil }
            return String(cString: buf.baseAddress!)
        }
    }

    /// The calling thread's kernel name, asked of the kernel once per thread and kept (a spawn
    /// records it for every thread it starts).
    static var currentKernelName: String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 16) { buf -> String? in
            guard cshims_current_thread_name(buf.baseAddress!, 16) == 0 else { return nil }
            return String(cString: buf.baseAddress!)
        }
    }

    /// Waits for `thread` to terminate, at most until `deadline`. Returns false on timeout.
    /// Cannot fail otherwise: ESRCH/EINVAL/EDEADLK would mean the library lost track of its own
    /// handle (it joins only threads it created, once, after they ended), so they trap.
    /// The corresponding C function is `pthread_clockjoin_np` (CLOCK_MONOTONIC).
    static func join(_ thread: pthread_t, until deadline: ContinuousClock.Instant) -> Bool {
        var abstime = monotonicDeadline(for: deadline)
        // A forced errno takes the same path as a real one.
        let rc = injectedFault(.pthreadTimedjoin) ?? cshims_thread_clockjoin(thread, &abstime)
        switch rc {
        case 0: return true
        case ETIMEDOUT: return false
        default:
            // ESRCH/EINVAL/EDEADLK would mean the library lost track of its own handle.
            preconditionFailure("pthread_clockjoin_np failed with \(Errno.name(rc)): a bug in ManagedThreads")
        }
    }

    /// Detaches `thread` so the system reclaims it when it ends. Cannot fail short of a bug
    /// (EINVAL: not joinable; ESRCH: no such thread), so a failure traps.
    static func detach(_ thread: pthread_t) {
        // A forced errno takes the same path as a real one.
        let rc = injectedFault(.pthreadDetach) ?? pthread_detach(thread)
        precondition(rc == 0, "pthread_detach failed with \(Errno.name(rc)): a bug in ManagedThreads")
    }

    /// A thread-specific-data key whose destructor glibc runs as a thread ends with a non-nil
    /// value set: after `pthread_exit` or cancellation has unwound the thread's stack, as well as
    /// after a normal return (callers clear the value first on that path). Traps if the process
    /// is out of keys (EAGAIN: PTHREAD_KEYS_MAX, 1,024, already taken), which the library, creating
    /// one key once, cannot cause. The corresponding C function is `pthread_key_create`.
    static func makeKey(destructor: @convention(c) (UnsafeMutableRawPointer?) -> Void) -> pthread_key_t {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, destructor)
        precondition(rc == 0, "pthread_key_create failed with \(Errno.name(rc)): the process has used up its thread-specific keys")
        return key
    }

    /// Sets the calling thread's value for `key` (nil clears it). Cannot fail for a key the
    /// library made (ENOMEM only on the first use of a key beyond the 32 kept inline, which
    /// glibc allocates; the library's key is made early and never fails here in practice), so
    /// a failure traps. The corresponding C function is `pthread_setspecific`.
    static func setSpecific(_ key: pthread_key_t, _ value: UnsafeMutableRawPointer?) {
        let rc = pthread_setspecific(key, value)
        precondition(rc == 0, "pthread_setspecific failed with \(Errno.name(rc))")
    }

    /// The calling thread's value for `key` (`pthread_getspecific`: no system call).
    static func getSpecific(_ key: pthread_key_t) -> UnsafeMutableRawPointer? {
        pthread_getspecific(key)
    }

    /// The kernel thread id of the calling thread.
    @inline(__always) static var currentTID: pid_t { cshims_gettid() }

    /// The longest prefix of `name` that fits the kernel's 15-byte thread name, cut on a Unicode
    /// scalar boundary so no UTF-8 sequence is split.
    static func kernelName(for name: String) -> String {
        var bytes = 0
        var result = String.UnicodeScalarView()
        for scalar in name.unicodeScalars {
            let width = UTF8.width(scalar)
            if bytes + width > 15 { break }
            bytes += width
            result.append(scalar)
        }
        return String(result)
    }
}
