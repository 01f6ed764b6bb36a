import CShims
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

// The fault table: every System-layer wrapper (every `SystemCall` case) forced to fail with each
// errno it can meet, through the public API that reaches it, with what must happen and what must
// not be left behind.
//
// Rows run in parallel with other tests in one process, so every check is one that parallel tests
// cannot disturb: faults are armed for the test's thread (and the threads it spawns), descriptors
// are checked through the System layer's ledger of what it opened and closed on those threads,
// threads by their own tids in /proc/self/task, stacks by the pool's counts for a stack size no
// other test uses. Once more, the whole table runs in a quiet child process, where the plain
// /proc/self/fd and /proc/self/task counts must come back to where they were.

extension SystemCall: Codable {}

/// One row: force `call` to fail with `errno` while `path` runs, and expect `outcome`.
struct FaultRow: Sendable, Hashable, Codable, CustomTestStringConvertible {
    /// The public API (or, where noted, the internal entry point) that reaches the call.
    enum Path: String, Sendable, Hashable, Codable {
        /// `ManagedThread.spawn` on a pooled stack of a size no other test uses (so `mmap` and
        /// `mprotect` are reached), the body capturing a `DeinitProbe`.
        case spawn
        /// `ManagedThread.spawn` with `stackAllocation: .system`.
        case spawnSystemStack
        /// `ThreadGroup.spawn`.
        case groupSpawn
        /// `await group.shutdown(timeout:)`, which spawns its joining thread (own process).
        case asyncShutdown
        /// `ThreadGroup.spawn`; the call happens on the new thread as it starts.
        case spawnedThreadName
        /// `thread.join(timeout:)` on a thread that has exited.
        case join
        /// `group.shutdown(timeout:)` reaping three exited threads.
        case groupShutdown
        /// Dropping the last handle of an exited, unjoined thread on a glibc stack (own process:
        /// the handle may be released on the thread itself).
        case droppedHandle
        /// `StopSource().token.fileDescriptor`.
        case tokenDescriptor
        /// `token.wait(forReadable:timeout:)` on a pipe with data.
        case waitForReadable
        /// `token.fileDescriptor` inside a group thread's body: the body throws it; the
        /// shutdown report counts and shows it.
        case descriptorInBody
        /// `StopSource.requestStop()` on a token whose descriptor exists.
        case requestStop
        /// The same with the eventfd counter already full: a real EAGAIN, no injection.
        case requestStopFullCounter
        /// `group.shutdown` signalling a thread that polls only its token's descriptor.
        case shutdownSignal
        /// `token.fileDescriptor` first asked for after the stop (the new descriptor is signalled).
        case descriptorAfterStop
        /// `token.ticks(every:pollable: true)` and one `next()`.
        case ticks
        /// `token.ticks(every:pollable: true)` inside a group thread's body.
        case ticksInBody
        /// `Ticker.next()` (reads the timerfd, asks it for the time left, sleeps on the token).
        case tickerNext
        /// `token.wait(forReadable:)` inside a group thread's body.
        case pollInBody
        /// `StackPool.trim()` of a pool holding a free stack beyond its budget. Internal: the
        /// public `ManagedThread.trimStackPool()` trims the shared pool only beyond a 256 MiB
        /// budget shared with every test running alongside.
        case trimStackPool
        /// `StackPool.acquire` whose guard-page `mprotect` fails with ENOMEM, then `munmap` of the
        /// fresh mapping fails too (both happen at `vm.max_map_count`). Internal, as above.
        case guardPageFailure
        /// `ShutdownSignals.install` for ``FaultTable/signal``, then `cancel()`.
        case signalsInstall
        /// A watcher installed from the row's thread (it inherits the fault) reads a signal the
        /// row sends itself: the watched group shuts down.
        case signalDelivery
        /// A shutdown whose escalation interrupts a thread blocked in read(2) on a pipe.
        case interruptStep
        /// `Memory.defaultThreadStackSize`, which `ThreadOptions.defaultStackSize` reads once per
        /// process (a `static let`), so the row calls the computation itself.
        case defaultStackSize
    }

    enum Outcome: String, Sendable, Hashable, Codable {
        /// A `ThreadError` with `code == .systemCall`, `call` and `errno` reaches the caller.
        case typedError
        /// EINTR, retried inside the wrapper: the operation succeeds.
        case retried
        /// The errno has a defined, non-error meaning (see the row's note): the operation succeeds.
        case handled
        /// Only a bug in the library can cause the errno: a precondition stops the process
        /// (checked in an exit test, by the message naming the call and the errno).
        case traps
    }

    var call: SystemCall
    var errno: Int32
    var path: Path
    var outcome: Outcome
    /// How many consecutive calls fail.
    var count = 1
    /// Why this errno, and what the outcome means here.
    var note: String

    init(_ call: SystemCall, _ errno: Int32, via path: Path, _ outcome: Outcome, count: Int = 1, _ note: String) {
        self.call = call
        self.errno = errno
        self.path = path
        self.outcome = outcome
        self.count = count
        self.note = note
    }

    var testDescription: String {
        "\(call.rawValue) \(Errno.name(errno))\(count > 1 ? " ×\(count)" : "") via \(path.rawValue) → \(outcome.rawValue)"
    }

    /// Whether the errno is forced by fault injection (else the row creates the real condition).
    var isInjected: Bool { path != .requestStopFullCounter }

