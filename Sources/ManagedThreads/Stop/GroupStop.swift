import Synchronization

/// A group's stop word: one store stops every thread of the group, and one futex wake wakes every
/// one of them that sleeps in its token.
///
/// Why: a group used to stop its threads one by one (a lock, a flip and maybe a wake per thread).
/// With 10,000 threads busy on two cores, the stopping thread got about 1/5,000 of a CPU, so the
/// few milliseconds of that loop, plus the shutdown's snapshot before it, stretched to tens of
/// seconds during which no thread had been told. Now the group flips this word first, and each
/// thread sees the stop at its next check.
///
/// Layout: the top bit says stopped; the low 31 bits are a sequence that every single-thread
/// stop of a member bumps. A member's token checks its own word and this one, and sleeps on this
/// one with FUTEX_WAIT_BITSET and the member's own bit (``StopState/wakeBit``). So:
/// - a group stop sets the bit and wakes every sleeper (one syscall, all bits);
/// - a stop of one member sets that member's own word, bumps the sequence (so a member about to
///   sleep on the old value does not) and wakes only sleepers sharing the member's bit (1 in 32
///   of the others wake needlessly, look at their words, and sleep again).
final class GroupStopWord: Sendable {
    static let stoppedBit: UInt32 = 1 << 31

    let word = FutexWord.allocate(0)
    /// Members with `onStop` callbacks not yet taken. While there are any, the group tells its
    /// threads one by one, taking their callbacks for the callback runner first, and flips the
    /// word only afterwards: a member that saw the word first would end and run its callbacks
    /// itself, on its own thread, out of the shutdown's sight.
    let callbackHolders = Atomic<Int>(0)

    /// Whether the word can be flipped before the members are told one by one.
    var mayStopAtOnce: Bool { callbackHolders.load(ordering: .acquiring) == 0 }
    /// Why and when the group stopped; set before the bit, so a reader that sees the bit sees it.
    private let cause = Lock<(reason: StopReason, at: ContinuousClock.Instant)?>(nil)

    deinit { word.deallocate() }

    @inline(__always)
    var isStopped: Bool { word.load() & Self.stoppedBit != 0 }

    var reason: StopReason? { cause.withLock { $0?.reason } }
    var requestedAt: ContinuousClock.Instant? { cause.withLock { $0?.at } }

    /// Stops every member at once. Returns false if the group had stopped already.
    @discardableResult
    func stop(reason: StopReason) -> Bool {
        let first = cause.withLock { cause -> Bool in
            guard cause == nil else { return false }
            cause = (reason, .now)
            return true
        }
        guard first else { return false }
        var old = word.load()
        while !word.compareExchange(old, old | Self.stoppedBit) { old = word.load() }
        word.wake(bitset: .max)
        return true
    }

    /// After one member's own word was set: makes members about to sleep look again, and wakes
    /// the sleepers sharing `bit`.
    func memberStopped(bit: UInt32) {
        var old = word.load()
        while true {
            if old & Self.stoppedBit != 0 { return }  // everyone was woken already
            let next = (old & Self.stoppedBit) | ((old &+ 1) & ~Self.stoppedBit)
            if word.compareExchange(old, next) { break }
            old = word.load()
        }
        word.wake(bitset: bit)
    }
}
