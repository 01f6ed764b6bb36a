import Foundation
import ManagedThreadsTesting
import Synchronization
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// The name the kernel gives the calling thread.
private func currentThreadName() -> String {
    kernelComm(PThread.currentTID) ?? "?"
}

private struct JobFailure: Error, Equatable {
    var detail: String
}

/// Whether `error` is a ThreadError with `code`.
private func isThreadError(_ error: any Error, _ code: ThreadError.Code) -> Bool {
    (error as? ThreadError)?.code == code
}

@Suite("BlockingExecutor", .managedThreads)
struct ExecutorTests {
    @Test("jobs run on the executor's named workers, in its own group; values come back through sync and async waits")
    func resultsSyncAndAsync() async throws {
        let group = try ThreadGroup.current.makeChild(name: "app")
        let pool = try group.makeExecutor(name: "pool", threads: 2)
        #expect(pool.path == "\(group.path)/pool")
        #expect(pool.threads.map(\.name) == ["pool-0", "pool-1"])
        #expect(pool.threads.allSatisfy { $0.groupPath == pool.path })

        let squares = try (0..<20).map { n in try pool.submit(name: "square-\(n)") { _ in n * n } }
        let named = try pool.submit(name: "whoami") { _ in currentThreadName() }
        let unnamed = try pool.submit { _ in 1 }
        #expect(unnamed.name.hasPrefix("job-"))
        // A blocking wait, from a dedicated thread (not the cooperative pool).
        let syncValues = try await onThread { try squares.prefix(10).map { try $0.value(timeout: .seconds(30)) } }
        #expect(syncValues == (0..<10).map { $0 * $0 })
        var asyncValues: [Int] = []
        for job in squares.suffix(10) { asyncValues.append(try await job.value) }
        #expect(asyncValues == (10..<20).map { $0 * $0 })
        let worker = try await named.value
        #expect(worker == "pool-0" || worker == "pool-1")
        #expect(squares.allSatisfy { $0.status == .succeeded && $0.isFinished })

        let report = await group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(report.joined == 2)
        #expect(pool.threads.allSatisfy { $0.isJoined })
    }

    @Test("a job's thrown error reaches every waiter; the worker survives and runs the next job")
    func errorsPropagate() async throws {
        let group = try ThreadGroup.current.makeChild(name: "errors")
        let pool = try group.makeExecutor(name: "single", threads: 1)
        let failing = try pool.submit(name: "broken") { _ -> Int in throw JobFailure(detail: "disk on fire") }
        let after = try pool.submit(name: "after") { _ in "still here" }

        await #expect(throws: JobFailure(detail: "disk on fire")) { try await failing.value }
        let syncError = try await onThread { () -> String? in
            do { _ = try failing.value(timeout: .seconds(30)); return nil } catch { return "\(error)" }
        }
        #expect(syncError == "\(JobFailure(detail: "disk on fire"))")
        #expect(failing.status == .failed)
        #expect(try await after.value == "still here")
        #expect(pool.threads[0].isAlive, "a throwing job must not end its worker")

        let report = await group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(report.failed == 0, "the job failed, not the worker's body")
    }

