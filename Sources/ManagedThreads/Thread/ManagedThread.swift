import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A joinable pthread whose body receives a ``StopToken``, with bounded joins.
///
/// ```swift
/// let worker = try ManagedThread.spawn(name: "indexer") { token in
///     while !token.wait(timeout: .seconds(1)) { reindex() }
/// }
/// let exited = try worker.stop(timeout: .seconds(2))   // request + bounded join
/// ```
///
/// Every join has a deadline and says whether the thread exited. Stop and join are idempotent
/// and may be called from any number of threads at once. A body that throws does not bring the
/// process down: the error is kept in ``error``. Dropping the last reference to an unjoined
/// thread detaches it, so no pthread is ever leaked by forgetting a handle (the thread itself
/// keeps running until its body returns).
public final class ManagedThread: Sendable, CustomStringConvertible {
    /// The full name, as given at spawn.
    public let name: String
    /// The name the kernel shows (`/proc/self/task/<tid>/comm`, `top -H`, gdb): the longest prefix
    /// of ``name`` that fits 15 bytes, cut on a Unicode scalar boundary.
    public let kernelName: String
    /// What the thread is for, for status dumps and reports.
    public let purpose: String?
    /// When ``spawn(name:purpose:options:fileID:line:_:)`` was called.
    public let spawnTime: ContinuousClock.Instant
    /// Whether group shutdowns skip waiting for this thread; see ``ThreadOptions/isBackground``.
    public let isBackground: Bool
    /// Where the thread was made: the spawning code's file and line, and the spawning thread.
    public let spawnSite: SpawnSite

    let stop: StopState
    let life: ThreadLife
    /// 1 while an interrupt signal sent to the thread is pending; see ``SignalOwner``.
    let interruptWord: FutexWord
    /// The group this thread belongs to, if any (weak: a group owns its threads, not the reverse).
    /// Told when the thread ends, before it is marked exited.
    weak let group: ThreadGroup?
    /// The group's logger and metrics (or the ungrouped ones), held strongly for the thread's end.
    let instruments: Instruments
    private let tidValue = Atomic<Int32>(0)
    let ending = Lock<Ending>(Ending())

    struct Ending {
        var error: (any Error)?
        var endedAt: ContinuousClock.Instant?
        /// Async joins suspended until the thread ends (see AsyncJoin.swift).
        var waiters = AsyncJoinWaiters()
    }

    // The pthread handle, published by the spawner as pthread_create returns and by the thread
    // itself as it starts (a group makes the thread visible before pthread_create returns, so
    // the spawner's copy may not be stored yet when a reaper gets to it). A joiner reads it once
    // it is stored, or once the thread has ended (which orders the store before it).
    private let handleValue = Atomic<UInt>(0)
    private var handle: pthread_t { pthread_t(handleValue.load(ordering: .acquiring)) }
    /// The pthread handle once the thread has started, for tests that act on the raw thread.
    var pthreadHandle: pthread_t? {
        let raw = handleValue.load(ordering: .acquiring)
        return raw == 0 ? nil : pthread_t(raw)
    }
    // The library-owned stack, if pooled: set by `start` before the thread exists, handed back to
    // the pool by whoever joins it (or to the orphan list by deinit).
    private nonisolated(unsafe) var stack: ThreadStack?
    // Set by `spawn`, taken (and cleared) once by the new thread: pthread_create orders the write
    // before the thread's read, and nothing else touches it.
    private nonisolated(unsafe) var body: ((StopToken) throws -> Void)?
    #if DEBUG
    /// The fault-injection context the thread inherits from its spawner (debug builds only).
    private let faultContext: Int32
    #endif

    init(
        name: String, purpose: String?, options: ThreadOptions, group: ThreadGroup? = nil, site: SpawnSite,
        body: @escaping (StopToken) throws -> Void
    ) {
        self.spawnSite = site
        self.group = group
        self.groupPath = group?.path
        self.instruments = group?.instruments ?? .ungrouped
        self.name = name
        self.kernelName = PThread.kernelName(for: name)
        self.purpose = purpose
        self.isBackground = options.isBackground
        self.spawnTime = .now
        self.stop = StopState(group: group?.stopWord)
        self.life = ThreadLife()
        self.interruptWord = .allocate(0)
        self.body = body
        #if DEBUG
        self.faultContext = FaultInjection.contextForNewThread()
        #endif
        self.stop.owner = self
    }

    /// See ``StopToken/requestExtension(_:)``.
    func requestExtension(_ more: Duration) -> Duration {
        guard let group, let queue = group.ledger.shutdownQueue else {
            return .zero
        }
        return queue.extend(self, groupPath: group.path, cap: group.extensionCap, more: more)
    }

