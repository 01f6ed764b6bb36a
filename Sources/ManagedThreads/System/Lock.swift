#if canImport(Glibc)
import Glibc
#endif

/// The library's lock: a normal (non-priority-inheritance) `pthread_mutex_t` next to the value it
/// guards, in one heap object, with `Mutex`'s `withLock` shape.
///
/// Why not `Synchronization.Mutex`: on Linux it is a priority-inheritance futex
/// (`FUTEX_LOCK_PI`). Its unlock hands the lock to the first waiter, which may not be running
/// yet; under CPU load every hand-off then waits for the scheduler, and a lock that thousands of
/// ending threads take in turn becomes a convoy (a 10,000-thread shutdown with two CPU hogs took
/// seconds, most threads sleeping in `rt_mutex_schedule`). glibc's normal mutex unlocks by
/// clearing the word and waking one waiter, who competes again: whichever thread is running
/// takes the lock, and nobody waits for a descheduled heir.
///
/// ThreadSanitizer intercepts pthread mutexes, so it sees the real happens-before edges of every
/// lock (it cannot see inside `Mutex`, whose futex lives in an uninstrumented library).
///
/// A `Lock` is a handle: copies share the one lock. The value is only touched between
/// `pthread_mutex_lock` and `pthread_mutex_unlock`, which is what makes it `Sendable`.
struct Lock<Value>: @unchecked Sendable {
    private let buffer: LockBuffer<Value>

    init(_ value: Value) {
        buffer = LockBuffer<Value>.make(value)
    }

    func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        try buffer.withUnsafeMutablePointers { (slot, mutex) throws(E) -> Result in
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return try body(&slot.pointee.value)
        }
    }
}

/// The value's slot (header) and the mutex (the single tail element) in one allocation, at an
/// address that never moves, as a pthread mutex requires.
final class LockBuffer<Value>: ManagedBuffer<LockSlot<Value>, pthread_mutex_t> {
    static func make(_ value: Value) -> LockBuffer<Value> {
        let buffer = unsafeDowncast(create(minimumCapacity: 1) { _ in LockSlot(value: value) }, to: LockBuffer<Value>.self)
        buffer.withUnsafeMutablePointerToElements { mutex in
            mutex.initialize(to: pthread_mutex_t())
            pthread_mutex_init(mutex, nil)
        }
        return buffer
    }

    // The header (the value) is destroyed by ManagedBuffer itself; the mutex is trivial memory.
    deinit {
        withUnsafeMutablePointerToElements { mutex in _ = pthread_mutex_destroy(mutex) }
    }
}

/// The guarded value, never zero-sized: ThreadSanitizer reports an inout access to a zero-sized
/// value (a `Lock<Void>`) at the object's first word, where it races every unlocked read of the
/// object's header, a false report. One byte more keeps the access where the value is.
struct LockSlot<Value> {
    var value: Value
    private var nonEmpty: UInt8 = 0

    init(value: Value) { self.value = value }
}
