import Synchronization

/// The async joins of one thread waiting for its end: each is a continuation, resumed once, by
/// the thread's end or by its deadline, whichever comes first.
struct AsyncJoinWaiters {
    private var next: UInt64 = 0
    private var waiting: [UInt64: CheckedContinuation<Void, Never>] = [:]

    mutating func add(_ continuation: CheckedContinuation<Void, Never>) -> UInt64 {
        next += 1
        waiting[next] = continuation
        return next
    }

    /// The continuation of `id` if it is still waiting (then the caller resumes it).
    mutating func take(_ id: UInt64) -> CheckedContinuation<Void, Never>? { waiting.removeValue(forKey: id) }

    mutating func takeAll() -> [CheckedContinuation<Void, Never>] {
        defer { waiting = [:] }
        return Array(waiting.values)
    }
}

extension ManagedThread {
    /// Waits for the thread to exit, at most until `deadline`, and reaps it, **suspending** the
    /// calling task instead of blocking its thread: any number of async joins can be in flight on
    /// the cooperative pool's few threads.
    ///
    /// Same outcome as the blocking ``join(until:)``: true once the thread has exited and been
    /// joined, false if the deadline came first. The task's cancellation does not end the wait
    /// early (the deadline does).
    /// - Throws: ``ThreadError/Code/selfJoin`` when called from the thread itself.
    public func join(until deadline: ContinuousClock.Instant) async throws(ThreadError) -> Bool {
        try checkJoinable()
        if !life.hasEnded { await waitForEnd(until: deadline) }
        guard life.hasEnded else { return false }
        // Ended: the kernel's part of the exit takes microseconds. Wait that long here; should it
        // take longer (a thread-local destructor that blocks), wait on a dedicated thread.
        if try joinBlocking(until: min(deadline, .now.advanced(by: .milliseconds(1)))) { return true }
        if ContinuousClock.now >= deadline { return false }
        return await joinOnOwnThread(until: deadline)
    }

    /// Async form of ``join(timeout:)``.
    public func join(timeout: Duration) async throws(ThreadError) -> Bool {
        try await join(until: .after(timeout))
    }

    /// Async form of ``stop(timeout:reason:)``: requests a stop (the `onStop` callbacks run on a
    /// library thread) and joins, suspending the caller.
    /// - Returns: true if the thread exited in time.
    public func stop(timeout: Duration, reason: StopReason = .requested) async throws(ThreadError) -> Bool {
        let deadline = ContinuousClock.Instant.after(timeout)
        _ = CallbackRunner.start(signal(reason: reason))
        return try await join(until: deadline)
    }

    /// Suspends until the thread has ended or `deadline` passes.
    private func waitForEnd(until deadline: ContinuousClock.Instant) async {
        let timer = Locked<Task<Void, Never>?>(nil)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let registered = ending.withLock { ending -> UInt64? in
                // Checked under the lock the end resumes under: no end is missed.
                if life.hasEnded { return nil }
                return ending.waiters.add(continuation)
            }
            guard let registered else {
                continuation.resume()
                return
            }
            timer.set(Task {
                try? await Task.sleep(until: deadline, clock: .continuous)
                self.ending.withLock { $0.waiters.take(registered) }?.resume()
            })
        }
        timer.value?.cancel()
    }

    /// Called by the thread's one exit path once it is marked ended.
    func resumeAsyncJoins() {
        for continuation in ending.withLock({ $0.waiters.takeAll() }) { continuation.resume() }
    }

    /// The blocking join, from a synchronous context (so overload resolution picks it).
    private func joinBlocking(until deadline: ContinuousClock.Instant) throws(ThreadError) -> Bool {
        try join(until: deadline)
    }

    /// The rest of a join whose kernel exit is slow, on a thread of its own.
    private func joinOnOwnThread(until deadline: ContinuousClock.Instant) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            do {
                _ = try ManagedThread.spawn(name: "join", purpose: "async join of \(name)") { _ in
                    continuation.resume(returning: (try? self.joinBlocking(until: deadline)) ?? false)
                }
            } catch {
                continuation.resume(returning: (try? self.joinBlocking(until: deadline)) ?? false)
            }
        }
    }
}

/// A value behind a lock, for the few words an async join shares with its timer.
private final class Locked<Value: Sendable>: Sendable {
    private let lock: Lock<Value>
    init(_ value: Value) { lock = Lock(value) }
    func set(_ value: Value) { lock.withLock { $0 = value } }
    var value: Value { lock.withLock { $0 } }
}
