import CShims
import Foundation
import ManagedThreadsTesting
import Synchronization
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

// Regression tests for the process-wide signal state (issue 12, part A). Each point is about the
// whole process, so most run in a child process (an exit test).

/// Waits for `pid` to end, at most `timeout`; returns its wait status, or nil if it still runs
/// (then it is killed with SIGKILL and reaped, so no child outlives the test).
func waitForChild(_ pid: pid_t, timeout: Duration) -> Int32? {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    var status: Int32 = 0
    while ContinuousClock.now < deadline {
        if waitpid(pid, &status, WNOHANG) == pid { return status }
        usleep(2_000)
    }
    kill(pid, SIGKILL)
    waitpid(pid, &status, 0)
    return nil
}

func terminatedBySignal(_ status: Int32?, _ signal: Int32) -> Bool {
    guard let status else { return false }
    // WIFSIGNALED / WTERMSIG, which Swift does not import (they are macros).
    return (status & 0x7f) == signal
}

/// Unblocks `signal` in the calling thread (an exit test's body may run on a pool thread that
/// blocks nearly everything), so the check below is about what the library does.
func unblockInThisThread(_ signal: Int32) {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, signal)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
}

/// Counts deliveries to the "application's own" handler: the action in place before a watcher.
let applicationHandlerCount = Atomic<Int>(0)
func applicationHandler(_ signal: Int32) {
    applicationHandlerCount.add(1, ordering: .relaxed)
}

func installApplicationHandler(_ signal: Int32) -> sigaction {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = applicationHandler
    sigemptyset(&action.sa_mask)
    action.sa_flags = SA_RESTART
    var previous = sigaction()
    sigaction(signal, &action, &previous)
    return previous
}

@Suite("Signal owner: the process's signal state is left as the application set it")
struct SignalOwnerProcessTests {
    @Test("a child started with posix_spawn after install is still ended by SIGTERM, and no mask changed", .exitTest)
    func spawnedChildStaysStoppable() async {
        await #expect(processExitsWith: .exitCode(0)) {
            spawnedChildBody()
        }
    }

    @Test("a forked child that does not exec is ended by SIGTERM (its previous action), not silently kept",
          .disabled(if: Sanitizer.thread, "TSan does not support fork in a multithreaded process: its own runtime hangs the child"), .exitTest)
    func forkedChildStaysStoppable() async {
        await #expect(processExitsWith: .exitCode(0)) {
            forkedChildBody()
        }
    }

    @Test("an application that blocks a real-time signal and reads it itself is not killed by a managed thread", .exitTest)
    func applicationRealtimeSignalUntouched() async {
        await #expect(processExitsWith: .exitCode(0)) {
            applicationRealtimeBody()
        }
    }

    @Test("a signal raised while install runs is never lost: the old action or the watcher gets it", .exitTest)
    func noSignalLostDuringInstall() async {
        await #expect(processExitsWith: .exitCode(0)) {
            noSignalLostBody()
        }
    }

    @Test("the second-signal exit flushes the program's buffered standard output", .exitTest)
    func secondSignalFlushesStdout() async throws {
        let outcome = await #expect(processExitsWith: .exitCode(128 + SIGTERM), observing: [\.standardOutputContent]) {
            secondSignalFlushBody()
        }
        let stdout = String(decoding: try #require(outcome).standardOutputContent, as: UTF8.self)
        #expect(stdout.contains("still in stdio's buffer"), "stdout was lost: \(stdout.debugDescription)")
    }
}

@Suite("Signal owner: interrupts", .serialized, .managedThreads)
struct SignalOwnerInterruptTests {
    @Test("the default interrupt signal does not queue and is ignored by default (SIGURG)")
    func defaultSignalIsHarmless() {
        #expect(Escalation.defaultInterruptSignal == SIGURG)
    }