    /// Rows that need a process of their own: traps end the process; some calls happen on a
    /// thread the test cannot name in advance, so the fault is process-wide.
    var needsOwnProcess: Bool { outcome == .traps || path == .asyncShutdown || path == .droppedHandle }

    /// Where the fault applies.
    var scope: FaultInjection.Scope {
        switch path {
        case .asyncShutdown: return .process
        case .spawnedThreadName, .descriptorInBody, .ticksInBody, .pollInBody, .signalDelivery: return .currentThreadAndSpawned
        default: return .currentThread
        }
    }
}

enum FaultTable {
    /// Every row. A `SystemCall` case needs at least one row, or an entry in ``exemptions``.
    static let rows: [FaultRow] = [
        // pthread_create (returns its error; never EINTR)
        .init(.pthreadCreate, EAGAIN, via: .spawn, .typedError, "RLIMIT_NPROC, threads-max, a pids cgroup, or no address space for a stack"),
        .init(.pthreadCreate, EPERM, via: .groupSpawn, .typedError, "scheduling attributes not permitted"),
        .init(.pthreadCreate, EINVAL, via: .spawnSystemStack, .typedError, "attributes rejected"),
        .init(.pthreadCreate, EAGAIN, via: .asyncShutdown, .handled, "no thread for the async shutdown's joins: it joins on the caller instead"),
        // pthread_setname_np: the name is a diagnostic aid, never a reason to fail a spawn
        .init(.pthreadSetname, ERANGE, via: .spawnedThreadName, .handled, "ignored: the thread runs with its inherited kernel name"),
        .init(.pthreadSetname, EPERM, via: .spawnedThreadName, .handled, "ignored: the thread runs with its inherited kernel name"),
        // pthread_clockjoin_np: only ETIMEDOUT is a real outcome; the rest mean a lost handle
        .init(.pthreadTimedjoin, ETIMEDOUT, via: .join, .handled, "join returns false; a later join reaps the thread"),
        .init(.pthreadTimedjoin, ETIMEDOUT, via: .groupShutdown, .handled, "one reap times out: the shutdown's final sweep reaps it, report clean"),
        .init(.pthreadTimedjoin, ETIMEDOUT, via: .groupShutdown, .handled, count: 1_000, "every reap times out: each thread named exitedUnreaped with its tid; later joins reap them"),
        .init(.pthreadTimedjoin, ESRCH, via: .join, .traps, "the library lost its own handle"),
        // pthread_detach: called once, on a handle the library created and never joined
        .init(.pthreadDetach, ESRCH, via: .droppedHandle, .traps, "cannot fail short of a bug"),
        .init(.pthreadDetach, EINVAL, via: .droppedHandle, .traps, "cannot fail short of a bug (not joinable)"),
        // eventfd
        .init(.eventfd, EMFILE, via: .tokenDescriptor, .typedError, "RLIMIT_NOFILE reached; nothing cached, a later request works"),
        .init(.eventfd, ENFILE, via: .tokenDescriptor, .typedError, "system file table full"),
        .init(.eventfd, ENOMEM, via: .tokenDescriptor, .typedError, "kernel out of memory"),
        .init(.eventfd, ENODEV, via: .tokenDescriptor, .typedError, "anonymous inode device unavailable"),
        .init(.eventfd, EINTR, via: .tokenDescriptor, .retried, "restartable"),
        .init(.eventfd, EMFILE, via: .waitForReadable, .typedError, "wait(forReadable:) needs the token's descriptor"),
        .init(.eventfd, EMFILE, via: .descriptorInBody, .typedError, "the body's error is kept and reported as failed"),
        // write(eventfd)
        .init(.eventfdWrite, EINTR, via: .requestStop, .retried, "restartable: the descriptor becomes readable"),
        .init(.eventfdWrite, EINTR, via: .shutdownSignal, .retried, "the polling thread still wakes: clean shutdown"),
        .init(.eventfdWrite, EINTR, via: .descriptorAfterStop, .retried, "the late descriptor is readable at once"),
        .init(.eventfdWrite, EAGAIN, via: .requestStopFullCounter, .handled, "a full counter is already readable: success (real EAGAIN, no injection)"),
        .init(.eventfdWrite, EBADF, via: .requestStop, .traps, "writing a descriptor the library does not own"),
        // timerfd_create
        .init(.timerfdCreate, EMFILE, via: .ticks, .typedError, "RLIMIT_NOFILE reached"),
        .init(.timerfdCreate, ENFILE, via: .ticks, .typedError, "system file table full"),
        .init(.timerfdCreate, ENOMEM, via: .ticks, .typedError, "kernel out of memory"),
        .init(.timerfdCreate, ENODEV, via: .ticks, .typedError, "anonymous inode device unavailable"),
        .init(.timerfdCreate, EINTR, via: .ticks, .retried, "restartable"),
        .init(.timerfdCreate, EMFILE, via: .ticksInBody, .typedError, "the body's error is kept and reported as failed"),
        // timerfd_settime (after a successful create: the timer must be closed)
        .init(.timerfdSettime, ENOMEM, via: .ticks, .typedError, "the new timer is closed"),
        .init(.timerfdSettime, EINVAL, via: .ticks, .typedError, "the new timer is closed"),
        .init(.timerfdSettime, EINTR, via: .ticks, .retried, "restartable"),
        // timerfd_gettime
        .init(.timerfdGettime, EINTR, via: .tickerNext, .retried, "restartable: the tick still comes"),
        .init(.timerfdGettime, EINVAL, via: .tickerNext, .traps, "the ticker's own timerfd: cannot fail short of a bug"),
        // read(timerfd)
        .init(.timerfdRead, EAGAIN, via: .tickerNext, .handled, "no expiry yet: next() keeps waiting and returns the tick"),
        .init(.timerfdRead, EINTR, via: .tickerNext, .retried, "restartable: the tick still comes"),
        .init(.timerfdRead, EINVAL, via: .tickerNext, .traps, "the ticker's own timerfd: cannot fail short of a bug"),
        // poll (EINTR retried by Poll.wait with the time that remains)
        .init(.poll, ENOMEM, via: .waitForReadable, .typedError, "kernel out of memory for the poll table"),
        .init(.poll, EINVAL, via: .waitForReadable, .typedError, "more descriptors than RLIMIT_NOFILE (a limit of 1)"),
        .init(.poll, EINTR, via: .waitForReadable, .retried, "retried with the remaining time: the pipe's data is seen"),
        .init(.poll, ENOMEM, via: .pollInBody, .typedError, "the body's error is kept and reported as failed"),
        // mmap (a pooled stack; never EINTR)
        .init(.mmap, ENOMEM, via: .spawn, .typedError, "no address space, vm.max_map_count, or RLIMIT_AS"),
        .init(.mmap, EAGAIN, via: .spawn, .typedError, "memory temporarily unavailable"),
        .init(.mmap, EPERM, via: .spawn, .typedError, "refused by a security policy"),
        // mprotect (the guard page; never EINTR)
        .init(.mprotect, ENOMEM, via: .spawn, .typedError, "splitting the mapping hit vm.max_map_count; the mapping is unmapped"),
        // munmap
        .init(.munmap, ENOMEM, via: .trimStackPool, .handled, "a split at vm.max_map_count: the stack stays in the pool for a later trim"),
        .init(.munmap, ENOMEM, via: .guardPageFailure, .handled, "the unguarded mapping is kept aside and unmapped by a later trim"),
        .init(.munmap, EINVAL, via: .trimStackPool, .traps, "a bad address: a bug"),
        // sigaction: ShutdownSignals.install undoes what it did (eventfd failing there is a test of
        // its own: a routed signal keeps its descriptor, so only a first install creates one)
        .init(.sigaction, EINVAL, via: .signalsInstall, .typedError, "the routing handler is refused; nothing stays routed"),
        // read(eventfd) of a routed signal, on the watcher thread
        .init(.eventfdRead, EINTR, via: .signalDelivery, .retried, "restartable: the delivery is read and the group shut down"),
        .init(.eventfdRead, EAGAIN, via: .signalDelivery, .handled, "nothing counted: the watcher polls again and reads the delivery"),
        .init(.eventfdRead, ENOMEM, via: .signalDelivery, .handled, "logged; the watcher backs off 10 ms, reads again and shuts the group down"),
        // tgkill, in the interrupt step of an escalating shutdown
        .init(.tgkill, EPERM, via: .interruptStep, .handled, "that round's signal is lost; it is sent again 10 ms later and the thread ends"),
        .init(.tgkill, EAGAIN, via: .interruptStep, .handled, "the real-time signal queue is full: sent again 10 ms later"),
        .init(.tgkill, ESRCH, via: .interruptStep, .handled, "the thread is gone (or seems to be): sent again while it runs"),
        // getrlimit
        .init(.getrlimit, EINVAL, via: .defaultStackSize, .handled, "falls back to 8 MiB"),
        .init(.getrlimit, EINTR, via: .defaultStackSize, .retried, "restartable: the real limit is read"),
    ]

