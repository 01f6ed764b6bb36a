import ManagedThreads
import Testing

/// A Swift Testing trait that gives each test its own current ``ThreadGroup`` and fails the test
/// for every thread it leaves behind.
///
/// ```swift
/// @Suite(.managedThreads) struct WorkerTests {
///     @Test func stops() throws {
///         let worker = try ThreadGroup.current.spawn(name: "worker") { token in token.wait(timeout: .seconds(60)) }
///         #expect(try worker.stop(timeout: .seconds(5)))
///     }
/// }
/// ```
///
/// When the test returns (or throws), every thread of its group still alive is named in an issue;
/// the group is then shut down within ``ThreadLeakCheck/Options/timeout`` and a thread still
/// running after that is named as stuck, with the shutdown report. Each test (each case of a
/// parameterized test) checks only its own group, so tests running in parallel do not blame each
/// other. Threads listed in ``ThreadLeakCheck/Options/knownLeaks`` are recorded as known issues.
/// With ``ThreadLeakCheck/Options/auditProcess`` (for `.serialized` suites), OS threads started
/// during the test by anything — raw `Thread`, Dispatch, C — are named too.
public struct ManagedThreadsTrait: TestTrait, SuiteTrait, TestScoping {
    /// How each test is checked.
    public var options: ThreadLeakCheck.Options

    /// Applies to every test in a suite it is attached to.
    public var isRecursive: Bool { true }

    /// Creates the trait; see ``Testing/Trait/managedThreads(timeout:knownLeaks:auditProcess:linger:)``.
    public init(options: ThreadLeakCheck.Options = ThreadLeakCheck.Options()) {
        self.options = options
    }

    /// One scope per test case, so parameterized cases running in parallel each get their own group.
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> ManagedThreadsTrait? {
        testCase == nil ? nil : self
    }

    /// Runs the test with its own current group, then checks and records what it left behind.
    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let check = try ThreadLeakCheck(name: test.name, options: options)
        var failure: (any Error)?
        do {
            try await check.run { try await function() }
        } catch {
            failure = error
        }
        let outcome = await check.finish()
        Self.record(outcome, sourceLocation: test.sourceLocation)
        if let failure { throw failure }
    }

    /// Records one issue per unexpected leak, and one known issue per known leak.
    static func record(_ outcome: ThreadLeakCheck.Outcome, sourceLocation: SourceLocation) {
        let stuckReport = outcome.report.stuck > 0 || outcome.report.orphaned > 0 ? "\n\(outcome.report)" : ""
        for leak in outcome.unexpectedLeaks {
            Issue.record("Leaked \(leak)\(stuckReport)", sourceLocation: sourceLocation)
        }
        for leak in outcome.knownLeaks {
            withKnownIssue("known thread leak: \(leak.name)", sourceLocation: sourceLocation) {
                Issue.record("Leaked \(leak)", sourceLocation: sourceLocation)
            }
        }
    }
}

extension Trait where Self == ManagedThreadsTrait {
    /// Gives each test its own current ``ThreadGroup`` and fails it for threads left behind, with
    /// the default options (5 s shutdown deadline, no known leaks, no process audit).
    public static var managedThreads: Self { ManagedThreadsTrait() }

    /// Gives each test its own current ``ThreadGroup`` and fails it for threads left behind.
    /// - Parameters:
    ///   - timeout: the deadline for stopping the test's group at its end.
    ///   - knownLeaks: thread names (a trailing `*` matches a prefix) whose leaks are recorded as
    ///     known issues instead of failures; other leaks still fail.
    ///   - auditProcess: also name OS threads started during the test by anything (only in
    ///     `.serialized` suites: the audit sees the whole process).
    ///   - linger: how long such an OS thread may take to end on its own.
    public static func managedThreads(
        timeout: Duration = .seconds(5), knownLeaks: [String] = [], auditProcess: Bool = false,
        linger: Duration = .seconds(1)
    ) -> Self {
        ManagedThreadsTrait(options: .init(timeout: timeout, knownLeaks: knownLeaks, auditProcess: auditProcess, linger: linger))
    }
}
