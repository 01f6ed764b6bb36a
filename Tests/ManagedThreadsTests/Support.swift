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
