import Logging
import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Checks that a piece of test code leaves no thread behind; the engine under the Swift Testing
/// trait (`.managedThreads`) and ``ManagedThreadsTestCase``, usable on its own too.
///
/// ```swift
/// let check = try ThreadLeakCheck(name: "my test")
/// try check.run { try exerciseTheServer() }      // ThreadGroup.current is the check's group
/// let outcome = check.finish()                    // stops the group under a deadline
/// #expect(outcome.unexpectedLeaks.isEmpty, "\(outcome)")
/// ```
///
/// A thread counts as leaked when it is still alive as the code under test returns: the check
/// then stops it (and everything else in its group) and says whether it exited or is stuck. With
/// ``Options/auditProcess``, OS threads that appeared meanwhile and outlive a short linger are
/// named as well, whoever started them.
public final class ThreadLeakCheck: Sendable {
    /// How a check runs.
    public struct Options: Sendable, Hashable {
        /// The deadline for stopping the test's group at the end.
        public var timeout: Duration
        /// Names of threads known to leak: their leaks are reported as known, not as failures.
        /// A name ending in `*` matches every name that starts with the part before it.
        public var knownLeaks: [String]
        /// Also look at every OS thread of the process (``ThreadAudit``), not only the test's
        /// group: catches raw `Thread`, Dispatch and C threads. Meaningful only when no other test
        /// runs at the same time (a `.serialized` suite), since threads are per process.
        public var auditProcess: Bool
        /// How long a new OS thread may take to go away on its own before it counts as leaked.
        public var linger: Duration

        /// Creates options; by default a 5 s deadline, no known leaks, no process audit, 1 s linger.
        public init(
            timeout: Duration = .seconds(5), knownLeaks: [String] = [], auditProcess: Bool = false,
            linger: Duration = .seconds(1)
        ) {
            self.timeout = timeout
            self.knownLeaks = knownLeaks
            self.auditProcess = auditProcess
            self.linger = linger
        }

        /// Whether `name` is listed in ``knownLeaks``.
        public func isKnownLeak(_ name: String) -> Bool {
            knownLeaks.contains { pattern in
                pattern.hasSuffix("*") ? name.hasPrefix(pattern.dropLast()) : name == pattern
            }
        }
    }

    /// The test's own group: `run(_:)` makes it `ThreadGroup.current`.
    public let group: ThreadGroup
    /// The options in effect.
    public let options: Options
    private let threadsBefore: Set<Int32>

    /// Creates a check with a fresh group below `ThreadGroup.current`, logging to the current
    /// group's logger from level warning up (stuck threads, failed bodies).
    /// - Parameter name: names the group (a `/` in it becomes `∕`); the test's name, usually.
    /// - Throws: ``ThreadError`` when the current group is stopped.
    public init(name: String, options: Options = Options()) throws(ThreadError) {
        var groupName = String(name.map { $0 == "/" ? "∕" : $0 })
        if groupName.isEmpty { groupName = "test" }
        // Routine events (a stop request and a summary per test) would drown a test log: the
        // test's group logs from warning up, inheriting the current group's logger otherwise.
        var logger = ThreadGroup.current.logger
        if logger.logLevel < .warning { logger.logLevel = .warning }
        self.group = try ThreadGroup.current.makeChild(name: groupName, logger: logger)
        self.options = options
        self.threadsBefore = options.auditProcess ? Set(ThreadAudit.snapshot().map(\.tid)) : []
    }

    /// Runs the code under test with ``group`` as `ThreadGroup.current`.
    public func run<R>(_ body: () throws -> R) rethrows -> R {
        try group.withCurrent(body)
    }

    /// Async form of the synchronous `run(_:)`.
    public func run<R>(_ body: () async throws -> R) async rethrows -> R {
        try await group.withCurrent(body)
    }

    /// Names the threads alive now, stops the group within ``Options/timeout``, and (with
    /// ``Options/auditProcess``) waits out the linger for new OS threads. Call once, after the
    /// code under test returned.
    @available(*, noasync, message: "blocks the calling thread; use the async finish()")
    public func finish() -> Outcome {
        let alive = group.aliveThreads
        let report = group.shutdown(timeout: options.timeout)
        // Threads on their way out get the linger to go (the same backoff as waitFor's).
        var strangers = newThreads()
        var backoff = Backoff(timeout: options.linger)
        while !strangers.isEmpty, let pause = backoff.next() {
            blockingPause(pause)
            strangers = newThreads()
        }
        return Outcome(alive: alive, report: report, strangers: strangers, options: options)
    }

    /// Async form of the synchronous `finish()`: the group's shutdown runs on a dedicated thread and the
    /// linger sleeps the task.
    public func finish() async -> Outcome {
        let alive = group.aliveThreads
        let report = await group.shutdown(timeout: options.timeout)
        var strangers = newThreads()
        var backoff = Backoff(timeout: options.linger)
        while !strangers.isEmpty, let pause = backoff.next() {
            try? await Task.sleep(for: pause)
            strangers = newThreads()
        }
        return Outcome(alive: alive, report: report, strangers: strangers, options: options)
    }

