#if canImport(Glibc)
import Glibc
#endif

/// Thin wrapper over `poll(2)`, imported from Glibc.
enum Poll {
    /// Waits until one of `fds` is ready or `deadline` passes (nil: no deadline; callers in the
    /// library always pass one or include a descriptor that is certain to fire). EINTR is retried
    /// with the remaining time. Returns the number of ready descriptors (0 on timeout).
    static func wait(_ fds: inout [pollfd], until deadline: ContinuousClock.Instant?) throws(ThreadError) -> Int {
        while true {
            let timeout: Int32 = deadline.map { ContinuousClock.now.duration(to: $0).pollMilliseconds } ?? -1
            do {
                let n = try fds.withUnsafeMutableBufferPointer { (buf) throws(ThreadError) -> Int32 in
                    try syscall(.poll, restartable: false) { Glibc.poll(buf.baseAddress, nfds_t(buf.count), timeout) }
                }
                return Int(n)
            } catch where error.errno == EINTR {
                continue
            }
        }
    }
}
