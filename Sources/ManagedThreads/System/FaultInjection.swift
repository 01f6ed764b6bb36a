#if DEBUG
import CShims
import Synchronization

/// Debug-build-only hook that makes a System-layer wrapper fail with a chosen errno, so tests can
/// reach error paths the kernel will not produce on demand (`EAGAIN` from `pthread_create`,
/// `EMFILE` from `eventfd`, …).
///
/// A forced errno takes the same path through the wrapper as a real one would (EINTR retried
/// where the call is restartable, EBADF/EFAULT trapped as bugs, the rest thrown), so a test of a
/// forced failure tests the real error handling.
///
/// Faults are scoped: a `.currentThread` fault only hits calls made on the thread that armed it, so
/// tests running in parallel in one process do not trip over each other's faults.
/// `.currentThreadAndSpawned` also hits the managed threads that thread spawns while the fault is
/// armed (and the threads they spawn), for calls made on the new thread (`pthread_setname_np`, a
/// body's own `eventfd`). `.process` hits any thread and is meant for tests that run in their own
/// child process (exit tests).
///
/// ``recording(_:)`` keeps a ledger of the descriptors the System layer opens and closes on the
/// recording thread and the threads it spawns, so a test can show that a failure leaked none
/// even while other tests open and close descriptors in the same process.
///
/// Release builds compile all of this out: the checks in the wrappers are `#if DEBUG`.
enum FaultInjection {
    enum Scope: Sendable, Hashable {
        case currentThread
        case currentThreadAndSpawned
        case process
    }

    private struct Fault {
        var errno: Int32
        var remaining: Int
        var fired = 0
    }

    private struct Key: Hashable {
        var call: SystemCall
        /// The arming thread's tid; 0 for process-wide.
        var owner: Int32
        /// Whether threads spawned from the owner's context are hit too.
        var reachesSpawned: Bool
    }

    /// Descriptors opened and closed through the System layer, in order.
    struct Ledger: Sendable {
        enum Event: Sendable, Hashable {
            case opened(Int32, SystemCall)
            case closed(Int32)
        }

        private(set) var events: [Event] = []

        mutating func append(_ event: Event) { events.append(event) }

        /// Descriptors opened while recording and not closed since (a leak, once the recorded code
        /// has finished and its threads are joined).
        var openDescriptors: [Int32] {
            var open: [Int32] = []
            for event in events {
                switch event {
                case .opened(let fd, _): open.append(fd)
                case .closed(let fd): open.removeAll { $0 == fd }
                }
            }
            return open
        }

        /// How many descriptors were opened while recording.
        var openedCount: Int {
            events.filter { if case .opened = $0 { return true } else { return false } }.count
        }
    }

    private struct State {
        var faults: [Key: Fault] = [:]
        /// Managed threads started from an armed or recording context -> the tid whose context
        /// they inherit (the thread that armed or records, however deep the spawning went).
        var inherited: [Int32: Int32] = [:]
        var ledgers: [Int32: Ledger] = [:]
    }

    /// Armed faults: when 0, ``take(_:)`` (called on every System call) returns at once.
    private static let armed = Atomic<Int>(0)
    /// Running recordings: when 0, ``record(_:)`` returns at once. Kept apart from `armed`, so a
    /// recording does not make every System call of every thread take the lock.
    private static let recordings = Atomic<Int>(0)
    private static let state = Lock<State>(State())

    /// Runs `body` with `call` failing `count` times with `errno`, then disarms whatever is left.
    static func with<R, E: Error>(
        _ call: SystemCall, errno: Int32, count: Int = 1, scope: Scope = .currentThread,
        _ body: () throws(E) -> R
    ) throws(E) -> R {
        try counting(call, errno: errno, count: count, scope: scope, body).value
    }

    /// Like ``with(_:errno:count:scope:_:)``, and says how many times the fault fired, so a test
    /// can tell a handled failure from a call that was never reached.
    static func counting<R, E: Error>(
        _ call: SystemCall, errno: Int32, count: Int = 1, scope: Scope = .currentThread,
        _ body: () throws(E) -> R
    ) throws(E) -> (value: R, fired: Int) {
        let key = arm(call, errno: errno, count: count, scope: scope)
        let value: R
        do {
            value = try body()
        } catch {
            _ = disarm(key)
            throw error
        }
        return (value, disarm(key))
    }

    /// Async form of ``counting(_:errno:count:scope:_:)``, for `.process` faults in exit tests
    /// (an async body may resume on another thread, so a thread-scoped fault would miss it).
    static func counting<R>(
        _ call: SystemCall, errno: Int32, count: Int = 1, scope: Scope, _ body: () async throws -> R
    ) async rethrows -> (value: R, fired: Int) {
        let key = arm(call, errno: errno, count: count, scope: scope)
        let value: R
        do {
            value = try await body()
        } catch {
            _ = disarm(key)
            throw error
        }
        return (value, disarm(key))
    }

