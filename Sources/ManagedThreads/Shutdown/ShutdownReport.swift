/// The outcome of stopping a ``ThreadGroup`` (or any ``ThreadOwner``): who exited, who is stuck,
/// and for each stuck thread what the kernel says it is doing.
///
/// Print it (`description`) for people, encode it (`Codable`, durations in nanoseconds) for
/// machines. Threads that were joined cleanly are counted, not listed; every thread that is stuck,
/// orphaned, or whose body threw has an ``ThreadEntry``.
public struct ShutdownReport: Sendable, Hashable, Codable, CustomStringConvertible {
    /// How one thread ended up.
    public enum Status: String, Sendable, Hashable, Codable {
        /// Exited and joined: its resources are gone.
        case joined
        /// Still running at the deadline.
        case stuck
        /// A background thread still running at the shutdown; not waited for, by design.
        case orphaned
        /// Its body ended, but the kernel thread had not finished exiting by the deadline; it is
        /// reaped later.
        case exitedUnreaped
        /// Still running at the deadline and given up on by an ``Escalation/Final/abandon``
        /// policy: leaked on purpose, not waited for again.
        case abandoned
    }

    /// More time a thread asked for with ``StopToken/requestExtension(_:)`` during the shutdown.
    public struct Extension: Sendable, Hashable, Codable, CustomStringConvertible {
        /// The thread's full name.
        public var name: String
        /// Its group's path.
        public var groupPath: String
        /// How far past the shutdown's deadline its last grant reaches, in nanoseconds.
        public var grantedNanoseconds: Int64
        /// How many times it asked.
        public var requests: Int

        /// How far past the deadline its grant reaches.
        public var granted: Duration { .nanoseconds(grantedNanoseconds) }

        /// `"name" in path: +Nms past the deadline (k requests)`.
        public var description: String {
            "\(name.debugDescription) in \(groupPath): +\(granted.formattedMilliseconds) past the deadline (\(requests) requests)"
        }
    }

    /// An `onStop` callback that had not returned by the shutdown's deadline: it was running (or,
    /// behind one that was, had not started). The shutdown returned anyway; the callback goes on.
    public struct RunningCallback: Sendable, Hashable, Codable, CustomStringConvertible {
        /// The full name of the thread whose token the callback was registered on.
        public var name: String
        /// That thread's group path.
        public var groupPath: String
        /// Whether it was running at the deadline (false: queued behind one that was).
        public var started: Bool

        /// `onStop callback of "name" in path: still running at the deadline`.
        public var description: String {
            "onStop callback of \(name.debugDescription) in \(groupPath): "
                + (started ? "still running at the deadline" : "not started by the deadline (queued behind a running one)")
        }
    }

    /// One thread that did not end cleanly (or whose body threw), or one Swift task of a
    /// ``TaskTracker`` that did not finish by the deadline (``kind`` ``Kind/task``).
    public struct ThreadEntry: Sendable, Hashable, Codable, CustomStringConvertible {
        /// What an entry stands for: a thread or a task.
        public struct Kind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
            /// The kind's name, as it appears in JSON: `"thread"` or `"task"`.
            public let rawValue: String
            /// Creates a kind from its name.
            public init(rawValue: String) { self.rawValue = rawValue }
            /// The kind's name, ``rawValue``.
            public var description: String { rawValue }

            /// A ``ManagedThread``.
            public static let thread = Kind(rawValue: "thread")
            /// A Swift `Task` spawned through a ``TaskTracker``: it has no tid and no kernel view,
            /// and its stop was a cancellation, which it may or may not have looked at.
            public static let task = Kind(rawValue: "task")
        }

