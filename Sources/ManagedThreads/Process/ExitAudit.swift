import CShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An opt-in check at process exit: shut a group down within a small budget, then say which
/// threads are still alive, managed or not, with their kernel state.
///
/// ```swift
/// try ExitAudit.install(budget: .milliseconds(500))
/// ```
///
/// At `exit()` (a return from `main` included) the audit shuts ``Options/group`` down with
/// ``Options/budget``, then writes to standard error, and logs as a warning through the group's
/// logger, every thread still alive that it can blame:
/// - managed threads that did not stop in time (with the report's stuck and orphaned entries),
/// - managed threads outside any group,
/// - OS threads that did not exist when the audit was installed (started behind the library's
///   back by a C library, Dispatch, a raw `Thread`), unless their kernel name starts with one of
///   ``Options/ignoredNamePrefixes``.
///
/// Threads that already existed at install time are the runtime's and are not listed. When
/// nothing is left, the audit prints nothing (set ``Options/printWhenClean`` to see a line anyway).
/// `_exit()`, a fatal signal or `abort()` skip it, as they skip every `atexit` handler.
public enum ExitAudit {
    /// What the audit does at exit.
    public struct Options: Sendable {
        /// The group to shut down first; ``ThreadGroup/root`` by default.
        public var group: ThreadGroup
        /// The time the shutdown may take. Keep it small: the process is exiting.
        public var budget: Duration
        /// How the budget is shared in the tree.
        public var policy: ShutdownPolicy
        /// Kernel name prefixes of OS threads not to report (threads your runtime starts lazily).
        public var ignoredNamePrefixes: [String]
        /// Whether to print a line when nothing lingers.
        public var printWhenClean: Bool

        /// Creates options: the root group, 500 ms shared, nothing ignored, quiet when clean.
        public init(
            group: ThreadGroup = .root, budget: Duration = .milliseconds(500), policy: ShutdownPolicy = .shared,
            ignoredNamePrefixes: [String] = [], printWhenClean: Bool = false
        ) {
            self.group = group
            self.budget = budget
            self.policy = policy
            self.ignoredNamePrefixes = ignoredNamePrefixes
            self.printWhenClean = printWhenClean
        }
    }

    /// What an audit found.
    public struct Findings: Sendable, CustomStringConvertible {
        /// One thread still alive.
        public struct Thread: Sendable, Hashable, CustomStringConvertible {
            /// Why it is listed.
            public enum Kind: String, Sendable, Hashable {
                /// A managed thread still running after the shutdown (stuck, or background).
                case managed
                /// A managed thread that belongs to no group.
                case ungrouped
                /// An OS thread the library does not manage, started after the audit was installed.
                case unmanaged
            }
            /// Why it is listed.
            public var kind: Kind
            /// Full name for managed threads, the kernel's name otherwise.
            public var name: String
            /// Group path, for threads in a group.
            public var groupPath: String?
            /// Kernel thread id.
            public var tid: Int32?
            /// The kernel's view of it, if it could be read.
            public var kernel: KernelThreadState?
            /// Its user-space stack (``StackCapture``), or why there is none.
            public var stack: StackTrace?

            /// `kind "name" in path, tid N; kernel: …`.
            public var description: String {
                var text = "\(kind.rawValue) \(name.debugDescription)"
                if let groupPath { text += " in \(groupPath)" }
                if let tid { text += ", tid \(tid)" }
                if let kernel { text += "; kernel: \(kernel)" }
                if let stack {
                    text += "\n" + ShutdownReport.stackLines(stack, indent: "      ").joined(separator: "\n")
                }
                return text
            }
        }

        /// The shutdown's report.
        public var report: ShutdownReport
        /// Threads still alive after it, in the order managed, ungrouped, unmanaged.
        public var lingering: [Thread]

        /// Whether nothing lingers.
        public var isClean: Bool { lingering.isEmpty }

        /// A summary line, then a line per lingering thread.
        public var description: String {
            var lines = ["exit audit: \(lingering.count) threads still alive at exit (shutdown of \(report.groupPath): "
                + "\(report.joined) joined, \(report.stuck) stuck, \(report.orphaned) orphaned in \(report.duration.formattedMilliseconds))"]
            for thread in lingering { lines.append("  - \(thread)") }
            return lines.joined(separator: "\n")
        }
    }

    private struct Installed {
        var options: Options
        var threadsAtInstall: Set<Int32>
    }

    private static let installed = Lock<Installed?>(nil)
    private static let registered = Atomic<Bool>(false)

    /// Threads of the library's own plumbing (signal watchers) that an audit never lists.
    static let infrastructure = Lock<Set<Int32>>([])

