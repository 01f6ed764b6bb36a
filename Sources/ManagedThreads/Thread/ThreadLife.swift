/// The life of a managed thread as one futex word: has its end run, does a joiner hold the
/// kernel join, has it been joined, is anyone asleep on the word.
///
/// Bits, each set by one party:
/// - `ended`: set once, by the thread's one exit path (or by a spawn that failed), after its
///   last user-visible effect. ``ManagedThread/isAlive`` is its negation.
/// - `reaper`: held by at most one joiner while it is in the kernel join (`pthread_clockjoin_np`
///   allows one joiner at a time). A joiner takes it as soon as the pthread handle is published,
///   without waiting for `ended`: the kernel join itself waits for the thread's exit, so a join
///   of a running thread costs one sleep and one wake-up, not two (a wait for `ended`, then a
///   second one for the kernel's exit, each a context switch; that was most of the spawn + join
///   overhead over raw pthreads, pinned to one CPU).
/// - `joined`: set once, by the reaper whose kernel join succeeded; the stack may be reused.
/// - `sleepers`: someone waits on the word; whoever changes it next issues the wake syscall.
struct ThreadLife {
    static let ended: UInt32 = 1
    static let reaper: UInt32 = 2
    static let joined: UInt32 = 4
    static let sleepers: UInt32 = 8

    private let word: FutexWord

    init() { word = .allocate(0) }

    func deallocate() { word.deallocate() }

    var hasEnded: Bool { word.load() & Self.ended != 0 }
    var isJoined: Bool { word.load() & Self.joined != 0 }

    /// The thread's end (or a failed spawn, with `joined` too): sets the bits, wakes sleepers.
    func markEnded(joined: Bool = false) {
        word.update(wakingSleepers: Self.sleepers) { $0 | Self.ended | (joined ? Self.joined : 0) }
    }

    enum Turn {
        /// Already joined.
        case joined
        /// The caller now holds the reaping right: it must call ``finishReaping(joined:)``.
        case reap
        /// The deadline passed while another joiner held the right (or the handle was not out).
        case timedOut
    }

    /// Waits, at most until `deadline`, for the right to run the kernel join, or for the thread
    /// to be joined by someone else. `canReap` says whether the pthread handle is published yet
    /// (before that, only an ended thread can be reaped, and its handle is then known).
    func awaitTurn(until deadline: ContinuousClock.Instant, canReap: () -> Bool) -> Turn {
        while true {
            let value = word.load()
            if value & Self.joined != 0 { return .joined }
            if value & Self.reaper == 0, value & Self.ended != 0 || canReap() {
                if word.compareExchange(value, value | Self.reaper) { return .reap }
                continue
            }
            if !word.sleep(announcing: Self.sleepers, seen: value, until: deadline) {
                // Out of time. An ended thread whose right is free is still reaped: a deadline in
                // the past makes the kernel join return at once, having joined it or not.
                let last = word.load()
                if last & Self.joined != 0 { return .joined }
                if last & (Self.reaper | Self.ended) == Self.ended, word.compareExchange(last, last | Self.reaper) {
                    return .reap
                }
                return .timedOut
            }
        }
    }

    /// Gives the reaping right back, recording whether the kernel join succeeded.
    func finishReaping(joined: Bool) {
        word.update(wakingSleepers: Self.sleepers) { ($0 & ~Self.reaper) | (joined ? Self.joined | Self.ended : 0) }
    }
}