    deinit {
        // The thread holds a reference while it runs, so here it has exited (or never started).
        // Unjoined: detach so glibc frees its stack as soon as it is gone.
        if life.hasEnded && !life.isJoined {
            if let stack {
                // Its stack must not be reused before the kernel is done with it: join it later.
                StackPool.shared.adoptOrphan(handle, stack: stack)
            } else {
                PThread.detach(handle)
            }
        }
        life.deallocate()
        interruptWord.deallocate()
    }

    /// Starts a new thread running `body`.
    ///
    /// The body's captures are released when it returns. Its thrown error, if any, is kept in
    /// ``error``.
    /// The corresponding C functions are `pthread_create` and `pthread_setname_np`.
    /// - Parameters:
    ///   - name: the full name; must not be empty or contain NUL. The kernel gets ``kernelName``.
    ///   - purpose: what the thread is for, shown in reports.
    ///   - options: stack size and the background flag.
    ///   - fileID: where the spawn is, for ``spawnSite`` (leave the default).
    ///   - line: the line of the spawn (leave the default).
    ///   - body: the work; it should return soon after its token reports a stop.
    /// - Throws: ``ThreadError`` with ``ThreadError/Code/invalidArgument`` for a bad name or stack
    ///   size, or ``ThreadError/Code/systemCall`` (`pthread_create`, EAGAIN/EPERM) when the
    ///   system refuses a thread. Nothing is leaked on failure.
    public static func spawn(
        name: String,
        purpose: String? = nil,
        options: ThreadOptions = ThreadOptions(),
        fileID: String = #fileID,
        line: Int = #line,
        _ body: sending @escaping (StopToken) throws -> Void
    ) throws(ThreadError) -> ManagedThread {
        try Fork.check("spawn \(name.debugDescription)")
        try validate(name: name, options: options)
        let thread = ManagedThread(
            name: name, purpose: purpose, options: options, site: .here(fileID: fileID, line: line), body: body)
        try thread.start(options: options)
        return thread
    }

    #if DEBUG
    /// Debug builds only: a lower stack floor for `validate`, so that MinimumStackTests' probe can
    /// measure, in a child process, what a thread needs below the minimum. 0: the minimum.
    static let measurementStackFloor = Atomic<Int>(0)
    #endif

    static func validate(name: String, options: ThreadOptions) throws(ThreadError) {
        if name.isEmpty {
            throw .invalidArgument("a thread name must not be empty")
        }
        if name.utf8.contains(0) {
            throw .invalidArgument("a thread name must not contain NUL bytes: \(name.debugDescription)")
        }
        var floor = ThreadOptions.minimumStackSize
        #if DEBUG
        let lowered = Self.measurementStackFloor.load(ordering: .relaxed)
        if lowered > 0 { floor = lowered }
        #endif
        if let size = options.stackSize, size < floor || size > ThreadOptions.maximumStackSize {
            throw .invalidArgument(
                "stack size \(size) is outside \(ThreadOptions.minimumStackSize)...\(ThreadOptions.maximumStackSize) bytes")
        }
    }

    /// Starts the pthread. On failure the thread counts as ended (its exit hook runs, so a group
    /// waiting for it is not left waiting) and nothing is leaked.
    func start(options: ThreadOptions) throws(ThreadError) {
        let context = Unmanaged.passRetained(self)
        do throws(ThreadError) {
            if options.stackAllocation.pooled {
                let stack = try StackPool.shared.acquire(stackSize: options.stackSize ?? ThreadOptions.defaultStackSize)
                self.stack = stack
                do throws(ThreadError) {
                    let handle = try PThread.create(
                        stack: stack.stackAddress, stackSize: stack.stackSize, start: managedThreadEntry, arg: context.toOpaque())
                    publish(handle)
                } catch {
                    StackPool.shared.release(stack)
                    self.stack = nil
                    throw error
                }
            } else {
                publish(try PThread.create(
                    stack: nil, stackSize: options.stackSize ?? 0, start: managedThreadEntry, arg: context.toOpaque()))
            }
        } catch {
            context.release()
            body = nil
            ending.withLock { $0.endedAt = .now }
            // Never ran: nothing to join or detach. Wake anyone already waiting for it, then tell
            // the group (whose shutdown may be waiting for it too).
            life.markEnded(joined: true)
            group?.threadEnded(self)
            throw error
        }
    }

    /// Stores the pthread handle, from the spawner as `pthread_create` returns and from the thread
    /// as it starts (the same value; whichever comes first lets a joiner go to the kernel join
    /// at once, instead of sleeping until the thread has ended and then again until it is gone).
    private func publish(_ handle: pthread_t) {
        handleValue.store(UInt(handle), ordering: .releasing)
    }

