#if DEBUG
import CShims
import Synchronization

/// Debug-build-only hook that makes a System-layer wrapper fail with a chosen errno, so tests can
/// reach error paths the kernel will not produce on demand (`EAGAIN` from `pthread_create`,
/// `EMFILE` from `eventfd`, …).
///
/// Faults are scoped: a `.currentThread` fault only hits calls made on the thread that armed it, so
/// tests running in parallel in one process do not trip over each other's faults. `.process` hits
/// any thread and is meant for tests that run in their own child process (exit tests).
/// Release builds compile all of this out: the check in the wrappers is `#if DEBUG`.
enum FaultInjection {
    enum Scope: Sendable, Hashable {
        case currentThread
        case process
    }

    private struct Fault {
        var errno: Int32
        var remaining: Int
    }

    private struct Key: Hashable {
        var call: SystemCall
        var tid: Int32  // 0 for process-wide
    }

    private static let armedCount = Atomic<Int>(0)
    private static let table = Lock<[Key: Fault]>([:])

    /// Runs `body` with `call` failing `count` times with `errno`, then disarms whatever is left.
    static func with<R, E: Error>(
        _ call: SystemCall, errno: Int32, count: Int = 1, scope: Scope = .currentThread,
        _ body: () throws(E) -> R
    ) throws(E) -> R {
        let key = Key(call: call, tid: scope == .process ? 0 : cshims_gettid())
        table.withLock { $0[key] = Fault(errno: errno, remaining: count) }
        armedCount.add(1, ordering: .sequentiallyConsistent)
        defer {
            table.withLock { _ = $0.removeValue(forKey: key) }
            armedCount.subtract(1, ordering: .sequentiallyConsistent)
        }
        return try body()
    }

    /// The errno to fail `call` with now, if a fault is armed for it; consumes one use.
    static func take(_ call: SystemCall) -> Int32? {
        guard armedCount.load(ordering: .relaxed) > 0 else { return nil }
        let tid = cshims_gettid()
        return table.withLock { table -> Int32? in
            for key in [Key(call: call, tid: tid), Key(call: call, tid: 0)] {
                if var fault = table[key], fault.remaining > 0 {
                    fault.remaining -= 1
                    table[key] = fault
                    return fault.errno
                }
            }
            return nil
        }
    }
}
#endif

/// The errno a debug-build fault injection wants `call` to fail with, or nil. Always nil in
/// release builds, where it compiles to nothing.
@inline(__always)
func injectedFault(_ call: SystemCall) -> Int32? {
    #if DEBUG
    return FaultInjection.take(call)
    #else
    return nil
    #endif
}
