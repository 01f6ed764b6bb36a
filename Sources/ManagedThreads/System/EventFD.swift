import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over `eventfd(2)`, imported from Glibc.
enum EventFD {
    /// Creates a non-blocking, close-on-exec eventfd with a zero counter.
    /// The corresponding C function is `eventfd`.
    static func create() throws(ThreadError) -> Int32 {
        let fd = try syscall(.eventfd) { eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK)) }
        noteDescriptorOpened(fd, by: .eventfd)
        return fd
    }

    /// Adds one to the counter, making the descriptor readable. A full counter (EAGAIN) is
    /// already readable, so it counts as success.
    static func signal(_ fd: Int32) throws(ThreadError) {
        var one: UInt64 = 1
        do {
            _ = try syscall(.eventfdWrite) { write(fd, &one, 8) }
        } catch where error.errno == EAGAIN {
            return
        }
    }
}