    @Test("a thread that masks the interrupt signal collects at most one pending copy")
    func atMostOnePendingCopy() throws {
        let signal = __libc_current_sigrtmin() + 7
        try Escalation.reserveInterruptSignal(signal)
        let group = try ThreadGroup.current.makeChild(name: "masking")
        let gate = Gate()
        let masked = Counter()
        let pending = Atomic<Int>(-1)
        let thread = try group.spawn(name: "masks-it") { _ in
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, signal)
            pthread_sigmask(SIG_BLOCK, &set, nil)
            masked.increment()
            gate.waitOpen()
            var copies = 0
            var zero = timespec(tv_sec: 0, tv_nsec: 0)
            while sigtimedwait(&set, nil, &zero) == signal { copies += 1 }
            pending.store(copies, ordering: .relaxed)
        }
        try waitFor("the thread masked the signal") { masked.count == 1 }
        let report = group.shutdown(timeout: .milliseconds(400), policy: .shared.escalating(.interrupt(signal: signal, after: 0.05)))
        #expect(report.stuck == 1)
        gate.release()
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(pending.load(ordering: .relaxed) <= 1, "\(pending.load(ordering: .relaxed)) copies queued up")
        #expect(pending.load(ordering: .relaxed) >= 0)
    }

    @Test("a thread that acknowledged the stop is not interrupted")
    func acknowledgedNotInterrupted() throws {
        let group = try ThreadGroup.current.makeChild(name: "acknowledging")
        let gate = Gate()
        let thread = try group.spawn(name: "slow-but-cooperating") { token in
            _ = token.wait(timeout: .seconds(120))  // sees the stop: acknowledged
            gate.waitOpen()
        }
        try waitFor("the thread waits") { thread.tid != nil }
        // The thread must see the stop before the interrupt step: 1.5 s, not 30 ms (a loaded TSan
        // run once woke it later than that, and it was interrupted having done nothing wrong).
        let report = group.shutdown(timeout: .seconds(3), policy: .shared.escalating(.interrupt(after: 0.5)))
        #expect(report.interrupted == 0, "\(report)")
        #expect(report.stuck == 1)
        gate.release()
        #expect(try thread.join(timeout: .seconds(30)))
    }

    @Test("one signal cannot be both a shutdown signal and the interrupt signal, whichever comes first")
    func rolesConflict() throws {
        // Interrupt first: the default interrupt signal cannot be watched.
        #expect {
            try ShutdownSignals.install(for: ThreadGroup(name: "x"), options: .init(signals: [Escalation.defaultInterruptSignal])).cancel()
        } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
        // Watched first: it cannot be declared an interrupt signal.
        let signals = try ShutdownSignals.install(for: ThreadGroup(name: "y"), options: .init(signals: [SIGUSR1]))
        defer { signals.cancel() }
        #expect {
            try Escalation.reserveInterruptSignal(SIGUSR1)
        } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
        // A shutdown asking to interrupt with it skips the step instead of signalling itself.
        let group = try ThreadGroup.current.makeChild(name: "conflict")
        let gate = Gate()
        let thread = try group.spawn(name: "waits") { _ in gate.waitOpen() }
        let report = group.shutdown(timeout: .milliseconds(200), policy: .shared.escalating(.interrupt(signal: SIGUSR1, after: 0.1)))
        #expect(report.interrupted == 0 && report.stuck == 1)
        #expect(signals.receivedSignal == nil, "the watcher was sent its own signal")
        gate.release()
        #expect(try thread.join(timeout: .seconds(30)))
    }
}

// MARK: Child process bodies

func spawnedChildBody() {
    unblockInThisThread(SIGTERM)
    guard let signals = try? ShutdownSignals.install(for: ThreadGroup(name: "svc"), options: .init(signals: [SIGTERM])) else { exit(10) }
    if Signals.isBlocked(SIGTERM) { exit(11) }  // the installing thread's mask is untouched
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("60"), nil]
    guard posix_spawn(&pid, "/bin/sleep", nil, nil, argv, environ) == 0 else { exit(12) }
    kill(pid, SIGTERM)
    let status = waitForChild(pid, timeout: .seconds(20))
    signals.cancel()
    exit(terminatedBySignal(status, SIGTERM) ? 0 : 13)
}

