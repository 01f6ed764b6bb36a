/// One line of an allowlist: a path glob and the rules it allows there.
package struct AllowlistEntry: Sendable, Equatable {
    /// Which files the entry covers, relative to the package root.
    package var glob: Glob
    /// The rules it allows; empty means every rule.
    package var rules: Set<Rule>
    /// The 1-based line in the allowlist file, for messages about the entry.
    package var line: Int

    /// An entry for `pattern` allowing `rules` (all rules when empty).
    package init(_ pattern: String, rules: Set<Rule> = [], line: Int = 0) {
        self.glob = Glob(pattern)
        self.rules = rules
        self.line = line
    }

    /// Whether the entry allows `finding`.
    package func allows(_ finding: Finding) -> Bool {
        (rules.isEmpty || rules.contains(finding.rule)) && glob.matches(finding.matchPath)
    }
}

/// The deliberate exceptions: files, or rules in files, that may create raw threads.
///
/// The file format, one entry per line:
///
/// ```
/// # A comment: everything from a `#` at the start of a line or after a space.
/// Sources/MyApp/System/Threads.swift pthread_create     # this rule in this file
/// Tests/Support/**                                      # every rule, everything below
/// ```
///
/// The first word is a ``Glob`` relative to the package root; any further words name rules
/// (``Rule``'s raw values: `Thread.init`, `Thread.detachNewThread`, `pthread_create`,
/// `DispatchQueue.global.async`). Paths with spaces are not supported.
package struct Allowlist: Sendable, Equatable {
    /// The entries, in file order.
    package var entries: [AllowlistEntry]
    /// Where the entries came from, as printed in messages (`.check-threads-allowlist`).
    package var path: String

    /// The conventional file name, at the package root.
    package static let defaultFileName = ".check-threads-allowlist"

    /// An allowlist of `entries`, read from `path`.
    package init(entries: [AllowlistEntry] = [], path: String = Allowlist.defaultFileName) {
        self.entries = entries
        self.path = path
    }

    /// Parses the text of an allowlist file named `path`.
    ///
    /// - Throws: ``AllowlistError`` for a line naming an unknown rule.
    package init(parsing text: String, path: String = Allowlist.defaultFileName) throws(AllowlistError) {
        var entries: [AllowlistEntry] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if let comment = Allowlist.commentStart(in: line) { line = line[..<comment] }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let pattern = words.first else { continue }
            var rules: Set<Rule> = []
            for word in words.dropFirst() {
                guard let rule = Rule(name: String(word)) else {
                    throw AllowlistError(
                        path: path, line: index + 1,
                        message: "unknown rule '\(word)'; the rules are "
                            + Rule.allCases.map(\.rawValue).joined(separator: ", ")
                    )
                }
                rules.insert(rule)
            }
            entries.append(AllowlistEntry(String(pattern), rules: rules, line: index + 1))
        }
        self.init(entries: entries, path: path)
    }

    /// A `#` that starts a comment: at the start of the line or after whitespace.
    private static func commentStart(in line: Substring) -> Substring.Index? {
        var previous: Character = " "
        for index in line.indices {
            if line[index] == "#" && (previous == " " || previous == "\t") { return index }
            previous = line[index]
        }
        return nil
    }
}

/// An allowlist file that cannot be used.
package struct AllowlistError: Error, Equatable, CustomStringConvertible {
    /// The allowlist file.
    package var path: String
    /// The 1-based line at fault, or 0 when the whole file is.
    package var line: Int
    /// What is wrong.
    package var message: String

    /// An error about line `line` (0: the whole file) of the allowlist at `path`.
    package init(path: String, line: Int, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    package var description: String {
        line > 0 ? "\(path):\(line):1: error: \(message)" : "\(path): error: \(message)"
    }
}
