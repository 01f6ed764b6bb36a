import CShims
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// A body that sits in a raw read(2) on a pipe and never polls its token: it only looks at the
/// token when the read fails with EINTR, as code that handles EINTR properly does.
func readUntilInterrupted(_ pipe: Pipe, _ token: StopToken, interruptions: Counter) {
    var byte: UInt8 = 0
    while true {
        let n = read(pipe.readEnd, &byte, 1)
        if n == -1 && errno == EINTR {
            interruptions.increment()
            if token.isStopRequested { return }
            continue
        }
        return
    }
}

@Suite("Escalation beyond cooperation", .managedThreads)
struct EscalationTests {
    @Test("without escalation a thread blocked in read() is stuck; with the interrupt step it gets EINTR and ends")
    func interruptStep() throws {
        let pipe = Pipe()
        let interruptions = Counter()
        // Cooperative: reported stuck, in read.
        let cooperative = try ThreadGroup.current.makeChild(name: "cooperative")
        let blocked = try cooperative.spawn(name: "blocked-reader") { token in readUntilInterrupted(pipe, token, interruptions: interruptions) }
        try waitFor("the reader blocked in read") { blocked.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "read" }
        let first = cooperative.shutdown(timeout: .milliseconds(200))
        #expect(first.stuckThreads.map(\.name) == ["blocked-reader"])
        #expect(first.interrupted == 0)
        #expect(first.policy == "shared")
        var one: UInt8 = 1
        #expect(write(pipe.writeEnd, &one, 1) == 1)  // let it go
        #expect(try blocked.join(timeout: .seconds(30)))

        // With the interrupt step the same body ends well before the deadline.
        let escalating = try ThreadGroup.current.makeChild(name: "escalating")
        let pipe2 = Pipe()
        let reader = try escalating.spawn(name: "blocked-reader-2") { token in readUntilInterrupted(pipe2, token, interruptions: interruptions) }
        try waitFor("the reader blocked in read") { reader.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "read" }
        let policy = ShutdownPolicy.shared.escalating(.interrupt(after: 0.02))
        let report = escalating.shutdown(timeout: .seconds(30), policy: policy)
        #expect(report.isClean, "\(report)")
        #expect(report.joined == 1)
        #expect(report.interrupted == 1)
        #expect(interruptions.count >= 1)
        #expect(report.policy == "shared+interrupt(SIGURG after 2%)")
        #expect(report.duration < .seconds(25), "it ended on the interrupt, not at the deadline")
    }

    @Test("abandon: a thread that ignores the interrupt is reported abandoned, the report is not clean")
    func abandon() throws {
        let group = try ThreadGroup.current.makeChild(name: "abandoning")
        let gate = Gate()
        // usleep returns early on EINTR, and this loop goes straight back to sleep: it ignores everything.
        let stubborn = try group.spawn(name: "stubborn") { _ in gate.waitOpen() }
        let report = group.shutdown(timeout: .milliseconds(300), policy: .fair.escalating(.interrupt(after: 0.3, then: .abandon)))
        #expect(report.abandoned == 1)
        #expect(report.stuck == 0)
        #expect(!report.isClean)
        #expect(report.interrupted == 1)
        let entry = try #require(report.root.allEntries.first)
        #expect(entry.status == .abandoned && entry.interrupted && entry.name == "stubborn")
        #expect("\(report)".contains("abandoned \"stubborn\""))
        #expect("\(report)".contains("1 abandoned"))
        gate.release()
        #expect(try stubborn.join(timeout: .seconds(30)))
    }

    @Test("abandon without an interrupt step, under the ordered policy")
    func abandonAtDeadline() throws {
        let group = try ThreadGroup.current.makeChild(name: "ordered-abandon")
        let gate = Gate()
        let stubborn = try group.spawn(name: "stubborn") { _ in gate.waitOpen() }
        let report = group.shutdown(timeout: .milliseconds(100), policy: .ordered.escalating(.atDeadline(.abandon)))
        #expect(report.abandoned == 1 && report.interrupted == 0)
        #expect(report.policy == "ordered+abandon")
        gate.release()
        #expect(try stubborn.join(timeout: .seconds(30)))
    }

    @Test("an interrupt signal the application already handles is refused: the step is skipped and logged")
    func userSignalRefused() throws {
        let signal = __libc_current_sigrtmin() + 9
        var ignore = sigaction()
        ignore.__sigaction_handler = unsafeBitCast(Int(1), to: type(of: ignore.__sigaction_handler))  // SIG_IGN
        var previous = sigaction()
        #expect(sigaction(signal, &ignore, &previous) == 0)
        defer { sigaction(signal, &previous, nil) }
        let group = try ThreadGroup.current.makeChild(name: "refused")
        let gate = Gate()
        let thread = try group.spawn(name: "waits") { _ in gate.waitOpen() }
        let report = group.shutdown(timeout: .milliseconds(200), policy: .shared.escalating(.interrupt(signal: signal)))
        #expect(report.interrupted == 0)
        #expect(report.stuck == 1)
        #expect(cshims_signal_is_ours(signal) == 0, "the application's action was left alone")
        gate.release()
        #expect(try thread.join(timeout: .seconds(30)))
    }

