import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The shared state behind a ``StopSource`` and its ``StopToken``s.
///
/// The hot path (`isStopRequested`, waiting) is one futex word; everything rare (reason, the lazy
/// eventfd, callbacks) sits behind one mutex that a thread never touches unless it uses them.
final class StopState: Sendable {
    // Futex word values: an announced sleeper's word (see FutexWord), whose sleeper bit is
    // `runningWithSleepers`; the stop replaces the whole word, clearing the bit.
    static let running: UInt32 = 0
    static let runningWithSleepers: UInt32 = 1
    static let stopped: UInt32 = 2

    let word: FutexWord
    /// Set when a token reader observed the stop (acknowledged it), for shutdown reports.
    let acknowledged = Atomic<Bool>(false)

    struct Callback {
        var id: UInt64
        var action: @Sendable () -> Void
    }

    struct Rare {
        var reason: StopReason?
        var requestedAt: ContinuousClock.Instant?
        var descriptor: Int32 = -1
        /// The descriptor was closed for good (the owning thread ended); it is never recreated.
        var descriptorRetired = false
        /// A thread other than the owner asked for the descriptor: it may still hold the number
        /// after the owner ends, so it stays open (readable) until this state is freed.
        var descriptorShared = false
        var callbacks: [Callback] = []
        var callbacksDone = false
        var nextCallbackID: UInt64 = 0
        /// The owning thread has ended: a stop requested now has nothing to stop and is not recorded.
        var ownerEnded = false
        /// The callback running right now, and on which thread (for ``removeCallback(_:)``).
        var running: (id: UInt64, tid: Int32)?
    }

    let rare = Lock<Rare>(Rare())
    /// References to the open descriptor: one for the state until the descriptor is retired, one
    /// per stop request between reading it under `rare` and finishing its write.
    private let descriptorReferences = Atomic<Int>(0)
    /// Counts callbacks that returned; ``removeCallback(_:)`` sleeps on it while one runs.
    private let callbackEnded: FutexWord

    /// The stop word of the group the owning thread belongs to (nil for a ``StopSource`` or a
    /// thread outside any group): stopped when that word is, and sleeping on it (see
    /// GroupStop.swift).
    let group: GroupStopWord?
    /// This state's bit for waits on the group word.
    let wakeBit: UInt32

    #if DEBUG
    /// Debug builds only: runs in a member's wait between its last look at the words and the
    /// futex sleep, so a test can land a stop exactly there (the race the sequence guards).
    /// Set by the owning thread before it waits, and only read by it.
    nonisolated(unsafe) var beforeGroupSleep: (() -> Void)?
    /// Debug builds only: runs in a stop request after the lock is released and before the
    /// descriptor is written, so a test can let the owner retire the descriptor there.
    nonisolated(unsafe) var beforeDescriptorSignal: (() -> Void)?
    #endif

    /// The thread whose token this is, for deadline extensions; nil for a ``StopSource``.
    /// Written once by ``ManagedThread``'s initialiser, before the state is shared with any other
    /// thread (pthread_create orders it), and only read afterwards.
    nonisolated(unsafe) weak var owner: ManagedThread?

    init(group: GroupStopWord? = nil) {
        word = .allocate(Self.running)
        callbackEnded = .allocate(0)
        self.group = group
        wakeBit = 1 << (Self.nextBit.add(1, ordering: .relaxed).oldValue & 31)
    }

    private static let nextBit = Atomic<UInt32>(0)

    deinit {
        let fd = rare.withLock { $0.descriptor }
        if fd >= 0 { closeDescriptor(fd) }
        word.deallocate()
        callbackEnded.deallocate()
    }

    @inline(__always)
    var isStopRequested: Bool { word.load() == Self.stopped || (group?.isStopped ?? false) }

    /// Records the reason, flips the word, wakes sleepers, signals the descriptor and runs the
    /// callbacks on the calling thread. Returns false if a stop had already been requested.
    @discardableResult
    func requestStop(reason: StopReason) -> Bool {
        guard let callbacks = signalReturningCallbacks(reason: reason) else { return false }
        for callback in callbacks { run(callback) }
        return true
    }

