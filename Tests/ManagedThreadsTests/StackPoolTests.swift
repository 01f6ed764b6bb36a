import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

@Suite("Stack pool", .managedThreads)
struct StackPoolTests {
    @Test("released stacks are reused; trim unmaps down to the budget")
    func reuseAndTrim() throws {
        let pool = StackPool()
        let a = try pool.acquire(stackSize: 64 * 1024)
        let b = try pool.acquire(stackSize: 64 * 1024)
        #expect(a != b)
        #expect(a.stackSize >= 64 * 1024)
        #expect(a.stackSize % Memory.pageSize == 0)
        pool.release(a)
        pool.release(b)
        #expect(pool.freeStacks.count == 2)
        let c = try pool.acquire(stackSize: 64 * 1024)
        #expect(c == a || c == b, "a free stack of the same size is reused")
        #expect(pool.freeStacks.count == 1)
        let other = try pool.acquire(stackSize: 128 * 1024)
        #expect(other != a && other != b, "sizes are pooled separately")
        pool.release(c)
        pool.release(other)
        pool.retainedBytes = 0
        pool.trim()
        #expect(pool.freeStacks.count == 0)
        #expect(pool.freeStacks.bytes == 0)
    }

    @Test("mmap failing is a typed error and the spawn leaks nothing")
    func mmapFails() {
        #expect {
            try FaultInjection.with(.mmap, errno: ENOMEM) { () throws(ThreadError) in
                // A size no other test uses, so the pool has no free stack to hand out instead.
                _ = try ManagedThread.spawn(name: "no-stack", options: ThreadOptions(stackSize: 333 * 4096)) { _ in }
            }
        } throws: { ($0 as? ThreadError)?.call == "mmap" && ($0 as? ThreadError)?.errno == ENOMEM }
    }

    @Test("system-allocated stacks still work")
    func systemStacks() throws {
        let ran = Counter()
        let thread = try ManagedThread.spawn(name: "glibc-stack", options: ThreadOptions(stackAllocation: .system)) { _ in ran.increment() }
        #expect(try thread.join(timeout: .seconds(10)))
        #expect(ran.count == 1)
    }

    @Test(
        "the guard page below a pooled stack stops an overflow with SIGSEGV instead of corrupting memory",
        .disabled(if: Sanitizer.address, "ASan's own SEGV handler reports the overflow and exits instead"), .exitTest)
    func guardPageCatchesOverflow() async {
        await #expect(processExitsWith: .signal(SIGSEGV)) { overflowChild() }
    }

    @Test("a dropped, unjoined pooled thread is reaped later and its stack reused", .exitTest)
    func orphansReaped() async {
        await #expect(processExitsWith: .success) { orphanChild() }
    }

    @Test(
        "a group that spawns and reaps 20,000 short threads ends at the memory it had after the first 2,000",
        .disabled(if: Sanitizer.any, "sanitizer runtimes keep per-thread shadow and quarantine memory: RSS says nothing there"), .exitTest)
    func churnDoesNotGrow() async {
        await #expect(processExitsWith: .success) { churnChild() }
    }
}

/// Recurses on a 64 KiB pooled stack until it hits the guard page.
private func overflowChild() -> Never {
    @inline(never) func recurse(_ depth: Int) -> Int {
        var pad = (depth, depth, depth, depth, depth, depth, depth, depth)
        return withUnsafeMutableBytes(of: &pad) { _ in recurse(depth + 1) } + pad.0
    }
    let thread = try! ManagedThread.spawn(name: "overflow", options: ThreadOptions(stackSize: 64 * 1024)) { _ in
        _ = recurse(0)
    }
    _ = try? thread.join(timeout: .seconds(60))
    exit(0)  // not reached: the overflow kills the process
}

private func orphanChild() -> Never {
    let pool = StackPool.shared
    pool.trim()
    let tidBox = Locked<Int32>(0)
    do {
        _ = try! ManagedThread.spawn(name: "orphan") { _ in tidBox.withLock { $0 = PThread.currentTID } }
    }
    // Wait (bounded) for the thread to end.
    let deadline = ContinuousClock.now.advanced(by: .seconds(60))
    while ContinuousClock.now < deadline {
        let tid = tidBox.value
        if tid != 0 && ProcFS.read("/proc/self/task/\(tid)/stat") == nil { break }
        usleep(1000)
    }
    let before = pool.freeStacks.count
    pool.retainedBytes = .max
    pool.trim()  // reaps the orphan (joins it) and takes its stack back
    guard pool.freeStacks.count == before + 1 else { childFail("orphan stack not reclaimed: \(before) -> \(pool.freeStacks.count)") }
    exit(0)
}

private func churnChild() -> Never {
    func rss() -> Int {
        guard let statm = ProcFS.read("/proc/self/statm") else { return 0 }
        let fields = statm.split(separator: " ")
        return (Int(fields[1]) ?? 0) * Memory.pageSize
    }
    let group = ThreadGroup(name: "churn")
    func batch(_ count: Int) {
        for i in 0..<count {
            do {
                let thread = try group.spawn(name: "short-\(i)") { _ in }
                _ = try thread.join(timeout: .seconds(30))
            } catch {
                childFail("spawn \(i): \(error)")
            }
        }
    }
    batch(2_000)
    let warm = rss()
    batch(18_000)
    let after = rss()
    _ = group.shutdown(timeout: .seconds(30))
    // Allow 2 MiB for allocator noise; a per-thread leak of even 100 bytes would show as 1.8 MB.
    guard after - warm < 2 * 1024 * 1024 else { childFail("RSS grew from \(warm) to \(after)") }
    exit(0)
}
