import Foundation
import ManagedThreadsTesting
import Synchronization
import Testing
@testable import ManagedThreads

/// A one-shot latch a task awaits without looking at cancellation, opened by the test.
final class Latch: Sendable {
    private let state = Lock<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    /// Suspends until ``open()``; ignores cancellation on purpose.
    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var waiting: Int { state.withLock { $0.waiters.count } }
}

@Suite("TaskTracker", .managedThreads)
struct TaskTrackerTests {
    @Test("the group's shutdown cancels the tracked tasks and waits for them: a clean report")
    func cancelledAndAwaited() async throws {
        let group = try ThreadGroup.current.makeChild(name: "service")
        let tasks = try group.makeTaskTracker(name: "tasks")
        let running = Counter()
        let sawCancellation = Counter()
        for i in 0..<5 {
            try tasks.spawn(name: "poller-\(i)") {
                running.increment()
                // Task.sleep ends early, throwing, when the task is cancelled. An hour: a clean
                // report under the shutdown's 60 s deadline can only come from cancellation.
                try? await Task.sleep(for: .seconds(3600))
                if Task.isCancelled { sawCancellation.increment() }
            }
        }
        try await waitFor("all five tasks running") { running.count == 5 }
        #expect(tasks.count == 5)
        #expect(tasks.runningTaskNames == (0..<5).map { "poller-\($0)" })

        // The cancelled tasks need a concurrency-pool thread to end; under a sanitizer with other
        // suites busy that can take seconds, hence the generous deadline.
        let report = await group.shutdown(timeout: .seconds(60))
        #expect(report.isClean, "waited for sleeping tasks instead of cancelling them: \(report)")
        #expect(sawCancellation.count == 5)
        #expect(tasks.count == 0)
        let node = try #require(report.root.children.first { $0.name == "tasks" })
        #expect(node.path == "\(group.path)/tasks")
        #expect(node.componentFinished == true)
        #expect(node.joined == 5)
    }

    @Test("a task that ignores cancellation is reported stuck by name, as a task, and the shutdown returns by its deadline")
    func stuckTaskReported() async throws {
        let group = try ThreadGroup.current.makeChild(name: "stubborn-service")
        let tasks = try group.makeTaskTracker(name: "tasks")
        let latch = Latch()
        let stubborn = try tasks.spawn(name: "stubborn-sync") { await latch.wait() }
        try tasks.spawn(name: "polite") { try? await Task.sleep(for: .seconds(120)) }
        try await waitFor("the stubborn task to wait on its latch") { latch.waiting == 1 }

        let report = await group.shutdown(timeout: .milliseconds(500))
        // The report's own duration: the wall time around the await also counts how long this
        // test waited for a pool thread to resume on, which is not the shutdown's doing.
        #expect(report.duration < .seconds(5), "took \(report.duration) for a 500 ms deadline")
        // The polite task needs a concurrency-pool thread to finish its cancelled sleep; with
        // other suites blocking the pool's threads (two, on two cores) it may not get one by the
        // deadline, so only the stubborn task's outcome is certain.
        let names = report.stuckThreads.map(\.name)
        #expect(names.contains("stubborn-sync") && names.allSatisfy { ["stubborn-sync", "polite"].contains($0) }, "\(report)")
        let entry = try #require(report.stuckThreads.first { $0.name == "stubborn-sync" })
        #expect(entry.kind == .task)
        #expect(entry.tid == nil)
        #expect(entry.kernel == nil)
        #expect(entry.groupPath == "\(group.path)/tasks")
        #expect((entry.sinceStop ?? .zero) > .zero)
        #expect(report.description.contains("stuck task \"stubborn-sync\": cancelled"), "\(report)")
        let node = try #require(report.root.children.first { $0.name == "tasks" })
        #expect(node.componentFinished == false)
        #expect(node.joined + node.entries.count == 2)
        try await waitFor("the polite task to finish") { tasks.runningTaskNames == ["stubborn-sync"] }

        // Let it finish, so nothing outlives the test.
        latch.open()
        await stubborn.value
        try await waitFor { tasks.count == 0 }
    }

    @Test("spawning after the stop throws groupStopped and starts nothing")
    func spawnAfterStop() async throws {
        let group = try ThreadGroup.current.makeChild(name: "stopped")
        let tasks = try group.makeTaskTracker(name: "tasks")
        group.requestStop(reason: .shutdown)
        #expect(tasks.isStopRequested)
        let ran = Counter()
        #expect {
            try tasks.spawn(name: "late") { ran.increment() }
        } throws: { error in
            let error = error as? ThreadError
            return error?.code == .groupStopped && error?.message.contains("late") == true
        }
        #expect { try group.makeTaskTracker(name: "another") } throws: { ($0 as? ThreadError)?.code == .groupStopped }
        #expect(await group.shutdown(timeout: .seconds(30)).isClean)
        #expect(ran.count == 0)
    }

    @Test("finished tasks leave the tracker; a tracker made with init and adopted works the same")
    func finishedTasksLeave() async throws {
        let group = try ThreadGroup.current.makeChild(name: "churn")
        let tasks = try TaskTracker(name: "adopted")
        try group.adopt(tasks)
        let done = Counter()
        var handles: [Task<Void, Never>] = []
        for i in 0..<200 {
            handles.append(try tasks.spawn(name: "short-\(i)", priority: .low) { done.increment() })
        }
        for handle in handles { await handle.value }
        #expect(done.count == 200)
        try await waitFor("every finished task to leave") { tasks.count == 0 }
        let report = await group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(report.root.children.first { $0.name == "adopted" }?.joined == 0, "nothing was running at the stop")
    }

    @Test("tasks run on their operation's isolation and inherit task-locals")
    func isolationAndTaskLocals() async throws {
        let group = try ThreadGroup.current.makeChild(name: "isolation")
        let tasks = try group.makeTaskTracker(name: "tasks")
        let seen = Locked<[String]>([])
        let task = try tasks.spawn(name: "on-main") { @MainActor in
            MainActor.assertIsolated()
            seen.withLock { $0.append("main actor; current group \(ThreadGroup.current.path)") }
        }
        await task.value
        #expect(seen.value == ["main actor; current group \(ThreadGroup.current.path)"])
        #expect(await group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("bad names are refused")
    func badNames() throws {
        let group = try ThreadGroup.current.makeChild(name: "names")
        #expect { try TaskTracker(name: "") } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
        #expect { try group.makeTaskTracker(name: "a/b") } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
        let tasks = try group.makeTaskTracker(name: "tasks")
        #expect { try tasks.spawn(name: "") {} } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("a report with a task entry round-trips through JSON; an entry without a kind decodes as a thread")
    func reportJSON() throws {
        let entry = ShutdownReport.ThreadEntry(
            name: "fetch", groupPath: "root/svc/tasks", purpose: nil, tid: nil, status: .stuck, acknowledged: false,
            sinceStopNanoseconds: 1_000_000, error: nil, kernel: nil, kind: .task)
        let data = try JSONEncoder().encode(entry)
        #expect(String(decoding: data, as: UTF8.self).contains("\"kind\":\"task\""))
        #expect(try JSONDecoder().decode(ShutdownReport.ThreadEntry.self, from: data) == entry)
        let old = #"{"name":"w","groupPath":"root","status":"stuck","acknowledged":true,"tid":12}"#
        let decoded = try JSONDecoder().decode(ShutdownReport.ThreadEntry.self, from: Data(old.utf8))
        #expect(decoded.kind == .thread)
        #expect(decoded.tid == 12)
        #expect(entry.description == "stuck task \"fetch\": cancelled 1.0ms ago, still running")
    }
}
