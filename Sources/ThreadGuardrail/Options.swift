/// The `check-threads` tool's command line, parsed.
///
/// ```
/// check-threads [--package-root DIR] [--root DIR] [--allowlist PATH] [--strict] [--partial] [--] [FILE...]
/// ```
package struct Options: Sendable, Equatable {
    /// `--package-root DIR`: what relative paths (files, `--root`, `--allowlist`) and the
    /// allowlist's globs are relative to. Default: the current directory.
    package var packageRoot: String?
    /// `--root DIR`: scan every `.swift` file under DIR instead of `files`; the allowlist's globs
    /// are then relative to DIR, and the default allowlist is DIR's.
    package var root: String?
    /// `--allowlist PATH`: the allowlist to use; it must exist. Default: `.check-threads-allowlist`
    /// at the package root (or `--root`), if there is one.
    package var allowlist: String?
    /// `--strict`: warnings and stale allowlist entries fail the check too.
    package var strict = false
    /// `--partial`: the files are a subset of the package, so allowlist entries for files that
    /// were not given are not reported as stale.
    package var partial = false
    /// `--help`/`-h`.
    package var help = false
    /// The files to scan. None, no `--` and no `--root`: every `.swift` file under the package root.
    package var files: [String] = []
    /// Whether `--` was given: the files after it are the whole list, even when there are none
    /// (the plugin's way of saying "these targets have no Swift sources").
    package var fileListGiven = false

    /// Whether to walk the package root because no files were named.
    package var scansPackageRoot: Bool { root == nil && files.isEmpty && !fileListGiven }

    /// The help text.
    package static let usage = """
        usage: check-threads [--package-root DIR] [--root DIR] [--allowlist PATH] [--strict] [--partial] [--] [FILE...]

        Reports raw thread creation (Thread(...), Thread { }, Thread.detachNewThread, pthread_create)
        as errors and DispatchQueue.global(...).async as a warning. With no FILE and no --root, scans
        every .swift file under the package root; after `--`, exactly the FILEs given (maybe none).

          --package-root DIR  base of relative paths and of allowlist globs (default: current directory)
          --root DIR          scan every .swift file under DIR; globs are relative to DIR
          --allowlist PATH    allowlist file (default: .check-threads-allowlist in the root, if present)
          --strict            warnings and stale allowlist entries fail too
          --partial           FILEs are part of the package: entries for other files are not stale
          -h, --help          this text

        Exit status: 0 clean, 1 violations, 2 usage error.
        """

    /// An empty set of options.
    package init() {}

    /// Parses the arguments after the program name. Both `--flag VALUE` and `--flag=VALUE` work.
    ///
    /// - Throws: ``UsageError`` for an unknown flag, a flag without its value, a repeated
    ///   single-valued flag, or files together with `--root`.
    package static func parse(_ arguments: [String]) throws(UsageError) -> Options {
        var options = Options()
        var remaining = arguments[...]
        var onlyFiles = false
        while let argument = remaining.popFirst() {
            if onlyFiles || !argument.hasPrefix("-") || argument == "-" {
                options.files.append(argument)
                continue
            }
            var name = argument
            var inlineValue: String?
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            func value() throws(UsageError) -> String {
                if let inlineValue { return inlineValue }
                guard let next = remaining.popFirst() else { throw UsageError("\(name) needs a value") }
                return next
            }
            func set(_ slot: inout String?) throws(UsageError) {
                guard slot == nil else { throw UsageError("\(name) given twice") }
                let v = try value()
                guard !v.isEmpty else { throw UsageError("\(name) needs a value") }
                slot = v
            }
            func flag() throws(UsageError) -> Bool {
                guard inlineValue == nil else { throw UsageError("\(name) takes no value") }
                return true
            }
            switch name {
            case "--":
                onlyFiles = try flag()
                options.fileListGiven = true
            case "--package-root": try set(&options.packageRoot)
            case "--root": try set(&options.root)
            case "--allowlist": try set(&options.allowlist)
            case "--strict": options.strict = try flag()
            case "--partial": options.partial = try flag()
            case "-h", "--help": options.help = try flag()
            default: throw UsageError("unknown option '\(argument)'")
            }
        }
        if options.root != nil && (!options.files.isEmpty || options.fileListGiven) {
            throw UsageError("give either --root or files, not both")
        }
        return options
    }
}

/// A command line the tool cannot act on; the tool exits with ``ExitStatus/usageError``.
package struct UsageError: Error, Equatable, CustomStringConvertible {
    /// What is wrong, for a person.
    package var message: String

    /// A usage error saying `message`.
    package init(_ message: String) { self.message = message }

    package var description: String { message }
}
