// Small building blocks shared by every system under test: errors, time, descriptors, waiting
// and a calibrated unit of CPU work. Nothing here is timed on its own.
import CBench
import Glibc
import Synchronization

/// A failure of the benchmark itself (setup, a system call, a thread that did not stop in time).
struct BenchError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }

    /// A failed C call; `code` is the errno or the pthread error code.
    static func system(_ call: String, _ code: Int32) -> BenchError {
        BenchError("\(call) failed: \(String(cString: strerror(code))) (errno \(code))")
    }
}

/// How long any setup wait or join may take before the benchmark gives up on it. Generous: a
/// 10,000-thread CPU workload on two cores needs seconds just to schedule every thread once.
let setupTimeout = Duration.seconds(300)

extension Duration {
    /// The duration in whole nanoseconds.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

extension ContinuousClock.Instant {
    /// Nanoseconds from this instant to now (never negative).
    var nanosecondsSince: Int64 { max(0, duration(to: .now).nanoseconds) }

    /// Far enough ahead to mean "no timeout" for a wait in a body.
    static var farFuture: ContinuousClock.Instant { .now.advanced(by: .seconds(86_400)) }
}

/// An eventfd: the raw-pthread baseline's shared stop signal, and the `cpu` barrier.
final class EventFD: Sendable {
    let fd: Int32

    init() throws {
        let fd = eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
        guard fd >= 0 else { throw BenchError.system("eventfd", errno) }
        self.fd = fd
    }

    /// Makes the descriptor readable for every poller (a full counter already is).
    func signal() {
        var one: UInt64 = 1
        while write(fd, &one, 8) < 0 && errno == EINTR {}
    }

    /// Resets the counter so the descriptor is no longer readable.
    func drain() {
        var value: UInt64 = 0
        while read(fd, &value, 8) < 0 && errno == EINTR {}
    }

    deinit { close(fd) }
}

/// One empty pipe per thread for the `io` workload. The write ends stay open, so the read ends
/// never become readable: a thread polling one blocks until something else wakes it.
final class PipeSet: Sendable {
    private let readEnds: [Int32]
    private let writeEnds: [Int32]

    init(count: Int) throws {
        var reads: [Int32] = []
        var writes: [Int32] = []
        reads.reserveCapacity(count)
        writes.reserveCapacity(count)
        for _ in 0..<count {
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else {
                let code = errno
                (reads + writes).forEach { close($0) }
                throw BenchError.system("pipe", code)
            }
            reads.append(ends[0])
            writes.append(ends[1])
        }
        readEnds = reads
        writeEnds = writes
    }

    /// The read end of thread `index`'s pipe.
    func readEnd(_ index: Int) -> Int32 { readEnds[index] }

    deinit {
        for fd in readEnds { close(fd) }
        for fd in writeEnds { close(fd) }
    }
}

/// Blocking `poll` loops as the bodies use them.
enum Poller {
    /// Blocks until `fd` is readable or `timeoutMilliseconds` pass (-1: no timeout).
    /// - Returns: true if `fd` is readable.
    @discardableResult
    static func readable(_ fd: Int32, timeoutMilliseconds: Int32 = -1) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let n = poll(&entry, 1, timeoutMilliseconds)
            if n < 0 && errno == EINTR { continue }
            precondition(n >= 0, "poll failed: errno \(errno)")
            return n > 0 && entry.revents != 0
        }
    }

    /// Blocks in one `poll` on `busy` (a descriptor that never fires, like an empty pipe) and
    /// `stop`, until `stop` is readable.
    static func untilReadable(_ stop: Int32, alongside busy: Int32) {
        var entries = (
            pollfd(fd: busy, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stop, events: Int16(POLLIN), revents: 0))
        while true {
            let n = withUnsafeMutableBytes(of: &entries) { raw in
                poll(raw.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, -1)
            }
            if n < 0 && errno == EINTR { continue }
            precondition(n >= 0, "poll failed: errno \(errno)")
            if entries.1.revents != 0 { return }
            precondition(entries.0.revents == 0 || entries.0.revents == Int16(POLLIN),
                         "the io workload's pipe failed: revents \(entries.0.revents)")
        }
    }
}

/// Polls `condition` every `interval` (sleeping in between) until it holds or `timeout` passes.
/// For setup and teardown only: never inside a timed section.
func waitUntil(
    _ what: @autoclosure () -> String, timeout: Duration = setupTimeout,
    interval: Duration = .microseconds(200), _ condition: () -> Bool
) throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while !condition() {
        if ContinuousClock.now >= deadline { throw BenchError("timed out after \(timeout) waiting for \(what())") }
        var pause = timespec(tv_sec: 0, tv_nsec: Int(interval.nanoseconds))
        _ = nanosleep(&pause, nil)
    }
}

/// Busy-waits (yielding the CPU) until `value` returns non-nil; for the short waits inside timed
/// operations, where a sleep would add its own latency.
func spinUntil<T>(_ what: @autoclosure () -> String, timeout: Duration = setupTimeout, _ value: () -> T?) throws -> T {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    var spins = 0
    while true {
        if let result = value() { return result }
        spins += 1
        if spins & 1023 == 0, ContinuousClock.now >= deadline {
            throw BenchError("timed out after \(timeout) waiting for \(what())")
        }
        sched_yield()
    }
}

/// About a microsecond of CPU work, calibrated once at start-up: the grain of the `cpu` workload
/// (a body checks its stop flag between units) and what a `tick` does each period.
struct WorkUnit: Sendable {
    let iterations: Int

    /// Runs one unit, chained on `seed` so the optimiser cannot drop it.
    @inline(never)
    func run(_ seed: UInt64) -> UInt64 {
        var x = seed | 1
        for _ in 0..<iterations {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        }
        return x
    }

    /// A unit that takes about `target` on this machine.
    static func calibrated(target: Duration = .microseconds(1)) -> WorkUnit {
        let probe = WorkUnit(iterations: 2_000_000)
        var best = Int64.max
        var sink: UInt64 = 0
        for _ in 0..<3 {
            let start = ContinuousClock.now
            sink &+= probe.run(sink)
            best = min(best, start.nanosecondsSince)
        }
        blackHole(sink)
        let perIteration = Double(max(best, 1)) / Double(probe.iterations)
        return WorkUnit(iterations: max(1, Int(Double(target.nanoseconds) / perIteration)))
    }
}

/// Keeps a computed value alive so the work producing it is not optimised away.
let blackHoleSink = Atomic<UInt64>(0)

@inline(never)
func blackHole(_ value: UInt64) {
    blackHoleSink.store(value, ordering: .relaxed)
}

/// The calling thread's scheduling priority (its nice value; Linux keeps one per thread).
struct ThreadPriority {
    private let tid: id_t
    private let original: Int32

    /// Raises the calling thread to nice -20. Returns nil where that is not permitted (no
    /// CAP_SYS_NICE); the run is then just slower.
    static func raise() -> ThreadPriority? {
        let tid = id_t(cbench_gettid())
        errno = 0
        let original = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid)
        guard errno == 0 else { return nil }
        guard setpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid, -20) == 0 else { return nil }
        return ThreadPriority(tid: tid, original: original)
    }

    /// Puts the thread back at the priority it had.
    func restore() {
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid, original)
    }
}
