import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The managed threads that are running, by kernel id, for ``ThreadAudit``, ``ExitAudit`` and
/// ``ThreadDump``.
enum ManagedThreadRegistry {
    struct Info: @unchecked Sendable {
        // @unchecked: `thread` is dereferenced only under the registry's lock (see `threads()`).
        var name: String
        /// nil for a thread outside any group.
        var groupPath: String?
        /// The thread itself, not retained: a thread is in the registry only between its start
        /// and its exit path, while its own reference keeps it alive, and it leaves under the lock.
        fileprivate var thread: Unmanaged<ManagedThread>

        init(_ thread: ManagedThread) {
            name = thread.name
            groupPath = thread.groupPath
            self.thread = .passUnretained(thread)
        }
    }
    private static let table = Lock<[pid_t: Info]>([:])
    static func insert(_ tid: pid_t, _ info: Info) { table.withLock { $0[tid] = info } }
    static func remove(_ tid: pid_t) { _ = table.withLock { $0.removeValue(forKey: tid) } }
    static func contains(_ tid: pid_t) -> Bool { table.withLock { $0[tid] != nil } }
    static func snapshot() -> [pid_t: Info] { table.withLock { $0 } }

    /// The running managed threads, each retained here (under the lock, while its own reference
    /// still holds it), so the caller may use them after the lock is gone.
    static func liveThreads() -> [pid_t: ManagedThread] {
        table.withLock { $0.mapValues { $0.thread.takeUnretainedValue() } }
    }
}
