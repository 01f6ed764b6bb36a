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
    /// The spawning thread: a managed thread's full name, else the kernel's name for it.
    public var spawner: String

    /// A site with the given fields.
    public init(fileID: String, line: Int, spawner: String) {
        self.fileID = fileID
        self.line = line
        self.spawner = spawner
    }

    /// `Module/File.swift:42 by "main"`.
    public var description: String { "\(fileID):\(line) by \(spawner.debugDescription)" }

    /// The site of a spawn called at `fileID`:`line` on the current thread. No system call for a
    /// managed spawner (its handle is in thread-specific data); one `prctl` otherwise.
    static func here(fileID: String, line: Int) -> SpawnSite {
        let spawner: String
        if let current = PThread.getSpecific(ManagedThread.exitKey) {
            spawner = Unmanaged<ManagedThread>.fromOpaque(current).takeUnretainedValue().name
        } else {
            spawner = PThread.name(of: pthread_self()) ?? "thread \(PThread.currentTID)"
        }
        return SpawnSite(fileID: fileID, line: line, spawner: spawner)
    }
}
