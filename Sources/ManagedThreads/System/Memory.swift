#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over mmap/mprotect/munmap for thread stacks, and the stack size limit.
enum Memory {
    static let pageSize: Int = {
        let size = sysconf(Int32(_SC_PAGESIZE))
        return size > 0 ? size : 4096
    }()

    /// Maps `size` bytes of private, anonymous, not-reserved memory for a stack.
    /// The corresponding C function is `mmap`.
    static func mapStack(size: Int) throws(ThreadError) -> UnsafeMutableRawPointer {
        if let forced = injectedFault(.mmap) { throw .system(.mmap, forced) }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0)
        if p == MAP_FAILED {
            throw .system(.mmap, Errno.current)
        }
        return p!
    }

    /// Makes `size` bytes at `address` inaccessible (the guard page below a stack).
    /// The corresponding C function is `mprotect`.
    static func protectGuard(_ address: UnsafeMutableRawPointer, size: Int) throws(ThreadError) {
        _ = try syscall(.mprotect, restartable: false) { mprotect(address, size, PROT_NONE) }
    }

    /// Unmaps memory the library mapped.
    ///
    /// ENOMEM is environmental: unmapping can split a mapping the kernel merged with a neighbour,
    /// and a split is refused when the process is at `vm.max_map_count`; the memory then stays
    /// mapped and the caller keeps it. EINVAL means a bad address: a bug, so a precondition.
    /// The corresponding C function is `munmap`.
    static func unmap(_ address: UnsafeMutableRawPointer, size: Int) throws(ThreadError) {
        do {
            _ = try syscall(.munmap, restartable: false) { munmap(address, size) }
        } catch where error.errno == EINVAL {
            preconditionFailure("munmap failed with EINVAL: a bug in ManagedThreads")
        }
    }

    /// The soft RLIMIT_STACK, which glibc uses as its default thread stack size; 8 MiB when it is
    /// unlimited or unreadable.
    /// The corresponding C function is `getrlimit`.
    static var defaultThreadStackSize: Int {
        var limit = rlimit()
        let eightMiB = 8 * 1024 * 1024
        // getrlimit fails only with EINVAL (a bad resource: a bug); the fallback covers it anyway.
        guard (try? syscall(.getrlimit) { getrlimit(__rlimit_resource_t(RLIMIT_STACK.rawValue), &limit) }) != nil,
              limit.rlim_cur != rlim_t.max, limit.rlim_cur >= 64 * 1024 else { return eightMiB }
        return min(Int(limit.rlim_cur), 1 << 30)
    }
}