    /// Runs a callback taken from this state, marked as running so that ``removeCallback(_:)``
    /// on another thread waits for it.
    func run(_ callback: Callback) {
        let tid = PThread.currentTID
        rare.withLock { $0.running = (callback.id, tid) }
        callback.action()
        rare.withLock { $0.running = nil }
        _ = callbackEnded.fetchAdd(1)
        callbackEnded.wakeAll()
    }

    /// Like ``requestStop(reason:)`` but hands the `onStop` callbacks back instead of running them,
    /// so a group can signal all its threads first and run user code after. Empty when a stop had
    /// already been requested.
    func signal(reason: StopReason) -> [Callback] {
        signalReturningCallbacks(reason: reason) ?? []
    }

    private func signalReturningCallbacks(reason: StopReason) -> [Callback]? {
        let taken = rare.withLock { rare -> (wake: Bool, callbacks: [Callback], descriptor: Int32)? in
            guard rare.reason == nil, !rare.ownerEnded else { return nil }
            // The reason is recorded before the word flips, so a reader that sees the stop sees why.
            rare.reason = reason
            rare.requestedAt = .now
            // A member of a group sleeps on the group's word, and only if the group is not stopped
            // already (its wake woke everyone); otherwise on its own word, if it said so.
            let previous = word.exchange(Self.stopped)
            let wake: Bool
            if let group {
                wake = !group.isStopped
            } else {
                wake = previous == Self.runningWithSleepers
            }
            // The descriptor is written after the lock is released (a thread woken by the write
            // that ran at once would otherwise block on this lock in its exit path: two more
            // context switches per stop on a busy CPU). Holding a reference keeps it open until
            // the write is done, however soon the woken thread retires it.
            let signalled = rare.descriptor >= 0 ? rare.descriptor : -1
            if signalled >= 0 { descriptorReferences.add(1, ordering: .relaxed) }
            var callbacks: [Callback] = []
            if !rare.callbacksDone {
                rare.callbacksDone = true
                swap(&callbacks, &rare.callbacks)
                if !callbacks.isEmpty { group?.callbackHolders.subtract(1, ordering: .releasing) }
            }
            return (wake, callbacks, signalled)
        }
        guard let taken else { return nil }
        if taken.descriptor >= 0 {
            #if DEBUG
            beforeDescriptorSignal?()
            #endif
            // Cannot fail short of a bug (EBADF traps inside); EAGAIN means already readable.
            try? EventFD.signal(taken.descriptor)
            releaseDescriptor(taken.descriptor)
        }
        if taken.wake {
            if let group { group.memberStopped(bit: wakeBit) } else { word.wakeAll() }
        }
        return taken.callbacks
    }

    /// Its own stop's reason, or else its group's.
    var reason: StopReason? { rare.withLock { $0.reason } ?? group?.reason }
    var requestedAt: ContinuousClock.Instant? { rare.withLock { $0.requestedAt } ?? group?.requestedAt }

    @inline(__always)
    func noteObserved() {
        if !acknowledged.load(ordering: .relaxed) {
            acknowledged.store(true, ordering: .relaxed)
        }
    }

    /// Blocks until stop is requested or `deadline` passes. Returns whether stop was requested.
    func wait(until deadline: ContinuousClock.Instant?) -> Bool {
        if let group { return wait(on: group, until: deadline) }
        while true {
            let value = word.load()
            if value == Self.stopped { return true }
            // Announced, so the requester knows to issue the wake syscall.
            if !word.sleep(announcing: Self.runningWithSleepers, seen: value, until: deadline) {
                return isStopRequested
            }
        }
    }

    /// A member's wait: on the group's word, with this state's bit (see GroupStop.swift). The
    /// group word is read before this state's own, so a stop of this member after that read
    /// changes the group word (its sequence) and the futex does not sleep on the stale value.
    private func wait(on group: GroupStopWord, until deadline: ContinuousClock.Instant?) -> Bool {
        while true {
            let seen = group.word.load()
            if seen & GroupStopWord.stoppedBit != 0 || word.load() == Self.stopped { return true }
            #if DEBUG
            beforeGroupSleep?()
            #endif
            if !group.word.wait(whileEqualTo: seen, until: deadline, bitset: wakeBit) {
                return isStopRequested
            }
        }
    }