    /// Runs on the new thread: the prologue, the body, and the one exit path.
    fileprivate func run() {
        #if DEBUG
        FaultInjection.enterThread(context: faultContext)
        #endif
        publish(pthread_self())
        let tid = PThread.currentTID
        tidValue.store(tid, ordering: .releasing)
        ManagedThreadRegistry.insert(tid, .init(self))
        try? PThread.setCurrentName(kernelName)  // a name is a diagnostic aid, never a reason to fail
        // A thread spawned from a Dispatch or concurrency-pool thread inherits a mask that blocks
        // nearly every signal; the escalation's interrupt signals must get through.
        SignalOwner.threadStarted(interruptWord: interruptWord)
        instruments.threadStarted(self, tid: tid)
        // From here on, a body that never returns (pthread_exit, cancellation) still ends through
        // `end(error:)`: glibc runs the key's destructor once the stack has been unwound.
        PThread.setSpecific(ManagedThread.exitKey, Unmanaged.passUnretained(self).toOpaque())
        let error: (any Error)?
        if let group {
            // Code in the body that spawns without naming a group lands in this thread's group.
            error = ThreadGroup.$scoped.withValue(group) { runBody() }
        } else {
            error = runBody()
        }
        PThread.setSpecific(ManagedThread.exitKey, nil)
        end(error: error)
    }

    /// The thread-specific key whose destructor ends a thread whose body did not return.
    static let exitKey = PThread.makeKey { context in
        // The body called pthread_exit or was cancelled: its frames are gone, along with the
        // reference the start routine held (its release never ran), which this one stands for.
        let unmanaged = Unmanaged<ManagedThread>.fromOpaque(context!)
        unmanaged.takeUnretainedValue().end(error: ThreadError(
            code: .exitedEarly,
            message: "the body of \(unmanaged.takeUnretainedValue().name.debugDescription) ended the thread without returning (pthread_exit or cancellation)"))
        unmanaged.release()
    }

    /// The one exit path of a managed thread, whether its body returned, threw, called
    /// `pthread_exit` or was cancelled (as nptl's `start_thread` has one): callbacks, descriptor,
    /// registry, instruments, the exit mark joiners wait for, then the group. Runs on the thread.
    private func end(error: (any Error)?) {
        let tid = tidValue.load(ordering: .relaxed)
        stop.runCallbacksAtEnd()
        stop.retireDescriptor()
        ending.withLock {
            $0.error = error
            $0.endedAt = .now
        }
        SignalOwner.threadEnding()
        ManagedThreadRegistry.remove(tid)
        // Before the exit is marked, so a joiner sees the thread's last log line and metrics.
        instruments.threadEnded(self, tid: tid, error: error, stopRequestedAt: stop.isStopRequested ? stop.requestedAt : nil)
        life.markEnded()
        resumeAsyncJoins()
        // Tell the group last: a shutdown reaping in exit order then finds the thread already
        // marked exited and goes straight to the kernel-level join, instead of sleeping on the
        // life word and needing a second wake-up. (Joining waits for the kernel exit, so the stack
        // this code still runs on is not reused early.)
        group?.threadEnded(self)
        #if DEBUG
        FaultInjection.leaveThread(context: faultContext)
        #endif
    }

    /// Runs the body once; returns what it threw.
    private func runBody() -> (any Error)? {
        guard let body else { return nil }
        self.body = nil
        do {
            try body(StopToken(state: stop))
            return nil
        } catch {
            return error
        }
    }

    // MARK: State

    /// The path of the group the thread was spawned into (`root/server/workers`), or nil for a
    /// thread spawned with ``spawn(name:purpose:options:fileID:line:_:)`` outside any group.
    public let groupPath: String?

    /// The kernel thread id (as in `/proc/self/task`), or nil if the thread has not started running yet.
    public var tid: pid_t? {
        let tid = tidValue.load(ordering: .acquiring)
        return tid == 0 ? nil : tid
    }

    /// Whether the body (and the thread's end-of-life callbacks) are still running.
    public var isAlive: Bool { !life.hasEnded }

    /// Whether the thread has been joined: its system resources are gone.
    public var isJoined: Bool { life.isJoined }

    /// The error the body threw, once it has exited; nil if it returned normally or is running.
    public var error: (any Error)? { ending.withLock { $0.error } }

    /// When the body ended, or nil while it runs.
    public var endedAt: ContinuousClock.Instant? { ending.withLock { $0.endedAt } }

    /// The token the body receives; owners can use it to check or register `onStop` callbacks.
    public var stopToken: StopToken { StopToken(state: stop) }

    /// Whether a stop has been requested.
    public var isStopRequested: Bool { stop.isStopRequested }

    /// Why the stop was requested, if it was.
    public var stopReason: StopReason? { stop.reason }

    /// When the stop was requested, if it was.
    public var stopRequestedAt: ContinuousClock.Instant? { stop.requestedAt }

    /// Whether the body looked at its token (checked it, waited on it, ended a tick loop) after the
    /// stop was requested — a stuck thread that never did is ignoring its token.
    public var acknowledgedStop: Bool { stop.acknowledged.load(ordering: .relaxed) }

