import Synchronization

/// The account of every thread a group started: each one is accounted for exactly once.
///
/// **The invariant.** From ``admit(_:serial:priority:)`` on, a thread is in exactly one of these
/// places, and moves only along the arrows, each move made under this ledger's lock (or, for the
/// exit queue, by the queue's own lock with the queue installed here):
///
/// ```
/// admit ──▶ running ──(ends, no shutdown yet)──▶ finished ──(a spawn joins it)──▶ reaped
///              │                                     │
///              └──────────── handOver(to:) ──────────┘──▶ the shutdown's plan
///                                                         (running ones then end onto its exit queue)
///                                  close() ──▶ outliving (still alive when the report was written)
///                                                 └──(ends)──▶ gone; the last one's end is announced
/// ```
///
/// - `running` lists threads admitted and not known to have ended. It keeps listing those handed
///   to a shutdown (for ``ThreadGroup/status()`` and ``ThreadGroup/aliveThreads``) until
///   ``close()``; from ``handOver(to:)`` on, their end goes to the shutdown's ``ExitQueue``
///   instead of `finished`, so the shutdown sees each of them exactly once: in its snapshot as
///   ended, or on its queue.
/// - `finished` holds threads that ended on their own before any shutdown; the next spawn joins
///   them (`reapFinished`), and a shutdown takes whatever is left.
/// - `reaped` is what those joins found: a count of clean ones and an entry for each whose body
///   threw, which the shutdown's report includes, so the report covers every thread the group ran.
/// - After ``close()``, a thread still alive is `outliving`: its end, refused by the closed queue,
///   is recorded here, and the end of the last one is what lets the group leave its parent (see
///   GroupAftermath.swift). `lingering` keeps a weak record of every thread the shutdown saw
///   running and had not joined, so a later report can say what became of it.
///
/// A thread ends on its own thread (``threadEnded(_:)``) with no other lock held; the ledger
/// takes no other lock than its own and the exit queue's, so the group may call it while holding
/// the group's lock (the order is always group, then ledger, then queue).
final class ThreadLedger: Sendable {
    typealias Member = ThreadGroup.Member<ManagedThread>

    private struct Book {
        var running: [ObjectIdentifier: Member] = [:]
        var finished: [ManagedThread] = []
        var reapedJoined = 0
        var reapedFailures: [ShutdownReport.ThreadEntry] = []
        var queue: ExitQueue?
        var lingering: [WeakThread] = []
        var outliving: Set<ObjectIdentifier> = []
    }

    private let book = Lock(Book())
    /// The installed exit queue, readable without the lock, so a thousand threads ending during a
    /// shutdown do not queue up on it. A ledger hands over once, and `book` keeps the queue alive
    /// for the ledger's lifetime, so the unretained reference stays valid.
    private let installed = Atomic<Unmanaged<ExitQueue>?>(nil)

    /// How many reaped threads whose body threw the ledger keeps entries for (beyond, it counts).
    static let reapedFailureLimit = 1_000

    /// The exit queue of the shutdown this ledger was handed to, if any.
    var shutdownQueue: ExitQueue? { installed.load(ordering: .acquiring)?.takeUnretainedValue() }

    // MARK: The moves

    /// A thread about to start. The caller holds its group's lock and has checked the group runs.
    func admit(_ thread: ManagedThread, serial: UInt64, priority: Int) {
        book.withLock { $0.running[ObjectIdentifier(thread)] = Member(value: thread, serial: serial, priority: priority) }
    }

    /// Records the end of `thread` (on its own thread, after its exit mark). Returns true when it
    /// was the last thread that outlived the group's shutdown.
    func threadEnded(_ thread: ManagedThread) -> Bool {
        // During a shutdown, its queue takes it without this lock (it is still listed in `running`).
        if let queue = shutdownQueue, queue.push(thread) { return false }
        return book.withLock { book in
            let id = ObjectIdentifier(thread)
            if let queue = book.queue {
                // Installed after the look above, so the queue may still be open; if it is closed,
                // the thread outlived the shutdown.
                if queue.push(thread) { return false }
                return book.outliving.remove(id) != nil && book.outliving.isEmpty
            }
            book.running.removeValue(forKey: id)
            book.finished.append(thread)
            return false
        }
    }

