import Foundation
import Synchronization
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

@Suite("StopToken", .managedThreads)
struct StopTokenTests {
    @Test("wait(timeout:) runs its full time when nobody stops")
    func waitTimesOut() {
        let source = StopSource()
        let start = ContinuousClock.now
        #expect(!source.token.wait(timeout: .milliseconds(50)))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        #expect(!source.token.wait(timeout: .zero))
        #expect(!source.token.wait(timeout: .milliseconds(-5)))
    }

    @Test("wait(timeout:) returns early when stop is requested from another thread")
    func waitReturnsOnStop() throws {
        let returnedEarly = Lock<Bool?>(nil)
        let waiting = Counter()
        let thread = try ManagedThread.spawn(name: "waiter") { token in
            waiting.increment()
            let stopped = token.wait(timeout: .seconds(60))
            returnedEarly.withLock { $0 = stopped }
        }
        try waitFor { waiting.count == 1 }
        let start = ContinuousClock.now
        #expect(try thread.stop(timeout: .seconds(30)))
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(returnedEarly.withLock { $0 } == true)
    }

    @Test("a standalone source: flag, reason, wait(until:) after the fact")
    func standaloneSource() {
        let source = StopSource()
        let token = source.token
        #expect(!token.isStopRequested)
        #expect(token.reason == nil)
        #expect(source.requestStop(reason: .deadline))
        #expect(token.isStopRequested)
        #expect(token.reason == .deadline)
        #expect(token.wait(until: .now.advanced(by: .seconds(60))))
    }

