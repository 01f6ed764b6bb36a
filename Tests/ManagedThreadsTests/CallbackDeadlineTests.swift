import CShims
import Foundation
import ManagedThreadsTesting
import Synchronization
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// A gate with a bound: waits until released or `timeout` passes; returns whether released.
func waitOpen(_ gate: Gate, timeout: Duration) -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while !gate.isOpen && ContinuousClock.now < deadline { usleep(500) }
    return gate.isOpen
}

/// User callbacks never hold a deadline hostage (issue 12, part C).
@Suite("Callbacks and deadlines", .managedThreads)
struct CallbackDeadlineTests {
    @Test("a blocking onStop callback does not stretch the shutdown; the report names it")
    func blockingCallbackNamed() throws {
        let group = try ThreadGroup.current.makeChild(name: "callbacks")
        let gate = Gate()
        let callbackEnded = Counter()
        let registered = Counter()
        try group.spawn(name: "server-loop") { token in
            token.onStop {
                _ = waitOpen(gate, timeout: .seconds(20))  // "server.shutdown()" that hangs
                callbackEnded.increment()
            }
            registered.increment()
            _ = token.wait(timeout: .seconds(120))
        }
        try waitFor("the callback registered") { registered.count == 1 }
        let report = group.shutdown(timeout: .milliseconds(300))
        gate.release()
        #expect(report.duration < .seconds(10), "the shutdown waited for the callback: \(report)")
        #expect(!report.isClean, "a callback still running at the deadline is not clean: \(report)")
        #expect(report.runningCallbacks.map(\.name) == ["server-loop"], "\(report)")
        #expect("\(report)".contains("onStop callback of \"server-loop\""), "\(report)")
        try waitFor("the callback to finish once released") { callbackEnded.count == 1 }
    }

    @Test("fast callbacks still run before the shutdown returns, and the report is clean")
    func fastCallbacksRunBeforeReturn() throws {
        let group = try ThreadGroup.current.makeChild(name: "fast-callbacks")
        let ran = Counter()
        let registered = Counter()
        for index in 0..<3 {
            try group.spawn(name: "t\(index)") { token in
                token.onStop { ran.increment() }
                registered.increment()
                _ = token.wait(timeout: .seconds(120))
            }
        }
        try waitFor("the callbacks registered") { registered.count == 3 }
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.isClean && report.runningCallbacks.isEmpty, "\(report)")
        #expect(ran.count == 3)
    }

    @Test("a stop requested through the group before the shutdown does not stretch it either")
    func requestStopThenShutdown() throws {
        let group = try ThreadGroup.current.makeChild(name: "request-then-shutdown")
        let gate = Gate()
        let registered = Counter()
        let callbackEnded = Counter()
        try group.spawn(name: "slow-callback") { token in
            token.onStop {
                _ = waitOpen(gate, timeout: .seconds(20))
                callbackEnded.increment()
            }
            registered.increment()
            _ = token.wait(timeout: .seconds(120))
        }
        try waitFor("the callback registered") { registered.count == 1 }
        let start = ContinuousClock.now
        group.requestStop(reason: .requested)
        let report = group.shutdown(timeout: .milliseconds(300))
        let took = start.duration(to: .now)
        gate.release()
        #expect(took < .seconds(10), "requestStop or the shutdown waited for the callback (\(took))")
        #expect(report.runningCallbacks.map(\.name) == ["slow-callback"], "\(report)")
        try waitFor("the callback to finish once released") { callbackEnded.count == 1 }
    }

    @Test("StopCallback.cancel() waits for the action running on another thread")
    func cancelWaitsForRunningAction() throws {
        let source = StopSource()
        let gate = Gate()
        let started = Counter()
        let finished = Counter()
        let callback = source.token.onStop {
            started.increment()
            _ = waitOpen(gate, timeout: .seconds(20))
            finished.increment()
        }
        let stopper = try ManagedThread.spawn(name: "stopper") { _ in source.requestStop() }
        try waitFor("the action to start") { started.count == 1 }
        let finishedWhenCancelReturned = Atomic<Int>(-1)
        let canceller = try ManagedThread.spawn(name: "canceller") { _ in
            _ = callback.cancel()
            finishedWhenCancelReturned.store(finished.count, ordering: .relaxed)
        }
        try waitFor("the canceller to block") {
            canceller.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "futex" || !canceller.isAlive
        }
        gate.release()
        #expect(try canceller.join(timeout: .seconds(30)))
        #expect(try stopper.join(timeout: .seconds(30)))
        #expect(finishedWhenCancelReturned.load(ordering: .relaxed) == 1, "cancel returned while the action still ran")
    }

    @Test("cancel() from inside the running action returns at once")
    func cancelFromInside() throws {
        let source = StopSource()
        let holder = Locked<StopCallback?>(nil)
        let returned = Counter()
        let registered = source.token.onStop {
            _ = holder.value?.cancel()
            returned.increment()
        }
        holder.withLock { $0 = registered }
        let stopper = try ManagedThread.spawn(name: "stopper") { _ in source.requestStop() }
        #expect(try stopper.join(timeout: .seconds(30)))
        #expect(returned.count == 1)
    }
}
