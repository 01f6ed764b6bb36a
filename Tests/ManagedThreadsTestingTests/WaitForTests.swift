import ManagedThreadsTesting
import Synchronization
import Testing

@Suite("waitFor")
struct WaitForTests {
    @Test("returns once the condition holds, checked from another thread's progress")
    func returnsWhenTrue() throws {
        let flag = Atomic<Int>(0)
        var checks = 0
        try waitFor("the third check") {
            checks += 1
            return checks >= 3
        }
        #expect(checks == 3)
        _ = flag
    }

    @Test("times out with a message naming what was awaited and where")
    func timesOut() throws {
        let start = ContinuousClock.now
        let error = try #require(throws: WaitForTimeout.self) {
            try waitFor("a flag that never flips", timeout: .milliseconds(50)) { false }
        }
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        #expect(error.description.contains("a flag that never flips"))
        #expect(error.description.contains("WaitForTests.swift"))
        #expect(error.checks >= 2)
    }

    @Test("async form: returns when true, throws on timeout")
    func asyncForm() async throws {
        var checks = 0
        try await waitFor { checks += 1; return checks == 2 }
        #expect(checks == 2)
        await #expect(throws: WaitForTimeout.self) {
            try await waitFor("never", timeout: .milliseconds(20)) { false }
        }
    }

    @Test("a zero or negative timeout still checks once")
    func zeroTimeout() throws {
        try waitFor(timeout: .zero) { true }
        #expect(throws: WaitForTimeout.self) { try waitFor(timeout: .seconds(-1)) { false } }
    }
}
