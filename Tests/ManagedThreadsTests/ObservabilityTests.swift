import CoreMetrics
import Logging
@testable import ManagedThreads
import ManagedThreadsTesting
import Synchronization
import Testing

// Small in-memory doubles of the swift-log and swift-metrics protocols. Each test gets its own,
// handed to its own group: nothing is bootstrapped process-wide, so tests in parallel stay apart.

/// Keeps every log event.
final class LogRecorder: Sendable {
    struct Event: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let events = Lock<[Event]>([])

    var all: [Event] { events.withLock { $0 } }
    func append(_ event: Event) { events.withLock { $0.append(event) } }

    /// A logger at `level` that records here.
    func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "test") { _ in Handler(recorder: self) }
        logger.logLevel = level
        return logger
    }

    func events(_ message: String) -> [Event] { all.filter { $0.message == message } }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        func log(event: LogEvent) {
            recorder.append(Event(
                level: event.level, message: "\(event.message)",
                metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
    }
}

/// Keeps every metric's values, by label and dimensions.
final class MetricsRecorder: MetricsFactory, Sendable {
    struct Key: Hashable, Sendable, CustomStringConvertible {
        var label: String
        var group: String
        var description: String { "\(label){group=\(group)}" }
    }

    /// One handler for all kinds: counters add, meters set/add, timers append.
    final class Handler: CounterHandler, MeterHandler, TimerHandler, RecorderHandler, FloatingPointCounterHandler, Sendable {
        private let state = Lock<(total: Double, values: [Int64])>((0, []))
        var total: Double { state.withLock { $0.total } }
        var values: [Int64] { state.withLock { $0.values } }

        func increment(by amount: Int64) { state.withLock { $0.total += Double(amount) } }
        func increment(by amount: Double) { state.withLock { $0.total += amount } }
        func decrement(by amount: Double) { state.withLock { $0.total -= amount } }
        func reset() { state.withLock { $0.total = 0 } }
        func set(_ value: Int64) { state.withLock { $0.total = Double(value) } }
        func set(_ value: Double) { state.withLock { $0.total = value } }
        func record(_ value: Int64) { state.withLock { $0.values.append(value) } }
        func record(_ value: Double) { state.withLock { $0.values.append(Int64(value)) } }
        func recordNanoseconds(_ duration: Int64) { state.withLock { $0.values.append(duration) } }
    }

    private let handlers = Lock<[Key: Handler]>([:])

    private func handler(_ label: String, _ dimensions: [(String, String)]) -> Handler {
        let key = Key(label: label, group: dimensions.first { $0.0 == "group" }?.1 ?? "")
        return handlers.withLock { handlers in
            if let handler = handlers[key] { return handler }
            let handler = Handler()
            handlers[key] = handler
            return handler
        }
    }

    /// The running total of a counter or meter (0 if never created).
    func total(_ label: String, group: String) -> Double {
        handlers.withLock { $0[Key(label: label, group: group)]?.total ?? 0 }
    }

    /// The values a timer recorded.
    func values(_ label: String, group: String) -> [Int64] {
        handlers.withLock { $0[Key(label: label, group: group)]?.values ?? [] }
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler { handler(label, dimensions) }
    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler { handler(label, dimensions) }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler { handler(label, dimensions) }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler { handler(label, dimensions) }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler { handler(label, dimensions) }
    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}

@Suite("Logging and metrics", .managedThreads)
struct ObservabilityTests {
    @Test("a spawn and a clean shutdown: debug start/exit, stop and summary; live gauge, counters and timers")
    func cleanShutdown() throws {
        let logs = LogRecorder()
        let metrics = MetricsRecorder()
        let group = ThreadGroup(name: "observed", logger: logs.logger(), metricsFactory: metrics)
        let child = try group.makeChild(name: "child")
        let running = Counter()
        try group.spawn(name: "obs-worker") { token in
            running.increment()
            _ = token.wait(timeout: .seconds(120))
        }
        try child.spawn(name: "obs-child-worker") { token in
            running.increment()
            _ = token.wait(timeout: .seconds(120))
        }
        try waitFor("both threads running and logged") { running.count == 2 && logs.events("thread started").count == 2 }

        let started = logs.events("thread started")
        #expect(started.allSatisfy { $0.level == .debug })
        #expect(Set(started.map { $0.metadata["thread"]?.description }) == ["obs-worker", "obs-child-worker"])
        #expect(started.first { $0.metadata["thread"] == "obs-child-worker" }?.metadata["group"] == "observed/child",
                "the child inherited the logger and logs its own path")
        #expect(metrics.total("managed_threads_alive", group: "observed") == 1)
        #expect(metrics.total("managed_threads_alive", group: "observed/child") == 1, "the factory is inherited too")
        #expect(metrics.total("managed_threads_spawned_total", group: "observed") == 1)

        let report = group.shutdown(timeout: .seconds(30))
        #expect(report.joined == 2)

        let stop = try #require(logs.events("stop requested").first)
        #expect(stop.level == .debug, "routine: nothing at info or above for a clean shutdown")
        #expect(stop.metadata["group"] == "observed")
        let exited = logs.events("thread exited")
        #expect(exited.count == 2 && exited.allSatisfy { $0.level == .debug })
        let summary = try #require(logs.events("shutdown finished").first)
        #expect(summary.level == .debug)
        #expect(summary.metadata["joined"] == "2")
        #expect(summary.metadata["stuck"] == "0")
        #expect(logs.all.allSatisfy { $0.level < .info }, "a clean shutdown prints nothing through swift-log's default handler (info and up)")

        #expect(metrics.total("managed_threads_alive", group: "observed") == 0)
        #expect(metrics.total("managed_threads_alive", group: "observed/child") == 0)
        #expect(metrics.values("managed_threads_stop_to_exit", group: "observed").count == 1)
        #expect(metrics.values("managed_threads_stop_to_exit", group: "observed/child").count == 1)
        let durations = metrics.values("managed_threads_shutdown_duration", group: "observed")
        #expect(durations == [report.durationNanoseconds])
        #expect(metrics.total("managed_threads_stuck_total", group: "observed") == 0)
    }

    @Test("a chosen metrics label is inherited: per-request groups count into one series; unchosen ones use their path")
    func metricsLabels() throws {
        let metrics = MetricsRecorder()
        let server = ThreadGroup(name: "labelled", metricsFactory: metrics, metricsLabel: "server")
        #expect(server.metricsLabel == "server")
        for index in 0..<3 {
            let request = try server.makeChild(name: "request-\(index)")
            #expect(request.metricsLabel == "server")
            try request.spawn(name: "handler") { _ in }
            #expect(request.shutdown(timeout: .seconds(30)).isClean)
        }
        let special = try server.makeChild(name: "special", metricsLabel: "special")
        try special.spawn(name: "handler") { _ in }
        #expect(special.shutdown(timeout: .seconds(30)).isClean)
        #expect(metrics.total("managed_threads_spawned_total", group: "server") == 3)
        #expect(metrics.total("managed_threads_spawned_total", group: "special") == 1)
        #expect(metrics.total("managed_threads_spawned_total", group: "labelled/request-0") == 0, "no series per request")
        #expect { try server.makeChild(name: "empty", metricsLabel: "") } throws: { ($0 as? ThreadError)?.code == .invalidArgument }

        let unlabelled = ThreadGroup(name: "plain", metricsFactory: metrics)
        let child = try unlabelled.makeChild(name: "child")
        #expect(child.metricsLabel == "plain/child", "no label chosen: the path, as before")
        #expect(server.shutdown(timeout: .seconds(30)).isClean)
        #expect(unlabelled.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("a stuck thread: a warning with the report's fields, and the stuck counter")
    func stuckShutdown() throws {
        let logs = LogRecorder()
        let metrics = MetricsRecorder()
        let group = ThreadGroup(name: "observed-stuck", logger: logs.logger(level: .info), metricsFactory: metrics)
        let gate = Gate()
        let stubborn = try group.spawn(name: "obs-stubborn", purpose: "ignores its token") { _ in gate.waitOpen() }
        try waitFor { stubborn.tid != nil }

        let report = group.shutdown(timeout: .milliseconds(100))
        #expect(report.stuck == 1)
        let warning = try #require(logs.events("thread did not stop by the deadline").first)
        #expect(warning.level == .warning)
        #expect(warning.metadata["thread"] == "obs-stubborn")
        #expect(warning.metadata["group"] == "observed-stuck")
        #expect(warning.metadata["tid"]?.description == stubborn.tid.map(String.init))
        #expect(warning.metadata["purpose"] == "ignores its token")
        #expect(warning.metadata["acknowledged"] == "false")
        #expect(warning.metadata["kernel_state"] != nil)
        #expect(logs.events("shutdown finished").first?.metadata["stuck"] == "1")
        #expect(logs.events("shutdown finished").first?.level == .warning, "a shutdown that left a thread running is not routine")
        #expect(logs.events("thread started").isEmpty, "debug events are filtered by the logger's level")
        #expect(metrics.total("managed_threads_stuck_total", group: "observed-stuck") == 1)

        gate.release()
        #expect(try stubborn.join(timeout: .seconds(30)))
        #expect(metrics.total("managed_threads_alive", group: "observed-stuck") == 0)
    }

    @Test("a body that throws: an error event with the error, and the failed counter")
    func failedBody() throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "disk on fire" } }
        let logs = LogRecorder()
        let metrics = MetricsRecorder()
        let group = ThreadGroup(name: "observed-failure", logger: logs.logger(), metricsFactory: metrics)
        let thread = try group.spawn(name: "obs-thrower") { _ in throw Broken() }
        #expect(try thread.join(timeout: .seconds(30)))
        let event = try #require(logs.events("thread body threw").first)
        #expect(event.level == .error)
        #expect(event.metadata["thread"] == "obs-thrower")
        #expect(event.metadata["error"] == "disk on fire")
        #expect(metrics.total("managed_threads_failed_total", group: "observed-failure") == 1)
        #expect(metrics.values("managed_threads_stop_to_exit", group: "observed-failure").isEmpty,
                "no stop was requested, so no stop-to-exit time")
        _ = group.shutdown(timeout: .seconds(30))
    }

    @Test("a child can take its own logger; its children inherit that one")
    func childLogger() throws {
        let parentLogs = LogRecorder()
        let childLogs = LogRecorder()
        let group = ThreadGroup(name: "observed-parent", logger: parentLogs.logger())
        let child = try group.makeChild(name: "own", logger: childLogs.logger())
        let grandchild = try child.makeChild(name: "inherits")
        let thread = try grandchild.spawn(name: "obs-grandchild") { _ in }
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(childLogs.events("thread exited").map { $0.metadata["group"] } == ["observed-parent/own/inherits"])
        #expect(parentLogs.events("thread exited").isEmpty)
        _ = group.shutdown(timeout: .seconds(30))
    }
}
