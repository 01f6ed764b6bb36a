#if canImport(Glibc)
import Glibc
#endif

/// What a file descriptor of this process is, in words: `pipe:[12345]`, `/var/log/app.log`,
/// `socket:[678] TCP 0.0.0.0:8080 LISTEN`, from `/proc/self/fd` and, for sockets, `/proc/net`.
enum DescriptorNames {
    /// The descriptor's target, with the socket's endpoints when `/proc/net` lists it.
    static func describe(_ fd: Int) -> String? {
        guard fd >= 0, let target = readLink("/proc/self/fd/\(fd)") else { return nil }
        guard target.hasPrefix("socket:["), target.hasSuffix("]"),
            let inode = UInt64(target.dropFirst("socket:[".count).dropLast())
        else { return target }
        return socket(inode: inode).map { "\(target) \($0)" } ?? target
    }

    /// The system calls whose first argument is a descriptor worth naming.
    static let takesDescriptor: Set<String> = [
        "read", "write", "readv", "pread64", "recvfrom", "recvmsg", "recvmmsg", "accept", "accept4",
        "connect", "epoll_wait", "epoll_pwait", "epoll_pwait2", "fcntl", "flock",
    ]

    private static func readLink(_ path: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { raw in
            readlink(path, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count - 1)
        }
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n], as: UTF8.self)
    }

    /// `TCP 0.0.0.0:8080 LISTEN`, `TCP 10.0.0.2:51234 → 10.0.0.9:5432 ESTABLISHED`, `UDP …`,
    /// `unix /run/app.sock`, for the socket with this inode.
    private static func socket(inode: UInt64) -> String? {
        for (file, proto) in [("tcp", "TCP"), ("tcp6", "TCP"), ("udp", "UDP"), ("udp6", "UDP")] {
            guard let table = ProcFS.read("/proc/net/\(file)") else { continue }
            for line in table.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                // sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
                guard fields.count > 9, UInt64(fields[9]) == inode else { continue }
                let local = endpoint(fields[1])
                let remote = endpoint(fields[2])
                let state = proto == "TCP" ? tcpStates[Int(fields[3], radix: 16) ?? 0] ?? String(fields[3]) : nil
                var text = "\(proto) \(local ?? String(fields[1]))"
                if state != "LISTEN", let remote, !remote.hasSuffix(":0") { text += " → \(remote)" }
                if let state { text += " \(state)" }
                return text
            }
        }
        if let table = ProcFS.read("/proc/net/unix") {
            for line in table.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                // Num RefCount Protocol Flags Type St Inode [Path]
                guard fields.count > 6, UInt64(fields[6]) == inode else { continue }
                return fields.count > 7 ? "unix \(fields[7])" : "unix (unnamed)"
            }
        }
        return nil
    }

    private static let tcpStates: [Int: String] = [
        1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
        7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    ]

    /// `0100007F:1F90` → `127.0.0.1:8080`; IPv6 as eight groups (each 32-bit word little-endian).
    private static func endpoint(_ field: Substring) -> String? {
        let parts = field.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1], radix: 16) else { return nil }
        let hex = parts[0]
        if hex.count == 8, let value = UInt32(hex, radix: 16) {
            let bytes = [value & 0xFF, value >> 8 & 0xFF, value >> 16 & 0xFF, value >> 24]
            return bytes.map(String.init).joined(separator: ".") + ":\(port)"
        }
        guard hex.count == 32 else { return nil }
        var groups: [String] = []
        var index = hex.startIndex
        for _ in 0..<4 {
            let next = hex.index(index, offsetBy: 8)
            guard let word = UInt32(hex[index..<next], radix: 16) else { return nil }
            let swapped = word.byteSwapped
            groups.append(String(swapped >> 16, radix: 16))
            groups.append(String(swapped & 0xFFFF, radix: 16))
            index = next
        }
        return "[\(groups.joined(separator: ":"))]:\(port)"
    }
}
