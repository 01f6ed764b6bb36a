#if canImport(Glibc)
import Glibc
#endif

/// Every thread of the process, now, and what each is doing: the managed ones with their group,
/// state, age, stop and where they were spawned; every other one from `/proc`; all with the
/// kernel's view and their user-space stack. Like a Go `SIGQUIT` dump or `jstack`, for a process
/// that keeps running.
///
/// ```swift
/// let dump = ThreadDump.capture()
/// print(dump)                                    // text, grouped by group path
/// let json = try JSONEncoder().encode(dump)      // Codable, for tools
/// ```
///
/// ``installTrigger(signal:destination:)`` writes one on a signal (SIGQUIT by default).
public struct ThreadDump: Sendable, Codable, CustomStringConvertible {
    /// One thread of the process.
    public struct Entry: Sendable, Hashable, Codable, CustomStringConvertible {
        /// Kernel thread id.
        public var tid: Int32
        /// A managed thread's full name, else the kernel's name (`comm`, at most 15 bytes).
        public var name: String
        /// Whether it is a ``ManagedThread``.
        public var isManaged: Bool
        /// The managed thread's group path (nil outside a group, and for unmanaged threads).
        public var groupPath: String?
        /// What the managed thread is for, as given at spawn.
        public var purpose: String?
        /// Time since the managed thread was spawned, in nanoseconds.
        public var ageNanoseconds: Int64?
        /// Whether a stop was requested (managed threads).
        public var stopRequested: Bool?
        /// Whether its body looked at its token since the stop (managed threads).
        public var acknowledged: Bool?
        /// Where the managed thread was spawned.
        public var spawnSite: SpawnSite?
        /// What the kernel says: state, system call and descriptor, wait channel, CPU time.
        public var kernel: KernelThreadState?
        /// The user-space stack, or why there is none.
        public var stack: StackTrace?
        /// For an unmanaged thread, what its kernel name says about where it came from.
        public var origin: String?

        /// Time since spawn.
        public var age: Duration? { ageNanoseconds.map { .nanoseconds($0) } }

        /// The header line: name, tid, state, age, stop, kernel view, spawn site.
        public var description: String {
            var text = "\(name.debugDescription) tid \(tid)"
            if isManaged {
                text += stopRequested == true ? (acknowledged == true ? " stopping (acknowledged)" : " stopping (token never checked)") : " running"
                if let age { text += ", age \(age.formattedMilliseconds)" }
                if let purpose { text += " — \(purpose)" }
            }
            if let kernel { text += "; kernel: \(kernel)" }
            if let spawnSite { text += "; spawned at \(spawnSite)" }
            if let origin { text += "; \(origin)" }
            return text
        }
    }

    /// The process id.
    public var pid: Int32
    /// When the dump was taken, seconds since the Unix epoch (wall clock).
    public var capturedAtEpochSeconds: Double
    /// Every thread, managed ones first (by group path, then name), then the others by tid.
    public var threads: [Entry]

    /// Takes a dump: reads `/proc` for every thread and captures every stack in one batch,
    /// waiting for the captures at most `stackTimeout` (threads that block signals say so at
    /// once). The calling thread is listed too, with the stack of the call.
    public static func capture(stackTimeout: Duration = .milliseconds(100)) -> ThreadDump {
        let now = ContinuousClock.now
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        let managed = ManagedThreadRegistry.liveThreads()
        let managedTIDs = Set(managed.keys)
        let all = ProcFS.list("/proc/self/task").compactMap { Int32($0) }.sorted()
        let stacks = StackCapture.capture(all.filter { $0 != PThread.currentTID }, until: .after(stackTimeout))
        var threads: [Entry] = []
        for tid in all {
            guard let kernel = KernelThreadState.read(tid: tid) else { continue }
            var entry = Entry(tid: tid, name: kernel.name, isManaged: managedTIDs.contains(tid), kernel: kernel)
            if let thread = managed[tid] {
                entry.name = thread.name
                entry.groupPath = thread.groupPath
                entry.purpose = thread.purpose
                entry.ageNanoseconds = thread.spawnTime.duration(to: now).nanosecondsClamped
                entry.stopRequested = thread.isStopRequested
                entry.acknowledged = thread.acknowledgedStop
                entry.spawnSite = thread.spawnSite
            } else {
                entry.origin = ThreadAudit.Entry(tid: tid, name: kernel.name, state: kernel.state, isManaged: false).origin
            }
            entry.stack = tid == PThread.currentTID ? StackTrace(unavailable: "the thread taking the dump") : stacks[tid]?.trace
            threads.append(entry)
        }
        threads.sort { a, b in
            if a.isManaged != b.isManaged { return a.isManaged }
            if a.isManaged { return (a.groupPath ?? "", a.name, a.tid) < (b.groupPath ?? "", b.name, b.tid) }
            return a.tid < b.tid
        }
        return ThreadDump(
            pid: getpid(), capturedAtEpochSeconds: Double(wall.tv_sec) + Double(wall.tv_nsec) / 1e9, threads: threads)
    }

    /// The dump as text: a summary line, the managed threads under their group paths, then the
    /// other threads, each with its stack indented below it.
    public var description: String {
        let managed = threads.filter(\.isManaged)
        var lines = [
            "thread dump of pid \(pid) at \(Self.timestamp(capturedAtEpochSeconds)): \(threads.count) threads, "
                + "\(managed.count) managed, \(threads.count - managed.count) other",
        ]
        var group: String??
        for thread in threads {
            let heading: String? = thread.isManaged ? (thread.groupPath ?? "(no group)") : nil
            if group != .some(heading) {
                group = .some(heading)
                lines.append("")
                lines.append(heading.map { "group \($0)" } ?? "other threads")
            }
            lines.append("  \(thread)")
            if let stack = thread.stack { lines += ShutdownReport.stackLines(stack, indent: "      ") }
        }
        return lines.joined(separator: "\n")
    }

    /// `2026-12-02T06:23:25Z`, from the epoch seconds, without Foundation.
    static func timestamp(_ seconds: Double) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }
}