    /// The eventfd that becomes readable on stop, created on first use.
    func descriptor() throws(ThreadError) -> Int32 {
        let outside = owner.map { $0.tid != PThread.currentTID } ?? false
        return try rare.withLock { (rare) throws(ThreadError) -> Int32 in
            if outside { rare.descriptorShared = true }
            if rare.descriptor >= 0 { return rare.descriptor }
            if rare.descriptorRetired {
                throw ThreadError(
                    code: .invalidState,
                    message: "the stop descriptor is closed: the thread that owned this token has ended")
            }
            let fd = try EventFD.create()
            if rare.reason != nil || group?.isStopped == true {
                // The stop came first: make the new descriptor readable at once. Writing 1 to a
                // fresh non-blocking eventfd cannot fail short of a bug (which traps inside).
                try? EventFD.signal(fd)
            }
            rare.descriptor = fd
            descriptorReferences.store(1, ordering: .relaxed)  // the owner's, until retirement
            return fd
        }
    }

    /// Closes the descriptor (if any) for good. Called when the owning thread's body has ended.
    /// It is made readable first, so anything still polling it (a token that escaped the body,
    /// against the documentation) wakes instead of sleeping on a closed descriptor. One that
    /// another thread asked for stays open, readable, until the state is freed (its deinit closes
    /// it), so a number that thread still holds is never reused under it. A stop request still
    /// writing to it keeps it open until that write is done (the last reference closes it).
    func retireDescriptor() {
        let fd = rare.withLock { rare -> Int32 in
            let fd = rare.descriptor
            if fd >= 0 { try? EventFD.signal(fd) }
            rare.descriptorRetired = true
            if rare.descriptorShared { return -1 }
            rare.descriptor = -1
            return fd
        }
        if fd >= 0 { releaseDescriptor(fd) }
    }

    /// Drops one reference to the descriptor: the owner's (at retirement) or a stop request's
    /// (after its write). The last one closes it.
    private func releaseDescriptor(_ fd: Int32) {
        if descriptorReferences.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { closeDescriptor(fd) }
    }

    /// Registers `action`; runs it now (on this thread) when the stop already happened or the owner
    /// already ended. Returns the registration id, or nil when it ran at once.
    func addCallback(_ action: @escaping @Sendable () -> Void) -> UInt64? {
        let id = rare.withLock { rare -> UInt64? in
            // A group that stopped at once (see GroupStop.swift) has stopped this thread too.
            guard !rare.callbacksDone, !(group?.isStopped ?? false) else { return nil }
            let id = rare.nextCallbackID
            rare.nextCallbackID += 1
            if rare.callbacks.isEmpty { group?.callbackHolders.add(1, ordering: .releasing) }
            rare.callbacks.append(Callback(id: id, action: action))
            return id
        }
        if id == nil { action() }
        return id
    }

    /// Removes a callback that has not run. Returns true if it was removed (and so will never
    /// run). If it is running on another thread, waits until it returns (as `std::stop_callback`'s
    /// destructor does), so that afterwards it is certainly not running; called from inside the
    /// callback itself, returns false at once.
    func removeCallback(_ id: UInt64) -> Bool {
        enum Found { case removed, running, gone }
        let me = PThread.currentTID
        while true {
            let ended = callbackEnded.load()
            let found = rare.withLock { rare -> Found in
                if let index = rare.callbacks.firstIndex(where: { $0.id == id }) {
                    rare.callbacks.remove(at: index)
                    if rare.callbacks.isEmpty { group?.callbackHolders.subtract(1, ordering: .releasing) }
                    return .removed
                }
                if let running = rare.running, running.id == id, running.tid != me { return .running }
                return .gone
            }
            switch found {
            case .removed: return true
            case .gone: return false
            case .running:
                // The wait is as long as the user's callback runs: bounded by nothing the library
                // controls, which is the point (afterwards the callback is not running).
                _ = callbackEnded.wait(whileEqualTo: ended, until: nil)
            }
        }
    }

    /// The owner ended (with or without a stop): runs the callbacks that have not run yet, once.
    /// From here on a stop request has no effect.
    func runCallbacksAtEnd() {
        let callbacks = rare.withLock { rare -> [Callback] in
            rare.ownerEnded = true
            guard !rare.callbacksDone else { return [] }
            rare.callbacksDone = true
            var taken: [Callback] = []
            swap(&taken, &rare.callbacks)
            if !taken.isEmpty { group?.callbackHolders.subtract(1, ordering: .releasing) }
            return taken
        }
        for callback in callbacks { run(callback) }
    }
}
