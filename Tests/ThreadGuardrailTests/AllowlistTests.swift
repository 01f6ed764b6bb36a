import Testing
import ThreadGuardrail

@Suite("Glob")
struct GlobTests {
    @Test("matches", arguments: [
        ("Sources/App/main.swift", "Sources/App/main.swift"),
        ("Sources/App/*.swift", "Sources/App/main.swift"),
        ("Sources/*/main.swift", "Sources/App/main.swift"),
        ("Sources/App/ma?n.swift", "Sources/App/main.swift"),
        ("Sources/App/[lm]ain.swift", "Sources/App/main.swift"),
        ("Sources/App/[a-z]ain.swift", "Sources/App/main.swift"),
        ("Sources/App/[!x]ain.swift", "Sources/App/main.swift"),
        ("Sources/**", "Sources/App/System/PThread.swift"),
        ("Sources/**/PThread.swift", "Sources/App/System/PThread.swift"),
        ("Sources/**/PThread.swift", "Sources/PThread.swift"),
        ("**/PThread.swift", "PThread.swift"),
        ("**/*.swift", "Tests/A/B/C.swift"),
        ("**", "anything/at/all.swift"),
        ("Sources/App/", "Sources/App/System/x.swift"),
        ("./Sources/App/main.swift", "Sources/App/main.swift"),
        ("Sources/App/main.swift", "./Sources/App/main.swift"),
        ("Sources/\\*.swift", "Sources/*.swift"),
        ("Sources/[x.swift", "Sources/[x.swift"),
    ])
    func matches(pattern: String, path: String) {
        #expect(Glob(pattern).matches(path))
    }

    @Test("does not match", arguments: [
        ("Sources/App/main.swift", "Sources/App/main.swift.orig"),
        ("Sources/App/main.swift", "Other/Sources/App/main.swift"),
        ("main.swift", "Sources/App/main.swift"),
        ("Sources/*.swift", "Sources/App/main.swift"),
        ("Sources/App/ma?n.swift", "Sources/App/ma/n.swift"),
        ("Sources/App/[!m]ain.swift", "Sources/App/main.swift"),
        ("Sources/App/[a-l]ain.swift", "Sources/App/main.swift"),
        ("Sources/**/PThread.swift", "Sources/App/PThread.swift.bak"),
        ("Sources/**", "Tests/x.swift"),
        ("Sources/App/", "Sources/Application/x.swift"),
        ("Sources/\\*.swift", "Sources/a.swift"),
    ])
    func doesNotMatch(pattern: String, path: String) {
        #expect(!Glob(pattern).matches(path))
    }
}

@Suite("Allowlist")
struct AllowlistTests {
    @Test("parses entries, rule names and comments")
    func parses() throws {
        let allowlist = try Allowlist(parsing: """
            # a comment line

            Sources/ManagedThreads/System/PThread.swift pthread_create   # the one place
            Tests/Support/**\tThread.init  Thread.detachNewThread
            Benchmarks/#weird/*.swift
              Indented/*.swift
            """)
        #expect(allowlist.entries == [
            AllowlistEntry("Sources/ManagedThreads/System/PThread.swift", rules: [.pthreadCreate], line: 3),
            AllowlistEntry("Tests/Support/**", rules: [.threadInit, .detachNewThread], line: 4),
            AllowlistEntry("Benchmarks/#weird/*.swift", rules: [], line: 5),
            AllowlistEntry("Indented/*.swift", rules: [], line: 6),
        ])
    }

    @Test("an unknown rule name is an error naming the line")
    func unknownRule() {
        #expect(throws: AllowlistError(
            path: "x/.check-threads-allowlist", line: 2,
            message: "unknown rule 'Thread'; the rules are Thread.init, Thread.detachNewThread, pthread_create, DispatchQueue.global.async"
        )) {
            try Allowlist(parsing: "a.swift\nb.swift Thread\n", path: "x/.check-threads-allowlist")
        }
    }

    @Test("an entry without rules allows every rule; one with rules only those")
    func ruleSpecific() {
        let threadInit = Finding(path: "Sources/A/x.swift", line: 1, column: 1, rule: .threadInit)
        let pthread = Finding(path: "Sources/A/x.swift", line: 2, column: 1, rule: .pthreadCreate)
        let everything = AllowlistEntry("Sources/A/*.swift")
        let pthreadOnly = AllowlistEntry("Sources/A/*.swift", rules: [.pthreadCreate])
        #expect(everything.allows(threadInit) && everything.allows(pthread))
        #expect(pthreadOnly.allows(pthread))
        #expect(!pthreadOnly.allows(threadInit))
        #expect(!AllowlistEntry("Sources/B/*.swift").allows(pthread))
    }
}

