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
///
/// The Swift runtime has locks of its own (its metadata caches, among others), and a parent
/// thread may hold one at the fork: code that reaches the runtime for a type it has not yet
/// built for that call site then waits forever in the child. So the paths a child takes through
/// the library (the refusal, the forked child's report and its summary and description) are run
/// once in the parent at first use, which fills their call sites' caches; in the child they no
/// longer call into the runtime. What the rest of a program's Swift code does in such a child
/// is beyond any library: POSIX allows only async-signal-safe calls there.
enum Fork {
    /// Whether this process is a forked child of one that used the library.
    @inline(__always) static var isChild: Bool { cshims_in_forked_child() != 0 }

    /// Throws ``ThreadError/Code/forkedChild`` in a forked child; notes the library as used.
    @inline(__always)
    static func check(_ action: @autoclosure () -> String) throws(ThreadError) {
        if isChild { throw refusal(action()) }
        _ = childPathsPrepared
        cshims_fork_note_library_used()
    }

    /// The error every throwing entry point gives in a forked child.
    static func refusal(_ action: String) -> ThreadError {
        ThreadError(
            code: .forkedChild,
            message: "cannot \(action): this process was forked from one whose managed threads do not exist here; use ManagedThreads before fork or after exec")
    }

    /// Runs, once and in the parent, what a forked child does with the library, so that each of
    /// those call sites has the type metadata it needs before any fork (see the type's comment).
    /// Set before the library is noted as used, so no child of a library user can miss it.
    static let childPathsPrepared: Bool = {
        // Every refusal names what was refused the same way: "spawn \(name.debugDescription)".
        // Small and heap-allocated names take different paths.
        let error = refusal("spawn \("short".debugDescription) in \("a name longer than fifteen bytes".debugDescription)")
        var used = error.description.count + (error.code == .forkedChild ? 1 : 0)
        let report = ShutdownReport.forkedChild(groupPath: "root", name: "root", policy: .shared)
        used += report.total + report.joined + report.stuck + report.orphaned + report.abandoned + report.failed
        used += report.stuckThreads.count + report.orphanedThreads.count + report.root.allEntries.count
        used += report.description.count + (report.isClean ? 1 : 0)
        return used > 0
    }()
}
