import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A thread stack the library mapped: a guard page at the bottom, then the usable stack.
struct ThreadStack: Sendable, Hashable {
    /// Start of the mapping (the guard page), as an address.
    let mapping: UInt
    /// Size of the whole mapping, guard included.
    let mappingSize: Int

    var guardSize: Int { Memory.pageSize }
    var stackAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: mapping + UInt(guardSize))! }
    var stackSize: Int { mappingSize - guardSize }
}

/// Library-owned thread stacks, reused across threads.
///
/// Why: tearing a thread down costs about as much in stack handling as in the exit itself. glibc
/// releases an 8 MiB stack's pages at thread exit and unmaps the stack at join once its ~40 MiB
/// cache is full; each of those pays a cross-CPU TLB flush under the address-space lock. A stack
/// the caller provides (`pthread_attr_setstack`) is never touched by glibc, so a shutdown that
/// returns stacks to this pool does no memory-management system calls at all.
///
/// Released stacks stay mapped until reused or trimmed. Trimming to ``retainedBytes`` happens a few
/// stacks at a time on later spawns, or all at once with ``trim()`` — never inside a shutdown.
/// Memory is mapped `MAP_NORESERVE`, so an idle pooled stack costs address space, plus the few
/// pages a previous thread touched.
final class StackPool: Sendable {
    static let shared = StackPool()

    /// Stacks unmapped per spawn while the pool is over its budget.
    static let trimBatch = 16

    private struct State {
        var free: [Int: [ThreadStack]] = [:]
        var freeBytes = 0
        /// Threads whose handle was dropped unjoined: joined here later, then their stacks reused.
        var orphans: [(thread: pthread_t, stack: ThreadStack)] = []
    }

    private let state = Mutex<State>(State())
    private let retained = Atomic<Int>(256 * 1024 * 1024)

    /// How many bytes of free stacks the pool keeps after trimming (address space; default 256 MiB).
    var retainedBytes: Int {
        get { retained.load(ordering: .relaxed) }
        set { retained.store(max(0, newValue), ordering: .relaxed) }
    }

    /// Rounds a requested usable size up to whole pages.
    static func mappingSize(forStackSize size: Int) -> Int {
        let page = Memory.pageSize
        return (size + page - 1) / page * page + page
    }

    /// A stack with at least `stackSize` usable bytes: a free one if the pool has it, else new.
    func acquire(stackSize: Int) throws(ThreadError) -> ThreadStack {
        let size = Self.mappingSize(forStackSize: stackSize)
        reapOrphans()
        let (reused, excess) = state.withLock { state -> (ThreadStack?, [ThreadStack]) in
            var reused: ThreadStack?
            if var list = state.free[size], let stack = list.popLast() {
                state.free[size] = list
                state.freeBytes -= size
                reused = stack
            }
            return (reused, Self.takeExcess(&state, budget: retained.load(ordering: .relaxed), limit: Self.trimBatch))
        }
        excess.forEach(Self.unmap)
        if let reused { return reused }
        let base = try Memory.mapStack(size: size)
        do {
            try Memory.protectGuard(base, size: Memory.pageSize)
        } catch {
            Memory.unmap(base, size: size)
            throw error
        }
        return ThreadStack(mapping: UInt(bitPattern: base), mappingSize: size)
    }

    /// Returns a stack whose thread has been joined. No system call.
    func release(_ stack: ThreadStack) {
        state.withLock { state in
            state.free[stack.mappingSize, default: []].append(stack)
            state.freeBytes += stack.mappingSize
        }
    }

    /// Takes over a joinable thread whose handle was dropped: it is joined by a later spawn (or
    /// ``trim()``), and its stack reused. A detached thread could not give its stack back safely.
    func adoptOrphan(_ thread: pthread_t, stack: ThreadStack) {
        state.withLock { $0.orphans.append((thread, stack)) }
    }

    /// Unmaps free stacks beyond ``retainedBytes`` and reaps orphans that have exited.
    func trim() {
        reapOrphans()
        let excess = state.withLock { Self.takeExcess(&$0, budget: retained.load(ordering: .relaxed), limit: .max) }
        excess.forEach(Self.unmap)
    }

    /// Free stacks now held, and their total mapping size.
    var freeStacks: (count: Int, bytes: Int) {
        state.withLock { ($0.free.values.reduce(0) { $0 + $1.count }, $0.freeBytes) }
    }

    private static func takeExcess(_ state: inout State, budget: Int, limit: Int) -> [ThreadStack] {
        var taken: [ThreadStack] = []
        while state.freeBytes > budget, taken.count < limit,
              let size = state.free.first(where: { !$0.value.isEmpty })?.key {
            let stack = state.free[size]!.removeLast()
            state.freeBytes -= size
            taken.append(stack)
        }
        return taken
    }

    private static func unmap(_ stack: ThreadStack) {
        Memory.unmap(UnsafeMutableRawPointer(bitPattern: stack.mapping)!, size: stack.mappingSize)
    }

    private func reapOrphans() {
        let orphans = state.withLock { state -> [(thread: pthread_t, stack: ThreadStack)] in
            guard !state.orphans.isEmpty else { return [] }
            var taken: [(thread: pthread_t, stack: ThreadStack)] = []
            swap(&taken, &state.orphans)
            return taken
        }
        guard !orphans.isEmpty else { return }
        let now = ContinuousClock.now
        var pending: [(thread: pthread_t, stack: ThreadStack)] = []
        for orphan in orphans {
            // A past deadline: reaps a thread that has finished exiting, never waits.
            if PThread.join(orphan.thread, until: now) {
                release(orphan.stack)
            } else {
                pending.append(orphan)
            }
        }
        if !pending.isEmpty {
            state.withLock { $0.orphans.append(contentsOf: pending) }
        }
    }
}
