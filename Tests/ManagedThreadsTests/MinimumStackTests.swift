import Foundation
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

// The documented minimum stack works in a cold process (issue 12, part F). A thread's deepest
// library path is its end after a throw: the log line describes the error, and describing an
// arbitrary error walks the Swift runtime's reflection, whose type lookups are deep the first
// time in a process. So every check runs in a fresh child process (an exit test), where nothing
// has warmed those caches.
//
// To measure what a build needs (the figures behind ThreadOptions.minimumStackSize):
//     STACK_PROBE=pooled:45056,49152 swift test --filter MinimumStack
// prints, per size, whether a fresh process survived the heaviest path with that stack.

@Suite("Minimum stack")
struct MinimumStackTests {
    @Test("a thread on the minimum stack survives its heaviest library path in a cold process",
          .exitTest,
          arguments: [ThreadOptions.StackAllocation.pooled, .system])
    func minimumInColdProcess(allocation: ThreadOptions.StackAllocation) async {
        let pooled = allocation == .pooled
        await #expect(processExitsWith: .exitCode(0)) { [pooled = pooled as Bool] in
            exit(heaviestPath(stackSize: ThreadOptions.minimumStackSize, pooled: pooled))
        }
    }

    @Test("a stack below the minimum is refused with a typed error, never started")
    func belowMinimumRefused() {
        for size in [0, 4096, ThreadOptions.minimumStackSize - 1] {
            #expect(throws: ThreadError.self) {
                _ = try ManagedThread.spawn(name: "too-small", options: ThreadOptions(stackSize: size)) { _ in }
            }
        }
    }

    #if DEBUG
    @Test("measure: the sizes in STACK_PROBE, each in a fresh process",
          .enabled(if: ProcessInfo.processInfo.environment["STACK_PROBE"] != nil), .exitTest)
    func probe() async {
        let spec = ProcessInfo.processInfo.environment["STACK_PROBE"] ?? ""
        let parts = spec.split(separator: ":")
        let pooled = parts.first != "system"
        let sizes = parts.dropFirst().first?.split(separator: ",").compactMap { Int($0) } ?? []
        for size in sizes {
            // A size that fails records an issue: that is the measurement, not a regression.
            let result = await #expect(processExitsWith: .exitCode(0)) { [size = size as Int, pooled = pooled as Bool] in
                ManagedThread.measurementStackFloor.store(4096, ordering: .relaxed)
                exit(heaviestPath(stackSize: size, pooled: pooled))
            }
            print("stack probe: \(pooled ? "pooled" : "system") \(size) bytes: \(result == nil ? "failed" : "ok")")
        }
    }
    #endif
}

private struct BodyFailure: Error {}

/// In a group: a thread registers an onStop callback, waits for its stop, is stopped by the
/// group's shutdown and throws (so its end logs and describes the error); then a plain thread
/// with the same stack returns at once; then one outlives its group's shutdown, so its end makes
/// the group leave its parent. Exit code 0 when all of it ran.
private func heaviestPath(stackSize: Int, pooled: Bool) -> Int32 {
    let options = ThreadOptions(stackSize: stackSize, stackAllocation: pooled ? .pooled : .system)
    do {
        let group = try ThreadGroup.root.makeChild(name: "minimum-stack")
        try group.spawn(name: "thrower", options: options) { token in
            let callback = token.onStop { _ = 1 }
            _ = token.wait(timeout: .seconds(30))
            callback.cancel()
            throw BodyFailure()
        }
        let report = group.shutdown(timeout: .seconds(30))
        guard report.isClean, report.joined == 1, report.failed == 1 else { return 2 }
        let plain = try ManagedThread.spawn(name: "plain", options: options) { _ in }
        guard try plain.join(timeout: .seconds(30)) else { return 3 }
        // A thread that outlives its group's shutdown: as it ends, on its own stack, the group
        // leaves its parent (the report refresh and the departure run there).
        let parent = try ThreadGroup.root.makeChild(name: "minimum-stack-parent")
        let scope = try parent.makeChild(name: "scope")
        let release = Gate()
        let late = try scope.spawn(name: "late", options: options) { _ in release.waitOpen() }
        guard !scope.shutdown(timeout: .milliseconds(1)).isClean else { return 5 }
        release.release()
        guard try late.join(timeout: .seconds(30)), childCount(parent) == 0 else { return 6 }
        return 0
    } catch {
        return 4
    }
}
