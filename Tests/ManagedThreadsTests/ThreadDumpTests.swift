import Foundation
import Testing
import ManagedThreadsTesting
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Waits on its token; a named function, for the dump's stack.
@inline(never)
func dumpTestIdle(_ token: StopToken) {
    _ = token.wait(timeout: .seconds(60))
}

@Suite("Thread dump", .managedThreads)
struct ThreadDumpTests {
    @Test("a dump lists managed threads under their group with age, spawn site, kernel view and stack, and the other threads too")
    func capture() throws {
        let group = try ThreadGroup.current.makeChild(name: "dumped")
        let thread = try group.spawn(name: "dumped-idle", purpose: "waits for the dump") { token in dumpTestIdle(token) }
        try waitFor("the thread to sleep") { thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "futex" }
        let dump = ThreadDump.capture(stackTimeout: .seconds(10))
        #expect(dump.pid == getpid())
        let entry = try #require(dump.threads.first { $0.tid == thread.tid }, "\(dump)")
        #expect(entry.isManaged)
        #expect(entry.name == "dumped-idle")
        #expect(entry.groupPath == group.path)
        #expect(entry.purpose == "waits for the dump")
        #expect(entry.stopRequested == false)
        #expect(entry.spawnSite?.fileID == "ManagedThreadsTests/ThreadDumpTests.swift")
        #expect(entry.kernel?.syscallName == "futex")
        // ThreadSanitizer defers a signal to a thread sleeping in a raw futex syscall until the
        // thread wakes, so there the capture times out; the stack is checked without it.
        if !Sanitizer.thread {
            #expect(entry.stack?.frames.contains { $0.symbol?.contains("dumpTestIdle") == true } == true, "\(dump)")
        }
        #expect(dump.threads.contains { !$0.isManaged && $0.tid == getpid() }, "the main thread is listed")
        let text = dump.description
        #expect(text.hasPrefix("thread dump of pid \(getpid()) at "))
        #expect(text.contains("group \(group.path)\n  \"dumped-idle\" tid \(thread.tid!) running"), "\(text)")
        #expect(text.contains("other threads"))

        let decoded = try JSONDecoder().decode(ThreadDump.self, from: try JSONEncoder().encode(dump))
        #expect(decoded.threads == dump.threads)
        #expect(decoded.threads.first { $0.tid == thread.tid }?.stack?.frames.map(\.symbol) == entry.stack?.frames.map(\.symbol))
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
    }

    @Test("a dump on a signal, in a child process: written, and the process keeps running and exits normally", .exitTest)
    func onSignal() async {
        await #expect(processExitsWith: .success) {
            try dumpOnSignalInChild()
        }
    }

    @Test("a trigger's signal cannot also be a shutdown signal; a second trigger on it is refused")
    func conflicts() throws {
        let trigger = try ThreadDump.installTrigger(signal: SIGUSR2, destination: .file("/dev/null"))
        defer { trigger.cancel() }
        #expect { try ThreadDump.installTrigger(signal: SIGUSR2) } throws: { ($0 as? ThreadError)?.code == .invalidState }
        #expect { try ShutdownSignals.install(options: .init(signals: [SIGUSR2])) } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
        #expect { try ThreadDump.installTrigger(signal: SIGKILL) } throws: { ($0 as? ThreadError)?.code == .invalidArgument }
    }
}

/// The body of the dump-on-signal test, run in the child process.
func dumpOnSignalInChild() throws {
    let path = "/tmp/managed-threads-dump-\(getpid()).txt"
    unlink(path)
    let trigger = try ThreadDump.installTrigger(signal: SIGUSR2, destination: .file(path))
    let group = ThreadGroup(name: "child")
    let entered = Counter()
    let thread = try group.spawn(name: "child-worker") { token in
        entered.increment()
        dumpTestIdle(token)
    }
    // In its body, so past its start (where it unblocks the capture signal).
    try waitFor("the worker to start") { entered.count == 1 }
    kill(getpid(), SIGUSR2)
    try waitFor("the dump to be written", timeout: .seconds(60)) { trigger.dumpsWritten == 1 }
    let text = try String(contentsOfFile: path, encoding: .utf8)
    guard text.contains("thread dump of pid \(getpid())"), text.contains("\"child-worker\""),
        text.contains("dumpTestIdle")
    else { throw ThreadError.invalidArgument("unexpected dump:\n\(text)") }
    trigger.cancel()
    unlink(path)
    guard group.shutdown(timeout: .seconds(30)).isClean, thread.isJoined else {
        throw ThreadError.invalidArgument("the child's group did not stop cleanly")
    }
}