    /// Calls with no row, and why. Empty: every wrapper can be made to fail, if only as a bug.
    static let exemptions: [SystemCall: String] = [:]

    /// The signal the ShutdownSignals rows watch: ignored by default, used by no other in-process test.
    static let signal = SIGWINCH

    /// A stack size (bytes) that only this row uses: 16 MiB plus `index` pages.
    static func stackSize(forRow index: Int) -> Int { (4096 + index) * Memory.pageSize }

    static func index(of row: FaultRow) -> Int { rows.firstIndex(of: row)! }

    /// Runs `row` here and now (with its own scope); returns what went wrong.
    static func run(_ row: FaultRow) -> [String] {
        let run = RowRun(row: row, index: index(of: row))
        if row.path == .signalsInstall || row.path == .signalDelivery {
            // One watcher per signal in a process: these rows take turns.
            signalRows.withLock { _ in
                warmUpSignalDescriptor()
                run.execute()
            }
        } else {
            run.execute()
        }
        return run.problems
    }

    private static let signalRows = Lock<Void>(())

    /// A routed signal keeps its eventfd for the life of the process (so a late handler never
    /// writes to a reused number): route ``signal`` once before any row, outside every row's
    /// ledger, so the rows see only what they open themselves.
    static func warmUpSignalDescriptor() {
        _ = warmedUp
    }

    private static let warmedUp: Bool = {
        (try? ShutdownSignals.install(for: ThreadGroup(name: "fault-table-warm-up"), options: .init(signals: [signal])))?.cancel()
        return true
    }()
}

