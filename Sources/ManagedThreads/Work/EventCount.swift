/// A futex word that counts "something changed" events, for sleeping until a condition guarded by
/// a lock may have become true (a job was queued, a task finished).
///
/// The protocol: holding the lock, find the condition false, note that you sleep (so the other
/// side knows to signal) and read ``value``; release the lock and ``wait(after:until:)``. The other
/// side changes the state under the same lock, sees the sleeper, releases the lock and
/// ``signal(waking:)``s. The signal bumps the word after the sleeper read it, so the sleeper either
/// sees the new value and does not sleep, or is woken: no wake-up is lost. Callers loop on their
/// own condition, so spurious wake-ups are harmless.
final class EventCount: Sendable {
    private let word = FutexWord.allocate(0)

    deinit { word.deallocate() }

    /// The current count; read it under the lock that guards the condition.
    var value: UInt32 { word.load() }

    /// Sleeps while no event has been signalled since `value` was read, at most until `deadline`.
    func wait(after value: UInt32, until deadline: ContinuousClock.Instant) {
        _ = word.wait(whileEqualTo: value, until: deadline)
    }

    /// Records an event and wakes up to `count` sleepers.
    func signal(waking count: Int32 = .max) {
        _ = word.fetchAdd(1)
        word.wake(count: count)
    }
}