        /// Full name (for a task, the name given at spawn).
        public var name: String
        /// Path of the group it belongs to, `root/server/workers`.
        public var groupPath: String
        /// What it is for, as given at spawn.
        public var purpose: String?
        /// Kernel thread id, if it had started.
        public var tid: Int32?
        /// How it ended up.
        public var status: Status
        /// Whether the body looked at its token after the stop was requested. A stuck thread that
        /// never did is ignoring its token; one that did is slow to finish.
        public var acknowledged: Bool
        /// Time from the stop request to the report, in nanoseconds.
        public var sinceStopNanoseconds: Int64?
        /// The error the body threw, described.
        public var error: String?
        /// The kernel's view, for threads still alive.
        public var kernel: KernelThreadState?
        /// Where the thread was made (nil for tasks, and in JSON written before it was recorded).
        public var spawnSite: SpawnSite?
        /// The user-space stack, for threads still alive (captured with ``StackCapture`` for
        /// the same threads that get a kernel view), or why it is unavailable.
        public var stack: StackTrace?
        /// Whether the shutdown's interrupt step (see ``Escalation``) sent it the signal.
        public var interrupted: Bool = false
        /// Whether the entry is a thread or a task. JSON written before tasks were reported has
        /// no `kind` and decodes as ``Kind/thread``.
        public var kind: Kind = .thread

        /// Time from the stop request to the report.
        public var sinceStop: Duration? { sinceStopNanoseconds.map { .nanoseconds($0) } }

