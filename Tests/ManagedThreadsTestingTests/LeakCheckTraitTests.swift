import CShims
@testable import ManagedThreads
import ManagedThreadsTesting
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Lets a deliberately uncooperative body finish when the test says so.
final class Gate: Sendable {
    private let open = Atomic<Bool>(false)
    func release() { open.store(true, ordering: .releasing) }
    var isOpen: Bool { open.load(ordering: .acquiring) }
    func waitOpen() { while !isOpen { usleep(500) } }
}

/// Runs `body` the way the `.managedThreads` trait runs a test, inside the current test.
func underTrait(
    _ trait: ManagedThreadsTrait = .managedThreads, _ body: @escaping @Sendable () async throws -> Void
) async throws {
    let test = try #require(Test.current)
    try await trait.provideScope(for: test, testCase: Test.Case.current, performing: body)
}

/// Joins from an async test without blocking rules tripping: a plain function may block.
func joined(_ thread: ManagedThread) -> Bool { (try? thread.join(timeout: .seconds(30))) ?? false }

/// Stops and joins; see ``joined(_:)``.
func stopped(_ thread: ManagedThread) -> Bool { (try? thread.stop(timeout: .seconds(30))) ?? false }

/// Whether an issue's text mentions `text`.
func mentions(_ issue: Issue, _ text: String) -> Bool {
    "\(issue)".contains(text) || issue.comments.contains { $0.rawValue.contains(text) }
}

@Suite("Leak-check trait")
struct LeakCheckTraitTests {
    @Test("a test that leaks a thread fails with the thread's name in the message")
    func leakFails() async throws {
        try await withKnownIssue {
            try await underTrait {
                // Spawned into the test's group (ThreadGroup.current) and never stopped.
                try ThreadGroup.current.spawn(name: "leaky-worker") { token in
                    _ = token.wait(timeout: .seconds(120))
                }
            }
        } matching: { issue in
            mentions(issue, "leaky-worker") && mentions(issue, "stopped by the leak check")
        }
    }

    @Test("a thread that does not stop by the deadline is named as stuck, with the report")
    func stuckNamed() async throws {
        let gate = Gate()
        let stuck = Lock<ManagedThread?>(nil)
        try await withKnownIssue {
            try await underTrait(.managedThreads(timeout: .milliseconds(100))) {
                let thread = try ThreadGroup.current.spawn(name: "stubborn") { _ in gate.waitOpen() }
                stuck.withLock { $0 = thread }
            }
        } matching: { issue in
            mentions(issue, "stubborn") && mentions(issue, "did not stop") && mentions(issue, "1 stuck")
        }
        gate.release()
        let thread = try #require(stuck.withLock { $0 })
        #expect(joined(thread))
    }

    @Test("a known leak is recorded as a known issue and does not fail the test; others still do")
    func knownLeak() async throws {
        // A failure here would fail this test: the known leak must be recorded as known.
        try await underTrait(.managedThreads(knownLeaks: ["legacy-*"])) {
            try ThreadGroup.current.spawn(name: "legacy-poller") { token in _ = token.wait(timeout: .seconds(120)) }
        }
        // The same list does not excuse another thread.
        try await withKnownIssue {
            try await underTrait(.managedThreads(knownLeaks: ["legacy-*"])) {
                try ThreadGroup.current.spawn(name: "legacy-poller") { token in _ = token.wait(timeout: .seconds(120)) }
                try ThreadGroup.current.spawn(name: "new-poller") { token in _ = token.wait(timeout: .seconds(120)) }
            }
        } matching: { issue in
            mentions(issue, "new-poller") && !mentions(issue, "legacy-poller")
        }
    }

    @Test("a clean test passes: its threads stopped and joined before it returns")
    func cleanPasses() async throws {
        try await underTrait {
            let worker = try ThreadGroup.current.spawn(name: "tidy") { token in _ = token.wait(timeout: .seconds(120)) }
            #expect(stopped(worker))
        }
    }

    @Test("the test's error still surfaces, and its leaks are still named")
    func errorAndLeak() async throws {
        struct Boom: Error {}
        try await withKnownIssue {
            try await underTrait {
                try ThreadGroup.current.spawn(name: "left-by-thrower") { token in _ = token.wait(timeout: .seconds(120)) }
                throw Boom()
            }
        } matching: { issue in
            mentions(issue, "left-by-thrower") || issue.error is Boom
        }
    }

