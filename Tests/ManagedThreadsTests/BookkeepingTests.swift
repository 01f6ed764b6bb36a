import CShims
import Foundation
import Logging
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

    @Test("child groups whose threads overran the deadline leave their parent once those threads end")
    func lingeringChildrenLeave() throws {
        // Quiet: 300 unclean shutdowns would log 300 warnings, and a flood of test output can
        // block the writers of other tests on a full pipe.
        var quiet = Logger(label: "scopes")
        quiet.logLevel = .critical
        let parent = try ThreadGroup.current.makeChild(name: "scopes", logger: quiet)
        let gate = Gate()
        var overrunning: [ManagedThread] = []
        for index in 0..<300 {
            try parent.withCurrent {
                let (_, report) = try withThreadGroup("scope-\(index)", timeout: .milliseconds(1)) { group in
                    // Every other scope's thread sits one group further down.
                    let home = index.isMultiple(of: 2) ? group : try group.makeChild(name: "inner")
                    overrunning.append(try home.spawn(name: "overrun") { _ in gate.waitOpen() })
                }
                #expect(!report.isClean)
            }
        }
        // Still running: the parent lists them.
        #expect(childCount(parent) == 300)
        #expect(parent.aliveThreads.count == 300)
        gate.release()
        for thread in overrunning { #expect(try thread.join(timeout: .seconds(30))) }
        try waitFor("every scope left its parent", timeout: .seconds(60)) { childCount(parent) == 0 }
        // The parent's own report still says what became of them: the most recent departed
        // scopes, their threads no longer running.
        let report = parent.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(report.root.children.count == ThreadGroup.departedLimit)
        #expect(Set(report.root.children.map(\.name)).count == ThreadGroup.departedLimit)
        #expect(report.root.allEntries.count == ThreadGroup.departedLimit)
        #expect(report.root.allEntries.allSatisfy { $0.status == .joined }, "joined by this test: \(report)")
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

    @Test("a token descriptor another thread asked for stays open and readable after the body returns")
    func sharedDescriptorOutlivesBody() throws {
        let gate = Gate()
        var thread: ManagedThread? = try ManagedThread.spawn(name: "owner") { _ in gate.waitOpen() }
        let fd = try thread!.stopToken.fileDescriptor  // asked for from this thread, not the owner
        gate.release()
        #expect(try thread!.join(timeout: .seconds(30)))
        // The body has returned: the number is still ours, not closed and reused.
        #expect(fcntl(fd, F_GETFD) != -1, "the descriptor was closed under a holder")
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 0) == 1, "a retired descriptor reads as stopped")
        #expect(try thread!.stopToken.fileDescriptor == fd)
        thread = nil  // the last reference: the state's deinit closes it
    }
}


/// How many children (groups and components) a group holds.
func childCount(_ group: ThreadGroup) -> Int {
    group.state.withLock { $0.children.count }
}