/// One execution of one row.
final class RowRun {
    let row: FaultRow
    let index: Int
    /// Prefix of every thread and group name, unique to the row: `ft12-…` (kernel names stay
    /// under 15 bytes and identify the row's threads in /proc).
    let prefix: String
    private(set) var problems: [String] = []
    private var threads: [ManagedThread] = []
    private var fired = 0
    private let released = Counter()
    private var probes = 0
    /// Set when the path itself shut its group down.
    private var groupStopped = false
    private var stackMappingSize: Int?
    private var group: ThreadGroup!

    init(row: FaultRow, index: Int) {
        self.row = row
        self.index = index
        self.prefix = "ft\(index)"
    }

    func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { problems.append(message()) }
    }

    private func probe() -> DeinitProbe {
        probes += 1
        return DeinitProbe(released)
    }

    private func track(_ thread: ManagedThread) -> ManagedThread {
        threads.append(thread)
        return thread
    }

    /// Runs `body` with the row's fault armed; counts how often it fired.
    private func attempt<R>(count: Int? = nil, _ body: () throws(ThreadError) -> R) -> Result<R, ThreadError> {
        let (result, fired) = FaultInjection.counting(row.call, errno: row.errno, count: count ?? row.count, scope: row.scope) {
            () -> Result<R, ThreadError> in
            do throws(ThreadError) {
                return .success(try body())
            } catch {
                return .failure(error)
            }
        }
        self.fired += fired
        return result
    }

    /// Checks the row's outcome on a result; returns the value when the call succeeded.
    @discardableResult
    private func outcome<R>(_ result: Result<R, ThreadError>) -> R? {
        switch (row.outcome, result) {
        case (.typedError, .success):
            expect(false, "expected a ThreadError, the call succeeded")
            return nil
        case (.typedError, .failure(let error)):
            checkTyped(error)
            return nil
        case (_, .success(let value)):
            return value
        case (_, .failure(let error)):
            expect(false, "expected success (\(row.outcome.rawValue)), got \(error)")
            return nil
        }
    }

    /// The error must be a `ThreadError` naming the row's call and errno.
    private func checkTyped(_ error: (any Error)?) {
        guard let error = error as? ThreadError else {
            expect(false, "expected a ThreadError, got \(String(describing: error))")
            return
        }
        expect(error.code == .systemCall, "code is \(error.code), not systemCall: \(error)")
        expect(error.call == row.call.rawValue, "call is \(error.call ?? "nil"), not \(row.call.rawValue): \(error)")
        expect(error.errno == row.errno, "errno is \(error.errno.map(Errno.name) ?? "nil"), not \(Errno.name(row.errno))")
        expect(!error.message.isEmpty, "no message")
        expect(error.description.contains(row.call.rawValue) && error.description.contains(Errno.name(row.errno)),
               "the description does not name the call and errno: \(error)")
    }

    // MARK: Running

    func execute() {
        let before = Set(ThreadAudit.snapshot().map(\.tid))
        let ((), ledger) = FaultInjection.recording {
            do {
                group = try ThreadGroup.current.makeChild(name: prefix)
                try runPath()
                try followUp()
            } catch {
                expect(false, "unexpected error: \(error)")
            }
            // Everything the row spawned is joined before the ledger closes.
            for thread in threads where !thread.isJoined {
                expect((try? thread.join(timeout: .seconds(30))) == true, "\(thread.name) was not joined")
            }
        }
        if row.isInjected {
            expect(fired >= 1, "the fault never fired: the path did not reach \(row.call.rawValue)")
            if row.outcome == .retried { expect(fired == row.count, "fired \(fired) times, armed \(row.count)") }
        }
        expect(ledger.openDescriptors.isEmpty, "descriptors left open: \(ledger.openDescriptors) (ledger \(ledger.events))")
        expect(released.count == probes, "\(probes - released.count) body capture(s) not released")
        if let size = stackMappingSize {
            let counts = StackPool.shared.counts(mappingSize: size)
            expect(counts.mapped == counts.free + counts.unmapLater, "stack pool lost track of \(size)-byte mappings: \(counts)")
        }
        // No thread of the row is left in the kernel: by tid, and by name for spawns that failed.
        let tids = threads.compactMap(\.tid)
        do {
            try waitFor("the row's threads to leave /proc/self/task", timeout: .seconds(30)) {
                tids.allSatisfy { !taskExists($0) }
            }
        } catch {
            expect(false, "threads still in /proc/self/task: \(tids.filter(taskExists))")
        }
        let strays = ThreadAudit.snapshot().filter { !before.contains($0.tid) && $0.name.hasPrefix("\(prefix)-") }
        expect(strays.isEmpty, "threads of this row still running: \(strays)")
    }

    /// After the fault: the group (or, when the path shut it down, a sibling) takes a new
    /// thread and shuts down cleanly.
    private func followUp() throws {
        let target = groupStopped ? try ThreadGroup.current.makeChild(name: "\(prefix)-after") : group!
        let after = track(try target.spawn(name: "\(prefix)-after") { token in _ = token.wait(until: .after(.seconds(60))) })
        let report = target.shutdown(timeout: .seconds(30))
        expect(report.isClean && report.failed == 0 && after.isJoined, "the group is not usable afterwards: \(report)")
        if target !== group, !groupStopped {
            let last = group.shutdown(timeout: .seconds(30))
            expect(last.isClean, "\(last)")
        }
    }

    private func runPath() throws {
        let group = self.group!
        switch row.path {
        case .spawn:
            let size = FaultTable.stackSize(forRow: index)
            stackMappingSize = StackPool.mappingSize(forStackSize: size)
            let ran = Counter()
            let result = attempt { () throws(ThreadError) in
                let capture = probe()
                return try ManagedThread.spawn(name: "\(prefix)-spawn", options: ThreadOptions(stackSize: size)) { _ in
                    _ = capture
                    ran.increment()
                }
            }
            if let thread = outcome(result) { _ = track(thread) }
            expect(ran.count == 0, "the body ran")
            // The same size works afterwards.
            let again = track(try ManagedThread.spawn(name: "\(prefix)-again", options: ThreadOptions(stackSize: size)) { _ in ran.increment() })
            let joined = try again.join(timeout: .seconds(30))
            expect(joined && ran.count == 1, "a later spawn did not run")

        case .spawnSystemStack:
            let result = attempt { () throws(ThreadError) in
                let capture = probe()
                return try ManagedThread.spawn(name: "\(prefix)-sys", options: ThreadOptions(stackAllocation: .system)) { _ in _ = capture }
            }
            if let thread = outcome(result) { _ = track(thread) }

        case .groupSpawn:
            let result = attempt { () throws(ThreadError) in
                let capture = probe()
                return try group.spawn(name: "\(prefix)-g") { token in
                    _ = capture
                    _ = token.wait(until: .after(.seconds(60)))
                }
            }
            if let thread = outcome(result) { _ = track(thread) }
            expect(group.aliveThreads.isEmpty && group.status().isEmpty, "the refused thread is listed: \(group.status())")

        case .spawnedThreadName:
            let started = Counter()
            let result = attempt { () throws(ThreadError) -> ManagedThread in
                let thread = try group.spawn(name: "\(prefix)-named") { token in
                    started.increment()
                    _ = token.wait(until: .after(.seconds(60)))
                }
                // The name is set before the body starts: wait inside the armed scope.
                try? waitFor("the thread to start") { started.count == 1 }
                return thread
            }
            guard let thread = outcome(result).map(track) else { return }
            let comm = thread.tid.flatMap(kernelComm)
            expect(comm != thread.kernelName, "the kernel name was set although the call failed: comm \(comm ?? "nil"), spawner's comm \(kernelComm(PThread.currentTID) ?? "nil"), fired \(fired)")
            expect(thread.isAlive, "the thread did not keep running")
            let stopped = try thread.stop(timeout: .seconds(30))
            expect(stopped && thread.error == nil, "the thread did not stop cleanly")

        case .join:
            let thread = track(try group.spawn(name: "\(prefix)-join") { _ in })
            try waitFor("the thread to end") { !thread.isAlive }
            let result = attempt { () throws(ThreadError) in try thread.join(timeout: .seconds(30)) }
            if let joined = outcome(result) {
                expect(!joined && !thread.isJoined, "join said \(joined) although the kernel timed out")
                let later = try thread.join(timeout: .seconds(30))
                expect(later && thread.isJoined, "a later join did not reap the thread")
            }

        case .groupShutdown:
            var mine: [ManagedThread] = []
            for i in 0..<3 {
                mine.append(track(try group.spawn(name: "\(prefix)-s\(i)") { token in _ = token.wait(until: .after(.seconds(60))) }))
            }
            try waitFor("the threads to start") { mine.allSatisfy { $0.tid != nil } }
            groupStopped = true
            guard let report = outcome(attempt { () -> ShutdownReport in group.shutdown(timeout: .seconds(30)) }) else { return }
            expect(report.stuck == 0 && report.total == 3, "\(report)")
            if row.count == 1 {
                expect(report.isClean && report.joined == 3 && mine.allSatisfy(\.isJoined), "one timed-out reap was not recovered: \(report)")
            } else {
                let unreaped = report.root.allEntries.filter { $0.status == .exitedUnreaped }
                let expected = Set(mine.map { "\($0.name)#\($0.tid ?? -1)" })
                let named = Set(unreaped.map { "\($0.name)#\($0.tid ?? -1)" })
                expect(named == expected, "exitedUnreaped entries \(named), expected \(expected): \(report)")
                for thread in mine {
                    let joined = try thread.join(timeout: .seconds(30))
                    expect(joined, "\(thread.name) could not be reaped later")
                }
            }

        case .signalsInstall:
            let watched = FaultTable.signal
            let maskedBefore = Signals.isBlocked(watched)  // install changes no mask
            let result = attempt { () throws(ThreadError) in
                try ShutdownSignals.install(for: ThreadGroup(name: "\(prefix)-sig"), options: .init(signals: [watched]))
            }
            if let signals = outcome(result) { signals.cancel() }
            expect(cshims_signal_is_ours(watched) == 0, "the routing handler stayed installed")
            expect(Signals.isBlocked(watched) == maskedBefore, "the calling thread's mask changed")
            // The signal is free again: a later install works.
            try ShutdownSignals.install(for: ThreadGroup(name: "\(prefix)-sig2"), options: .init(signals: [watched])).cancel()

        case .signalDelivery:
            let watchedGroup = try group.makeChild(name: "\(prefix)-watched")
            let waiter = track(try watchedGroup.spawn(name: "\(prefix)-w") { token in _ = token.wait(until: .after(.seconds(60))) })
            let result = attempt { () throws(ThreadError) -> ShutdownReport? in
                // Installed inside the armed scope, so the watcher thread inherits the fault.
                let signals = try ShutdownSignals.install(
                    for: watchedGroup, options: .init(signals: [FaultTable.signal], timeout: .seconds(30))) { _ in }
                defer { signals.cancel() }
                kill(getpid(), FaultTable.signal)
                return signals.waitForShutdown(until: .after(.seconds(60)))
            }
            if let report = outcome(result) {
                expect(report?.isClean == true && waiter.isJoined, "the signal did not shut the group down: \(String(describing: report))")
            }

        case .interruptStep:
            let pipe = Pipe()
            let interruptions = Counter()
            let reader = track(try group.spawn(name: "\(prefix)-read") { token in
                readUntilInterrupted(pipe, token, interruptions: interruptions)
            })
            try waitFor("the reader blocked in read") { reader.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "read" }
            groupStopped = true
            let result = attempt { () -> ShutdownReport in
                group.shutdown(timeout: .seconds(30), policy: .shared.escalating(.interrupt(after: 0.01)))
            }
            if let report = outcome(result) {
                expect(report.isClean && report.interrupted == 1 && reader.isJoined, "the interrupt did not get through: \(report)")
            }

        case .tokenDescriptor:
            let source = StopSource()
            let result = attempt { () throws(ThreadError) in try source.token.fileDescriptor }
            if let fd = outcome(result) {
                expect(descriptorKind(fd) == "anon_inode:[eventfd]", "fd \(fd) is \(descriptorKind(fd) ?? "closed")")
            } else {
                expect(source.state.rare.withLock { $0.descriptor } == -1, "a failed request cached a descriptor")
            }
            let fd = try source.token.fileDescriptor
            source.requestStop()
            expect(isReadable(fd), "the token's descriptor is not readable after the stop")

        case .waitForReadable:
            let pipe = Pipe()
            var byte: UInt8 = 1
            expect(write(pipe.writeEnd, &byte, 1) == 1, "pipe write")
            let source = StopSource()
            let result = attempt { () throws(ThreadError) in
                try source.token.wait(forReadable: pipe.readEnd, timeout: .seconds(30))
            }
            if let readiness = outcome(result) { expect(readiness == .ready, "got \(readiness)") }
            // Afterwards the same wait works.
            let later = try source.token.wait(forReadable: pipe.readEnd, timeout: .seconds(30))
            expect(later == .ready, "a later wait got \(later)")

        case .descriptorInBody, .ticksInBody, .pollInBody:
            let path = row.path
            let result = attempt { () throws(ThreadError) -> ManagedThread in
                let thread = try group.spawn(name: "\(prefix)-body") { token in
                    switch path {
                    case .descriptorInBody:
                        _ = try token.fileDescriptor
                    case .ticksInBody:
                        try token.ticks(every: .seconds(60), pollable: true).close()
                    default:
                        let pipe = Pipe()
                        _ = try token.wait(forReadable: pipe.readEnd, timeout: .milliseconds(1))
                    }
                }
                // The call happens on the new thread: keep the fault armed until it has ended.
                try? waitFor("the body to end") { !thread.isAlive }
                return thread
            }
            // The spawn succeeds; the error is the body's.
            guard case .success(let thread) = result else {
                expect(false, "the spawn failed: \(result)")
                return
            }
            _ = track(thread)
            checkTyped(thread.error)
            groupStopped = true
            let report = group.shutdown(timeout: .seconds(30))
            let entry = report.root.allEntries.first { $0.name == thread.name }
            expect(report.isClean && report.failed == 1 && entry?.status == .joined
                       && entry?.error?.contains(row.call.rawValue) == true,
                   "the report does not show the failed body: \(report)")

        case .requestStop:
            let source = StopSource()
            let fd = try source.token.fileDescriptor
            if let made = outcome(attempt { () -> Bool in source.requestStop() }) {
                expect(made && source.token.isStopRequested, "the stop was not made")
                expect(isReadable(fd), "the descriptor is not readable: the write was not retried")
            }

        case .requestStopFullCounter:
            let source = StopSource()
            let fd = try source.token.fileDescriptor
            var nearlyFull: UInt64 = 0xffff_ffff_ffff_fffe  // the largest value an eventfd holds
            expect(write(fd, &nearlyFull, 8) == 8, "could not fill the counter")
            expect(source.requestStop(), "the stop was not made")
            expect(isReadable(fd), "the descriptor is not readable")
            var value: UInt64 = 0
            expect(read(fd, &value, 8) == 8 && value == nearlyFull,
                   "counter \(value): the library's write was not refused with EAGAIN, so the row tested nothing")

        case .shutdownSignal:
            let polling = Counter()
            let thread = track(try group.spawn(name: "\(prefix)-poll") { token in
                // Waits on the descriptor alone, so only the eventfd write can wake it.
                var entry = pollfd(fd: try token.fileDescriptor, events: Int16(POLLIN), revents: 0)
                polling.increment()
                while poll(&entry, 1, 60_000) != 1 {}
            })
            try waitFor("the thread to poll its descriptor") { polling.count == 1 }
            groupStopped = true
            if let report = outcome(attempt { () -> ShutdownReport in group.shutdown(timeout: .seconds(30)) }) {
                expect(report.isClean && thread.isJoined, "the polling thread did not wake: \(report)")
            }

        case .descriptorAfterStop:
            let source = StopSource()
            source.requestStop()
            if let fd = outcome(attempt { () throws(ThreadError) in try source.token.fileDescriptor }) {
                expect(isReadable(fd), "the late descriptor is not readable")
            }

        case .ticks:
            let source = StopSource()
            let result = attempt { () throws(ThreadError) -> Tick? in
                let ticker = try source.token.ticks(every: .milliseconds(1), pollable: true)
                defer { ticker.close() }
                return ticker.next()
            }
            if let tick = outcome(result) { expect(tick != nil, "no tick") }
            // Afterwards a ticker works.
            let ticker = try source.token.ticks(every: .milliseconds(1), pollable: true)
            expect(ticker.next() != nil, "a later ticker did not tick")
            ticker.close()

        case .tickerNext:
            let source = StopSource()
            let ticker = try source.token.ticks(every: .milliseconds(50), pollable: true)
            defer { ticker.close() }
            let call = row.call
            let result = attempt { () -> Tick? in
                // next() reaches timerfd_gettime only when no expiry is pending yet; on a slow
                // machine the first period may pass first, so try a few periods.
                var tick: Tick?
                for _ in 0..<5 {
                    tick = ticker.next()
                    if FaultInjection.remaining(call) == 0 { break }
                }
                return tick
            }
            if let tick = outcome(result) { expect(tick != nil, "no tick") }

        case .trimStackPool:
            let pool = StackPool()
            pool.retainedBytes = 0
            let size = FaultTable.stackSize(forRow: index)
            let mapping = StackPool.mappingSize(forStackSize: size)
            pool.release(try pool.acquire(stackSize: size))
            _ = outcome(attempt { () -> Void in pool.trim() })
            let kept = pool.counts(mappingSize: mapping)
            expect(kept.mapped == 1 && kept.free == 1, "the refused stack was not kept: \(kept)")
            pool.trim()
            let after = pool.counts(mappingSize: mapping)
            expect(after.mapped == 0 && after.free == 0, "a later trim did not unmap it: \(after)")

        case .guardPageFailure:
            let pool = StackPool()
            let size = FaultTable.stackSize(forRow: index)
            let mapping = StackPool.mappingSize(forStackSize: size)
            let result = attempt { () throws(ThreadError) in
                try FaultInjection.with(.mprotect, errno: ENOMEM) { () throws(ThreadError) in try pool.acquire(stackSize: size) }
            }
            switch result {
            case .success: expect(false, "acquire succeeded although mprotect failed")
            case .failure(let error): expect(error.call == "mprotect" && error.errno == ENOMEM, "\(error)")
            }
            let kept = pool.counts(mappingSize: mapping)
            expect(kept.mapped == 1 && kept.free == 0 && kept.unmapLater == 1, "the unguarded mapping was not kept aside: \(kept)")
            pool.trim()
            let after = pool.counts(mappingSize: mapping)
            expect(after.mapped == 0 && after.unmapLater == 0, "a later trim did not unmap it: \(after)")

        case .defaultStackSize:
            let real = Memory.defaultThreadStackSize
            if let size = outcome(attempt { () -> Int in Memory.defaultThreadStackSize }) {
                let expected = row.outcome == .retried ? real : 8 * 1024 * 1024
                expect(size == expected, "default stack size \(size), expected \(expected)")
            }

        case .asyncShutdown, .droppedHandle:
            expect(false, "\(row.path) runs only in its own process (FaultTable.runInOwnProcess)")
        }
    }
}

