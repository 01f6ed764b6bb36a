import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

// The default ticker needs no descriptor (issue 13, item 3): due times on ContinuousClock, the
// token's futex wait in between.
@Suite("Clock ticker", .managedThreads)
struct ClockTickerTests {
    @Test("ticks are never early, count every period, and a stall is reported as missed periods")
    func periodAndMissed() throws {
        let source = StopSource()
        let period = Duration.milliseconds(10)
        // Read before the ticker starts, so `start` is never later than its start: read after, a
        // preemption in between (19 ms once, under load) made on-time ticks look early.
        let start = ContinuousClock.now
        let ticker = try source.token.ticks(every: period)
        defer { ticker.close() }
        #expect(ticker.fileDescriptor == -1, "no descriptor unless asked for")
        var previous: UInt64 = 0
        for round in 0..<20 {
            guard let tick = ticker.next() else {
                Issue.record("the ticker ended without a stop")
                return
            }
            let now = ContinuousClock.now
            // Drift-free and never early: tick n comes at start + n × period or later.
            #expect(now >= start.advanced(by: period * Int(tick.index)) - .milliseconds(1), "tick \(tick.index) early")
            #expect(tick.index == previous + 1 + tick.missed, "indices count every period")
            if round == 10 {
                usleep(55_000)  // a stall of five and a half periods
                let late = try #require(ticker.next())
                #expect(late.missed >= 4, "a 55 ms stall at 10 ms is at least 4 missed periods: \(late)")
                #expect(late.index == tick.index + 1 + late.missed)
                previous = late.index
                continue
            }
            previous = tick.index
        }
    }

    @Test("a stop ends a clock ticker's wait at once")
    func stopEndsWait() throws {
        let thread = try ManagedThread.spawn(name: "slow-ticker") { token in
            for _ in try token.ticks(every: .seconds(3_600)) {}
        }
        usleep(20_000)
        #expect(try thread.stop(timeout: .seconds(30)), "a one-hour period does not delay the stop")
        #expect(thread.error == nil)
    }
}

/// In a fresh process: lowers RLIMIT_NOFILE to 1,024, runs 10,000 ticker loops in a group, shuts
/// it down. 0 when every thread ticked, was joined, and no descriptor was left behind.
func tenThousandTickersBody() -> Int32 {
    var limit = rlimit(rlim_cur: 1_024, rlim_max: 1_024)
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = min(limit.rlim_cur, 1_024)
    guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 2 }
    let descriptorsBefore = openDescriptorCount()
    let ticked = Counter()
    do {
        let group = try ThreadGroup.root.makeChild(name: "tickers")
        for index in 0..<10_000 {
            try group.spawn(name: "ticker-\(index)", options: ThreadOptions(stackSize: ThreadOptions.minimumStackSize)) { token in
                var first = true
                for _ in try token.ticks(every: .milliseconds(100)) where first {
                    ticked.increment()
                    first = false
                }
            }
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(120))
        while ticked.count < 10_000 && ContinuousClock.now < deadline { usleep(10_000) }
        guard ticked.count == 10_000 else { return 3 }
        let report = group.shutdown(timeout: .seconds(120))
        guard report.isClean, report.joined == 10_000, report.failed == 0 else { return 4 }
    } catch {
        return 5
    }
    return openDescriptorCount() <= descriptorsBefore + 2 ? 0 : 6
}
