// Plain pthreads straight from Glibc, as a careful C programmer would use them: the raw baseline
// and the CPU hogs. No CShims here: that target is the library's private business.
import CBench
import Glibc
import Synchronization

/// The start routine type `pthread_create` takes.
typealias PThreadStart = @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?

/// `pthread_create` / `pthread_join` with the benchmark's error handling.
enum RawPThread {
    /// Starts a joinable thread running `start(arg)`.
    /// - Parameter stackSize: nil takes glibc's default (no attribute object at all, as the
    ///   simplest C code would); otherwise `pthread_attr_setstacksize`.
    static func create(stackSize: Int?, start: PThreadStart, arg: UnsafeMutableRawPointer?) throws -> pthread_t {
        var handle = pthread_t()
        let rc: Int32
        if let stackSize {
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            defer { pthread_attr_destroy(&attr) }
            let set = pthread_attr_setstacksize(&attr, stackSize)
            guard set == 0 else { throw BenchError.system("pthread_attr_setstacksize(\(stackSize))", set) }
            rc = pthread_create(&handle, &attr, start, arg)
        } else {
            rc = pthread_create(&handle, nil, start, arg)
        }
        guard rc == 0 else { throw BenchError.system("pthread_create", rc) }
        return handle
    }

    /// Waits for `thread` without a deadline (`pthread_join`).
    static func join(_ thread: pthread_t) {
        let rc = pthread_join(thread, nil)
        precondition(rc == 0, "pthread_join failed: \(rc)")
    }

    /// Joins `thread` unless `deadline` (CLOCK_REALTIME) passes first (`pthread_timedjoin_np`).
    /// - Returns: true if joined.
    static func join(_ thread: pthread_t, realtimeDeadline deadline: timespec) -> Bool {
        var deadline = deadline
        let rc = cbench_timedjoin(thread, &deadline)
        precondition(rc == 0 || rc == ETIMEDOUT, "pthread_timedjoin_np failed: \(rc)")
        return rc == 0
    }

    /// CLOCK_REALTIME now plus `offset`, as `pthread_timedjoin_np` wants it.
    static func realtimeDeadline(after offset: Duration) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let total = Int64(now.tv_nsec) + offset.nanoseconds
        return timespec(tv_sec: now.tv_sec + Int(total / 1_000_000_000), tv_nsec: Int(total % 1_000_000_000))
    }
}

/// Background load: `count` plain pthreads spinning on the CPU until stopped. They are outside the
/// measured set; `stop()` (or deinit) ends and joins them.
final class CPUHogs {
    private final class Flag: Sendable {
        let stop = Atomic<Bool>(false)
    }

    private let flag = Flag()
    private var handles: [pthread_t] = []

    /// Starts `count` hogs.
    init(count: Int) throws {
        do {
            for _ in 0..<count {
                handles.append(try RawPThread.create(
                    stackSize: nil, start: hogMain, arg: Unmanaged.passUnretained(flag).toOpaque()))
            }
        } catch {
            stop()
            throw error
        }
    }

    /// Stops and joins every hog. Idempotent.
    func stop() {
        flag.stop.store(true, ordering: .relaxed)
        handles.forEach(RawPThread.join)
        handles.removeAll()
    }

    deinit { stop() }

    /// A hog's body: spin until the flag is set.
    fileprivate static func spin(_ context: UnsafeMutableRawPointer) {
        let flag = Unmanaged<Flag>.fromOpaque(context).takeUnretainedValue()
        var x: UInt64 = 1
        while !flag.stop.load(ordering: .relaxed) {
            x = x &* 6_364_136_223_846_793_005 &+ 1
        }
        blackHole(x)
    }
}

private func hogMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    CPUHogs.spin(context!)
    return nil
}
