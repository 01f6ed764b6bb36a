#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Every C function the System layer wraps; the raw value is the C name used in errors.
/// Fault injection (debug builds) addresses calls by these cases.
enum SystemCall: String, Sendable, CaseIterable {
    case pthreadCreate = "pthread_create"
    case pthreadSetname = "pthread_setname_np"
    case pthreadTimedjoin = "pthread_clockjoin_np"
    case pthreadDetach = "pthread_detach"
    case eventfd = "eventfd"
    case eventfdWrite = "write(eventfd)"
    case timerfdCreate = "timerfd_create"
    case timerfdSettime = "timerfd_settime"
    case timerfdGettime = "timerfd_gettime"
    case timerfdRead = "read(timerfd)"
    case poll = "poll"
    case mmap = "mmap"
    case mprotect = "mprotect"
    case munmap = "munmap"
    case getrlimit = "getrlimit"
    case sigaction = "sigaction"
    case eventfdRead = "read(eventfd)"
    case tgkill = "tgkill"

    /// A hint for a person reading the error.
    func advice(for errno: Int32) -> String {
        switch (self, errno) {
        case (.pthreadCreate, EAGAIN):
            return "the system refused a new thread (RLIMIT_NPROC, kernel.threads-max, a pids cgroup limit, or address space for stacks)"
        case (.pthreadCreate, EINVAL):
            return "the thread attributes were rejected (stack size below PTHREAD_STACK_MIN or misaligned)"
        case (_, EMFILE):
            return "the process is out of file descriptors (RLIMIT_NOFILE); a stop token needs one only when its body asks for fileDescriptor"
        case (_, ENFILE):
            return "the system-wide file table is full"
        case (_, ENOMEM):
            return "the kernel is out of memory for this request"
        case (_, EPERM):
            return "the operation is not permitted for this process"
        default:
            return "unexpected error from \(rawValue)"
        }
    }
}

/// Names and descriptions of error numbers.
enum Errno {
    /// The symbolic name (`"EAGAIN"`), or the number when it is not one the library expects.
    static func name(_ errno: Int32) -> String {
        switch errno {
        case EAGAIN: return "EAGAIN"
        case EINTR: return "EINTR"
        case EINVAL: return "EINVAL"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case ENOMEM: return "ENOMEM"
        case EPERM: return "EPERM"
        case ESRCH: return "ESRCH"
        case ETIMEDOUT: return "ETIMEDOUT"
        case EDEADLK: return "EDEADLK"
        case ERANGE: return "ERANGE"
        case EBADF: return "EBADF"
        case EFAULT: return "EFAULT"
        case ENODEV: return "ENODEV"
        default: return "errno \(errno)"
        }
    }

    /// libc's text for the number. glibc's `strerror` returns static strings for known numbers
    /// and a thread-local buffer otherwise, so it is safe to call from any thread.
    static func describe(_ errno: Int32) -> String {
        String(cString: strerror(errno))
    }

    /// Reads the calling thread's `errno`. Not inlined, so that nothing the optimiser moves in
    /// between the failing call and this read can clobber it.
    @inline(never)
    static var current: Int32 { Glibc.errno }
}