/// What /proc says descriptor `fd` is (`anon_inode:[eventfd]`, …), or nil when it is not open.
func descriptorKind(_ fd: Int32) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")
}

/// Whether `fd` is readable now.
func isReadable(_ fd: Int32) -> Bool {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    return poll(&entry, 1, 0) == 1 && entry.revents & Int16(POLLIN) != 0
}

extension FaultTable {
    /// Marks the lines a child process writes for its parent to show.
    static let childMarker = "FAULT-TABLE: "

    /// In an exit test's child: runs a row that needs its own process. A trap row must not
    /// return: if it does, the child exits 0, which fails the parent's `.failure` expectation.
    static func runInOwnProcess(_ row: FaultRow) async -> Never {
        let problems: [String]
        switch row.path {
        case .asyncShutdown: problems = await asyncShutdownRow(row)
        case .droppedHandle: problems = droppedHandleRow(row)
        default: problems = run(row)
        }
        if row.outcome == .traps {
            FileHandle.standardError.write(Data("\(childMarker)no trap; problems: \(problems)\n".utf8))
            exit(0)
        }
        // Exit 0 either way: the parent reads the problems from stderr (an exit test that fails
        // its exit condition hands back no output).
        for problem in problems { FileHandle.standardError.write(Data("\(childMarker)\(problem)\n".utf8)) }
        exit(0)
    }