@Suite("Report: allowlist, inline opt-out, stale entries, exit status")
struct ReportTests {
    let source = SourceFile(path: "Sources/App/main.swift", text: """
        let t = Thread { }
        let rc = pthread_create(&h, nil, f, nil)
        DispatchQueue.global().async { }
        """)

    @Test("without an allowlist, errors fail and warnings are reported")
    func unallowed() {
        let report = Report(checking: [source], allowlist: Allowlist())
        #expect(report.errors.map(\.rule) == [.threadInit, .pthreadCreate])
        #expect(report.warnings.map(\.rule) == [.globalQueueAsync])
        #expect(report.exitStatus(strict: false) == .violations)
    }

    @Test("a rule-specific entry covers only its rule")
    func ruleSpecificEntry() {
        let allowlist = Allowlist(entries: [AllowlistEntry("Sources/App/main.swift", rules: [.pthreadCreate])])
        let report = Report(checking: [source], allowlist: allowlist)
        #expect(report.errors.map(\.rule) == [.threadInit])
        #expect(report.allowlisted == 1)
        #expect(report.exitStatus(strict: false) == .violations)
    }

    @Test("errors covered, a warning left: passes, and fails in strict mode")
    func warningsOnlyFailWhenStrict() {
        let allowlist = Allowlist(entries: [
            AllowlistEntry("Sources/**", rules: [.threadInit, .pthreadCreate], line: 1)
        ])
        let report = Report(checking: [source], allowlist: allowlist)
        #expect(report.errors.isEmpty)
        #expect(report.warnings.count == 1)
        #expect(report.exitStatus(strict: false) == .clean)
        #expect(report.exitStatus(strict: true) == .violations)
        #expect(report.summary(strict: false).hasPrefix("check-threads: passed:"))
        #expect(report.summary(strict: true).hasPrefix("check-threads: failed:"))
    }

    @Test("a glob entry without rules covers the whole file")
    func globEntry() {
        let report = Report(checking: [source], allowlist: Allowlist(entries: [AllowlistEntry("Sources/*/main.swift")]))
        #expect(report.findings.isEmpty)
        #expect(report.allowlisted == 3)
        #expect(report.staleEntries.isEmpty)
        #expect(report.exitStatus(strict: true) == .clean)
    }

    @Test("the inline opt-out covers its own line only")
    func inlineOptOut() {
        let file = SourceFile(path: "a.swift", text: """
            let a = Thread { } // check-threads: allow (needs a Foundation thread)
            let b = Thread { }
            // check-threads: allow
            let c = Thread { }
            let d = Thread { } /* check-threads: allow */ ; let e = pthread_create(&h, nil, f, nil)
            let s = "check-threads: allow"; let f = Thread { }
            """)
        let report = Report(checking: [file], allowlist: Allowlist())
        #expect(report.findings.map(\.line) == [2, 4, 6])
        #expect(report.optedOut == 3)
        #expect(report.summary(strict: false).hasSuffix("0 allowlisted, 3 allowed inline"))
    }