    @Test("tests running in parallel do not blame each other")
    func parallelIsolation() async throws {
        // The clean test's thread is alive while the leaky test is checked, and the other way round.
        let leakySpawned = Gate()
        let leakyChecked = Gate()
        async let leaky: Void = withKnownIssue {
            try await underTrait {
                try ThreadGroup.current.spawn(name: "parallel-leaker") { token in _ = token.wait(timeout: .seconds(120)) }
                leakySpawned.release()
            }
            leakyChecked.release()
        } matching: { issue in
            mentions(issue, "parallel-leaker")
        }
        async let clean: Void = underTrait {
            let worker = try ThreadGroup.current.spawn(name: "parallel-tidy") { token in _ = token.wait(timeout: .seconds(120)) }
            try await waitFor("the leaky test to be checked") { leakyChecked.isOpen }
            await worker.stopAndWaitForExit()
        }
        try await leaky
        try await clean
        let spawned = leakySpawned.isOpen
        #expect(spawned)
    }

    @Test(
        "the trait on a test: ThreadGroup.current is the test's own group, not the root",
        .managedThreads)
    func traitInUse() throws {
        let current = ThreadGroup.current
        #expect(current !== ThreadGroup.root)
        #expect(current.path.hasPrefix("root/"))
        let worker = try current.spawn(name: "in-trait") { token in _ = token.wait(timeout: .seconds(120)) }
        #expect(try worker.stop(timeout: .seconds(30)))
    }
}

extension ManagedThread {
    /// Stops the thread and waits, without blocking a concurrency thread, until it has exited;
    /// the group's shutdown then reaps it.
    func stopAndWaitForExit() async {
        requestStop()
        await #expect(throws: Never.self) { try await waitFor("\(self.name) to exit") { !self.isAlive } }
    }
}

@Suite("Process audit")
struct ProcessAuditTests {
    // The audit sees the whole process, and other suites run in parallel here, so these run in a
    // child process of their own (an exit test), where nothing else starts threads.
    @Test("an OS thread started behind the library's back is named; one joined in the test is not")
    func rawThreadNamed() async {
        await #expect(processExitsWith: .success) { rawThreadAuditChild() }
    }

    @Test("a clean audited run in a quiet process finds nothing")
    func cleanAudit() async {
        await #expect(processExitsWith: .success) { cleanAuditChild() }
    }
}

/// The clean audited run, in the child. Synchronous from end to end: an async finish would resume
/// on the concurrency pool, which may start a worker thread on a loaded machine, and the audit
/// would rightly name that new OS thread.
func cleanAuditChild() {
    do {
        let check = try ThreadLeakCheck(name: "quiet", options: .init(auditProcess: true, linger: .milliseconds(500)))
        try check.run {
            let worker = try ThreadGroup.current.spawn(name: "audited-ok") { token in _ = token.wait(timeout: .seconds(120)) }
            let stopped = try worker.stop(timeout: .seconds(30))
            precondition(stopped)
        }
        let outcome = check.finish()
        guard outcome.isClean else {
            print("unexpected outcome: \(outcome)")
            exit(1)
        }
    } catch {
        print("child failed: \(error)")
        exit(1)
    }
}

/// The raw-thread audit, in the child; synchronous for the reason given at `cleanAuditChild`.
func rawThreadAuditChild() {
    do {
        let gate = Gate()
        let context = Unmanaged.passRetained(gate).toOpaque()
        let check = try ThreadLeakCheck(name: "audited", options: .init(auditProcess: true, linger: .milliseconds(100)))
        var leaked = pthread_t()
        var joined = pthread_t()
        check.run {
            precondition(pthread_create(&leaked, nil, { arg in
                let gate = Unmanaged<Gate>.fromOpaque(arg!).takeRetainedValue()
                cshims_thread_setname(pthread_self(), "raw-leaker")
                gate.waitOpen()
                return nil
            }, context) == 0)
            precondition(pthread_create(&joined, nil, { _ in
                cshims_thread_setname(pthread_self(), "raw-tidy")
                return nil
            }, nil) == 0)
            precondition(pthread_join(joined, nil) == 0)
        }
        let outcome = check.finish()
        gate.release()
        precondition(pthread_join(leaked, nil) == 0)
        let osLeaks = outcome.leaks.filter { $0.kind == .osThread }
        guard osLeaks.map(\.name) == ["raw-leaker"], "\(outcome)".contains("raw-leaker") else {
            print("unexpected outcome: \(outcome)")
            exit(1)
        }
    } catch {
        print("child failed: \(error)")
        exit(1)
    }
}
