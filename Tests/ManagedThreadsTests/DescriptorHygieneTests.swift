import Foundation
import ManagedThreads
import ManagedThreadsTesting
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs `/bin/sh -c script` with posix_spawn (which, unlike Foundation's Process, closes nothing
/// on its own: a child sees exactly the descriptors that lack CLOEXEC) and returns its stdout.
func spawnShell(_ script: String) throws -> String {
    let output = Pipe()
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, output.writeEnd, 1)
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup(script), nil]
    defer { argv.forEach { free($0) } }
    let rc = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ)
    try #require(rc == 0, "posix_spawn: \(rc)")
    var status: Int32 = 0
    _ = waitpid(pid, &status, 0)
    var text = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    _ = fcntl(output.readEnd, F_SETFL, O_NONBLOCK)
    while true {
        let n = read(output.readEnd, &buffer, buffer.count)
        if n <= 0 { break }
        text += buffer[0..<n]
    }
    return String(decoding: text, as: UTF8.self)
}

@Suite("Descriptor hygiene", .managedThreads)
struct DescriptorHygieneTests {
    @Test("a child process started while tokens, tickers, threads and a signal watcher hold descriptors inherits none of them", .exitTest)
    func childInheritsNothing() async {
        // In a process of its own, so descriptors opened by tests running alongside do not count.
        await #expect(processExitsWith: .success) {
            try descriptorsStayInProcess()
        }
    }
}

/// The body of the hygiene test, run in the child process.
func descriptorsStayInProcess() throws {
    let gate = Gate()
    let group = ThreadGroup(name: "hygiene")
    let ready = Counter()
    for index in 0..<4 {
        try group.spawn(name: "fd-holder-\(index)") { token in
            _ = try token.fileDescriptor          // an eventfd
            let ticker = try token.ticks(every: .seconds(60), pollable: true)  // a timerfd
            _ = ticker.fileDescriptor
            ready.increment()
            gate.waitOpen()
        }
    }
    try waitFor("every thread holding its descriptors") { ready.count == 4 }
    let source = StopSource()
    let token = source.token
    _ = try token.fileDescriptor
    // A signal watcher's routing eventfd (SIGWINCH: ignored by default, so nothing else minds).
    let signals = try ShutdownSignals.install(for: ThreadGroup(name: "hygiene-signals"), options: .init(signals: [SIGWINCH]))
    defer { signals.cancel() }

    let mine = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")
        .compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") }
    let ours = mine.filter { $0.contains("eventfd") || $0.contains("timerfd") }
    guard ours.count >= 11 else {
        print("expected at least 11 eventfd/timerfd descriptors here, saw \(mine)")
        exit(1)
    }
    let inherited = try spawnShell("for f in /proc/self/fd/*; do readlink \"$f\"; done")
        .split(separator: "\n").filter { $0.contains("eventfd") || $0.contains("timerfd") }
    gate.release()
    let report = group.shutdown(timeout: .seconds(30))
    guard inherited.isEmpty, report.isClean else {
        print("child inherited \(inherited); report: \(report)")
        exit(1)
    }
}