    /// The async shutdown cannot get a thread for its joins: it joins on the caller instead.
    private static func asyncShutdownRow(_ row: FaultRow) async -> [String] {
        let group = ThreadGroup(name: "ft-async")
        let threads: [ManagedThread]
        do {
            threads = try (0..<2).map { i in
                try group.spawn(name: "ft-idle-\(i)") { token in _ = token.wait(until: .after(.seconds(60))) }
            }
        } catch {
            return ["spawn: \(error)"]
        }
        let (report, fired) = await FaultInjection.counting(row.call, errno: row.errno, scope: .process) {
            await group.shutdown(timeout: .seconds(30))
        }
        var problems: [String] = []
        if fired != 1 { problems.append("the fault fired \(fired) times") }
        if !report.isClean || report.joined != 2 || !threads.allSatisfy(\.isJoined) { problems.append("\(report)") }
        return problems
    }

    /// Drops the last handle of an exited, unjoined thread on a glibc stack, which detaches it.
    /// The handle is dropped on this thread once the kernel thread is gone (so the thread's own
    /// reference, released as its start routine returns, is gone too).
    private static func droppedHandleRow(_ row: FaultRow) -> [String] {
        do {
            var thread: ManagedThread? = try ManagedThread.spawn(name: "ft-dropped", options: ThreadOptions(stackAllocation: .system)) { _ in }
            try waitFor { thread?.tid != nil && thread?.isAlive == false }
            let tid = thread!.tid!
            try waitFor { !taskExists(tid) }
            FaultInjection.with(row.call, errno: row.errno) { thread = nil }
            return []
        } catch {
            return ["\(error)"]
        }
    }
}

