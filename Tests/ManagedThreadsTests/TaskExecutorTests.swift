import Synchronization
import Testing
import ManagedThreadsTesting
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

private func currentTID() -> Int32 { PThread.currentTID }

/// An actor confined to one managed thread.
private actor Confined {
    nonisolated let executor: ManagedSerialExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var calls = 0

    init(executor: ManagedSerialExecutor) { self.executor = executor }

    /// Where this call ran: the tid, and whether the executor says it is current.
    func where_() -> (tid: Int32, current: Bool, calls: Int) {
        calls += 1
        return (currentTID(), executor.isCurrent, calls)
    }
}

@Suite("Task executors", .managedThreads)
struct TaskExecutorTests {
    @Test("work inside withTaskExecutorPreference runs on the executor's managed threads, child tasks included")
    func preferenceRunsOnWorkers() async throws {
        let group = try ThreadGroup.current.makeChild(name: "exec-pref")
        let pool = try group.makeTaskExecutor(name: "pool", threads: 2)
        #expect(pool.threads.map(\.name) == ["pool-0", "pool-1"])
        #expect(pool.threads.allSatisfy { $0.groupPath == pool.path })
        try await waitFor { pool.threads.allSatisfy { $0.tid != nil } }
        let workers = Set(pool.threads.compactMap(\.tid))
        let seen = await withTaskExecutorPreference(pool) {
            var tids = [currentTID()]
            await withTaskGroup(of: Int32.self) { children in
                for _ in 0..<20 { children.addTask { currentTID() } }
                for await tid in children { tids.append(tid) }
            }
            async let child = currentTID()
            tids.append(await child)
            return tids
        }
        #expect(seen.count == 22)
        #expect(Set(seen).isSubset(of: workers), "ran on \(Set(seen)), workers are \(workers)")
        let report = await group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(pool.threads.allSatisfy { $0.isJoined })
    }