        /// One line for reports: status, name, tid and purpose; for a stuck or orphaned thread also
        /// the time since the stop, whether the token was checked and the kernel's view; the
        /// body's error if it threw.
        public var description: String {
            if kind == .task {
                // A task has no tid, token or kernel view: say what it is and how long it has
                // ignored its cancellation.
                var text = "\(status) task \(name.debugDescription)"
                if let purpose { text += " (\(purpose))" }
                if status == .stuck {
                    if let sinceStop { text += ": cancelled \(sinceStop.formattedMilliseconds) ago" }
                    text += ", still running"
                }
                return text
            }
            var text = "\(status) \(name.debugDescription)"
            if let tid { text += " tid \(tid)" }
            if let purpose { text += " (\(purpose))" }
            if status == .stuck || status == .orphaned || status == .abandoned {
                if let sinceStop { text += ": stop asked \(sinceStop.formattedMilliseconds) ago" }
                text += acknowledged ? ", token acknowledged" : ", token never checked"
                if interrupted { text += ", interrupted" }
                if let kernel { text += "; kernel: \(kernel)" }
                if let spawnSite { text += "; spawned at \(spawnSite)" }
            }
            if let error { text += "; threw \(error)" }
            return text
        }
    }

    /// One group (or adopted component) in the tree.
    public struct Node: Sendable, Hashable, Codable {
        /// The group's or component's name.
        public var name: String
        /// Its path from the root.
        public var path: String
        /// Threads of this node (not its children) joined cleanly.
        public var joined: Int
        /// Threads of this node that did not end cleanly, or threw.
        public var entries: [ThreadEntry]
        /// Child groups and components.
        public var children: [Node]
        /// For components: whether the component said it finished. Groups derive it from their
        /// threads and children.
        public var componentFinished: Bool?

        /// A node for a component that owns no ``ManagedThread``s of its own (a custom
        /// ``ThreadOwner``): `finished` says whether it stopped by the deadline.
        public init(name: String, path: String, finished: Bool, entries: [ThreadEntry] = [], joined: Int = 0) {
            self.init(name: name, path: path, joined: joined, entries: entries, children: [], componentFinished: finished)
        }

        init(name: String, path: String, joined: Int, entries: [ThreadEntry], children: [Node], componentFinished: Bool? = nil) {
            self.name = name
            self.path = path
            self.joined = joined
            self.entries = entries
            self.children = children
            self.componentFinished = componentFinished
        }

        /// Every entry in this subtree, depth first.
        public var allEntries: [ThreadEntry] { entries + children.flatMap(\.allEntries) }

        func count(_ status: Status) -> Int {
            let own = entries.filter { $0.status == status }.count
            // A component that did not finish and listed no thread counts as one stuck member.
            let component = (componentFinished == false && entries.isEmpty && status == .stuck) ? 1 : 0
            return own + component + children.reduce(0) { $0 + $1.count(status) }
        }

        var joinedTotal: Int {
            joined + entries.filter { $0.status == .joined }.count + children.reduce(0) { $0 + $1.joinedTotal }
        }
    }

    /// Path of the group that was shut down.
    public var groupPath: String
    /// The policy used.
    public var policy: String
    /// The time allowed, in nanoseconds.
    public var timeoutNanoseconds: Int64
    /// From the call to the report, in nanoseconds.
    public var durationNanoseconds: Int64
    /// How far past the deadline the call returned (0 if it did not), in nanoseconds.
    public var overshootNanoseconds: Int64
    /// The tree of groups and components.
    public var root: Node
    /// Threads that asked for more time during the shutdown, and what they got.
    public var extensions: [Extension] = []
    /// Threads the interrupt step of an ``Escalation`` sent its signal to (joined ones included;
    /// entries of the others say ``ThreadEntry/interrupted``).
    public var interrupted: Int = 0
    /// `onStop` callbacks that had not returned by the deadline; a report with any is not clean.
    public var runningCallbacks: [RunningCallback] = []

    /// Time allowed.
    public var timeout: Duration { .nanoseconds(timeoutNanoseconds) }
    /// How long the shutdown took.
    public var duration: Duration { .nanoseconds(durationNanoseconds) }
    /// How far past the deadline it returned.
    public var overshoot: Duration { .nanoseconds(overshootNanoseconds) }

    /// Threads handled by the shutdown (joined, stuck, orphaned, or exited but not yet reaped).
    public var total: Int { joined + stuck + orphaned + abandoned + root.count(.exitedUnreaped) }
    /// Threads that exited and were joined.
    public var joined: Int { root.joinedTotal }
    /// Threads (and components) still running at the deadline.
    public var stuck: Int { root.count(.stuck) }
    /// Background threads still running, not waited for.
    public var orphaned: Int { root.count(.orphaned) }
    /// Threads given up on at the deadline by an ``Escalation/Final/abandon`` policy.
    public var abandoned: Int { root.count(.abandoned) }
    /// Threads whose body threw.
    public var failed: Int { root.allEntries.filter { $0.error != nil }.count }
    /// Whether everything stopped: nothing stuck or abandoned, and no `onStop` callback still running.
    public var isClean: Bool { stuck == 0 && abandoned == 0 && runningCallbacks.isEmpty }

    /// The entries of every stuck thread, with their group paths.
    public var stuckThreads: [ThreadEntry] { root.allEntries.filter { $0.status == .stuck } }
    /// The entries of every orphaned background thread.
    public var orphanedThreads: [ThreadEntry] { root.allEntries.filter { $0.status == .orphaned } }

    /// The report as text: a summary line with the counts and timings, then the tree of groups,
    /// each with its joined count and an indented line per ``ThreadEntry``.
    public var description: String {
        var lines = [
            "shutdown of \(groupPath) (\(policy), timeout \(timeout.formattedMilliseconds)): "
                + "\(total) threads, \(joined) joined, \(stuck) stuck, \(orphaned) orphaned, \(failed) failed"
                + (abandoned > 0 ? ", \(abandoned) abandoned" : "") + (interrupted > 0 ? ", \(interrupted) interrupted" : "") + "; "
                + "took \(duration.formattedMilliseconds)"
                + (overshootNanoseconds > 0 ? " (\(overshoot.formattedMilliseconds) past the deadline)" : ""),
        ]
        func render(_ node: Node, _ indent: String) {
            var header = "\(indent)\(node.name): \(node.joined) joined"
            if let finished = node.componentFinished { header += finished ? ", finished" : ", NOT finished" }
            lines.append(header)
            for entry in node.entries {
                lines.append("\(indent)  - \(entry)")
                if let stack = entry.stack { lines += Self.stackLines(stack, indent: indent + "      ") }
                if let kernelStack = entry.kernel?.kernelStack {
                    lines.append("\(indent)      kernel stack: " + kernelStack.prefix(6).joined(separator: " ← ")
                        + (kernelStack.count > 6 ? " ← …" : ""))
                }
            }
            for child in node.children { render(child, indent + "  ") }
        }
        render(root, "")
        for item in extensions { lines.append("extension: \(item)") }
        for item in runningCallbacks { lines.append(item.description) }
        return lines.joined(separator: "\n")
    }
}

