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

        /// `tid "name" state`, followed by `managed` for a managed thread.
        public var description: String {
            "\(tid) \(name.debugDescription) \(state)\(isManaged ? " managed" : "")"
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
