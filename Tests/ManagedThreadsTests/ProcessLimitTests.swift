import Dispatch
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Tests that change or measure process-wide state (rlimits, descriptor and thread counts).
/// Each runs in its own child process (an exit test), so parallel tests cannot disturb the counts
/// and the lowered limit cannot leak into other tests. Serialized: two children of 10,000
/// threads each at once on two cores made one of them miss its bounds in CI.
@Suite("Process limits", .serialized, .managedThreads)
struct ProcessLimitTests {
    @Test("10,000 threads each running a ticker start and stop under a 1,024-descriptor limit",
          .disabled(if: Sanitizer.any, "10,000 threads under a sanitizer exceed its memory and time"), .exitTest)
    func tenThousandTickers() async {
        // The body is in ClockTickerTests.swift.
        await #expect(processExitsWith: .exitCode(0)) { exit(tenThousandTickersBody()) }
    }

    @Test(
        "10,000 idle managed threads start and stop under a 1,024-descriptor limit; descriptors and threads return to where they were",
        .disabled(if: Sanitizer.any, "sanitizer runtimes cap live threads (TSan at 8,128) and multiply per-thread memory"), .exitTest)
    func tenThousandThreadsUnderFDLimit() async {
        await #expect(processExitsWith: .success) { tenThousandIdleThreadsChild() }
    }

    @Test("a failed spawn (forced EAGAIN) leaves no thread and no descriptor behind", .exitTest)
    func failedSpawnLeavesNothing() async {
        await #expect(processExitsWith: .success) { failedSpawnChild() }
    }
}

/// A snapshot of the process's descriptors and threads, taken in a child process.
///
/// The exit-test harness itself opens descriptors lazily (libdispatch's epoll/eventfd/timerfd trio,
/// capture pipes), so the baseline is taken after warming Dispatch up, and a leak is judged by the
/// kinds of descriptor this library creates (eventfd, timerfd) that were not there before.
struct ProcessSnapshot {
    var descriptors: [String: String]  // fd number -> link target
    var tasks: Set<String>

    static func take() -> ProcessSnapshot {
        let fm = FileManager.default
        var descriptors: [String: String] = [:]
        for fd in (try? fm.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let target = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)") {
                descriptors[fd] = target
            }
        }
        let tasks = Set((try? fm.contentsOfDirectory(atPath: "/proc/self/task")) ?? [])
        return ProcessSnapshot(descriptors: descriptors, tasks: tasks)
    }

    static func warmUpHarness() {
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1)) { done.signal() }
        done.wait()
    }

    /// Library-kind descriptors present now that were not in `baseline`.
    func leakedDescriptors(since baseline: ProcessSnapshot) -> [String] {
        descriptors.filter { fd, target in
            baseline.descriptors[fd] != target && (target.contains("eventfd") || target.contains("timerfd"))
        }.map { "\($0.key)=\($0.value)" }
    }
}

func childFail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("child: \(message)\n".utf8))
    exit(1)
}

/// Runs in the child process of the exit test above; exits 0 on success.
private func tenThousandIdleThreadsChild() -> Never {
    var limit = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = 1024
    guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { childFail("setrlimit: \(errno)") }

    ProcessSnapshot.warmUpHarness()
    let before = ProcessSnapshot.take()
    var threads: [ManagedThread] = []
    threads.reserveCapacity(10_000)
    for i in 0..<10_000 {
        do {
            // The first 500 also open their token's descriptor (500 fit under the limit), to show
            // that those are closed when the threads end; the rest open none.
            let usesDescriptor = i < 500
            threads.append(try ManagedThread.spawn(name: "idle-\(i)", options: ThreadOptions(stackSize: 64 * 1024)) { token in
                if usesDescriptor { _ = try token.fileDescriptor }
                _ = token.wait(until: .now.advanced(by: .seconds(120)))
            })
        } catch {
            childFail("spawn \(i): \(error)")
        }
    }
    // Wait (bounded) until every thread runs and the 500 have their descriptors.
    let settle = ContinuousClock.now.advanced(by: .seconds(60))
    var running = ProcessSnapshot.take()
    while running.leakedDescriptors(since: before).count < 500 && ContinuousClock.now < settle {
        usleep(10_000)
        running = ProcessSnapshot.take()
    }
    guard running.tasks.count >= before.tasks.count + 10_000 else {
        childFail("only \(running.tasks.count - before.tasks.count) threads running")
    }
    let opened = running.leakedDescriptors(since: before).count
    guard opened == 500 else { childFail("expected 500 token descriptors, found \(opened)") }

    for thread in threads { thread.requestStop(reason: .shutdown) }
    let deadline = ContinuousClock.now.advanced(by: .seconds(120))
    var ourTIDs = Set<String>()
    for thread in threads {
        guard (try? thread.join(until: deadline)) == true else { childFail("\(thread.name) did not exit") }
        if let error = thread.error { childFail("\(thread.name) threw \(error)") }
        ourTIDs.insert(String(thread.tid!))
    }
    threads.removeAll()
    let after = ProcessSnapshot.take()
    let lingering = after.tasks.intersection(ourTIDs)
    guard lingering.isEmpty else { childFail("joined threads still in /proc/self/task: \(lingering.prefix(5))") }
    guard after.leakedDescriptors(since: before).isEmpty else {
        childFail("descriptors leaked: \(after.leakedDescriptors(since: before))")
    }
    exit(0)
}

/// Runs in the child process of the exit test above; exits 0 on success.
private func failedSpawnChild() -> Never {
    ProcessSnapshot.warmUpHarness()
    let before = ProcessSnapshot.take()
    for _ in 0..<100 {
        let failed = FaultInjection.with(.pthreadCreate, errno: EAGAIN) { () -> Bool in
            (try? ManagedThread.spawn(name: "refused") { token in _ = try token.fileDescriptor }) == nil
        }
        if !failed { childFail("spawn did not fail") }
    }
    let after = ProcessSnapshot.take()
    let newTasks = after.tasks.subtracting(before.tasks)
    // A failed spawn creates no thread; any new task would have to be the harness's, which shows
    // up by name — ours would be called "refused".
    let ours = newTasks.filter { (try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8))?.hasPrefix("refused") == true }
    guard ours.isEmpty else { childFail("threads left: \(ours)") }
    guard after.leakedDescriptors(since: before).isEmpty else { childFail("descriptors leaked: \(after.leakedDescriptors(since: before))") }
    exit(0)
}
