import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

// A group's stop word (issue 13, item 2): one flip tells every member, one wake wakes every
// sleeper; a stop of one member still wakes that member and stops nobody else.
@Suite("Group stop word", .managedThreads)
struct GroupStopTests {
    @Test("a group's stop wakes every member sleeping in its token, with no deadline near enough to hide a lost wake-up")
    func groupStopWakesAll() throws {
        let group = try ThreadGroup.current.makeChild(name: "sleepers")
        let asleep = Counter()
        let woke = Counter()
        for index in 0..<200 {
            try group.spawn(name: "sleeper-\(index)") { token in
                asleep.increment()
                if token.wait(timeout: .seconds(3_600)) { woke.increment() }
            }
        }
        try waitFor("every member sleeping") { asleep.count == 200 }
        group.requestStop(reason: .requested)
        #expect(group.stopWord.isStopped, "flipped at once: no member holds a callback")
        try waitFor("every sleeper woke", timeout: .seconds(60)) { woke.count == 200 }
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.isClean && report.joined == 200, "\(report)")
    }

    @Test("stopping one member wakes that member and stops nobody else in the group")
    func memberStopIsPrivate() throws {
        let group = try ThreadGroup.current.makeChild(name: "members")
        let asleep = Counter()
        var members: [ManagedThread] = []
        for index in 0..<64 {  // more than the 32 wake bits: some share the target's bit
            members.append(try group.spawn(name: "member-\(index)") { token in
                asleep.increment()
                _ = token.wait(timeout: .seconds(3_600))
            })
        }
        try waitFor("every member sleeping") { asleep.count == 64 }
        let target = members[5]
        #expect(target.requestStop())
        #expect(try target.join(timeout: .seconds(30)), "the stopped member woke and ended")
        for member in members where member !== target {
            #expect(!member.isStopRequested && member.isAlive, "\(member.name) was not stopped")
        }
        #expect(!group.stopWord.isStopped)
        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.isClean && report.joined == 64, "\(report)")
    }

    #if DEBUG
    @Test("a member stopped just as it goes to sleep is never left sleeping")
    func memberStopRacingSleep() throws {
        let group = try ThreadGroup.current.makeChild(name: "racers")
        // Company on the word, so the racer's futex is shared as in a real group.
        for index in 0..<8 {
            try group.spawn(name: "company-\(index)") { token in _ = token.wait(timeout: .seconds(3_600)) }
        }
        for round in 0..<20 {
            let reached = Gate()
            let racer = try group.spawn(name: "racer-\(round)") { token in
                // The debug hook holds the racer between its last look at the words and the
                // futex sleep, until the stop below has been requested and its wake sent.
                token.state.beforeGroupSleep = {
                    reached.release()
                    usleep(20_000)
                }
                _ = token.wait(timeout: .seconds(3_600))
            }
            try waitFor("the racer about to sleep") { reached.isOpen }
            #expect(racer.requestStop())
            // A lost wake-up would leave it asleep for an hour: the join would time out.
            guard try racer.join(timeout: .seconds(30)) else {
                Issue.record("round \(round): the racer slept through its stop")
                break
            }
        }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }
    #endif

    @Test("a group stop reaches threads in child groups, with the reason parentStopped")
    func childGroupsHearTheParent() throws {
        let parent = try ThreadGroup.current.makeChild(name: "parent")
        let child = try parent.makeChild(name: "child")
        let reasons = Locked<[StopReason]>([])
        let asleep = Counter()
        for group in [parent, child] {
            try group.spawn(name: "sleeper") { token in
                asleep.increment()
                _ = token.wait(timeout: .seconds(3_600))
                if let reason = token.reason { reasons.withLock { $0.append(reason) } }
            }
        }
        try waitFor("both sleeping") { asleep.count == 2 }
        let report = parent.shutdown(timeout: .seconds(30))
        #expect(report.isClean && report.joined == 2, "\(report)")
        #expect(Set(reasons.withLock { $0 }) == [.shutdown, .parentStopped])
    }

    @Test("the library's lock excludes: non-atomic increments from many threads add up (under TSan: no report)")
    func lockExcludes() async throws {
        // 8 × 2,000 contended increments: enough for lost updates to show without the lock, and
        // for TSan to see a race; more kept both CPUs busy for 30 s under TSan, starving other suites.
        let lock = Locked<Int>(0)
        let group = try ThreadGroup.current.makeChild(name: "lockers")
        for index in 0..<8 {
            try group.spawn(name: "locker-\(index)") { _ in
                for _ in 0..<2_000 { lock.withLock { $0 += 1 } }
            }
        }
        #expect(await group.shutdown(timeout: .seconds(120)).isClean)
        #expect(lock.withLock { $0 } == 16_000)
    }
}
