import CShims
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// `fork()` has one defined, enforced meaning (issue 12, part D).
@Suite("Fork")
struct ForkTests {
    @Test("children forked while threads spawn and join neither crash nor hang: the library refuses with a typed error",
          .disabled(if: Sanitizer.thread, "TSan does not support fork in a multithreaded process: its own runtime hangs the child"), .exitTest)
    func forkWhileChurning() async {
        await #expect(processExitsWith: .exitCode(0)) { forkWhileChurningBody() }
    }

    @Test("the library's paths in a forked child take no lock of the Swift runtime that a parent thread may hold",
          .disabled(if: Sanitizer.thread, "TSan does not support fork in a multithreaded process: its own runtime hangs the child"), .exitTest)
    func forkWhileRuntimeLocksAreHeld() async {
        await #expect(processExitsWith: .exitCode(0)) { forkWhileRuntimeLocksAreHeldBody() }
    }

    @Test("fork followed by exec keeps working")
    func forkThenExec() throws {
        let group = try ThreadGroup.current.makeChild(name: "exec-parent")
        try group.spawn(name: "busy") { token in _ = token.wait(timeout: .seconds(120)) }
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("true"), nil]
        let pid = fork()
        if pid == 0 {
            execv("/bin/true", argv)
            _exit(99)
        }
        let status = waitForChild(pid, timeout: .seconds(30))
        free(argv[0])
        #expect(status == 0)
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }
}

/// Threads spawn and join in a loop while the main thread forks 60 children. Each child uses the library the ways a program might after fork:
/// spawn (must throw forkedChild), shutdown of the root (returns at once, empty), the report's
/// summary, then `_exit` (exit() would flush stdio and run the test harness's atexit handlers,
/// whose locks a parent thread may have held at the fork: not ours).
func forkWhileChurningBody() {
    let churn = try! ThreadGroup.root.makeChild(name: "churn")
    for index in 0..<2 {
        try! churn.spawn(name: "spawner-\(index)") { token in
            while !token.isStopRequested {
                let group = try? ThreadGroup.current.makeChild(name: "inner")
                _ = try? group?.spawn(name: "short") { _ in }
                _ = group?.shutdown(timeout: .seconds(5))
            }
        }
    }
    let outcome = forkChildren(60)
    _ = churn.shutdown(timeout: .seconds(30))
    exit(outcome)
}

/// Makes the Swift runtime build `count` array types it has never seen ([T], [[T]], …, deeper on
/// every call), each through its metadata cache and that cache's lock.
func instantiateNewArrayTypes(count: Int) {
    for _ in 0..<count { nestedArrayType = wrapInArray(nestedArrayType) }
}
nonisolated(unsafe) private var nestedArrayType: any Any.Type = Int.self
private func wrapInArray<T>(_: T.Type) -> any Any.Type { [T].self }

/// A thread builds new generic types without pause, so the Swift runtime's metadata-cache lock
/// for arrays is often held when the main thread forks; nothing in this process has asked for a
/// report's summary yet, so each child is the first to reach that code. A child that needs the
/// runtime's lock there hangs forever (seen in CI: a child stuck in `ShutdownReport.total`).
func forkWhileRuntimeLocksAreHeldBody() {
    let group = try! ThreadGroup.root.makeChild(name: "runtime-locks")
    try! group.spawn(name: "metadata") { token in
        while !token.isStopRequested { instantiateNewArrayTypes(count: 100) }
    }
    let outcome = forkChildren(40)
    _ = group.shutdown(timeout: .seconds(30))
    exit(outcome)
}

/// Forks up to `count` children, one at a time, stopping at the first that fails; each uses the
/// library the ways a program might after fork and `_exit`s with what it found (0: as
/// documented). Returns ``forkOutcome(_:)`` of the first failure, or 0.
func forkChildren(_ count: Int) -> Int32 {
    // swift-testing hooks every throw to capture a backtrace, and the first capture at a call site
    // instantiates generic metadata under a Swift runtime lock (gdb on a hung child: the hook's
    // `Backtrace.current` waiting on the ContiguousArray metadata lock a parent thread held at the
    // fork). A program run without the test harness has no such hook. Throw the child's error
    // type once here, in the parent, so the hook's call sites are filled before any fork.
    do {
        _ = try ManagedThread.spawn(name: "") { _ in }
    } catch {
        precondition(error.code == .invalidArgument)
    }
    var outcome: Int32 = 0
    for _ in 0..<count where outcome == 0 {
        let pid = fork()
        if pid == 0 {
            var code: Int32 = 0
            do {
                _ = try ManagedThread.spawn(name: "in-child") { _ in }
                code = 2
            } catch {
                if error.code != .forkedChild || error.description.isEmpty { code = 3 }
            }
            let report = ThreadGroup.root.shutdown(timeout: .seconds(5))
            if report.total != 0 || report.joined != 0 || report.stuck != 0 || !report.isClean || report.description.isEmpty {
                code = 4
            }
            _exit(code)
        }
        outcome = forkOutcome(waitForChild(pid, timeout: .seconds(10)))
    }
    return outcome
}

/// An exit test's output is not shown, so its exit code says what went wrong with the first
/// child that failed: 0 all well, 20 hung (killed after the wait), 30 + the child's exit code,
/// 60 + the signal that ended it.
func forkOutcome(_ status: Int32?) -> Int32 {
    guard let status else { return 20 }
    if status & 0x7f == 0 { return status == 0 ? 0 : 30 + (status >> 8) & 0xff }
    return 60 + status & 0x7f
}
