import CShims
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

struct Boom: Error {}

/// Bookkeeping that tells the truth and does not grow (issue 12, part G).
@Suite("Bookkeeping", .managedThreads)
struct BookkeepingTests {
    @Test("a body that threw stays in the report after a later spawn reaped it")
    func reapedFailureReported() throws {
        let group = try ThreadGroup.current.makeChild(name: "reaped")
        let thrower = try group.spawn(name: "thrower") { _ in throw Boom() }
        try waitFor("the thrower ended") { !thrower.isAlive }
        // A spawn reaps the finished thrower (once the kernel is done with it: spawn until then).
        var spawned = 0
        try waitFor("the thrower reaped by a spawn") {
            try group.spawn(name: "later-\(spawned)") { _ in }
            spawned += 1
            return thrower.isJoined
        }
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.failed == 1, "\(report)")
        #expect(report.root.allEntries.contains { $0.name == "thrower" && $0.error != nil }, "\(report)")
        #expect(report.joined == 1 + spawned, "every thread the group ran is accounted for: \(report)")
    }

    @Test("a thread keeps its group path after the group is gone")
    func groupPathOutlivesGroup() throws {
        var thread: ManagedThread?
        let expected: String
        do {
            let (_, report) = try withThreadGroup("short-lived") { group in
                thread = try group.spawn(name: "member") { _ in }
            }
            #expect(report.isClean)
            expected = "\(ThreadGroup.current.path)/short-lived"
        }
        #expect(thread?.groupPath == expected)
    }

    @Test("requestStop on a thread that has ended records nothing and returns false")
    func requestStopAfterEnd() throws {
        let thread = try ManagedThread.spawn(name: "ended") { _ in }
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(thread.requestStop() == false)
        #expect(!thread.isStopRequested)
        #expect(thread.stopReason == nil)
    }
}
