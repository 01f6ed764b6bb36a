#if canImport(Glibc)
import Glibc
#endif

/// Minimal readers for /proc. No Foundation: the library stays light and these run during a
/// shutdown, where they must be quick and must not fail loudly (a thread may vanish mid-read).
enum ProcFS {
    /// The whole (small) file, or nil if it cannot be read (the thread is gone, access denied).
    static func read(_ path: String) -> String? {
        bytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The whole (small) file as bytes, or nil if it cannot be read.
    static func bytes(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { closeDescriptor(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                bytes.append(contentsOf: buffer[0..<n])
                if bytes.count > 64 * 1024 { break }
            } else if n == 0 {
                break
            } else if Errno.current == EINTR {
                continue
            } else {
                return nil
            }
        }
        return bytes
    }

    /// Names in a directory, without "." and "..".
    static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Clock ticks per second, for the CPU times in `stat`.
    static let clockTicks: Int = {
        let ticks = sysconf(Int32(_SC_CLK_TCK))
        return ticks > 0 ? ticks : 100
    }()
}
