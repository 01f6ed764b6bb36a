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
        return socket(fd: Int32(fd), inode: inode).map { "\(target) \($0)" } ?? target
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

    /// `TCP 0.0.0.0:8080 LISTEN`, `TCP 10.0.0.2:51234 → 10.0.0.9:5432`, `UDP …`,
    /// `unix /run/app.sock`: asked of the descriptor itself (`getsockname`, `getpeername`,
    /// `getsockopt`), a few microseconds, after checking it is still the socket with this inode.
    /// (`/proc/net/tcp` lists every socket of the host and took 3.8 ms to read here: too slow
    /// for a report's reserve.)
    private static func socket(fd: Int32, inode: UInt64) -> String? {
        var info = stat()
        guard fstat(fd, &info) == 0, UInt64(info.st_ino) == inode else { return nil }
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard let domain = option(SO_DOMAIN), let type = option(SO_TYPE) else { return nil }
        let listening = option(SO_ACCEPTCONN) == 1
        let local = address(fd, peer: false, domain: domain)
        let remote = listening ? nil : address(fd, peer: true, domain: domain)
        if domain == AF_UNIX {
            return "unix " + (local.map { $0.isEmpty ? "(unnamed)" : $0 } ?? "(unnamed)") + (listening ? " LISTEN" : "")
        }
        let proto = type == Int32(SOCK_STREAM.rawValue) ? "TCP" : type == Int32(SOCK_DGRAM.rawValue) ? "UDP" : "socket"
        var text = "\(proto) \(local ?? "?")"
        if let remote { text += " → \(remote)" }
        if listening { text += " LISTEN" } else if proto == "TCP" && remote == nil { text += " (not connected)" }
        return text
    }

    /// The socket's own (or its peer's) address as text, or nil.
    private static func address(_ fd: Int32, peer: Bool, domain: Int32) -> String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
            }
        }
        guard rc == 0 else { return nil }
        switch domain {
        case AF_INET:
            return withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    let raw = UInt32(bigEndian: sin.pointee.sin_addr.s_addr)
                    let host = [raw >> 24, raw >> 16 & 0xFF, raw >> 8 & 0xFF, raw & 0xFF].map(String.init).joined(separator: ".")
                    return "\(host):\(UInt16(bigEndian: sin.pointee.sin_port))"
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var buffer = [CChar](repeating: 0, count: 64)
                    var address = sin6.pointee.sin6_addr
                    guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return nil }
                    let host = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    return "[\(host)]:\(UInt16(bigEndian: sin6.pointee.sin6_port))"
                }
            }
        case AF_UNIX:
            return withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr_un.self, capacity: 1) { sun in
                    withUnsafeBytes(of: sun.pointee.sun_path) { raw in
                        // An abstract socket's name starts with a NUL byte.
                        let bytes = Array(raw.prefix(max(0, Int(length) - 2)))
                        guard let first = bytes.first else { return "" }
                        if first == 0 { return "@" + String(decoding: bytes.dropFirst().prefix { $0 != 0 }, as: UTF8.self) }
                        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
                    }
                }
            }
        default:
            return nil
        }
    }
}
