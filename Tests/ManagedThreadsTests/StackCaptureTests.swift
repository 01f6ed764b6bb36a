import Foundation
import Synchronization
import Testing
import ManagedThreadsTesting
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Blocks in read(2) on `fd` until it returns; a named function, so its frame can be found.
@inline(never)
func stackTestBlockInRead(_ fd: Int32) {
    var byte: UInt8 = 0
    while read(fd, &byte, 1) < 0 && errno == EINTR {}
}

/// Spins until `gate` opens, in a loop of its own.
@inline(never)
func stackTestSpinLoop(_ gate: Gate, entered: Counter) {
    entered.increment()
    var counter = 0
    while !gate.isOpen { counter &+= 1 }
    _ = counter
}

@Suite("Stack capture", .managedThreads)
struct StackCaptureTests {
    @Test("a thread blocked in read on a pipe: its stack names the function that called read, demangled")
    func blockedInRead() throws {
        let pipe = Pipe()
        let group = try ThreadGroup.current.makeChild(name: "stack-read")
        let thread = try group.spawn(name: "reader") { _ in stackTestBlockInRead(pipe.readEnd) }
        try waitFor("the reader to block in read") {
            thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "read"
        }
        let stack = StackCapture.stack(of: try #require(thread.tid), timeout: .seconds(10))
        #expect(stack.unavailable == nil, "\(stack)")
        #expect(stack.frames.contains { $0.symbol?.contains("stackTestBlockInRead") == true }, "\(stack)")
        // SA_RESTART: the read goes on after the capture, and ends only when the pipe is written.
        #expect(thread.isAlive)
        var one: UInt8 = 1
        _ = write(pipe.writeEnd, &one, 1)
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("a spinning thread: its stack shows its loop function")
    func spinning() throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "stack-spin")
        let entered = Counter()
        let thread = try group.spawn(name: "spinner") { _ in stackTestSpinLoop(gate, entered: entered) }
        try waitFor("the spinner to enter its loop") { entered.count == 1 }
        let stack = StackCapture.stack(of: try #require(thread.tid), timeout: .seconds(10))
        gate.release()
        #expect(stack.frames.contains { $0.symbol?.contains("stackTestSpinLoop") == true }, "\(stack)")
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("a thread that blocks every signal: 'signals blocked' at once, never waited for")
    func signalsBlocked() throws {
        let gate = Gate()
        let group = try ThreadGroup.current.makeChild(name: "stack-blocked")
        let blocked = Counter()
        let thread = try group.spawn(name: "masked") { _ in
            var all = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, nil)
            blocked.increment()
            gate.waitOpen()
        }
        try waitFor { blocked.count == 1 }
        let start = ContinuousClock.now
        let stack = StackCapture.stack(of: try #require(thread.tid), timeout: .seconds(30))
        #expect(start.duration(to: .now) < .seconds(10), "it waited for a thread that cannot take the signal")
        #expect(stack.unavailable?.contains("signals blocked") == true, "\(stack)")
        // The shutdown's report says the same, and the shutdown is not held up by it.
        let shutdownStart = ContinuousClock.now
        let report = group.shutdown(timeout: .milliseconds(300))
        #expect(shutdownStart.duration(to: .now) < .seconds(10), "\(report)")
        let entry = report.stuckThreads.first { $0.name == "masked" }
        #expect(entry?.stack?.unavailable?.contains("signals blocked") == true, "\(report)")
        gate.release()
        #expect(try thread.join(timeout: .seconds(30)))
    }

    @Test("a stuck thread's report entry carries its stack and names the pipe it reads; the JSON round-trips")
    func reportCarriesStack() throws {
        let pipe = Pipe()
        let group = try ThreadGroup.current.makeChild(name: "stack-report")
        let thread = try group.spawn(name: "stuck-reader") { _ in stackTestBlockInRead(pipe.readEnd) }
        try waitFor("the reader to block in read") {
            thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "read"
        }
        let report = group.shutdown(timeout: .milliseconds(200))
        let entry = try #require(report.stuckThreads.first { $0.name == "stuck-reader" }, "\(report)")
        let stack = try #require(entry.stack, "\(report)")
        // A report waits at most 2 ms for a capture; on a starved machine the thread may not be
        // scheduled by then, and the entry says so (the direct captures above wait longer).
        let captured = stack.unavailable == nil
        #expect(captured || stack.unavailable!.contains("in time"), "\(report)")
        if captured {
            #expect(stack.frames.contains { $0.symbol?.contains("stackTestBlockInRead") == true }, "\(report)")
        }
        let descriptor = try #require(entry.kernel?.descriptor, "\(report)")
        #expect(descriptor.hasPrefix("fd \(pipe.readEnd) → pipe:["), "\(descriptor)")
        let text = report.description
        #expect(!captured || text.contains("stackTestBlockInRead"), "\(text)")
        #expect(text.contains("in read(fd \(pipe.readEnd) → pipe:["), "\(text)")

        let json = try JSONEncoder().encode(report)
        let decoded = try JSONDecoder().decode(ShutdownReport.self, from: json)
        let again = try #require(decoded.stuckThreads.first { $0.name == "stuck-reader" })
        #expect(again.stack?.frames.map(\.symbol) == stack.frames.map(\.symbol))
        #expect(again.kernel?.descriptor == descriptor)

        var one: UInt8 = 1
        _ = write(pipe.writeEnd, &one, 1)
        #expect(try thread.join(timeout: .seconds(30)))
    }

    @Test("a leaked thread: the leak check's failure names the file and line of its spawn, and the spawning thread")
    func leakNamesSpawnSite() throws {
        let check = try ThreadLeakCheck(name: "spawn-site")
        let line = Locked<Int>(0)
        try check.run {
            line.withLock { $0 = #line + 1 }
            try ThreadGroup.current.spawn(name: "forgotten") { token in _ = token.wait(timeout: .seconds(60)) }
        }
        let outcome = check.finish()
        let leak = try #require(outcome.leaks.first { $0.name == "forgotten" }, "\(outcome)")
        #expect(leak.detail.contains("spawned at ManagedThreadsTests/StackCaptureTests.swift:\(line.value) by "), "\(leak)")
        // A thread spawned by a managed thread names it.
        let group = try ThreadGroup.current.makeChild(name: "spawn-site-nested")
        let inner = Locked<ManagedThread?>(nil)
        let outer = try group.spawn(name: "parent-thread") { _ in
            let child = try ThreadGroup.current.spawn(name: "child-thread") { _ in }
            inner.withLock { $0 = child }
        }
        #expect(try outer.join(timeout: .seconds(30)))
        let child = try #require(inner.value)
        #expect(child.spawnSite.spawner == "parent-thread")
        #expect(child.spawnSite.fileID == "ManagedThreadsTests/StackCaptureTests.swift")
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("more threads than there are capture slots: every stack is captured, in batches")
    func manyThreads() throws {
        let group = try ThreadGroup.current.makeChild(name: "stack-many")
        let entered = Counter()
        var threads: [ManagedThread] = []
        for index in 0..<100 {
            threads.append(try group.spawn(name: "many-\(index)") { token in
                entered.increment()
                _ = token.wait(timeout: .seconds(60))
            })
        }
        try waitFor("every thread to wait") { entered.count == 100 }
        let stacks = StackCapture.stacks(of: threads.compactMap(\.tid), until: .after(.seconds(30)))
        #expect(stacks.count == 100)
        let reasons = Set(stacks.values.compactMap(\.unavailable))
        #expect(!reasons.contains("too many captures in flight"), "\(reasons)")
        if !Sanitizer.thread {  // TSan defers signals to threads asleep in a raw futex call
            #expect(reasons.isEmpty, "\(reasons)")
        }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }
}
