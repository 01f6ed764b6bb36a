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
    private let queue = Mutex<[ManagedThread]>([])

    deinit { word.deallocate() }

    func push(_ thread: ManagedThread) {
        queue.withLock { $0.append(thread) }
        if word.fetchAdd(1) & Self.sleeperBit != 0 {
            _ = word.fetchAnd(~Self.sleeperBit)
            word.wakeAll()
        }
    }

    /// The sequence value to pass to ``wait(after:until:)``; read before draining.
    var sequence: UInt32 { word.load() & ~Self.sleeperBit }

    func drain() -> [ManagedThread] {
        queue.withLock { queue in
            var taken: [ManagedThread] = []
            swap(&taken, &queue)
            return taken
        }
    }

    /// Sleeps until something is pushed after `sequence` was read, or `deadline` passes.
    func wait(after sequence: UInt32, until deadline: ContinuousClock.Instant) {
        while ContinuousClock.now < deadline {
            let current = word.load()
            if current & ~Self.sleeperBit != sequence { return }
            if current & Self.sleeperBit == 0 {
                guard word.compareExchange(current, current | Self.sleeperBit) else { continue }
            }
            _ = word.wait(whileEqualTo: current | Self.sleeperBit, until: deadline)
        }
    }
}
