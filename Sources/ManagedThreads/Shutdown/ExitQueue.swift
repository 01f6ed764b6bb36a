import Synchronization

/// Where threads announce their own end during a shutdown, so the shutdown reaps them in the
/// order they actually exit instead of waiting on each in turn.
///
/// A fixed-order join waits behind the first slow thread while finished ones pile up, and after the
/// deadline it still has to reap them all — that is where a naive shutdown overshoots. Here every
/// exiting thread pushes itself and bumps a futex word; the shutdown sleeps on the word, drains the
/// queue and joins only threads that have already ended.
final class ExitQueue: Sendable {
    private static let sleeperBit: UInt32 = 1 << 31

    private let word = FutexWord.allocate(0)
    /// The sequence value at which a sleeping shutdown wants to be woken: it sleeps until a batch
    /// of exits has accumulated rather than waking once per thread (each wake-up costs the one
    /// reaping thread a trip through a run queue full of exiting threads).
    private let wakeAt = Atomic<UInt32>(0)
    private let queue = Lock<(threads: [ManagedThread], closed: Bool)>(([], false))

    deinit { word.deallocate() }

    // MARK: Deadline extensions

    private struct Extensions {
        var base: ContinuousClock.Instant?
        var until: ContinuousClock.Instant?
        var closed = false
        var records: [ObjectIdentifier: (name: String, path: String, until: ContinuousClock.Instant, requests: Int)] = [:]
        var order: [ObjectIdentifier] = []
    }

    private let extensions = Lock(Extensions())

    /// Starts taking extension requests for a shutdown whose deadline is `base`.
    func openExtensions(base: ContinuousClock.Instant) {
        extensions.withLock { $0.base = base }
    }

    /// The latest grant, if any thread got one.
    var extendedDeadline: ContinuousClock.Instant? {
        extensions.withLock { $0.until }
    }

    /// Grants `thread` up to `more` from now, but never past the shutdown's deadline plus `cap`.
    /// Returns the time granted from now (zero when nothing can be granted).
    func extend(_ thread: ManagedThread, groupPath: String, cap: Duration, more: Duration) -> Duration {
        let now = ContinuousClock.now
        return extensions.withLock { state -> Duration in
            guard !state.closed, let base = state.base, cap > .zero else { return .zero }
            let limit = base.advanced(by: cap)
            let wanted = min(now.advanced(by: more), limit)
            let id = ObjectIdentifier(thread)
            var record = state.records[id] ?? (thread.name, groupPath, base, 0)
            record.requests += 1
            record.until = max(record.until, wanted)
            if state.records[id] == nil { state.order.append(id) }
            state.records[id] = record
            state.until = max(state.until ?? base, record.until)
            return max(.zero, now.duration(to: record.until))
        }
    }

    /// Whether `thread` holds a grant that has not run out yet.
    func holdsExtension(_ thread: ManagedThread) -> Bool {
        let now = ContinuousClock.now
        return extensions.withLock { $0.records[ObjectIdentifier(thread)].map { $0.until > now } ?? false }
    }

    /// Stops granting and returns the latest grant and one record per thread that asked.
    func closeExtensions() -> (until: ContinuousClock.Instant?, records: [ShutdownReport.Extension]) {
        extensions.withLock { state in
            state.closed = true
            let records = state.order.compactMap { state.records[$0] }.map { record in
                ShutdownReport.Extension(
                    name: record.name, groupPath: record.path,
                    grantedNanoseconds: max(0, (state.base ?? record.until).duration(to: record.until).nanosecondsClamped),
                    requests: record.requests)
            }
            return (state.until, records)
        }
    }

    /// After the shutdown: later pushes are dropped (so no thread is kept alive by a queue nobody
    /// drains), and whatever is queued is released.
    func close() {
        queue.withLock { $0 = ([], true) }
    }

    /// Queues a thread that ended; false (and nothing queued) once the queue is closed.
    @discardableResult
    func push(_ thread: ManagedThread) -> Bool {
        let accepted = queue.withLock { queue -> Bool in
            guard !queue.closed else { return false }
            queue.threads.append(thread)
            return true
        }
        guard accepted else { return false }
        let previous = word.fetchAdd(1)
        if previous & Self.sleeperBit != 0 {
            let sequence = (previous &+ 1) & ~Self.sleeperBit
            // Wrapping distance: has the sequence reached the sleeper's target?
            if Int32(bitPattern: (sequence &- wakeAt.load(ordering: .acquiring)) << 1) >= 0 {
                _ = word.fetchAnd(~Self.sleeperBit)
                word.wakeAll()
            }
        }
        return true
    }

    /// The sequence value to pass to ``wait(after:until:)``; read before draining.
    var sequence: UInt32 { word.load() & ~Self.sleeperBit }

    func drain() -> [ManagedThread] {
        queue.withLock { queue in
            var taken: [ManagedThread] = []
            swap(&taken, &queue.threads)
            return taken
        }
    }

    /// Sleeps until `batch` threads have been pushed after `sequence` was read, or `deadline`
    /// passes. Returns at once if anything was pushed before it could go to sleep.
    func wait(after sequence: UInt32, batch: Int, until deadline: ContinuousClock.Instant) {
        let target = (sequence &+ UInt32(clamping: max(1, batch))) & ~Self.sleeperBit
        wakeAt.store(target, ordering: .releasing)
        while ContinuousClock.now < deadline {
            let current = word.load()
            let seen = current & ~Self.sleeperBit
            if seen != sequence && Int32(bitPattern: (seen &- target) << 1) >= 0 { return }
            _ = word.sleep(announcing: Self.sleeperBit, seen: current, until: deadline)
        }
    }
}
