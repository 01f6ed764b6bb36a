import Foundation
import Synchronization
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Reads a small text file under /proc, or nil.
func procText(_ path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return String(decoding: data, as: UTF8.self)
}

/// The kernel's name for one of our threads.
func kernelComm(_ tid: pid_t) -> String? {
    procText("/proc/self/task/\(tid)/comm")?.trimmingCharacters(in: .newlines)
}

/// Open descriptors of this process.
func openDescriptorCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// Whether a tid is still a thread of this process.
func taskExists(_ tid: pid_t) -> Bool {
    FileManager.default.fileExists(atPath: "/proc/self/task/\(tid)")
}

/// A pipe whose ends close on deinit.
final class Pipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32
    init() {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        readEnd = fds[0]
        writeEnd = fds[1]
    }
    deinit {
        close(readEnd)
        close(writeEnd)
    }
}

/// A gate a test opens to let a deliberately uncooperative body finish.
final class Gate: Sendable {
    private let open = Atomic<Bool>(false)
    func release() { open.store(true, ordering: .releasing) }
    var isOpen: Bool { open.load(ordering: .acquiring) }
    /// Spins politely until released; used by bodies that ignore their token on purpose.
    func waitOpen() { while !isOpen { usleep(500) } }
}

/// Counts events across threads.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.add(1, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// Signals its own deallocation, to prove a closure's captures were released.
final class DeinitProbe: Sendable {
    let released: Counter
    init(_ released: Counter) { self.released = released }
    deinit { released.increment() }
}

/// A value behind a lock, shareable by reference between test threads.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Lock<Value>
    init(_ value: Value) { mutex = Lock(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

/// Which sanitizer runtime this test binary was built with, found by its symbols (exit tests'
/// children are the same binary, so the answer holds there too).
enum Sanitizer {
    static let thread = dlsym(nil, "__tsan_init") != nil
    static let address = dlsym(nil, "__asan_init") != nil
    static var any: Bool { thread || address }
}

/// Runs a long synchronous test body on a managed thread of a child group and awaits it, then
/// shuts that group down, so the body does not hold one of the concurrency pool's threads (two
/// on a 2-core machine) while it runs. Tests that need the pool (task trackers, executors, async
/// joins) otherwise wait seconds for a thread under a sanitizer; a TSan run once took 21 s.
func offPool<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async throws -> T {
    let group = try ThreadGroup.current.makeChild(name: "off-pool")
    let value = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        do {
            try group.spawn(name: name) { _ in continuation.resume(returning: group.withCurrent(body)) }
        } catch {
            continuation.resume(throwing: error)
        }
    }
    let report = await group.shutdown(timeout: .seconds(30))
    #expect(report.isClean, "\(report)")
    return value
}

/// A test trait: the test (each case of it) runs while holding this module's exit-test gate, so
/// at most one exit test (`#expect(processExitsWith:)`) or stress scenario of the module runs at
/// a time.
///
/// Why, for exit tests: in swift-testing 6.3 the task awaiting an exit test blocks its
/// concurrency-pool thread in a read of the child's back channel until the child exits (seen with
/// gdb). Two long exit tests at once on a 2-core machine hold the whole pool, and every async test
/// (task trackers, executors, async shutdowns) waits for them: a TSan run once failed a
/// task-tracker test that waited 21 s for a pool thread. The gate keeps one pool thread free.
///
/// Why, for stress scenarios: their overshoot check subtracts the starvation a sleeping probe
/// thread sees, but a busy thread (the shutdown's) can be starved far longer by a foreign load
/// than a waking sleeper is. Beside an exit test's child with 10,000 threads, /proc showed the
/// shutdown's thread runnable and preempted for 1.5 s while the probe was 148 ms late. Until the
/// exit tests stopped blocking the pool, they had kept the scenarios from running beside them by
/// accident; this gate does it on purpose.
struct ExitTestGate: TestTrait, TestScoping {
    func scopeProvider(for test: Test, testCase: Test.Case?) -> ExitTestGate? {
        // Per test case (a parameterised exit test holds the gate once per case, not twice).
        testCase == nil ? nil : self
    }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await ExitTestQueue.shared.enter()
        do {
            try await function()
        } catch {
            await ExitTestQueue.shared.leave()
            throw error
        }
        await ExitTestQueue.shared.leave()
    }
}

extension Trait where Self == ExitTestGate {
    /// One exit test of this module at a time; see ``ExitTestGate``.
    static var exitTest: Self { Self() }
}

/// A FIFO of tests waiting for the exit-test gate.
actor ExitTestQueue {
    static let shared = ExitTestQueue()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()  // the gate passes straight to the next test
        }
    }
}
