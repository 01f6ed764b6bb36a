/// The error thrown by every ManagedThreads API.
///
/// Inspect ``code`` to decide what to do; ``message`` is written for a person. When a system call
/// failed, ``call`` names it (for example `"pthread_create"`) and ``errno`` holds the error number
/// it returned, comparable with the Glibc constants (`EAGAIN`, `EMFILE`, …).
public struct ThreadError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure. New codes may be added in later versions, so switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let raw: String
        private init(_ raw: String) { self.raw = raw }
        /// The code's name, such as `systemCall` or `groupStopped`.
        public var description: String { raw }

        /// A system call failed; ``ThreadError/call`` and ``ThreadError/errno`` say which and how.
        public static let systemCall = Code("systemCall")
        /// A thread tried to join itself, which would deadlock.
        public static let selfJoin = Code("selfJoin")
        /// An argument was out of range or malformed (an empty name, a stack too small, …).
        public static let invalidArgument = Code("invalidArgument")
        /// The operation needs a resource that is gone (for example the stop descriptor of a thread
        /// whose body has returned).
        public static let invalidState = Code("invalidState")
        /// Spawning into a thread group that is stopping or stopped, submitting work to a
        /// ``BlockingExecutor`` that is, or spawning a task into a ``TaskTracker`` that is.
        public static let groupStopped = Code("groupStopped")
        /// A job was cancelled before it started: by ``Job/cancel()``, by the cancellation of the
        /// task awaiting it, or because its ``BlockingExecutor`` stopped. Its work never ran.
        public static let cancelled = Code("cancelled")
        /// A bounded wait ended before what it waited for (a ``Job``'s result) was there. Nothing
        /// was cancelled: wait again, or cancel.
        public static let timedOut = Code("timedOut")
        /// A ``BlockingExecutor`` created with `maxQueued` already holds that many jobs that have
        /// not started. Nothing was queued: retry later, shed the work, or run it elsewhere.
        public static let queueFull = Code("queueFull")
        /// A thread's body ended the thread without returning: it called `pthread_exit`, or the
        /// thread was cancelled with `pthread_cancel`. The thread still went through the same end
        /// as a body that returns (callbacks, group bookkeeping, its stack back to the pool), and
        /// this is kept as its ``ManagedThread/error``.
        public static let exitedEarly = Code("exitedEarly")
        /// The call was made in a process forked (without `exec`) from one that used the library:
        /// the parent's threads do not exist there, so the library refuses to act. Use it before
        /// `fork` or after `exec`.
        public static let forkedChild = Code("forkedChild")
    }

    /// What went wrong.
    public let code: Code
    /// A sentence a person can act on.
    public let message: String
    /// The failing C function, when ``code`` is ``Code/systemCall``.
    public let call: String?
    /// The error number the call returned, when ``code`` is ``Code/systemCall``.
    public let errno: Int32?

    /// Creates an error. Library code uses the static factories; this is public so that components
    /// conforming to the library's protocols can report failures in the same type.
    public init(code: Code, message: String, call: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.call = call
        self.errno = errno
    }

    /// The error for a log line: for a failed system call `call failed: ENAME (libc's text): message`,
    /// otherwise `code: message`.
    public var description: String {
        if let call, let errno {
            return "\(call) failed: \(Errno.name(errno)) (\(Errno.describe(errno))): \(message)"
        }
        return "\(code): \(message)"
    }

    static func system(_ call: SystemCall, _ errno: Int32) -> ThreadError {
        ThreadError(code: .systemCall, message: call.advice(for: errno), call: call.rawValue, errno: errno)
    }

    static func invalidArgument(_ message: String) -> ThreadError {
        ThreadError(code: .invalidArgument, message: message)
    }
}
