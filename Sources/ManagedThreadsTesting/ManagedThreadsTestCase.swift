#if canImport(XCTest)
import ManagedThreads
import XCTest

/// An `XCTestCase` whose every test method runs with its own current ``ThreadGroup`` and fails for
/// every thread it leaves behind: the XCTest counterpart of the `.managedThreads` trait.
///
/// ```swift
/// final class WorkerTests: ManagedThreadsTestCase {
///     func testStops() throws {
///         let worker = try ThreadGroup.current.spawn(name: "worker") { token in token.wait(timeout: .seconds(60)) }
///         XCTAssertTrue(try worker.stop(timeout: .seconds(5)))
///     }
/// }
/// ```
///
/// After `tearDown`, threads of the test's group still alive are named in a failure, the group
/// is shut down within the deadline, and stuck threads are named with the report. Override
/// ``leakCheckOptions`` to change the deadline, list known leaks (reported on standard error
/// instead of failing; XCTest on Linux has no expected failures) or audit the whole process.
open class ManagedThreadsTestCase: XCTestCase {
    /// The options for each test's check; override to change them.
    open var leakCheckOptions: ThreadLeakCheck.Options { ThreadLeakCheck.Options() }

    /// What the last test's check found (for subclasses that want to look).
    public private(set) var lastLeakCheck: ThreadLeakCheck.Outcome?

    /// Runs the test (set-up, method, tear-down) inside a leak check.
    open override func invokeTest() {
        let check: ThreadLeakCheck
        do {
            check = try ThreadLeakCheck(name: name, options: leakCheckOptions)
        } catch {
            XCTFail("could not start the thread leak check: \(error)")
            super.invokeTest()
            return
        }
        check.run { super.invokeTest() }
        let outcome = check.finish()
        lastLeakCheck = outcome
        let stuckReport = outcome.report.stuck > 0 || outcome.report.orphaned > 0 ? "\n\(outcome.report)" : ""
        for leak in outcome.unexpectedLeaks {
            XCTFail("Leaked \(leak)\(stuckReport)")
        }
        for leak in outcome.knownLeaks {
            FileHandleStandardError.write("\(name): known thread leak: \(leak)\n")
        }
    }
}

/// Writes to standard error without Foundation.
enum FileHandleStandardError {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { break }
                offset += written
            }
        }
    }
}
#endif