extension ShutdownReport {
    /// Frames shown per stack in the text form (the JSON form has them all).
    static let framesShown = 16

    /// A stack as indented report lines: the first ``framesShown`` frames, then how many more.
    static func stackLines(_ stack: StackTrace, indent: String) -> [String] {
        if stack.unavailable != nil { return ["\(indent)\(stack)"] }
        let frames = stack.frames
        var lines = frames.prefix(framesShown).enumerated().map { "\(indent)#\($0.offset) \($0.element)" }
        if frames.count > framesShown { lines.append("\(indent)… \(frames.count - framesShown) more frames") }
        return lines
    }

    /// The report of a shutdown called in a forked child (see ``ThreadError/Code/forkedChild``):
    /// the parent's threads do not exist there, so there is nothing to stop or wait for.
    static func forkedChild(groupPath: String, name: String, policy: ShutdownPolicy) -> ShutdownReport {
        ShutdownReport(
            groupPath: groupPath, policy: "\(policy.kind.rawValue) (forked child: nothing to stop)", timeoutNanoseconds: 0,
            durationNanoseconds: 0, overshootNanoseconds: 0,
            root: .init(name: name, path: groupPath, joined: 0, entries: [], children: []))
    }
}

extension ShutdownReport.ThreadEntry {
    /// Decodes an entry as encoded; an entry without `kind` (written before tasks were reported)
    /// is a ``Kind/thread``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        groupPath = try container.decode(String.self, forKey: .groupPath)
        purpose = try container.decodeIfPresent(String.self, forKey: .purpose)
        tid = try container.decodeIfPresent(Int32.self, forKey: .tid)
        status = try container.decode(ShutdownReport.Status.self, forKey: .status)
        acknowledged = try container.decode(Bool.self, forKey: .acknowledged)
        sinceStopNanoseconds = try container.decodeIfPresent(Int64.self, forKey: .sinceStopNanoseconds)
        error = try container.decodeIfPresent(String.self, forKey: .error)
        kernel = try container.decodeIfPresent(KernelThreadState.self, forKey: .kernel)
        kind = try container.decodeIfPresent(Kind.self, forKey: .kind) ?? .thread
        interrupted = try container.decodeIfPresent(Bool.self, forKey: .interrupted) ?? false
        stack = try container.decodeIfPresent(StackTrace.self, forKey: .stack)
        spawnSite = try container.decodeIfPresent(SpawnSite.self, forKey: .spawnSite)
    }
}

extension ShutdownReport {
    /// Decodes a report; JSON written before extensions and escalation were reported (no
    /// `extensions`, no `interrupted`) decodes with none.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        groupPath = try container.decode(String.self, forKey: .groupPath)
        policy = try container.decode(String.self, forKey: .policy)
        timeoutNanoseconds = try container.decode(Int64.self, forKey: .timeoutNanoseconds)
        durationNanoseconds = try container.decode(Int64.self, forKey: .durationNanoseconds)
        overshootNanoseconds = try container.decode(Int64.self, forKey: .overshootNanoseconds)
        root = try container.decode(Node.self, forKey: .root)
        extensions = try container.decodeIfPresent([Extension].self, forKey: .extensions) ?? []
        interrupted = try container.decodeIfPresent(Int.self, forKey: .interrupted) ?? 0
        runningCallbacks = try container.decodeIfPresent([RunningCallback].self, forKey: .runningCallbacks) ?? []
    }
}
