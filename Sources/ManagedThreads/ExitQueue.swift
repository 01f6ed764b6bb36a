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
    private let queue = Mutex<(threads: [ManagedThread], closed: Bool)>(([], false))

    deinit { word.deallocate() }

    /// After the shutdown: later pushes are dropped (so no thread is kept alive by a queue nobody
    /// drains), and whatever is queued is released.
    func close() {
        queue.withLock { $0 = ([], true) }
    }

    func push(_ thread: ManagedThread) {
        let accepted = queue.withLock { queue -> Bool in
            guard !queue.closed else { return false }
            queue.threads.append(thread)
            return true
        }
        guard accepted else { return }
        let previous = word.fetchAdd(1)
        if previous & Self.sleeperBit != 0 {
            let sequence = (previous &+ 1) & ~Self.sleeperBit
            // Wrapping distance: has the sequence reached the sleeper's target?
            if Int32(bitPattern: (sequence &- wakeAt.load(ordering: .acquiring)) << 1) >= 0 {
                _ = word.fetchAnd(~Self.sleeperBit)
                word.wakeAll()
            }
        }
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
            if current & Self.sleeperBit == 0 {
                guard word.compareExchange(current, current | Self.sleeperBit) else { continue }
            }
            _ = word.wait(whileEqualTo: current | Self.sleeperBit, until: deadline)
        }
    }
}
