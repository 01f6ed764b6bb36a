import Foundation
import Testing
import ThreadGuardrail

/// Tests/Fixtures/check-threads/flagged: a package-like tree outside every target, so SwiftPM
/// never compiles it. `.ci/check-threads` runs the real command on the same files.
enum Fixture {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/check-threads/flagged")

    static func read(_ relativePath: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)
    }

    static func source() throws -> SourceFile {
        SourceFile(
            path: "Tests/Fixtures/check-threads/flagged/Sources/App/main.swift",
            matchPath: "Sources/App/main.swift",
            text: try read("Sources/App/main.swift")
        )
    }
}

@Suite("Fixture tree")
struct FixtureTests {
    @Test("the fixture's raw Thread { } and pthread_create are flagged, and nothing else")
    func flagged() throws {
        let report = Report(checking: [try Fixture.source()], allowlist: Allowlist())
        #expect(report.findings.map { "\($0.line):\($0.column) \($0.rule.rawValue)" } == [
            "9:14 Thread.init", "14:10 pthread_create",
        ])
        #expect(report.exitStatus(strict: false) == .violations)
        #expect(report.lines(strict: false).first?.hasPrefix(
            "Tests/Fixtures/check-threads/flagged/Sources/App/main.swift:9:14: error: raw thread creation (Thread.init)"
        ) == true)
    }

    @Test("with the fixture's allowlist it passes, even in strict mode, with no stale entry")
    func allowlisted() throws {
        let allowlist = try Allowlist(
            parsing: try Fixture.read(".check-threads-allowlist.fixture"), path: ".check-threads-allowlist.fixture"
        )
        let report = Report(checking: [try Fixture.source()], allowlist: allowlist)
        #expect(report.findings.isEmpty)
        #expect(report.allowlisted == 2)
        #expect(report.staleEntries.isEmpty)
        #expect(report.exitStatus(strict: true) == .clean)
    }

    @Test("the repository's own allowlist parses and names only known rules")
    func repositoryAllowlist() throws {
        let path = Fixture.root.appendingPathComponent("../../../../.check-threads-allowlist").standardizedFileURL
        let allowlist = try Allowlist(parsing: try String(contentsOf: path, encoding: .utf8))
        #expect(!allowlist.entries.isEmpty)
        #expect(allowlist.entries.allSatisfy { $0.glob.description.hasPrefix("Tests/") || $0.glob.description.hasPrefix("Sources/") })
    }
}
