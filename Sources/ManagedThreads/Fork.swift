import CShims

/// The library's one policy for `fork()`.
///
/// A process forked (without `exec`) from one where the library was in use has only the forking
/// thread: the parent's managed threads do not exist there, and the library's locks may be held
/// by threads that are gone (taking one would crash or hang). So in such a child the library is
/// inert, and says so: every entry point that can throw throws ``ThreadError/Code/forkedChild``
/// before touching any state; shutdowns return an empty report at once; stop requests and waits
/// for a signal's shutdown return at once. A `pthread_atfork` child handler, registered when the
/// library is loaded, marks the child. `fork()` followed by `exec` is unaffected (the new program
/// starts afresh), and so is a process forked before the library was first used.
enum Fork {
    /// Whether this process is a forked child of one that used the library.
    @inline(__always) static var isChild: Bool { cshims_in_forked_child() != 0 }

    /// Throws ``ThreadError/Code/forkedChild`` in a forked child; notes the library as used.
    @inline(__always)
    static func check(_ action: @autoclosure () -> String) throws(ThreadError) {
        if isChild {
            throw ThreadError(
                code: .forkedChild,
                message: "cannot \(action()): this process was forked from one whose managed threads do not exist here; use ManagedThreads before fork or after exec")
        }
        cshims_fork_note_library_used()
    }
}