    /// Runs `body` on the calling thread marked as the library's own plumbing (a signal watcher):
    /// an audit does not list it as lingering.
    static func asInfrastructure(_ body: () -> Void) {
        let tid = cshims_gettid()
        _ = infrastructure.withLock { $0.insert(tid) }
        defer { _ = infrastructure.withLock { $0.remove(tid) } }
        body()
    }

    /// Arms the audit for process exit (`atexit`). Installing again replaces the options and the
    /// baseline of existing threads; the handler is registered once.
    /// - Throws: ``ThreadError/Code/invalidArgument`` for a negative budget;
    ///   ``ThreadError/Code/systemCall`` if `atexit` refuses (out of memory).
    public static func install(_ options: Options = Options()) throws(ThreadError) {
        guard options.budget >= .zero else {
            throw .invalidArgument("the exit audit's budget must not be negative: \(options.budget)")
        }
        let baseline = Set(ThreadAudit.snapshot().map(\.tid))
        installed.withLock { $0 = Installed(options: options, threadsAtInstall: baseline) }
        if !registered.exchange(true, ordering: .acquiringAndReleasing) {
            if atexit({ ExitAudit.runAtExit() }) != 0 {
                registered.store(false, ordering: .releasing)
                throw ThreadError(code: .systemCall, message: "atexit refused the exit audit's handler", call: "atexit", errno: ENOMEM)
            }
        }
    }

    /// Arms the audit with ``Options/budget`` `budget` for `group`; see ``install(_:)``.
    public static func install(for group: ThreadGroup = .root, budget: Duration) throws(ThreadError) {
        try install(Options(group: group, budget: budget))
    }

    /// Disarms the audit: the handler stays registered (atexit has no undo) but does nothing.
    public static func uninstall() {
        installed.withLock { $0 = nil }
    }

    /// Runs the audit now, as it would run at exit: shuts the group down within the budget and
    /// lists what is still alive. Threads alive at `threadsBefore` (tids) are not listed as
    /// unmanaged; nil uses the baseline taken by ``install(_:)``, or lists none if not installed.
    @available(*, noasync, message: "blocks for up to the budget")
    public static func audit(_ options: Options, threadsBefore: Set<Int32>? = nil) -> Findings {
        let baseline = threadsBefore ?? installed.withLock { $0?.threadsAtInstall } ?? Set(ThreadAudit.snapshot().map(\.tid))
        let report = options.group.shutdown(timeout: options.budget, policy: options.policy)
        let me = cshims_gettid()
        let plumbing = infrastructure.withLock { $0 }
        var lingering: [Findings.Thread] = []
        var listed: Set<Int32> = []
        for entry in report.root.allEntries where entry.status == .stuck || entry.status == .orphaned {
            let kernel = entry.tid.flatMap { KernelThreadState.read(tid: $0) }
            // Finished between the report and now: no longer lingering.
            if entry.tid != nil && kernel == nil { continue }
            lingering.append(.init(kind: .managed, name: entry.name, groupPath: entry.groupPath, tid: entry.tid, kernel: kernel))
            if let tid = entry.tid { listed.insert(tid) }
        }
        for (tid, info) in ManagedThreadRegistry.snapshot().sorted(by: { $0.key < $1.key }) where info.groupPath == nil {
            guard tid != me, !listed.contains(tid), !plumbing.contains(tid) else { continue }
            lingering.append(.init(kind: .ungrouped, name: info.name, groupPath: nil, tid: tid, kernel: KernelThreadState.read(tid: tid)))
            listed.insert(tid)
        }
        for entry in ThreadAudit.snapshot() {
            guard entry.tid != me, !entry.isManaged, !baseline.contains(entry.tid), !listed.contains(entry.tid),
                !plumbing.contains(entry.tid),
                !options.ignoredNamePrefixes.contains(where: { entry.name.hasPrefix($0) })
            else { continue }
            lingering.append(.init(kind: .unmanaged, name: entry.name, groupPath: nil, tid: entry.tid, kernel: KernelThreadState.read(tid: entry.tid)))
        }
        // Every lingering thread's stack, captured in one batch (a few ms at most).
        let stacks = StackCapture.capturesInReports
            ? StackCapture.capture(lingering.compactMap(\.tid), until: .after(ShutdownRun.stackBudget)) : [:]
        for index in lingering.indices {
            if let tid = lingering[index].tid { lingering[index].stack = stacks[tid]?.trace }
        }
        return Findings(report: report, lingering: lingering)
    }

    private static func runAtExit() {
        guard let armed = installed.withLock({ $0 }) else { return }
        let findings = audit(armed.options, threadsBefore: armed.threadsAtInstall)
        guard !findings.isClean || armed.options.printWhenClean else { return }
        StandardError.write("\(findings)\n")
        armed.options.group.logger.warning(
            "threads still alive at exit",
            metadata: [
                "lingering": "\(findings.lingering.count)",
                "threads": .array(findings.lingering.map { .string($0.description) }),
            ])
    }
}
