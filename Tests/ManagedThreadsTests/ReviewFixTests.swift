import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Regression tests for defects found in review.
@Suite("Regressions", .managedThreads)
struct RegressionTests {
    @Test("threads that end between requestStop and the join are still joined and counted")
    func endBetweenRequestAndJoin() throws {
        let group = ThreadGroup(name: "two-step")
        var threads: [ManagedThread] = []
        for i in 0..<8 { threads.append(try spawnIdle(group, "t\(i)")) }
        group.requestStop(reason: .shutdown)
        try waitFor { threads.allSatisfy { !$0.isAlive } }
        let node = group.join(until: .after(.seconds(30)), path: group.path)
        #expect(node.joined == 8)
        #expect(threads.allSatisfy { $0.isJoined })
    }

    @Test("a spawn refused by the system inside a group leaves nothing for a shutdown to wait on")
    func refusedSpawnInGroup() throws {
        let group = ThreadGroup(name: "refused")
        #expect {
            try FaultInjection.with(.pthreadCreate, errno: EAGAIN) { () throws(ThreadError) in
                try group.spawn(name: "never") { _ in }
            }
        } throws: { ($0 as? ThreadError)?.errno == EAGAIN }
        #expect(group.aliveThreads.isEmpty)
        let start = ContinuousClock.now
        let report = group.shutdown(timeout: .seconds(20))
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(report.isClean)
    }

    @Test("an adopted group has a parent: a second adoption, or a crossed one, is refused")
    func adoptionRecordsParent() throws {
        let a = ThreadGroup(name: "a")
        let b = ThreadGroup(name: "b")
        let c = ThreadGroup(name: "c")
        try a.adopt(c)
        #expect { try b.adopt(c) } throws: { ($0 as? ThreadError)?.message.contains("already has a parent") == true }
        try b.adopt(a)
        #expect { try c.adopt(b) } throws: { ($0 as? ThreadError)?.message.contains("cycle") == true }
        _ = b.shutdown(timeout: .seconds(10))
    }

    @Test("absurd timeouts and stack sizes are handled, not trapped on")
    func extremeValues() throws {
        let thread = try ManagedThread.spawn(name: "quick") { _ in }
        #expect(try thread.join(timeout: .seconds(Int64.max)))
        #expect(try thread.join(timeout: .seconds(Int64.min)), "a joined thread reports joined whatever the timeout")
        let source = StopSource()
        #expect(!source.token.wait(timeout: .seconds(Int64.min)))
        #expect {
            _ = try ManagedThread.spawn(name: "huge", options: ThreadOptions(stackSize: .max)) { _ in }
        } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
        let group = ThreadGroup(name: "forever")
        try spawnIdle(group, "idle")
        #expect(group.shutdown(timeout: .seconds(Int64.max)).isClean)
    }

    @Test("a group runs onStop callbacks only after it has signalled every thread")
    func callbacksAfterAllSignalled() throws {
        let group = ThreadGroup(name: "callbacks")
        let others = Locked<[ManagedThread]>([])
        let sawAllStopped = Locked<Bool?>(nil)
        let registered = Counter()
        try group.spawn(name: "first") { token in
            token.onStop {
                sawAllStopped.withLock { $0 = others.value.allSatisfy { $0.isStopRequested } }
            }
            registered.increment()
            _ = token.wait(until: .after(.seconds(60)))
        }
        for i in 0..<5 {
            let thread = try spawnIdle(group, "later-\(i)")
            others.withLock { $0.append(thread) }
        }
        try waitFor { registered.count == 1 }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
        #expect(sawAllStopped.value == true)
    }

    @Test("a token's descriptor is made readable before it is retired, so a stray poller wakes")
    func retiredDescriptorWakesPollers() throws {
        let fdBox = Locked<Int32>(-1)
        let release = Gate()
        let thread = try ManagedThread.spawn(name: "owner") { token in
            fdBox.withLock { $0 = (try? token.fileDescriptor) ?? -2 }
            release.waitOpen()   // ends on its own, without a stop
        }
        try waitFor { fdBox.value != -1 }
        let fd = fdBox.value
        // Duplicate it so the check below survives the close.
        let copy = dup(fd)
        defer { close(copy) }
        release.release()
        #expect(try thread.join(timeout: .seconds(10)))
        var p = pollfd(fd: copy, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 0) == 1)
        #expect(!thread.isStopRequested)
    }

    @Test("a parent's shutdown reports what became of a child's stuck threads, not the child's stale report")
    func staleChildReport() throws {
        let parent = ThreadGroup(name: "stale-parent")
        let child = try parent.makeChild(name: "stale-child")
        let gate = Gate()
        let straggler = try child.spawn(name: "straggler") { _ in gate.waitOpen() }
        try waitFor { straggler.tid != nil }
        let childReport = child.shutdown(timeout: .milliseconds(50))
        #expect(childReport.stuckThreads.map(\.name) == ["straggler"])
        gate.release()
        #expect(try straggler.join(timeout: .seconds(30)))
        #expect(child.shutdown(timeout: .seconds(1)) == childReport, "the child's own outcome stays as it was")
        let report = parent.shutdown(timeout: .seconds(30))
        #expect(report.isClean, "\(report)")
        #expect(report.root.allEntries.first { $0.name == "straggler" }?.status == .joined)
    }

    @Test("a Lock<Void> taken by many threads at once (under TSan: no report; the TSan lock once raced on a zero-sized value)")
    func voidLockUnderContention() async throws {
        // Locked wraps the library's Lock in a class, so threads can share it.
        let lock = Locked<Void>(())
        let counts = Locked<Int>(0)
        let group = try ThreadGroup.current.makeChild(name: "void-lock")
        for index in 0..<4 {
            try group.spawn(name: "locker-\(index)") { _ in
                for _ in 0..<1_000 {
                    lock.withLock { _ in counts.withLock { $0 += 1 } }
                }
            }
        }
        let report = await group.shutdown(timeout: .seconds(60))
        #expect(report.isClean && report.joined == 4)
        #expect(counts.value == 4_000)
    }
}