    @Test("abort: the report is printed and the process aborts", .exitTest)
    func abortPolicy() async throws {
        let outcome = await #expect(processExitsWith: .signal(SIGABRT), observing: [\.standardErrorContent]) {
            try abortingShutdownChild()
        }
        let result = try #require(outcome)
        let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(stderr.contains("stuck \"never-ends\""), "\(stderr)")
        #expect(stderr.contains("aborting"), "\(stderr)")
    }
}

@Suite("Deadline extensions", .managedThreads)
struct ExtensionTests {
    @Test("a thread making progress asks for more time and is joined past the deadline; the report records it")
    func extensionGranted() throws {
        let group = try ThreadGroup.current.makeChild(name: "extending")
        group.extensionCap = .seconds(30)
        let steps = Counter()
        let granted = Locked<[Duration]>([])
        let started = Counter()
        try group.spawn(name: "flusher") { token in
            started.increment()
            _ = token.wait(timeout: .seconds(120))
            // Stop asked: five steps of 300 ms of "flushing" (1.5 s against a 1 s deadline),
            // asking for time before each.
            for _ in 0..<5 {
                let got = token.requestExtension(.milliseconds(500))
                granted.withLock { $0.append(got) }
                usleep(300_000)
                steps.increment()
            }
        }
        try waitFor("the flusher to start") { started.count == 1 }
        // 1 s, not 100 ms: the first request must come before the deadline, and under ASan on a
        // loaded 2-core machine the woken thread once did not run within 100 ms.
        let report = group.shutdown(timeout: .seconds(1))
        #expect(report.isClean, "\(report)")
        #expect(report.joined == 1)
        #expect(steps.count == 5, "the thread finished its work")
        // A grant is the time left until the later of the deadline and the time asked for.
        #expect(granted.value.allSatisfy { $0 > .zero && $0 <= .seconds(1) }, "\(granted.value)")
        let record = try #require(report.extensions.first)
        #expect(record.name == "flusher" && record.requests == 5 && record.groupPath == group.path)
        #expect(record.granted > .zero && record.granted <= .seconds(30))
        #expect("\(report)".contains("extension: \"flusher\""))
        #expect(report.overshoot < .seconds(20), "measured from the extended deadline")
    }

    @Test("the group's cap bounds the grant; with no cap nothing is granted and the thread is stuck")
    func capped() throws {
        let group = try ThreadGroup.current.makeChild(name: "capped")
        group.extensionCap = .milliseconds(200)
        let child = try group.makeChild(name: "inherits")
        #expect(child.extensionCap == .milliseconds(200))
        let uncapped = try group.makeChild(name: "no-cap")
        uncapped.extensionCap = .seconds(-5)
        #expect(uncapped.extensionCap == .zero)
        let gate = Gate()
        let grants = Locked<[String: Duration]>([:])
        let ready = Counter()
        try child.spawn(name: "greedy") { token in
            ready.increment()
            _ = token.wait(timeout: .seconds(120))
            grants.withLock { $0["greedy"] = token.requestExtension(.seconds(60)) }
            gate.waitOpen()
        }
        try uncapped.spawn(name: "refused") { token in
            ready.increment()
            _ = token.wait(timeout: .seconds(120))
            grants.withLock { $0["refused"] = token.requestExtension(.seconds(60)) }
            gate.waitOpen()
        }
        try waitFor("both started") { ready.count == 2 }
        let start = ContinuousClock.now
        let report = group.shutdown(timeout: .milliseconds(100))
        let took = start.duration(to: .now)
        gate.release()
        let greedy = try #require(grants.value["greedy"])
        #expect(greedy > .zero && greedy <= .milliseconds(300), "bounded by deadline + cap: \(greedy)")
        #expect(grants.value["refused"] == .zero)
        #expect(report.stuck == 2)
        #expect(report.extensions.map(\.name) == ["greedy"])
        #expect(took < .seconds(20))
        for thread in group.aliveThreads { _ = try thread.join(timeout: .seconds(30)) }
        try waitFor("all ended") { group.aliveThreads.isEmpty }
    }

    @Test("outside a shutdown, and for a StopSource, nothing is granted")
    func noShutdownNoGrant() throws {
        #expect(StopSource().token.requestExtension(.seconds(1)) == .zero)
        let got = Locked<Duration?>(nil)
        let thread = try ManagedThread.spawn(name: "ungrouped") { token in got.withLock { $0 = token.requestExtension(.seconds(1)) } }
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(got.value == .zero)
    }
}

/// In the child: a thread that never ends, and a shutdown whose policy aborts.
func abortingShutdownChild() throws {
    let group = try ThreadGroup.root.makeChild(name: "doomed")
    try group.spawn(name: "never-ends") { _ in while true { pause() } }
    _ = group.shutdown(timeout: .milliseconds(100), policy: .shared.escalating(.atDeadline(.abort)))
    exit(0)  // not reached
}