    @Test("an entry that covers nothing is stale: a warning that fails only in strict mode")
    func stale() {
        let allowlist = Allowlist(entries: [
            AllowlistEntry("Sources/App/main.swift", line: 3),
            AllowlistEntry("Sources/Gone/*.swift", line: 4),
            AllowlistEntry("Sources/App/main.swift", rules: [.detachNewThread], line: 5),
        ])
        let report = Report(checking: [source], allowlist: allowlist)
        #expect(report.findings.isEmpty)
        #expect(report.staleEntries.map(\.line) == [4, 5])
        #expect(report.exitStatus(strict: false) == .clean)
        #expect(report.exitStatus(strict: true) == .violations)
        #expect(report.lines(strict: false).dropLast() == [
            ".check-threads-allowlist:4:1: warning: allowlist entry 'Sources/Gone/*.swift' matched no finding; remove it",
            ".check-threads-allowlist:5:1: warning: allowlist entry 'Sources/App/main.swift Thread.detachNewThread' matched no finding; remove it",
        ])
    }

    @Test("a partial scan judges only entries for the files it saw")
    func partialScan() {
        let allowlist = Allowlist(entries: [
            AllowlistEntry("Sources/Other/*.swift", line: 1),
            AllowlistEntry("Sources/App/*.swift", rules: [.detachNewThread], line: 2),
            AllowlistEntry("Sources/App/*.swift", line: 3),
        ])
        let report = Report(checking: [source], allowlist: allowlist, partial: true)
        #expect(report.staleEntries.map(\.line) == [2])
    }

    @Test("output: one compiler-style line per finding, then the summary")
    func output() {
        let report = Report(checking: [source], allowlist: Allowlist())
        #expect(report.lines(strict: false) == [
            "Sources/App/main.swift:1:9: error: raw thread creation (Thread.init) outside ManagedThreads; spawn through a ThreadGroup, or allowlist it in .check-threads-allowlist",
            "Sources/App/main.swift:2:10: error: raw thread creation (pthread_create) outside ManagedThreads; spawn through a ThreadGroup, or allowlist it in .check-threads-allowlist",
            "Sources/App/main.swift:3:1: warning: work on Dispatch's global pool (DispatchQueue.global.async) outside ManagedThreads; run long-lived work on a ThreadGroup thread, or allowlist it in .check-threads-allowlist",
            "check-threads: failed: 1 file scanned, 2 errors, 1 warning; 0 allowlisted, 0 allowed inline",
        ])
    }

    @Test("a clean scan passes")
    func clean() {
        let report = Report(checking: [SourceFile(path: "a.swift", text: "let t = try ManagedThread.spawn(name: \"a\") { _ in }")], allowlist: Allowlist())
        #expect(report.exitStatus(strict: true) == .clean)
        #expect(report.lines(strict: false) == [
            "check-threads: passed: 1 file scanned, no raw thread creation; 0 allowlisted, 0 allowed inline"
        ])
    }
}

@Suite("Options")
struct OptionsTests {
    @Test("flags, values in both spellings, and files")
    func parses() throws {
        let options = try Options.parse([
            "--package-root", "/pkg", "--allowlist=a.txt", "--strict", "--partial", "x.swift", "--", "--odd.swift",
        ])
        var expected = Options()
        expected.packageRoot = "/pkg"
        expected.allowlist = "a.txt"
        expected.strict = true
        expected.partial = true
        expected.files = ["x.swift", "--odd.swift"]
        expected.fileListGiven = true
        #expect(options == expected)
        #expect(!options.scansPackageRoot)
        #expect(try Options.parse(["--root", "Tests/Fixtures"]).root == "Tests/Fixtures")
        #expect(try Options.parse(["-h"]).help)
    }

    @Test("no files walks the package root; an empty list after -- scans nothing")
    func fileLists() throws {
        #expect(try Options.parse([]).scansPackageRoot)
        #expect(try Options.parse(["--strict"]).scansPackageRoot)
        #expect(try !Options.parse(["--"]).scansPackageRoot)
        #expect(try !Options.parse(["a.swift"]).scansPackageRoot)
        #expect(try !Options.parse(["--root", "Dir"]).scansPackageRoot)
    }

    @Test("usage errors", arguments: [
        (["--bogus"], "unknown option '--bogus'"),
        (["--allowlist"], "--allowlist needs a value"),
        (["--root="], "--root needs a value"),
        (["--root", "a", "--root", "b"], "--root given twice"),
        (["--strict=yes"], "--strict takes no value"),
        (["--root", "a", "b.swift"], "give either --root or files, not both"),
        (["--root", "a", "--"], "give either --root or files, not both"),
    ])
    func usageErrors(arguments: [String], message: String) {
        #expect(throws: UsageError(message)) { try Options.parse(arguments) }
        #expect(ExitStatus.usageError.rawValue == 2)
    }
}
