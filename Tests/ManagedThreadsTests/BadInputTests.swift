@testable import ManagedThreads
import ManagedThreadsTesting
import Synchronization
import Testing

/// The bad-input catalogue (README, "Bad input"): each input has a documented outcome — a typed
/// error or a defined result — and none crashes or hangs. Cases covered elsewhere are named there.
@Suite("Bad input", .managedThreads)
struct BadInputTests {
    @Test("zero, negative and past deadlines: joins, waits and stops return at once with 'not yet'")
    func nonPositiveDeadlines() throws {
        let thread = try ThreadGroup.current.spawn(name: "patient") { token in _ = token.wait(timeout: .seconds(120)) }
        let start = ContinuousClock.now
        #expect(try thread.join(timeout: .zero) == false)
        #expect(try thread.join(timeout: .seconds(-5)) == false)
        #expect(try thread.join(until: start - .seconds(60)) == false)
        let token = StopSource().token
        #expect(token.wait(timeout: .zero) == false)
        #expect(token.wait(timeout: .seconds(-1)) == false)
        #expect(token.wait(until: start - .seconds(1)) == false)
        #expect(ContinuousClock.now - start < .seconds(30), "none of these waited")
        // A zero-timeout stop still requests the stop; the thread exits and a later join reaps it.
        _ = try thread.stop(timeout: .zero)
        #expect(thread.isStopRequested)
        #expect(try thread.join(timeout: .seconds(30)))
    }

    @Test("a shutdown with a zero or past deadline signals everything, returns at once, and reports what had not exited")
    func zeroDeadlineShutdown() throws {
        let group = try ThreadGroup.current.makeChild(name: "hurried")
        let threads = try (0..<3).map { index in
            try group.spawn(name: "hurried-\(index)") { token in _ = token.wait(timeout: .seconds(120)) }
        }
        let report = group.shutdown(until: .now - .seconds(1))
        #expect(report.total == 3)
        // Nothing is reaped past the deadline: a thread that exited just then is `exitedUnreaped`.
        let unreaped = report.root.allEntries.filter { $0.status == .exitedUnreaped }.count
        #expect(report.joined + report.stuck + unreaped == 3)
        let signalled = threads.allSatisfy { $0.isStopRequested }
        #expect(signalled, "every thread was signalled")
        for thread in threads { #expect(try thread.join(timeout: .seconds(30))) }
        // A second shutdown returns the first outcome.
        #expect(group.shutdown(timeout: .seconds(30)) == report)
    }

    @Test("names: empty or with NUL is invalidArgument; a huge one is kept whole and cut for the kernel")
    func names() throws {
        for bad in ["", "nul\u{0}inside"] {
            let error = try #require(throws: ThreadError.self) {
                try ThreadGroup.current.spawn(name: bad) { _ in }
            }
            #expect(error.code == .invalidArgument)
        }
        let huge = String(repeating: "é", count: 10_000)
        let thread = try ThreadGroup.current.spawn(name: huge) { _ in }
        #expect(thread.name == huge)
        #expect(thread.kernelName == String(repeating: "é", count: 7), "15 bytes, cut on a scalar boundary")
        #expect(try thread.join(timeout: .seconds(30)))
        for bad in ["", "a/b"] {
            #expect(throws: ThreadError.self) { try ThreadGroup.current.makeChild(name: bad) }
        }
    }

    @Test("join and stop from the thread's own onStop callback, as it ends, are selfJoin errors, not deadlocks")
    func joinFromOwnCallback() throws {
        let handle = Lock<ManagedThread?>(nil)
        let outcomes = Lock<[String]>([])
        let ready = Counter()
        let thread = try ThreadGroup.current.spawn(name: "self-joiner") { token in
            token.onStop {
                // Runs on this thread when the body returns (no stop was requested).
                guard let me = handle.withLock({ $0 }) else { return }
                for attempt in ["join", "stop"] {
                    do {
                        _ = attempt == "join" ? try me.join(timeout: .seconds(60)) : try me.stop(timeout: .seconds(60))
                        outcomes.withLock { $0.append("\(attempt): returned") }
                    } catch {
                        outcomes.withLock { $0.append("\(attempt): \((error as? ThreadError)?.code.description ?? "\(error)")") }
                    }
                }
            }
            ready.increment()
            while handle.withLock({ $0 }) == nil { _ = token.wait(timeout: .milliseconds(1)) }
        }
        handle.withLock { $0 = thread }
        try waitFor { ready.count == 1 }
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(outcomes.withLock { $0 } == ["join: selfJoin", "stop: selfJoin"])
        handle.withLock { $0 = nil }
    }

    @Test("an onStop callback that joins its thread from the stopping thread waits within its own deadline")
    func joinFromCallbackOnRequester() throws {
        let joined = Lock<Bool?>(nil)
        let thread = try ThreadGroup.current.spawn(name: "joined-by-callback") { token in
            _ = token.wait(timeout: .seconds(120))
        }
        thread.stopToken.onStop {
            // Runs on the requesting thread, inside requestStop: the target exits meanwhile.
            joined.withLock { $0 = (try? thread.join(timeout: .seconds(30))) ?? false }
        }
        thread.requestStop()
        #expect(joined.withLock { $0 } == true)
    }
}
