// `swift package check-threads`: collects a package's Swift sources and runs the check-threads
// tool on them, exiting with the tool's status so scripts and CI see a failure.

import Foundation
import PackagePlugin

@main
struct CheckThreads: CommandPlugin {
    static let usage = """
        usage: swift package check-threads [--target NAME]... [--root DIR] [--allowlist PATH] [--strict]

          (default)           scan the Swift sources of every target of the package
          --target NAME       only this target's sources (repeatable)
          --root DIR          every .swift file under DIR instead (globs relative to DIR)
          --allowlist PATH    allowlist file (default: .check-threads-allowlist at the root)
          --strict            warnings and stale allowlist entries fail too

        Exit status: 0 clean, 1 violations, 2 usage error.
        """

    func performCommand(context: PluginContext, arguments: [String]) async throws {
        var extractor = ArgumentExtractor(arguments)
        let targetNames = extractor.extractOption(named: "target")
        let roots = extractor.extractOption(named: "root")
        let allowlists = extractor.extractOption(named: "allowlist")
        let strict = extractor.extractFlag(named: "strict")
        let help = extractor.extractFlag(named: "help")
        let unknown = extractor.remainingArguments

        if help > 0 {
            print(Self.usage)
            return
        }
        guard unknown.isEmpty else { usageError("unexpected argument '\(unknown[0])'") }
        guard roots.count <= 1, allowlists.count <= 1 else { usageError("--root and --allowlist may be given once") }
        guard roots.isEmpty || targetNames.isEmpty else { usageError("give either --root or --target, not both") }

        let package = context.package
        var toolArguments = ["--package-root", package.directoryURL.path(percentEncoded: false)]
        if let allowlist = allowlists.first { toolArguments += ["--allowlist", allowlist] }
        if strict > 0 { toolArguments.append("--strict") }

        if let root = roots.first {
            toolArguments += ["--root", root]
        } else {
            let targets: [any Target]
            if targetNames.isEmpty {
                targets = package.targets
            } else {
                do {
                    targets = try package.targets(named: targetNames)
                } catch {
                    usageError("\(error)")
                }
                toolArguments.append("--partial")
            }
            var seen = Set<String>()
            let files = targets
                .compactMap(\.sourceModule)
                .flatMap { $0.sourceFiles(withSuffix: "swift") }
                .map { $0.url.path(percentEncoded: false) }
                .filter { seen.insert($0).inserted }
                .sorted()
            toolArguments.append("--")
            toolArguments += files
        }

        let tool = try context.tool(named: "check-threads")
        let process = Process()
        process.executableURL = tool.url
        process.arguments = toolArguments
        // The tool's output goes straight to the plugin's (and so to the terminal).
        try process.run()
        process.waitUntilExit()

        let status = process.terminationStatus
        guard process.terminationReason == .exit else {
            Diagnostics.error("check-threads ended by signal \(status)")
            exit(1)
        }
        // A non-zero exit makes `swift package` fail (it reports any failing plugin as status 1).
        // The tool has already said why: its findings and summary, or its usage error.
        if status != 0 { exit(status) }
    }

    private func usageError(_ message: String) -> Never {
        Diagnostics.error("check-threads: \(message)")
        FileHandle.standardError.write(Data((Self.usage + "\n").utf8))
        exit(2)
    }
}