    /// Joins the threads that ended on their own, so they do not pile up, and counts them.
    ///
    /// They stay in `finished` while they are joined and only the joined ones leave it afterwards,
    /// so a shutdown handed the ledger meanwhile still takes (and joins) every one of them;
    /// joining a thread twice is harmless. Two spawns reaping the same batch at once: only the one
    /// that removes a thread from `finished` accounts for it.
    func reapFinished(groupPath: String) {
        let batch = book.withLock { $0.finished }
        guard !batch.isEmpty else { return }
        let now = ContinuousClock.now
        let joined = batch.filter { (try? $0.join(until: now)) == true }
        guard !joined.isEmpty else { return }
        book.withLock { book in
            let ids = Set(joined.map(ObjectIdentifier.init))
            let mine = book.finished.filter { ids.contains(ObjectIdentifier($0)) }
            guard !mine.isEmpty else { return }
            book.finished.removeAll { ids.contains(ObjectIdentifier($0)) }
            let failures = mine.filter { $0.error != nil }
            book.reapedJoined += mine.count - failures.count
            // Bounded: a group that spawns and fails forever before it is shut down keeps the first ones.
            let room = max(0, Self.reapedFailureLimit - book.reapedFailures.count)
            book.reapedFailures += failures.prefix(room).map {
                ShutdownRun.entry(for: $0, status: .joined, path: groupPath, now: now, kernelView: false)
            }
        }
    }

    /// What a shutdown takes over: the running threads (still listed here), those that ended
    /// before it, and what the reaping so far found.
    struct Handover {
        var running: [ObjectIdentifier: Member]
        var ended: [ManagedThread]
        var reapedJoined: Int
        var reapedFailures: [ShutdownReport.ThreadEntry]
    }

    /// Installs `queue`: from now on, threads of this ledger end onto it. Once per ledger; the
    /// caller holds its group's lock and has claimed the group's shutdown.
    func handOver(to queue: ExitQueue) -> Handover {
        book.withLock { book in
            precondition(book.queue == nil, "a group is handed to one shutdown")
            book.queue = queue
            installed.store(Unmanaged.passUnretained(queue), ordering: .releasing)
            defer {
                book.finished = []
                book.reapedJoined = 0
                book.reapedFailures = []
            }
            return Handover(
                running: book.running, ended: book.finished, reapedJoined: book.reapedJoined,
                reapedFailures: book.reapedFailures)
        }
    }

    /// The shutdown is over: its queue takes no more threads, and every listed thread moves to the
    /// lingering records, those still alive to `outliving`. Keeps no strong reference, so when a
    /// stuck thread ends its handle can go and ManagedThread's deinit detaches it.
    func close() {
        book.withLock { book in
            // The queue stays referenced (see `installed`) but takes no more threads.
            book.queue?.close()
            // Joined threads need no record: their entries are final. (A weak reference gives the
            // thread a side table, which costs an allocation; a clean shutdown makes none.)
            book.lingering = book.running.values.filter { !$0.value.isJoined }.map {
                WeakThread(name: $0.value.name, tid: $0.value.tid, thread: $0.value)
            }
            // A thread not yet ended here calls threadEnded later, through the closed queue.
            book.outliving = Set(book.running.values.filter { $0.value.isAlive }.map { ObjectIdentifier($0.value) })
            book.running = [:]
            book.finished = []
        }
    }

    // MARK: Reading

    /// Threads admitted and not known to have ended, in no particular order.
    var running: [Member] { book.withLock { Array($0.running.values) } }

    /// Threads listed now: running ones and, after a shutdown, the ones it saw running that are
    /// still around (alive or not: callers filter).
    var listed: [ManagedThread] {
        book.withLock { book in book.running.values.map(\.value) + book.lingering.compactMap(\.thread) }
    }

    /// The weak records of the threads the shutdown saw running and did not join (empty before
    /// ``close()``).
    var lingering: [WeakThread] { book.withLock { $0.lingering } }

    /// Whether every thread that outlived the shutdown has ended (true before any shutdown).
    var outliversEnded: Bool { book.withLock { $0.outliving.isEmpty } }

    /// How many threads are listed running and how many wait in `finished` (for tests).
    var counts: (running: Int, finished: Int) { book.withLock { ($0.running.count, $0.finished.count) } }
}

/// A thread held weakly.
struct WeakThread {
    /// As the report shows it (a thread that never ran has no tid).
    let name: String
    let tid: Int32?
    weak var thread: ManagedThread?
}
