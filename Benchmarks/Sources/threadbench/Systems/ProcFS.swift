// What the benchmark reads from /proc: which threads still exist (the Foundation baseline's
// stand-in for a join) and the process's resident memory.
import CBench
import Glibc

/// `/proc/self/task`: one entry per kernel thread of the process, gone once the thread is reaped.
enum TaskDirectory {
    /// Whether thread `tid` still exists.
    static func contains(_ tid: pid_t) -> Bool {
        var buffer = (0 as UInt64, 0 as UInt64, 0 as UInt64, 0 as UInt64)  // 32 bytes
        return withUnsafeMutableBytes(of: &buffer) { raw -> Bool in
            let path = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            writePath(tid, into: path)
            return access(path, F_OK) == 0
        }
    }

    /// Writes "/proc/self/task/<tid>" NUL-terminated into `out` (at least 32 bytes), without
    /// allocating: this runs inside timed sections.
    private static func writePath(_ tid: pid_t, into out: UnsafeMutablePointer<CChar>) {
        let prefix: StaticString = "/proc/self/task/"
        var i = 0
        prefix.withUTF8Buffer { bytes in
            for byte in bytes {
                out[i] = CChar(bitPattern: byte)
                i += 1
            }
        }
        var width = 1
        var scan = Int(tid) / 10
        while scan > 0 {
            width += 1
            scan /= 10
        }
        var value = Int(tid)
        for position in stride(from: i + width - 1, through: i, by: -1) {
            out[position] = CChar(48 + value % 10)
            value /= 10
        }
        out[i + width] = 0
    }

    /// The ids of every thread in the process now.
    static func liveTIDs() -> Set<pid_t> {
        var result = Set<pid_t>()
        guard let dir = opendir("/proc/self/task") else { return result }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { raw -> pid_t in
                var value: pid_t = 0
                for byte in raw {
                    guard byte != 0 else { break }
                    guard byte >= 48, byte <= 57 else { return 0 }  // "." and ".."
                    value = value * 10 + pid_t(byte - 48)
                }
                return value
            }
            if tid != 0 { result.insert(tid) }
        }
        return result
    }

    /// Busy-waits (yielding) until thread `tid` is gone from /proc/self/task.
    static func waitUntilGone(_ tid: pid_t) throws {
        _ = try spinUntil("thread \(tid) to leave /proc/self/task") { contains(tid) ? nil : () }
    }

    /// Busy-waits (yielding) until none of `tids` is left in /proc/self/task. Lists the directory
    /// rather than probing each id: the listing shrinks as the threads go.
    static func waitUntilGone(_ tids: [pid_t]) throws {
        var remaining = tids
        _ = try spinUntil("\(tids.count) threads to leave /proc/self/task") { () -> Void? in
            let live = liveTIDs()
            remaining.removeAll { !live.contains($0) }
            return remaining.isEmpty ? () : nil
        }
    }
}

/// The process's resident set size.
enum ResidentMemory {
    /// Resident bytes now, from `/proc/self/statm` (second field, in pages).
    static func bytes() -> Int {
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        precondition(fd >= 0, "cannot open /proc/self/statm")
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        precondition(n > 0, "cannot read /proc/self/statm")
        let fields = buffer[..<n].split(separator: UInt8(ascii: " "))
        let pages = Int(String(decoding: fields[1], as: UTF8.self)) ?? 0
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
