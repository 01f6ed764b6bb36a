import Synchronization
#if canImport(Glibc)
import Glibc
#endif

#if MANAGED_THREADS_TSAN
/// The library's lock in ThreadSanitizer builds (`-Xswiftc -DMANAGED_THREADS_TSAN`): a
/// `pthread_mutex_t` with `Mutex`'s `withLock` shape.
///
/// `Synchronization.Mutex` takes its futex inside the prebuilt, uninstrumented Synchronization
/// library, so TSan sees no happens-before edge between a lock's holders and reports every access
/// to the data it guards as a race. pthread mutexes are intercepted by TSan, so with this lock the
/// sanitizer checks the real protocol: a race it reports is one.
final class Lock<Value>: @unchecked Sendable {
    // @unchecked: the value is only touched between pthread_mutex_lock and _unlock on `mutex`.
    // Both live at stable heap addresses of their own for the object's lifetime. The value is
    // not a stored property: TSan reports an inout access to a zero-sized stored property (a
    // `Lock<Void>`) as a write to the object's first word, racing every method call's read of it.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let storage: UnsafeMutablePointer<Value>

    init(_ value: Value) {
        storage = .allocate(capacity: 1)
        storage.initialize(to: value)
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        storage.deinitialize(count: 1)
        storage.deallocate()
    }

    func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&storage.pointee)
    }
}
#else
/// The library's lock: `Synchronization.Mutex`. ThreadSanitizer builds swap in a pthread mutex
/// that the sanitizer can see (see the `MANAGED_THREADS_TSAN` branch of this file).
typealias Lock<Value> = Mutex<Value>
#endif