    @Test("the descriptor is created lazily, is readable only after the stop, and is CLOEXEC")
    func descriptor() throws {
        let source = StopSource()
        let fd = try source.token.fileDescriptor
        #expect(try source.token.fileDescriptor == fd, "cached")
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 0) == 0)
        source.requestStop()
        #expect(poll(&p, 1, 0) == 1)
    }

    @Test("a descriptor first asked for after the stop is readable at once")
    func descriptorAfterStop() throws {
        let source = StopSource()
        source.requestStop()
        var p = pollfd(fd: try source.token.fileDescriptor, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 0) == 1)
    }

    @Test("a thread that never asks for a descriptor opens none; one that does has it closed when it ends")
    func threadDescriptorLifetime() throws {
        let fdBox = Lock<Int32>(-1)
        let thread = try ManagedThread.spawn(name: "fd-user") { token in
            fdBox.withLock { $0 = (try? token.fileDescriptor) ?? -2 }
            _ = token.wait(until: .now.advanced(by: .seconds(60)))
        }
        try waitFor { fdBox.withLock { $0 } != -1 }
        let fd = fdBox.withLock { $0 }
        #expect(fd >= 0)
        #expect(procLink("/proc/self/fd/\(fd)")?.contains("eventfd") == true)
        #expect(try thread.stop(timeout: .seconds(10)))
        #expect(thread.stopReason == .requested)
        // After the body ends, the token's descriptor is retired: asking again is a clear error.
        #expect {
            _ = try thread.stopToken.fileDescriptor
        } throws: { ($0 as? ThreadError)?.code == .invalidState }
    }

    @Test("onStop runs once at an explicit stop, on the stopping thread, and not again")
    func onStopExplicit() throws {
        let runs = Counter()
        let registered = Counter()
        let thread = try ManagedThread.spawn(name: "cb-stop") { token in
            token.onStop { runs.increment() }
            registered.increment()
            _ = token.wait(until: .now.advanced(by: .seconds(60)))
        }
        try waitFor { registered.count == 1 }
        thread.requestStop()
        #expect(runs.count == 1, "ran synchronously inside requestStop")
        #expect(try thread.join(timeout: .seconds(10)))
        thread.requestStop()
        #expect(runs.count == 1)
    }

    @Test("onStop runs once when the body returns on its own, and once when it throws")
    func onStopAtEnd() throws {
        struct Failure: Error {}
        for throwing in [false, true] {
            let runs = Counter()
            let thread = try ManagedThread.spawn(name: "cb-end") { token in
                token.onStop { runs.increment() }
                if throwing { throw Failure() }
            }
            #expect(try thread.join(timeout: .seconds(10)))
            #expect(runs.count == 1)
            thread.requestStop()
            #expect(runs.count == 1, "not again on a later stop")
        }
    }

    @Test("a cancelled onStop never runs; one registered after the stop runs at once")
    func onStopCancelAndLate() {
        let source = StopSource()
        let runs = Counter()
        let cancelled = source.token.onStop { runs.increment() }
        #expect(cancelled.cancel())
        #expect(!cancelled.cancel())
        source.requestStop()
        #expect(runs.count == 0)
        let late = source.token.onStop { runs.increment() }
        #expect(runs.count == 1)
        #expect(!late.cancel(), "already ran")
    }

    @Test("ticks keep their period without drift and end on stop")
    func ticksKeepPeriod() throws {
        let period = Duration.milliseconds(20)
        let ticks = Lock<[Tick]>([])
        let elapsed = Lock<Duration>(.zero)
        let thread = try ManagedThread.spawn(name: "ticker") { token in
            let start = ContinuousClock.now
            for tick in try token.ticks(every: period) {
                ticks.withLock { $0.append(tick) }
                if tick.index >= 10 { break }
                // Work that takes a sizeable part of the period: a sliding loop would drift by it.
                usleep(8_000)
            }
            elapsed.withLock { $0 = ContinuousClock.now - start }
        }
        #expect(try thread.join(timeout: .seconds(30)))
        let seen = ticks.withLock { $0 }
        #expect(seen.last?.index == 10 || seen.last.map { $0.index > 10 } == true)
        // Ten periods take ten periods, not ten × (period + work): the schedule does not slide.
        let total = elapsed.withLock { $0 }
        #expect(total >= period * 10)
        #expect(total < period * 10 + .milliseconds(150), "drifted: \(total)")
    }

    @Test("a tick reports the periods it missed")
    func ticksCountMissed() throws {
        let source = StopSource()
        let ticker = try source.token.ticks(every: .milliseconds(10))
        usleep(55_000)
        let tick = try #require(ticker.next())
        #expect(tick.missed >= 3)
        #expect(tick.index == tick.missed + 1)
    }

    @Test("a tick loop ends at once when stop is requested")
    func ticksEndOnStop() throws {
        let looping = Counter()
        let thread = try ManagedThread.spawn(name: "slow-ticker") { token in
            for _ in try token.ticks(every: .seconds(60)) { }
            looping.increment()
        }
        let start = ContinuousClock.now
        try waitFor { thread.tid != nil }
        #expect(try thread.stop(timeout: .seconds(30)))
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(looping.count == 1)
        #expect(thread.acknowledgedStop)
    }

    #if DEBUG
    @Test("a stop request writes the descriptor outside the lock, and the owner retiring it meanwhile does not close it under the write")
    func descriptorWriteOutlivesRetirement() throws {
        let opened = Counter()
        let number = Locked<Int32>(-1)
        let thread = try ManagedThread.spawn(name: "fd-retire-race") { token in
            let fd = try token.fileDescriptor
            number.withLock { $0 = fd }
            opened.increment()
            // Ends on the flag, before the descriptor is written: the stop request is held
            // between its lock and its write.
            while !token.isStopRequested { usleep(1_000) }
        }
        try waitFor("the thread to open its descriptor") { opened.count == 1 }
        let fd = number.value
        let identity = eventfdIdentity(fd)
        #expect(identity != nil, "fdinfo of \(fd) names an eventfd")
        let stillOpen = Locked<Bool>(false)
        thread.stop.beforeDescriptorSignal = {
            // Lock released, write pending: the owner now sees the stop, ends and retires the
            // descriptor. The old code wrote under the lock, so it never got here.
            _ = try? thread.join(timeout: .seconds(30))
            let same = eventfdIdentity(fd) == identity
            stillOpen.withLock { $0 = same }
        }
        thread.requestStop()
        #expect(!thread.isAlive)
        #expect(stillOpen.value, "the owner's retirement closed the descriptor under a pending write")
        #expect(eventfdIdentity(fd) != identity, "the write's reference was the last: it closed the descriptor")
    }
    #endif

    @Test("a non-positive tick period is rejected")
    func ticksRejectZero() {
        let source = StopSource()
        #expect { _ = try source.token.ticks(every: .zero) } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
    }
}

func procLink(_ path: String) -> String? {
    try? FileManager.default.destinationOfSymbolicLink(atPath: path)
}

/// The kernel's id of the eventfd open as `fd` (its `eventfd-id` in fdinfo), or nil when `fd` is
/// not an open eventfd: the descriptor's number may be reused, its id is not.
func eventfdIdentity(_ fd: Int32) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8) else { return nil }
    return text.split(separator: "\n").first { $0.hasPrefix("eventfd-id:") }.map(String.init)
}
