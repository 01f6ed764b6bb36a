import CShims
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Return, throw, `pthread_exit` and cancellation end a managed thread through one epilogue
/// (issue 12, part B).
@Suite("One exit path", .managedThreads)
struct ExitPathTests {
    @Test("a body that calls pthread_exit ends like one that returns: callbacks, registry, join, report",
          .disabled(if: Sanitizer.address, "ASan keeps the shadow of frames pthread_exit unwound poisoned and reports the epilogue that reuses that stack"))
    func pthreadExit() throws {
        let group = try ThreadGroup.current.makeChild(name: "exits-early")
        let callbackRan = Counter()
        let thread = try group.spawn(name: "calls-pthread-exit") { token in
            token.onStop { callbackRan.increment() }
            pthread_exit(nil)
        }
        try waitFor("the thread to be seen ended") { !thread.isAlive }
        let tid = try #require(thread.tid)
        #expect(callbackRan.count == 1, "onStop callbacks run at the thread's end")
        #expect(!ManagedThreadRegistry.contains(tid), "the registry still lists the dead tid")
        #expect(try thread.join(timeout: .seconds(30)))
        #expect((thread.error as? ThreadError)?.code == .exitedEarly, "\(String(describing: thread.error))")
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.stuck == 0, "\(report)")
        #expect(report.failed == 1, "a thread that did not return is reported, not hidden: \(report)")
    }

    @Test("a managed thread cancelled with pthread_cancel in a blocking read takes the same exit path",
          .disabled(if: Sanitizer.thread, "TSan's read interceptor cannot be unwound by cancellation (it aborts: ignores not ended)"),
          .disabled(if: Sanitizer.address, "ASan keeps the shadow of frames cancellation unwound poisoned and reports the epilogue that reuses that stack"))
    func cancellation() throws {
        let group = try ThreadGroup.current.makeChild(name: "cancelled")
        let pipe = Pipe()
        let thread = try group.spawn(name: "blocked-in-read") { _ in
            var byte: UInt8 = 0
            _ = read(pipe.readEnd, &byte, 1)  // a cancellation point
        }
        try waitFor("the reader blocked in read") { thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "read" }
        let tid = try #require(thread.tid)
        #expect(pthread_cancel(try #require(thread.pthreadHandle)) == 0)
        try waitFor("the cancelled thread to be seen ended") { !thread.isAlive }
        #expect(!ManagedThreadRegistry.contains(tid))
        #expect((thread.error as? ThreadError)?.code == .exitedEarly)
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.stuck == 0 && report.joined == 1, "\(report)")
    }

    @Test("a thread that returns normally is not reported as having exited early")
    func normalReturn() throws {
        let thread = try ManagedThread.spawn(name: "returns") { _ in }
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(thread.error == nil)
    }
}
