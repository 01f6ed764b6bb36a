import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The managed threads that are running, by kernel id, for ``ThreadAudit`` and ``ExitAudit``.
enum ManagedThreadRegistry {
    struct Info: Sendable {
        var name: String
        /// nil for a thread outside any group.
        var groupPath: String?
    }
    private static let threads = Lock<[pid_t: Info]>([:])
    static func insert(_ tid: pid_t, _ info: Info) { threads.withLock { $0[tid] = info } }
    static func remove(_ tid: pid_t) { _ = threads.withLock { $0.removeValue(forKey: tid) } }
    static func contains(_ tid: pid_t) -> Bool { threads.withLock { $0[tid] != nil } }
    static func snapshot() -> [pid_t: Info] { threads.withLock { $0 } }
}
