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
        /// Mappings without a guard page (its mprotect failed) that munmap refused too; unmapped
        /// by a later trim.
        var unmapLater: [ThreadStack] = []
        /// Mappings this pool holds (in use, free or waiting to be unmapped), by mapping size.
        var mapped: [Int: Int] = [:]
    }

    private let state = Lock<State>(State())
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
        unmap(excess)
        if let reused { return reused }
        let base = try Memory.mapStack(size: size)
        let stack = ThreadStack(mapping: UInt(bitPattern: base), mappingSize: size)
        state.withLock { $0.mapped[size, default: 0] += 1 }
        do {
            try Memory.protectGuard(base, size: Memory.pageSize)
        } catch {
            // Most likely ENOMEM at vm.max_map_count, where munmap may be refused as well.
            if !unmap(stack) {
                state.withLock { $0.unmapLater.append(stack) }
            }
            throw error
        }
        return stack
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
        let (excess, unguarded) = state.withLock { state -> ([ThreadStack], [ThreadStack]) in
            var unguarded: [ThreadStack] = []
            swap(&unguarded, &state.unmapLater)
            return (Self.takeExcess(&state, budget: retained.load(ordering: .relaxed), limit: .max), unguarded)
        }
        unmap(excess)
        let refused = unguarded.filter { !unmap($0) }
        if !refused.isEmpty {
            state.withLock { $0.unmapLater += refused }
        }
    }

    /// Free stacks now held, and their total mapping size.
    var freeStacks: (count: Int, bytes: Int) {
        state.withLock { ($0.free.values.reduce(0) { $0 + $1.count }, $0.freeBytes) }
    }

    /// For one mapping size: mappings held (in use, free, or waiting to be unmapped), free stacks,
    /// and mappings waiting to be unmapped. With no thread using a stack of that size,
    /// `mapped == free + unmapLater`, or the pool lost track of memory.
    func counts(mappingSize size: Int) -> (mapped: Int, free: Int, unmapLater: Int) {
        state.withLock { state in
            (state.mapped[size, default: 0], state.free[size]?.count ?? 0,
             state.unmapLater.filter { $0.mappingSize == size }.count)
        }
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

    /// Unmaps free stacks; one that munmap refuses (ENOMEM, see ``Memory/unmap(_:size:)``) is
    /// still a whole, guarded stack, so it goes back on the free list for a later trim.
    private func unmap(_ stacks: [ThreadStack]) {
        for stack in stacks where !unmap(stack) {
            release(stack)
        }
    }

    /// Unmaps one mapping; false if munmap refused (the mapping is unchanged).
    private func unmap(_ stack: ThreadStack) -> Bool {
        do {
            try Memory.unmap(UnsafeMutableRawPointer(bitPattern: stack.mapping)!, size: stack.mappingSize)
        } catch {
            return false
        }
        state.withLock { $0.mapped[stack.mappingSize, default: 0] -= 1 }
        return true
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
