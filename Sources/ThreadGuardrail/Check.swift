/// A Swift source file to check.
package struct SourceFile: Sendable {
    /// The path as printed.
    package var path: String
    /// The path the allowlist's globs are matched against.
    package var matchPath: String
    /// The file's contents.
    package var text: String

    /// A file printed as `path` and matched as `matchPath` (by default the same).
    package init(path: String, matchPath: String? = nil, text: String) {
        self.path = path
        self.matchPath = matchPath ?? path
        self.text = text
    }
}

/// The process exit status of a check.
package enum ExitStatus: Int32, Sendable {
    /// Nothing that fails the check.
    case clean = 0
    /// Errors, or (in strict mode) warnings or stale allowlist entries.
    case violations = 1
    /// The command was used wrongly: a bad flag, a missing or malformed allowlist, an unreadable file.
    case usageError = 2
}

/// The outcome of checking a set of files against an allowlist.
package struct Report: Sendable {
    /// Findings the allowlist does not cover, in file and source order.
    package var findings: [Finding]
    /// How many findings allowlist entries covered.
    package var allowlisted: Int
    /// How many findings an inline `check-threads: allow` comment covered.
    package var optedOut: Int
    /// Allowlist entries that covered no finding.
    package var staleEntries: [AllowlistEntry]
    /// How many files were scanned.
    package var filesScanned: Int
    /// The allowlist's path, for messages.
    package var allowlistPath: String

    /// Findings that fail the check.
    package var errors: [Finding] { findings.filter { $0.rule.severity == .error } }
    /// Findings that fail the check only in strict mode.
    package var warnings: [Finding] { findings.filter { $0.rule.severity == .warning } }

    /// Checks `files` against `allowlist`.
    ///
    /// - Parameter partial: the files are a subset of the package (`--target`), so an entry whose
    ///   glob matches none of them may cover files that were not scanned: only entries that match
    ///   a scanned file and cover nothing in it are called stale.
    package init(checking files: [SourceFile], allowlist: Allowlist, partial: Bool = false) {
        var findings: [Finding] = []
        var used = Array(repeating: false, count: allowlist.entries.count)
        var allowlisted = 0
        var optedOut = 0
        for file in files {
            let scanned = Scanner.scan(path: file.path, matchPath: file.matchPath, text: file.text)
            optedOut += scanned.optedOut
            for finding in scanned.findings {
                var covered = false
                // Every entry that covers a finding is in use, not only the first.
                for (index, entry) in allowlist.entries.enumerated() where entry.allows(finding) {
                    used[index] = true
                    covered = true
                }
                if covered { allowlisted += 1 } else { findings.append(finding) }
            }
        }
        var stale: [AllowlistEntry] = []
        for (index, entry) in allowlist.entries.enumerated() where !used[index] {
            if !partial || files.contains(where: { entry.glob.matches($0.matchPath) }) { stale.append(entry) }
        }
        self.findings = findings
        self.allowlisted = allowlisted
        self.optedOut = optedOut
        self.staleEntries = stale
        self.filesScanned = files.count
        self.allowlistPath = allowlist.path
    }

    /// The exit status: errors fail; in strict mode warnings and stale entries fail too.
    package func exitStatus(strict: Bool) -> ExitStatus {
        if !errors.isEmpty { return .violations }
        if strict && (!warnings.isEmpty || !staleEntries.isEmpty) { return .violations }
        return .clean
    }

    /// The output: one compiler-style line per finding and per stale entry, then a summary.
    package func lines(strict: Bool) -> [String] {
        var lines = findings.map { message(for: $0) }
        lines += staleEntries.map {
            "\(allowlistPath):\($0.line):1: warning: allowlist entry '\($0.glob)"
                + ($0.rules.isEmpty ? "" : " " + $0.rules.map(\.rawValue).sorted().joined(separator: " "))
                + "' matched no finding; remove it"
        }
        lines.append(summary(strict: strict))
        return lines
    }

    /// The line printed for `finding`.
    package func message(for finding: Finding) -> String {
        let location = "\(finding.path):\(finding.line):\(finding.column)"
        switch finding.rule.severity {
        case .error:
            return "\(location): error: raw thread creation (\(finding.rule.rawValue)) outside ManagedThreads; "
                + "spawn through a ThreadGroup, or allowlist it in \(allowlistPath)"
        case .warning:
            return "\(location): warning: work on Dispatch's global pool (\(finding.rule.rawValue)) outside "
                + "ManagedThreads; run long-lived work on a ThreadGroup thread, or allowlist it in \(allowlistPath)"
        }
    }

    /// The last line: counts and the verdict.
    package func summary(strict: Bool) -> String {
        func count(_ n: Int, _ noun: String, plural: String? = nil) -> String {
            "\(n) " + (n == 1 ? noun : plural ?? noun + "s")
        }
        var problems: [String] = []
        if !errors.isEmpty { problems.append(count(errors.count, "error")) }
        if !warnings.isEmpty { problems.append(count(warnings.count, "warning")) }
        if !staleEntries.isEmpty { problems.append(count(staleEntries.count, "stale allowlist entry", plural: "stale allowlist entries")) }
        let verdict = exitStatus(strict: strict) == .clean ? "passed" : "failed"
        return "check-threads: \(verdict): \(count(filesScanned, "file")) scanned, "
            + (problems.isEmpty ? "no raw thread creation" : problems.joined(separator: ", "))
            + "; \(allowlisted) allowlisted, \(optedOut) allowed inline"
            + (strict ? " (strict)" : "")
    }
}
