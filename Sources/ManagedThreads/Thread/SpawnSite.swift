import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Where a thread was made: the spawning code's file and line, and the thread that ran it. Shown
/// in ``ThreadGroup/status()``, shutdown reports, leak-check failures and thread dumps, so a
/// thread nobody stopped points at the code that started it.
public struct SpawnSite: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The caller's `#fileID` (`Module/File.swift`).
    public var fileID: String
    /// The caller's `#line`.
    public var line: Int
    /// The spawning thread: a managed thread's full name, else the kernel's name for it (as it
    /// was at that thread's first spawn).
    public var spawner: String

    /// A site with the given fields.
    public init(fileID: String, line: Int, spawner: String) {
        self.fileID = fileID
        self.line = line
        self.spawner = spawner
    }

    /// `Module/File.swift:42 by "main"`.
    public var description: String { "\(fileID):\(line) by \(spawner.debugDescription)" }

    /// The site of a spawn called at `fileID`:`line` on the current thread. No system call: a
    /// managed spawner's handle is in thread-specific data, and another thread's kernel name is
    /// asked once and kept.
    static func here(fileID: String, line: Int) -> SpawnSite {
        let spawner: String
        if let current = PThread.getSpecific(ManagedThread.exitKey) {
            spawner = Unmanaged<ManagedThread>.fromOpaque(current).takeUnretainedValue().name
        } else {
            spawner = PThread.currentKernelName ?? "thread \(PThread.currentTID)"
        }
        return SpawnSite(fileID: fileID, line: line, spawner: spawner)
    }
}