@Suite("Fault table", .managedThreads)
struct FaultTableTests {
    @Test("every System wrapper has a row, or a documented exemption")
    func everyCallHasARow() {
        for call in SystemCall.allCases {
            let rows = FaultTable.rows.filter { $0.call == call }
            #expect(!rows.isEmpty || FaultTable.exemptions[call] != nil,
                    "SystemCall.\(call) (\(call.rawValue)) has no row in the fault table and no exemption")
        }
        #expect(Set(FaultTable.rows).count == FaultTable.rows.count, "duplicate rows")
        // EINTR rows are retried, never errors; only pthread calls and mmap/mprotect/munmap
        // (which never report EINTR) have none.
        for row in FaultTable.rows where row.errno == EINTR {
            #expect(row.outcome == .retried, "\(row.testDescription)")
        }
        let restartable: Set<SystemCall> = [
            .eventfd, .eventfdWrite, .timerfdCreate, .timerfdSettime, .timerfdGettime, .timerfdRead, .poll, .getrlimit,
            .eventfdRead,
        ]
        #expect(Set(FaultTable.rows.filter { $0.errno == EINTR }.map(\.call)) == restartable)
    }

    @Test("a forced failure has the outcome the table gives, and leaves nothing behind",
          arguments: FaultTable.rows.filter { !$0.needsOwnProcess })
    func row(_ row: FaultRow) {
        for problem in FaultTable.run(row) {
            Issue.record("\(row.testDescription) (\(row.note)): \(problem)")
        }
    }

    @Test("rows that need a process of their own: traps for bug errnos, process-wide faults",
          .exitTest,
          arguments: FaultTable.rows.filter(\.needsOwnProcess))
    func ownProcessRow(_ row: FaultRow) async {
        let expected: ExitTest.Condition = row.outcome == .traps ? .failure : .success
        let result = await #expect(processExitsWith: expected, observing: [\.standardErrorContent]) { [row] in
            await FaultTable.runInOwnProcess(row)
        }
        guard let result else { return }
        let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
        if row.outcome == .traps {
            // Swift prints a failed precondition as "…: Precondition failed: <message>" (or
            // "Fatal error:" for preconditionFailure).
            let fatal = stderr.split(separator: "\n").first { Self.isTrapLine($0) }.map(String.init) ?? ""
            #expect(fatal.contains(row.call.rawValue) && fatal.contains(Errno.name(row.errno)),
                    "the trap does not name \(row.call.rawValue) and \(Errno.name(row.errno)): \(stderr)")
        } else {
            Self.recordChildProblems(stderr)
        }
    }

    @Test("the whole table in a quiet process: eventfd/timerfd descriptors and threads as before", .exitTest)
    func wholeTableInQuietProcess() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            runWholeFaultTable()
        }
        if let result { Self.recordChildProblems(String(decoding: result.standardErrorContent, as: UTF8.self)) }
    }

    private static func isTrapLine(_ line: Substring) -> Bool {
        line.contains("Precondition failed") || line.contains("Fatal error")
    }

    /// Records each problem line a child wrote for its parent.
    private static func recordChildProblems(_ stderr: String) {
        for line in stderr.split(separator: "\n") where line.hasPrefix(FaultTable.childMarker) || isTrapLine(line) {
            Issue.record("child process: \(line.dropFirst(line.hasPrefix(FaultTable.childMarker) ? FaultTable.childMarker.count : 0))")
        }
    }
}