    @Test("stopping the group cancels queued jobs (their work never runs); the running job sees its worker's token")
    func queuedJobsCancelledOnStop() async throws {
        let group = try ThreadGroup.current.makeChild(name: "stopping")
        let pool = try group.makeExecutor(name: "pool", threads: 1)
        let started = Counter()
        let sawStop = Counter()
        let blocker = try pool.submit(name: "blocker") { token -> String in
            started.increment()
            let stopped = token.wait(timeout: .seconds(60))
            if stopped { sawStop.increment() }
            return "saw stop: \(stopped), reason: \(token.reason?.description ?? "-")"
        }
        let ran = Counter()
        let released = Counter()
        var queued: [Job<Void>] = []
        for i in 0..<5 {
            let probe = DeinitProbe(released)
            queued.append(try pool.submit(name: "queued-\(i)") { _ in
                _ = probe
                ran.increment()
            })
        }
        try await waitFor("the blocker to occupy the only worker") { started.count == 1 }
        #expect(pool.queuedCount == 5)
        #expect(queued.allSatisfy { $0.status == .queued })

        let report = await group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(try await blocker.value == "saw stop: true, reason: parentStopped")
        #expect(sawStop.count == 1)
        for job in queued {
            await #expect { try await job.value } throws: { error in
                isThreadError(error, .cancelled) && "\(error)".contains(job.name) && "\(error)".contains("stopped")
            }
            #expect(job.status == .cancelled)
        }
        #expect(ran.count == 0, "a cancelled job's work must never run")
        #expect(released.count == 5, "a cancelled job's captures are released")
        #expect(pool.queuedCount == 0)
    }

    @Test("submit after the executor or its group stopped throws groupStopped, naming the executor")
    func submitAfterStop() throws {
        let group = try ThreadGroup.current.makeChild(name: "late")
        let first = try group.makeExecutor(name: "first", threads: 1)
        let second = try group.makeExecutor(name: "second", threads: 1)
        #expect(first.isAcceptingWork)

        let report = first.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(!first.isAcceptingWork)
        #expect { try first.submit { _ in 1 } } throws: { error in
            isThreadError(error, .groupStopped) && "\(error)".contains(first.path)
        }
        #expect(second.isAcceptingWork, "stopping one executor leaves its sibling running")

        group.requestStop(reason: .shutdown)
        #expect { try second.submit(name: "too-late") { _ in 1 } } throws: { error in
            isThreadError(error, .groupStopped) && "\(error)".contains("too-late")
        }
        #expect { try group.makeExecutor(name: "third", threads: 1) } throws: { isThreadError($0, .groupStopped) }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("a stuck job: the shutdown returns by its deadline, names the worker stuck under the executor's path, and still cancels the queue")
    func stuckJobHonoursDeadline() throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "deadline")
        let pool = try group.makeExecutor(name: "pool", threads: 1)
        let started = Counter()
        let stuck = try pool.submit(name: "ignores-token") { _ -> Int in
            started.increment()
            gate.waitOpen()
            return 7
        }
        let behind = try pool.submit(name: "behind") { _ in 8 }
        defer {
            gate.release()
            for thread in pool.threads { _ = try? thread.join(timeout: .seconds(30)) }
        }
        try waitFor { started.count == 1 }

        let start = ContinuousClock.now
        let report = group.shutdown(timeout: .milliseconds(200))
        let elapsed = ContinuousClock.now - start
        // The deadline is honoured (plus a generous allowance for a noisy machine).
        #expect(elapsed < .seconds(20), "took \(elapsed) for a 200 ms deadline")
        let entry = try #require(report.stuckThreads.first, "\(report)")
        #expect(entry.name == "pool-0")
        #expect(entry.groupPath == pool.path)
        #expect(entry.kind == .thread)
        #expect(report.description.contains("stuck \"pool-0\""))
        #expect(throws: ThreadError.self) { try behind.value(timeout: .seconds(30)) }
        #expect(behind.status == .cancelled, "the queue is cancelled even though the worker is stuck")
        #expect(stuck.status == .running)
        #expect(stuck.worker == "pool-0")

        gate.release()
        #expect(try stuck.value(timeout: .seconds(30)) == 7, "the stuck job still delivers its value when it ends")
        #expect(try pool.threads[0].join(timeout: .seconds(30)))
    }

    @Test("a bounded wait on a job that has not finished throws timedOut and cancels nothing")
    func waitTimesOut() throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "timeouts")
        let pool = try group.makeExecutor(name: "pool", threads: 1)
        defer { gate.release() }
        let slow = try pool.submit(name: "slow") { _ -> String in
            gate.waitOpen()
            return "done"
        }
        let queued = try pool.submit(name: "queued") { _ in "queued done" }
        // On a loaded machine (a TSan run) the worker may take longer than the wait below to
        // start the job: wait for it, so the message can say where the job is.
        try waitFor("the worker to start the slow job") { slow.status == .running }
        let start = ContinuousClock.now
        #expect { try slow.value(timeout: .milliseconds(50)) } throws: { error in
            isThreadError(error, .timedOut) && "\(error)".contains("slow") && "\(error)".contains("running on pool-0")
        }
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect { try queued.value(until: .now) } throws: { error in
            isThreadError(error, .timedOut) && "\(error)".contains("still queued")
        }
        #expect(slow.status == .running && queued.status == .queued, "a timed-out wait cancels nothing")
        gate.release()
        #expect(try slow.value(timeout: .seconds(30)) == "done")
        #expect(try queued.value(timeout: .seconds(30)) == "queued done")
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("a job that waits for another job of its own single-worker executor times out instead of deadlocking")
    func waitFromOwnWorker() throws {
        let group = try ThreadGroup.current.makeChild(name: "reentrant")
        let pool = try group.makeExecutor(name: "pool", threads: 1)
        let outer = try pool.submit(name: "outer") { _ -> String in
            let inner = try pool.submit(name: "inner") { _ in "inner done" }
            do {
                return try inner.value(timeout: .milliseconds(100))
            } catch let error as ThreadError where error.code == .timedOut {
                return "timed out: \(inner.status)"
            }
        }
        #expect(try outer.value(timeout: .seconds(30)) == "timed out: queued")
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("maxQueued bounds the queue: a submit beyond it throws queueFull at once; cancelling makes room")
    func boundedQueue() throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "bounded")
        let pool = try group.makeExecutor(name: "pool", threads: 1, maxQueued: 2)
        defer { gate.release() }
        let started = Counter()
        let running = try pool.submit(name: "running") { _ in started.increment(); gate.waitOpen() }
        try waitFor { started.count == 1 }
        let a = try pool.submit(name: "a") { _ in 1 }
        _ = try pool.submit(name: "b") { _ in 2 }
        #expect(pool.queuedCount == 2)
        #expect { try pool.submit(name: "c") { _ in 3 } } throws: { error in
            isThreadError(error, .queueFull) && "\(error)".contains("maxQueued")
        }
        #expect(a.cancel())
        #expect(!a.cancel(), "cancelling twice reports that it was already done")
        #expect(pool.queuedCount == 1)
        let c = try pool.submit(name: "c") { _ in 3 }
        gate.release()
        try running.value(timeout: .seconds(30))
        #expect(try c.value(timeout: .seconds(30)) == 3)
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("cancel() stops a queued job for good and wakes its waiters; a running job cannot be cancelled")
    func cancelQueuedNotRunning() throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "cancel")
        let pool = try group.makeExecutor(name: "pool", threads: 1)
        defer { gate.release() }
        let started = Counter()
        let running = try pool.submit(name: "running") { _ -> Int in started.increment(); gate.waitOpen(); return 1 }
        try waitFor { started.count == 1 }
        let ran = Counter()
        let released = Counter()
        let victim = try { () throws -> Job<Void> in
            let probe = DeinitProbe(released)   // held only by the job's work
            return try pool.submit(name: "victim") { _ in _ = probe; ran.increment() }
        }()
        let waiterResult = Locked<String?>(nil)
        let waiter = try ManagedThread.spawn(name: "victim-waiter") { _ in
            do {
                try victim.value(timeout: .seconds(30))
                waiterResult.withLock { $0 = "returned" }
            } catch {
                waiterResult.withLock { $0 = "\(error)" }
            }
        }
        #expect(released.count == 0)
        #expect(victim.cancel())
        #expect(released.count == 1, "cancelling drops the work and its captures at once")
        #expect(try waiter.join(timeout: .seconds(30)))
        #expect(waiterResult.value?.contains("cancel() was called") == true, "\(waiterResult.value ?? "nil")")
        #expect(!running.cancel(), "a running job is not cancelled")
        gate.release()
        #expect(try running.value(timeout: .seconds(30)) == 1)
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
        #expect(ran.count == 0)
    }

    @Test("cancelling the awaiting task cancels a queued job; for a running job the waiter alone stops waiting")
    func taskCancellation() async throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "task-cancel")
        let pool = try group.makeExecutor(name: "pool", threads: 1)
        defer { gate.release() }
        let started = Counter()
        let running = try pool.submit(name: "running") { _ -> Int in started.increment(); gate.waitOpen(); return 42 }
        try await waitFor { started.count == 1 }
        let ran = Counter()
        let queued = try pool.submit(name: "queued") { _ in ran.increment() }

        let onQueued = Task { try await queued.value }
        onQueued.cancel()
        await #expect { try await onQueued.value } throws: { isThreadError($0, .cancelled) }
        #expect(queued.status == .cancelled)
        #expect(pool.queuedCount == 0)

        let onRunning = Task { try await running.value }
        onRunning.cancel()
        await #expect(throws: CancellationError.self) { try await onRunning.value }
        #expect(running.status == .running, "the running job goes on")
        gate.release()
        #expect(try await running.value == 42)
        #expect(ran.count == 0)
        #expect(await group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("awaiting a job suspends the task: more awaiting tasks than cooperative threads do not starve other tasks")
    func asyncWaitDoesNotBlockThreads() async throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "no-blocking")
        let pool = try group.makeExecutor(name: "pool", threads: 1)
        defer { gate.release() }
        let job = try pool.submit(name: "slow") { _ -> Int in gate.waitOpen(); return 5 }
        // Were the waiters to block every cooperative thread, the test would still end: this
        // watchdog opens the gate after a while, and the checks below (made before the gate opens
        // otherwise) fail.
        try group.spawn(name: "watchdog") { token in
            if !token.wait(timeout: .seconds(60)) { gate.release() }
        }
        let waiters = ProcessInfo.processInfo.activeProcessorCount * 4
        let results = try await withThrowingTaskGroup(of: Int.self) { tasks in
            for _ in 0..<waiters { tasks.addTask { try await job.value } }
            // Every waiter suspends, giving its thread back: more waiters than cooperative
            // threads can all get this far only if none of them blocks one. (Whether some other
            // task can run meanwhile depends on the tests running in parallel, which may hold
            // the pool's threads for a while under TSan: not checked here.)
            try await waitFor("all \(waiters) waiters suspended", timeout: .seconds(50)) { job.suspendedWaiters == waiters }
            #expect(!job.isFinished)
            gate.release()
            var results: [Int] = []
            for try await value in tasks { results.append(value) }
            return results
        }
        #expect(results == Array(repeating: 5, count: waiters))
        #expect(await group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("submits racing a stop: every accepted job either ran or was cancelled, none is lost")
    func submitRacesStop() throws {
        let group = try ThreadGroup.current.makeChild(name: "race")
        let pool = try group.makeExecutor(name: "pool", threads: 2)
        let ran = Counter()
        let accepted = Locked<[Job<Void>]>([])
        let go = Gate()
        var submitters: [ManagedThread] = []
        for i in 0..<3 {
            submitters.append(try ManagedThread.spawn(name: "submitter-\(i)") { _ in
                go.waitOpen()
                while true {
                    do {
                        let job = try pool.submit { _ in ran.increment() }
                        accepted.withLock { $0.append(job) }
                    } catch {
                        return
                    }
                }
            })
        }
        go.release()
        try waitFor("some jobs to be accepted") { accepted.value.count >= 200 }
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        for submitter in submitters { #expect(try submitter.join(timeout: .seconds(30))) }
        let jobs = accepted.value
        var succeeded = 0
        var cancelled = 0
        for job in jobs {
            do {
                try job.value(timeout: .seconds(30))
                succeeded += 1
            } catch let error as ThreadError where error.code == .cancelled {
                cancelled += 1
            }
        }
        #expect(succeeded + cancelled == jobs.count, "every job ended one way or the other")
        #expect(succeeded == ran.count, "a job that succeeded ran exactly once, and no cancelled job ran")
    }

    @Test("a worker refused by the system: makeExecutor throws the systemCall error and leaves nothing running")
    func refusedWorker() throws {
        let group = try ThreadGroup.current.makeChild(name: "refused")
        #expect {
            try FaultInjection.with(.pthreadCreate, errno: EAGAIN) { () throws(ThreadError) in
                _ = try group.makeExecutor(name: "pool", threads: 3)
            }
        } throws: { error in
            (error as? ThreadError)?.call == "pthread_create" && (error as? ThreadError)?.errno == EAGAIN
        }
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(group.aliveThreads.isEmpty)
    }

    @Test("bad arguments are refused with invalidArgument; nothing is left running")
    func badArguments() throws {
        let group = try ThreadGroup.current.makeChild(name: "bad")
        #expect { try group.makeExecutor(name: "none", threads: 0) } throws: { isThreadError($0, .invalidArgument) }
        #expect { try group.makeExecutor(name: "huge", threads: .max) } throws: { isThreadError($0, .invalidArgument) }
        #expect { try group.makeExecutor(name: "zero-queue", threads: 1, maxQueued: 0) } throws: { isThreadError($0, .invalidArgument) }
        #expect { try group.makeExecutor(name: "", threads: 1) } throws: { isThreadError($0, .invalidArgument) }
        #expect { try group.makeExecutor(name: "a/b", threads: 1) } throws: { isThreadError($0, .invalidArgument) }
        #expect { try group.makeExecutor(name: "nul\0", threads: 1) } throws: { isThreadError($0, .invalidArgument) }
        #expect {
            try group.makeExecutor(name: "tiny-stack", threads: 1, options: ThreadOptions(stackSize: 1))
        } throws: { isThreadError($0, .invalidArgument) }
        #expect(group.aliveThreads.isEmpty)
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }
}

/// Runs `body` on a managed thread of its own and returns its value, so an async test can make
/// blocking calls without blocking the cooperative pool. The thread is joined before returning.
func onThread<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
    let group = try ThreadGroup.current.makeChild(name: "blocking-call")
    let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<R, any Error>, Never>) in
        do {
            try group.spawn(name: "blocking-call") { _ in
                continuation.resume(returning: Result { try body() })
            }
        } catch {
            continuation.resume(returning: .failure(error))
        }
    }
    let report = await group.shutdown(timeout: .seconds(30))
    #expect(report.isClean, "\(report)")
    return try result.get()
}
