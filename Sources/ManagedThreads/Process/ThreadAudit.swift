/// Every OS thread of this process, from `/proc/self/task`, with the managed ones marked.
///
/// Finds threads that something started behind the library's back — a C library, Dispatch, a raw
/// `Thread` — which no group can stop. Test leak checks and exit audits build on it.
public enum ThreadAudit {
    /// One OS thread.
    public struct Entry: Sendable, Hashable, Codable, CustomStringConvertible {
        /// Kernel thread id.
        public var tid: Int32
        /// Kernel name (`comm`).
        public var name: String
        /// State letter from `stat` (`R`, `S`, `D`, …).
        public var state: String
        /// Whether the thread is a running ``ManagedThread``.
        public var isManaged: Bool

        /// What the kernel name says about where an unmanaged thread came from, when it is one
        /// the Swift toolchain's runtimes give (a thread inherits its creator's name until it
        /// names itself, and the kernel keeps only 15 bytes, so a raw `Thread` started from a
        /// Swift concurrency or Dispatch thread shows as the tail of that thread's name).
        public var origin: String? {
            if isManaged { return nil }
            if name.hasSuffix("-qos") || name.contains("qos.") || name.hasPrefix("com.apple.") {
                return "the name of a Dispatch or Swift concurrency pool thread (com.apple.root.*-qos, cut to 15 bytes): "
                    + "that pool's own thread, or a thread started from one that never named itself (a raw Thread or pthread)"
            }
            if name.hasPrefix("NSThread") || name == "Thread" { return "a Foundation.Thread that was not given a name" }
            return nil
        }

        /// `tid "name" state`, followed by `managed` for a managed thread, and what the name says
        /// about the thread's origin when it says something.
        public var description: String {
            "\(tid) \(name.debugDescription) \(state)\(isManaged ? " managed" : "")" + (origin.map { " (\($0))" } ?? "")
        }
    }

    /// Lists the threads of this process now, sorted by tid. Threads that end while the list is
    /// read are left out.
    public static func snapshot() -> [Entry] {
        ProcFS.list("/proc/self/task").compactMap { Int32($0) }.sorted().compactMap { tid in
            guard let kernel = KernelThreadState.read(tid: tid) else { return nil }
            return Entry(tid: tid, name: kernel.name, state: kernel.state, isManaged: ManagedThreadRegistry.contains(tid))
        }
    }

    /// The threads of this process that are not managed.
    public static func unmanagedThreads() -> [Entry] {
        snapshot().filter { !$0.isManaged }
    }
}