/// Runs every in-process row in a child process where nothing else runs, then compares the
/// process's eventfd/timerfd descriptors and threads with what there was before.
private func runWholeFaultTable() -> Never {
    ProcessSnapshot.warmUpHarness()
    FaultTable.warmUpSignalDescriptor()
    let before = ProcessSnapshot.take()
    var problems: [String] = []
    for row in FaultTable.rows where !row.needsOwnProcess {
        problems += FaultTable.run(row).map { "\(row.testDescription): \($0)" }
    }
    var after = ProcessSnapshot.take()
    // Joined threads leave /proc/self/task within moments.
    try? waitFor(timeout: .seconds(10)) {
        after = ProcessSnapshot.take()
        return after.tasks.subtracting(before.tasks).isEmpty
    }
    let leaked = after.leakedDescriptors(since: before)
    if !leaked.isEmpty { problems.append("descriptors leaked: \(leaked)") }
    let extra = after.tasks.subtracting(before.tasks)
    if !extra.isEmpty {
        let names = extra.map { "\($0) \(kernelComm(Int32($0)!) ?? "?")" }
        problems.append("threads left: \(names)")
    }
    // Exit 0 either way: the parent reads the problems from stderr.
    for problem in problems { FileHandle.standardError.write(Data("\(FaultTable.childMarker)\(problem)\n".utf8)) }
    exit(0)
}