func forkedChildBody() {
    unblockInThisThread(SIGTERM)
    guard let signals = try? ShutdownSignals.install(for: ThreadGroup(name: "svc"), options: .init(signals: [SIGTERM])) else { exit(10) }
    let pid = fork()
    if pid == 0 {
        // Async-signal-safe only: wait to be killed, give up after 30 s.
        for _ in 0..<300 { usleep(100_000) }
        _exit(0)
    }
    guard pid > 0 else { exit(12) }
    usleep(20_000)
    kill(pid, SIGTERM)
    let status = waitForChild(pid, timeout: .seconds(20))
    signals.cancel()
    exit(terminatedBySignal(status, SIGTERM) ? 0 : 13)
}

func applicationRealtimeBody() {
    let signal = __libc_current_sigrtmin() + 5
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, signal)
    pthread_sigmask(SIG_BLOCK, &set, nil)
    let gate = Gate()
    let received = Atomic<Int32>(0)
    guard let thread = try? ManagedThread.spawn(name: "app-reader", { _ in
        gate.waitOpen()
        var wanted = sigset_t()
        sigemptyset(&wanted)
        sigaddset(&wanted, signal)
        var timeout = timespec(tv_sec: 20, tv_nsec: 0)
        received.store(sigtimedwait(&wanted, nil, &timeout), ordering: .relaxed)
    }) else { exit(10) }
    try? waitFor("the thread started") { thread.tid != nil }
    _ = cshims_tgkill(thread.tid!, signal)  // pending on it: it inherited the blocked mask
    gate.release()
    guard (try? thread.join(timeout: .seconds(30))) == true else { exit(11) }
    exit(received.load(ordering: .relaxed) == signal ? 0 : 12)
}

func noSignalLostBody() {
    let signal = SIGUSR2
    let previous = installApplicationHandler(signal)
    defer { sigaction(signal, [previous], nil) }
    for round in 0..<150 {
        let group = ThreadGroup(name: "round-\(round)")
        let before = applicationHandlerCount.load(ordering: .relaxed)
        let go = Gate()
        let delay = UInt32.random(in: 0...300)
        let raiser = try! ManagedThread.spawn(name: "raiser") { _ in
            go.waitOpen()
            usleep(delay)
            kill(getpid(), signal)
        }
        go.release()
        let signals = try! ShutdownSignals.install(
            for: group, options: .init(signals: [signal], timeout: .seconds(5), onSecondSignal: .keepWaiting)) { _ in }
        _ = try! raiser.join(timeout: .seconds(30))
        // Either the application's handler ran (it came before install) or the watcher got it.
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        while ContinuousClock.now < deadline,
            applicationHandlerCount.load(ordering: .relaxed) == before, signals.receivedSignal == nil
        {
            usleep(1_000)
        }
        let seen = applicationHandlerCount.load(ordering: .relaxed) > before || signals.receivedSignal != nil
        if signals.receivedSignal != nil { _ = signals.waitForShutdown(until: .after(.seconds(10))) }
        signals.cancel()
        if !seen {
            print("round \(round): the signal was lost (raised after \(delay) µs)")
            exit(20)
        }
    }
    exit(0)
}

func secondSignalFlushBody() {
    guard let signals = try? ShutdownSignals.install(
        for: ThreadGroup.root, options: .init(signals: [SIGTERM], timeout: .seconds(30)))
    else { exit(10) }
    _ = signals
    let gate = Gate()
    _ = try? ThreadGroup.root.spawn(name: "never-stops") { _ in gate.waitOpen() }
    // Fully buffered, as stdout is when it is a pipe or a file (looked up by name: Swift 6 will
    // not let code touch the C global `stdout` directly).
    let stdoutVariable = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "stdout")!.assumingMemoryBound(to: UnsafeMutablePointer<FILE>?.self)
    setvbuf(stdoutVariable.pointee, nil, _IOFBF, 1 << 16)
    // Swift's print flushes after each call on Linux; C code writing through stdio does not.
    fputs("written before the signals, still in stdio's buffer\n", stdoutVariable.pointee)
    kill(getpid(), SIGTERM)
    usleep(200_000)
    kill(getpid(), SIGTERM)
    for _ in 0..<300 { usleep(100_000) }
    exit(1)
}
