#if canImport(Glibc)
import Glibc
#endif

/// The error ``waitFor(_:timeout:fileID:line:_:)`` throws when its condition did not become true in time.
public struct WaitForTimeout: Error, CustomStringConvertible, Sendable {
    /// What was waited for.
    public var what: String
    /// How long it was waited for.
    public var timeout: Duration
    /// How many times the condition was checked.
    public var checks: Int
    /// Where the wait was written.
    public var fileID: String
    /// The line of the wait.
    public var line: Int

    /// Where, how long, and what was waited for.
    public var description: String {
        "\(fileID):\(line): timed out after \(timeout) waiting for \(what) (checked \(checks) times)"
    }
}

/// Waits until `condition` holds, checking it with a short, growing pause (50 µs up to 10 ms),
/// at most for `timeout`.
///
/// Tests synchronise on real state with this instead of sleeping: it returns as soon as the
/// condition holds, and its default bound is generous for shared, noisy machines.
///
/// ```swift
/// try waitFor("four workers running") { running.load(ordering: .relaxed) == 4 }
/// ```
/// - Throws: ``WaitForTimeout`` (naming `what`, the bound and the place) if time runs out, or
///   what `condition` throws.
@available(*, noasync, message: "blocks the calling thread; use the async waitFor")
@_disfavoredOverload
public func waitFor(
    _ what: @autoclosure () -> String = "the condition", timeout: Duration = .seconds(10),
    fileID: String = #fileID, line: Int = #line, _ condition: () throws -> Bool
) throws {
    var backoff = Backoff(timeout: timeout)
    while true {
        if try condition() { return }
        guard let pause = backoff.next() else { break }
        blockingPause(pause)
    }
    throw WaitForTimeout(what: what(), timeout: timeout, checks: backoff.checks, fileID: fileID, line: line)
}

/// Async form of ``waitFor(_:timeout:fileID:line:_:)``: pauses the task, not the thread.
public func waitFor(
    _ what: @autoclosure () -> String = "the condition", timeout: Duration = .seconds(10),
    fileID: String = #fileID, line: Int = #line, _ condition: () async throws -> Bool
) async throws {
    var backoff = Backoff(timeout: timeout)
    while true {
        if try await condition() { return }
        guard let pause = backoff.next() else { break }
        try await Task.sleep(for: pause)
    }
    throw WaitForTimeout(what: what(), timeout: timeout, checks: backoff.checks, fileID: fileID, line: line)
}

/// The pauses between checks: growing from 50 µs to 10 ms, ending at the deadline (with a last check).
struct Backoff {
    let deadline: ContinuousClock.Instant
    var pause = Duration.microseconds(50)
    private(set) var checks = 0
    private var finalCheckDone = false

    init(timeout: Duration) {
        deadline = ContinuousClock.now.advanced(by: max(timeout, .zero))
    }

    /// The next pause, or nil when the last check has been made.
    mutating func next() -> Duration? {
        checks += 1
        let remaining = ContinuousClock.now.duration(to: deadline)
        if remaining <= .zero {
            // One more check exactly at (or after) the deadline, then give up.
            if finalCheckDone { return nil }
            finalCheckDone = true
            return .zero
        }
        let next = min(pause, remaining)
        pause = min(pause * 2, .milliseconds(10))
        return next
    }
}

/// Sleeps the calling thread for `duration` (resuming after signals), for polling loops only.
func blockingPause(_ duration: Duration) {
    let (seconds, attoseconds) = min(duration, .seconds(3600)).components
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    var remaining = timespec()
    while nanosleep(&request, &remaining) == -1 && errno == EINTR { request = remaining }
}