    private static func arm(_ call: SystemCall, errno: Int32, count: Int, scope: Scope) -> Key {
        let key = Key(call: call, owner: scope == .process ? 0 : cshims_gettid(), reachesSpawned: scope == .currentThreadAndSpawned)
        state.withLock { $0.faults[key] = Fault(errno: errno, remaining: count) }
        armed.add(1, ordering: .sequentiallyConsistent)
        return key
    }

    /// Removes the fault (if still there) and returns how often it fired.
    private static func disarm(_ key: Key) -> Int {
        guard let fault = state.withLock({ $0.faults.removeValue(forKey: key) }) else { return 0 }
        armed.subtract(1, ordering: .sequentiallyConsistent)
        return fault.fired
    }

    /// Uses left of the fault armed on this thread for `call` (0 when none or used up).
    static func remaining(_ call: SystemCall) -> Int {
        let tid = cshims_gettid()
        return state.withLock { state in
            [false, true].compactMap { state.faults[Key(call: call, owner: tid, reachesSpawned: $0)]?.remaining }.max() ?? 0
        }
    }

    /// The errno to fail `call` with now, if a fault is armed for it; consumes one use.
    static func take(_ call: SystemCall) -> Int32? {
        guard armed.load(ordering: .relaxed) > 0 else { return nil }
        let tid = cshims_gettid()
        return state.withLock { state -> Int32? in
            var keys = [
                Key(call: call, owner: tid, reachesSpawned: false),
                Key(call: call, owner: tid, reachesSpawned: true),
            ]
            if let owner = state.inherited[tid] {
                keys.append(Key(call: call, owner: owner, reachesSpawned: true))
            }
            keys.append(Key(call: call, owner: 0, reachesSpawned: false))
            for key in keys {
                if var fault = state.faults[key], fault.remaining > 0 {
                    fault.remaining -= 1
                    fault.fired += 1
                    state.faults[key] = fault
                    return fault.errno
                }
            }
            return nil
        }
    }

    // MARK: Spawned threads

    /// On the spawning thread: the context a new managed thread inherits (0 for none). Only a
    /// context that has a fault reaching spawned threads armed, or a recording running, is passed
    /// on — and only now: a thread spawned earlier, even one that has not started yet (an async
    /// shutdown's joining thread spawned from a pool thread that then runs another test), must not
    /// take a fault armed later on the same thread.
    static func contextForNewThread() -> Int32 {
        guard armed.load(ordering: .relaxed) > 0 || recordings.load(ordering: .relaxed) > 0 else { return 0 }
        let tid = cshims_gettid()
        return state.withLock { state in
            let owner = state.inherited[tid] ?? tid
            let reaches = state.ledgers[owner] != nil || state.faults.keys.contains { $0.owner == owner && $0.reachesSpawned }
            return reaches ? owner : 0
        }
    }

    /// On the new thread, before anything else: take on `context` (from ``contextForNewThread()``).
    static func enterThread(context: Int32) {
        guard context != 0 else { return }
        let tid = cshims_gettid()
        state.withLock { $0.inherited[tid] = context }
    }

    /// On the new thread, as the last thing it does.
    static func leaveThread(context: Int32) {
        guard context != 0 else { return }
        let tid = cshims_gettid()
        _ = state.withLock { $0.inherited.removeValue(forKey: tid) }
    }

    // MARK: Ledger

    /// Runs `body` and returns, with its value, the descriptors the System layer opened and closed
    /// meanwhile on this thread and on managed threads spawned from it. Join those threads inside
    /// `body`: what they close after it returns is not recorded.
    static func recording<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> (value: R, ledger: Ledger) {
        let tid = cshims_gettid()
        state.withLock { $0.ledgers[tid] = Ledger() }
        recordings.add(1, ordering: .sequentiallyConsistent)
        func finish() -> Ledger {
            let ledger = state.withLock { $0.ledgers.removeValue(forKey: tid) } ?? Ledger()
            recordings.subtract(1, ordering: .sequentiallyConsistent)
            return ledger
        }
        let value: R
        do {
            value = try body()
        } catch {
            _ = finish()
            throw error
        }
        return (value, finish())
    }

    static func record(_ event: Ledger.Event) {
        guard recordings.load(ordering: .relaxed) > 0 else { return }
        let tid = cshims_gettid()
        state.withLock { state in
            let owner = state.ledgers[tid] != nil ? tid : state.inherited[tid]
            guard let owner, state.ledgers[owner] != nil else { return }
            state.ledgers[owner]!.append(event)
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

/// Debug builds: tells a recording ledger that the System layer opened `fd` with `call`.
@inline(__always)
func noteDescriptorOpened(_ fd: Int32, by call: SystemCall) {
    #if DEBUG
    FaultInjection.record(.opened(fd, call))
    #endif
}

/// Debug builds: tells a recording ledger that the System layer is about to close `fd`.
@inline(__always)
func noteDescriptorClosing(_ fd: Int32) {
    #if DEBUG
    FaultInjection.record(.closed(fd))
    #endif
}
