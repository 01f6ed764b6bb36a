#if canImport(XCTest)
import ManagedThreads
import ManagedThreadsTesting
import XCTest

/// Checks the XCTest base class from the inside: failures it records are captured (not failed)
/// while the test and its leak check run, then asserted on.
final class ManagedThreadsTestCaseTests: ManagedThreadsTestCase {
    private var captured: [String] = []
    private var capturing = false

    override func recordFailure(withDescription description: String, inFile filePath: String, atLine lineNumber: Int, expected: Bool) {
        if capturing {
            captured.append(description)
        } else {
            super.recordFailure(withDescription: description, inFile: filePath, atLine: lineNumber, expected: expected)
        }
    }

    override func invokeTest() {
        captured = []
        capturing = true
        super.invokeTest()  // set-up, the test method, tear-down, then the leak check
        capturing = false
        if name.contains("testLeakIsNamed") {
            XCTAssertEqual(captured.count, 1, "\(captured)")
            XCTAssertTrue(captured.first?.contains("xctest-leaker") == true, "\(captured)")
            XCTAssertEqual(lastLeakCheck?.leaks.map(\.name), ["xctest-leaker"])
        } else {
            XCTAssertEqual(captured, [])
            XCTAssertEqual(lastLeakCheck?.isClean, true)
        }
    }

    func testLeakIsNamed() throws {
        XCTAssertFalse(ThreadGroup.current === ThreadGroup.root, "the test runs in its own group")
        try ThreadGroup.current.spawn(name: "xctest-leaker") { token in _ = token.wait(timeout: .seconds(120)) }
    }

    func testCleanTestPasses() throws {
        let worker = try ThreadGroup.current.spawn(name: "xctest-tidy") { token in _ = token.wait(timeout: .seconds(120)) }
        XCTAssertTrue(try worker.stop(timeout: .seconds(30)))
    }
}
#endif
