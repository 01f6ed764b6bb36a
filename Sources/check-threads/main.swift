// check-threads: the command-line face of ThreadGuardrail. It reads files and prints; every
// decision (what matches, what the allowlist covers, the exit status) is made in ThreadGuardrail.
// The CheckThreads command plugin runs it as `swift package check-threads`.

import Foundation
import ThreadGuardrail

/// Prints `message` and the usage to standard error and exits with status 2.
func usageError(_ message: String) -> Never {
    FileHandle.standardError.write(Data("check-threads: error: \(message)\n\n\(Options.usage)\n".utf8))
    exit(ExitStatus.usageError.rawValue)
}

/// Prints `message` to standard error and exits with status 2 (the input is unusable).
func inputError(_ message: String) -> Never {
    FileHandle.standardError.write(Data("check-threads: error: \(message)\n".utf8))
    exit(ExitStatus.usageError.rawValue)
}

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    usageError(error.message)
}
if options.help {
    print(Options.usage)
    exit(ExitStatus.clean.rawValue)
}

let fileManager = FileManager.default

func standardized(_ path: String) -> String {
    URL(fileURLWithPath: path).standardizedFileURL.path
}

let packageRoot = standardized(options.packageRoot ?? fileManager.currentDirectoryPath)

/// `path` made absolute against the package root.
func resolve(_ path: String) -> String {
    standardized(path.hasPrefix("/") ? path : packageRoot + "/" + path)
}

/// `path` relative to `base`, or nil when it is not below `base`.
func relative(_ path: String, to base: String) -> String? {
    let prefix = base.hasSuffix("/") ? base : base + "/"
    return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
}

func isDirectory(_ path: String) -> Bool {
    var directory: ObjCBool = false
    return fileManager.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
}

func read(_ path: String, what: String) -> String {
    guard !isDirectory(path), let data = fileManager.contents(atPath: path) else {
        inputError("cannot read \(what) '\(path)'")
    }
    return String(decoding: data, as: UTF8.self)
}

/// Every `.swift` file below `directory`, relative to it, sorted; hidden files and directories
/// (`.build`, `.git`, `.swiftpm`) are skipped.
func swiftFiles(under directory: String) -> [String] {
    guard let walker = fileManager.enumerator(atPath: directory) else {
        inputError("cannot list '\(directory)'")
    }
    var found: [String] = []
    while let path = walker.nextObject() as? String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let isDirectory = (walker.fileAttributes?[.type] as? FileAttributeType) == .typeDirectory
        if name.hasPrefix(".") {
            if isDirectory { walker.skipDescendants() }
            continue
        }
        if !isDirectory && name.hasSuffix(".swift") { found.append(path) }
    }
    return found.sorted()
}

// What to scan, how each file is printed, and what the allowlist's globs are relative to.
var sources: [SourceFile] = []
let base: String
let basePrefix: String
if let root = options.root {
    base = resolve(root)
    guard isDirectory(base) else { inputError("--root '\(root)' is not a directory") }
    // Printed as given (Tests/Fixtures/…/main.swift), matched relative to the root.
    basePrefix = root.hasSuffix("/") ? root : root + "/"
    for path in swiftFiles(under: base) {
        sources.append(SourceFile(path: basePrefix + path, matchPath: path, text: read(base + "/" + path, what: "source file")))
    }
} else {
    base = packageRoot
    basePrefix = ""
    let paths = options.scansPackageRoot
        ? swiftFiles(under: packageRoot).map { packageRoot + "/" + $0 }
        : options.files.map(resolve)
    for path in paths {
        let shown = relative(path, to: packageRoot) ?? path
        sources.append(SourceFile(path: shown, text: read(path, what: "source file")))
    }
}

let allowlist: Allowlist
do {
    if let given = options.allowlist {
        allowlist = try Allowlist(parsing: read(resolve(given), what: "allowlist"), path: given)
    } else if fileManager.fileExists(atPath: base + "/" + Allowlist.defaultFileName) {
        allowlist = try Allowlist(
            parsing: read(base + "/" + Allowlist.defaultFileName, what: "allowlist"),
            path: basePrefix + Allowlist.defaultFileName
        )
    } else {
        allowlist = Allowlist(path: basePrefix + Allowlist.defaultFileName)
    }
} catch {
    inputError(error.description)
}

let report = Report(checking: sources, allowlist: allowlist, partial: options.partial)
for line in report.lines(strict: options.strict) { print(line) }
exit(report.exitStatus(strict: options.strict).rawValue)