    /// Name, tid and whether the thread is alive, exited or joined.
    public var description: String {
        let state = isJoined ? "joined" : isAlive ? "alive" : "exited"
        return "ManagedThread(\(name.debugDescription), tid: \(tid.map(String.init) ?? "-"), \(state))"
    }

    // MARK: Stopping and joining

    /// Asks the body to finish: sets its token, wakes its waits and descriptor, runs its `onStop`
    /// callbacks on the calling thread. Does not wait. Idempotent.
    ///
    /// On a thread that has already ended there is nothing to stop: the call returns false and
    /// records nothing (``isStopRequested`` stays as it was, ``stopReason`` too).
    /// - Returns: true if this call made the request; false if one was made before or the thread
    ///   had ended.
    @discardableResult
    public func requestStop(reason: StopReason = .requested) -> Bool {
        if Fork.isChild { return false }
        return stop.requestStop(reason: reason)
    }

    /// Requests the stop without running the `onStop` callbacks: they are returned, tagged with
    /// this thread, for a ``CallbackRunner``. Empty when a stop had been requested already.
    func signal(reason: StopReason) -> [CallbackRunner.Pending] {
        stop.signal(reason: reason).map { .init(owner: name, groupPath: groupPath ?? "", state: stop, callback: $0) }
    }

    /// Waits for the thread to exit, at most until `deadline`, and reaps it.
    ///
    /// Always returns by the deadline (a deadline in the past still reaps a thread that has already
    /// ended). Safe to call from many threads at once; all of them see the same outcome.
    /// The corresponding C function is `pthread_clockjoin_np`.
    /// - Returns: true if the thread has exited and been joined, false if the deadline came first.
    /// - Throws: ``ThreadError/Code/selfJoin`` when called from the thread itself (including from
    ///   its own `onStop` callbacks as it ends).
    @available(*, noasync, message: "blocks the calling thread")
    public func join(until deadline: ContinuousClock.Instant) throws(ThreadError) -> Bool {
        try checkJoinable()
        switch life.awaitTurn(until: deadline, canReap: { handleValue.load(ordering: .acquiring) != 0 }) {
        case .joined: return true
        case .timedOut: return false
        case .reap: return reap(until: deadline)
        }
    }

    /// Throws unless a join may wait for this thread: not in a forked child, not from the thread
    /// itself. The calling thread is this one only if this one has started (published its
    /// handle) and not yet ended; pthread_equal needs no system call, unlike gettid.
    func checkJoinable() throws(ThreadError) {
        try Fork.check("join \(name.debugDescription)")
        if !life.hasEnded, let own = pthreadHandle, pthread_equal(own, pthread_self()) != 0 {
            throw ThreadError(code: .selfJoin, message: "thread \(name.debugDescription) tried to join itself")
        }
    }

    /// Unmaps pooled stacks beyond the pool's budget (256 MiB of address space) and reaps dropped,
    /// unjoined threads that have exited. Spawns trim a few stacks at a time on their own; call
    /// this after a large shutdown to give the memory back at once.
    public static func trimStackPool() {
        StackPool.shared.trim()
    }

    /// Waits for the thread to exit for at most `timeout`; see ``join(until:)-8dbxy``.
    @available(*, noasync, message: "blocks the calling thread")
    public func join(timeout: Duration) throws(ThreadError) -> Bool {
        try join(until: .after(timeout))
    }

    /// Requests a stop and joins for at most `timeout`. The `onStop` callbacks run on a library
    /// thread, so one that blocks does not stretch the wait.
    /// - Returns: true if the thread exited in time.
    /// - Throws: ``ThreadError/Code/selfJoin`` from the thread itself (the stop is still requested).
    @available(*, noasync, message: "blocks the calling thread")
    public func stop(timeout: Duration, reason: StopReason = .requested) throws(ThreadError) -> Bool {
        let deadline = ContinuousClock.Instant.after(timeout)
        _ = CallbackRunner.start(signal(reason: reason))
        return try join(until: deadline)
    }

    /// Holds the reaping right; joins the thread (running or ended) within the deadline.
    private func reap(until deadline: ContinuousClock.Instant) -> Bool {
        let done = PThread.join(handle, until: deadline)
        if done, let stack {
            // Joined: the kernel and glibc are done with the stack.
            StackPool.shared.release(stack)
        }
        life.finishReaping(joined: done)
        return done
    }
}

/// The pthread start routine: owns the reference `spawn` retained for the thread.
private func managedThreadEntry(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    // Released here after a return, or by the exit key's destructor when the body never returns.
    let unmanaged = Unmanaged<ManagedThread>.fromOpaque(context!)
    unmanaged.takeUnretainedValue().run()
    unmanaged.release()
    return nil
}