    /// OS threads that were not there when the check began (none without the process audit).
    private func newThreads() -> [ThreadAudit.Entry] {
        guard options.auditProcess else { return [] }
        return ThreadAudit.snapshot().filter { !threadsBefore.contains($0.tid) }
    }

    /// What a check found.
    public struct Outcome: Sendable, CustomStringConvertible {
        /// One thread left behind.
        public struct Leak: Sendable, Hashable, CustomStringConvertible {
            /// How it was left behind.
            public enum Kind: String, Sendable, Hashable {
                /// Alive as the test returned; the check's shutdown then stopped it.
                case stoppedByCheck
                /// Alive as the test returned and still running after the check's deadline.
                case stuck
                /// A background thread still running after the check's deadline.
                case orphaned
                /// An OS thread that appeared during the test and outlived the linger (process audit).
                case osThread
            }

            /// The thread's full name (for an OS thread, its kernel name).
            public var name: String
            /// The group path, for managed threads.
            public var groupPath: String?
            /// Kernel thread id, if known.
            public var tid: Int32?
            /// How it was left behind.
            public var kind: Kind
            /// Whether ``Options/knownLeaks`` lists it.
            public var isKnown: Bool
            /// The report's line for it, or the audit's.
            public var detail: String

            /// One sentence: the thread, its group, how it was left behind, and the details.
            public var description: String {
                let place = groupPath.map { " in \($0)" } ?? ""
                let what: String
                switch kind {
                case .stoppedByCheck: what = "was still running when the test returned (stopped by the leak check)"
                case .stuck: what = "was still running when the test returned and did not stop by the leak check's deadline"
                case .orphaned: what = "is a background thread still running after the leak check"
                case .osThread: what = "is an OS thread started during the test and still alive"
                }
                return "thread \(name.debugDescription)\(place) \(what): \(detail)"
            }
        }

        /// Every thread left behind, known or not.
        public var leaks: [Leak]
        /// The shutdown report of the test's group.
        public var report: ShutdownReport

        /// Leaks that ``Options/knownLeaks`` does not list: each one fails the test.
        public var unexpectedLeaks: [Leak] { leaks.filter { !$0.isKnown } }
        /// Leaks that ``Options/knownLeaks`` lists.
        public var knownLeaks: [Leak] { leaks.filter(\.isKnown) }
        /// Whether nothing was left behind.
        public var isClean: Bool { leaks.isEmpty }

        init(alive: [ManagedThread], report: ShutdownReport, strangers: [ThreadAudit.Entry], options: Options) {
            self.report = report
            var leaks: [Leak] = []
            var seen = Set<Int32>()
            let unfinished = report.root.allEntries.filter { $0.status == .stuck || $0.status == .orphaned }
            for thread in alive {
                // Read after the shutdown: a thread that had only just been spawned has a tid now.
                let tid = thread.tid
                if let tid { seen.insert(tid) }
                let entry = unfinished.first { entry in
                    entry.tid.map { $0 == tid } ?? (entry.name == thread.name && entry.groupPath == thread.groupPath)
                }
                let kind: Leak.Kind = entry.map { $0.status == .stuck ? .stuck : .orphaned } ?? .stoppedByCheck
                let detail = entry?.description
                    ?? "tid \(tid.map(String.init) ?? "-"), age \(milliseconds(thread.spawnTime.duration(to: .now))), exited after the stop; spawned at \(thread.spawnSite)"
                leaks.append(Leak(
                    name: thread.name, groupPath: thread.groupPath, tid: tid, kind: kind,
                    isKnown: options.isKnownLeak(thread.name), detail: detail))
            }
            // Threads the report lists that the status did not (spawned during the shutdown).
            for entry in unfinished where !seen.contains(entry.tid ?? -1) {
                if let tid = entry.tid { seen.insert(tid) }
                leaks.append(Leak(
                    name: entry.name, groupPath: entry.groupPath, tid: entry.tid,
                    kind: entry.status == .stuck ? .stuck : .orphaned,
                    isKnown: options.isKnownLeak(entry.name), detail: entry.description))
            }
            for stranger in strangers where !seen.contains(stranger.tid) {
                leaks.append(Leak(
                    name: stranger.name, groupPath: nil, tid: stranger.tid, kind: .osThread,
                    isKnown: options.isKnownLeak(stranger.name), detail: stranger.description))
            }
            self.leaks = leaks
        }

        /// One line per leak, then the report when something is stuck.
        public var description: String {
            guard !isClean else { return "no threads leaked (\(report.total) stopped at the end)" }
            var lines = ["\(leaks.count) thread(s) leaked:"] + leaks.map { "- \($0)" }
            if report.stuck > 0 || report.orphaned > 0 { lines.append(report.description) }
            return lines.joined(separator: "\n")
        }
    }
}

/// "12.3 ms", without Foundation.
func milliseconds(_ duration: Duration) -> String {
    let tenths = Int64(duration / .microseconds(100))
    return "\(tenths / 10).\(abs(tenths % 10)) ms"
}
