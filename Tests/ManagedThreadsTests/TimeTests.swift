import CShims
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Deadlines, clocks and tick periods (issue 12, part E).
@Suite("Time")
struct TimeTests {
    @Test("until: APIs given instants far in the future wait normally instead of trapping", .exitTest)
    func farFutureDeadlines() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { farFutureDeadlinesBody() }
        if let result, result.exitStatus != .exitCode(0) {
            Issue.record("child: \(String(decoding: result.standardErrorContent, as: UTF8.self))")
        }
    }

    @Test("a sub-microsecond tick period is refused, not spun on")
    func tinyTickPeriodRefused() throws {
        let source = StopSource()
        for period in [Duration.nanoseconds(0), .nanoseconds(1), .nanoseconds(999), .zero - .seconds(1)] {
            #expect(throws: ThreadError.self, "period \(period)") { _ = try source.token.ticks(every: period) }
        }
        let attoseconds = Duration(secondsComponent: 0, attosecondsComponent: 1)
        #expect(throws: ThreadError.self) { _ = try source.token.ticks(every: attoseconds) }
        let ticker = try source.token.ticks(every: .microseconds(1))
        ticker.close()
    }

    @Test("a tick whose timer expires between the ticker's checks is on time, not missed", .enabled(if: isDebugBuild))
    func onTimeTicksNotMissed() throws {
        // The old ticker read the timerfd, found nothing, asked timerfd_gettime for the time left
        // and slept that long. When the timer expired between the two calls, gettime reported the
        // expiry after, so the banked tick was slept through and came a period late, "missed"
        // (about 1 tick in 60 at 1 ms). The debug hook makes the timer expire exactly there.
        #if DEBUG
        let missed = Counter()
        let thread = try ManagedThread.spawn(name: "ticker") { token in
            let ticker = try token.ticks(every: .milliseconds(10), pollable: true)
            ticker.afterEmptyRead = { fd in
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = Glibc.poll(&pfd, 1, 1_000)  // until the timer has expired
            }
            var count = 0
            for tick in ticker {
                if tick.missed > 0 { missed.increment() }
                count += 1
                if count == 60 { return }
            }
        }
        #expect(try thread.join(timeout: .seconds(120)))
        #expect(thread.error == nil)
        // The hook forces the race on every tick, so the bug made every tick "missed". A tick
        // really missed is possible too: the hook's poll can wake more than a period late when the
        // machine is busy (a loaded full-suite run here once saw more than 10 of 100 at 5 ms). Half is far from both.
        #expect(missed.count < 30, "\(missed.count) of 60 on-time ticks reported missed")
        #endif
    }
}

let farInstants: [ContinuousClock.Instant] = [
    ContinuousClock.now.advanced(by: .seconds(Int64.max / 2)),
    ContinuousClock.now.advanced(by: .seconds(Int64.max)),
    ContinuousClock.now.advanced(by: .seconds(Int64.max)).advanced(by: .seconds(Int64.max)),
    ContinuousClock.now.advanced(by: .seconds(9_223_372_036)),
]

func farFutureDeadlinesBody() {
    do {
        for far in farInstants {
            let source = StopSource()
            source.requestStop()
            guard source.token.wait(until: far) else { exit(10) }
            let group = ThreadGroup(name: "far")
            let thread = try group.spawn(name: "quick") { token in _ = token.wait(until: far) }
            thread.requestStop()
            guard try thread.join(until: far) else { exit(11) }
            let waiter = try group.spawn(name: "waiter") { token in _ = token.wait(until: far) }
            let report = group.shutdown(until: far)
            guard report.isClean, report.joined == 2, !waiter.isAlive else { FileHandle.standardError.write("\(report)\n".data(using: .utf8)!); exit(12) }
            for policy in [ShutdownPolicy.fair, .ordered, .shared.escalating(.interrupt())] {
                let other = ThreadGroup(name: "far-\(policy)")
                try other.spawn(name: "w") { token in _ = token.wait(until: far) }
                guard other.shutdown(until: far, policy: policy).isClean else { exit(13) }
            }
            print("ok \(far)")
        }
        exit(0)
    } catch {
        print("failed: \(error)")
        exit(1)
    }
}