    @Test("an actor on a serial executor always runs on its one thread, and isolation checks say so")
    func actorStaysOnItsThread() async throws {
        let group = try ThreadGroup.current.makeChild(name: "exec-serial")
        let executor = try group.makeSerialExecutor(name: "render")
        let actor = Confined(executor: executor)
        try await waitFor { executor.thread.tid != nil }
        let tid = try #require(executor.thread.tid)
        let results = await withTaskGroup(of: (tid: Int32, current: Bool, calls: Int).self) { callers in
            for _ in 0..<50 { callers.addTask { await actor.where_() } }
            return await callers.reduce(into: []) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0.tid == tid }, "some calls ran off the thread")
        #expect(results.allSatisfy { $0.current })
        #expect(Set(results.map(\.calls)) == Set(1...50), "every call ran once, one at a time")
        #expect(!executor.isCurrent, "the test's own thread is not the executor's")
        #expect(executor.isIsolatingCurrentContext() == false)
        let report = await group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
    }

    @Test("a shutdown with a job that ignores cancellation returns by its deadline, names the thread and the task; queued tasks see cancellation")
    func shutdownUnderDeadline() async throws {
        let group = try ThreadGroup.current.makeChild(name: "exec-stuck")
        let pool = try group.makeTaskExecutor(name: "pool", threads: 1)
        let gate = Gate()
        let blocking = Counter()
        try pool.spawn(name: "blocker") {
            blocking.increment()
            gate.waitOpen()  // a synchronous loop that never looks at cancellation
        }
        try await waitFor { blocking.count == 1 }
        // The only worker is busy: these wait in the queue.
        let cancelled = Counter()
        let ran = Counter()
        for index in 0..<3 {
            try pool.spawn(name: "queued-\(index)") {
                ran.increment()
                if Task.isCancelled { cancelled.increment() }
            }
        }
        #expect(pool.queuedCount == 3)
        let start = ContinuousClock.now
        let report = await group.shutdown(timeout: .milliseconds(500))
        let took = start.duration(to: .now)
        #expect(took < .seconds(10), "the shutdown took \(took)")
        #expect(report.overshoot < .seconds(5), "\(report)")
        let stuck = report.stuckThreads
        #expect(stuck.contains { $0.kind == .task && $0.name == "blocker" }, "\(report)")
        #expect(stuck.contains { $0.kind == .thread && $0.name == "pool-0" }, "\(report)")
        // The queued tasks run (cancelled) on the global executor; on a loaded machine some may
        // still be waiting for a pool thread at the deadline, so the report may list them too.
        // The queued jobs were handed to the global executor as the worker could not take them:
        // their tasks ran, cancelled.
        try await waitFor { ran.count == 3 }
        #expect(cancelled.count == 3)
        #expect(pool.jobsRunElsewhere >= 3)
        gate.release()
        #expect(try await pool.threads[0].join(timeout: .seconds(30)))
    }

    @Test("a job enqueued after the shutdown runs on the global executor; a serial executor's runs, in order, on a late thread that then ends")
    func jobsAfterShutdown() async throws {
        let group = try ThreadGroup.current.makeChild(name: "exec-late")
        let pool = try group.makeTaskExecutor(name: "pool", threads: 1)
        let serial = try group.makeSerialExecutor(name: "confined")
        let actor = Confined(executor: serial)
        _ = await actor.where_()
        try await waitFor { pool.threads[0].tid != nil }
        let worker = try #require(pool.threads[0].tid)
        #expect(await group.shutdown(timeout: .seconds(30)).isClean)

        let tid = await withTaskExecutorPreference(pool) { currentTID() }
        #expect(tid != worker)
        #expect(pool.jobsRunElsewhere >= 1)

        let late = await withTaskGroup(of: (tid: Int32, current: Bool, calls: Int).self) { callers in
            for _ in 0..<20 { callers.addTask { await actor.where_() } }
            return await callers.reduce(into: []) { $0.append($1) }
        }
        #expect(late.allSatisfy { $0.current }, "isolation holds on the late runner")
        #expect(Set(late.map(\.calls)) == Set(2...21), "every call ran once, one at a time")
        #expect(serial.jobsRunLate >= 1)
        #expect(late.allSatisfy { kernelComm($0.tid) == nil || kernelComm($0.tid) == "confined-late" })
        try await waitFor("the late runner to end") {
            !ThreadAudit.snapshot().contains { $0.name == "confined-late" }
        }
    }

    @Test("async joins suspend: more in flight than the cooperative pool has threads, and the pool still runs work")
    func asyncJoinsSuspend() async throws {
        let group = try ThreadGroup.current.makeChild(name: "async-join")
        let gate = Gate()
        let threads = try (0..<12).map { index in
            try group.spawn(name: "waiter-\(index)") { _ in gate.waitOpen() }
        }
        let started = Counter()
        try await withThrowingTaskGroup(of: Bool.self) { joins in
            for thread in threads {
                joins.addTask {
                    started.increment()
                    return try await thread.join(timeout: .seconds(60))
                }
            }
            try await waitFor { started.count == threads.count }
            // Twelve joins are waiting; were they blocking, a two-thread pool could run nothing.
            let other = await Task.detached { 42 }.value
            #expect(other == 42)
            gate.release()
            for try await joined in joins { #expect(joined) }
        }
        #expect(threads.allSatisfy { $0.isJoined })
        #expect(await group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("an async join with a deadline returns false while the thread runs; an async stop ends it")
    func asyncJoinDeadline() async throws {
        let thread = try ManagedThread.spawn(name: "async-stop") { token in _ = token.wait(timeout: .seconds(60)) }
        let start = ContinuousClock.now
        #expect(try await thread.join(timeout: .milliseconds(50)) == false)
        #expect(start.duration(to: .now) >= .milliseconds(50))
        #expect(thread.isAlive)
        #expect(try await thread.stop(timeout: .seconds(30)))
        #expect(thread.isJoined)
    }

    @Test("bad thread counts are refused")
    func badInput() throws {
        let group = try ThreadGroup.current.makeChild(name: "exec-bad")
        for count in [0, -1, ManagedTaskExecutor.maximumThreads + 1] {
            #expect(throws: ThreadError.self) { _ = try group.makeTaskExecutor(name: "pool", threads: count) }
        }
        #expect(throws: ThreadError.self) { _ = try group.makeSerialExecutor(name: "") }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }
}
