import CShims
import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

@Suite("Exit audit")
struct ExitAuditProcessTests {
    @Test("at exit, a stuck managed thread and a raw pthread are named with their kernel state; exit status is kept", .exitTest)
    func auditAtExit() async throws {
        let outcome = await #expect(processExitsWith: .exitCode(0), observing: [\.standardErrorContent]) {
                exitAuditChild()
            }
        let result = try #require(outcome)
        let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(stderr.contains("exit audit: 2 threads still alive at exit"), "\(stderr)")
        #expect(stderr.contains("managed \"stuck-at-exit\" in root/app"), "\(stderr)")
        #expect(stderr.contains("unmanaged \"raw-lingerer\""), "\(stderr)")
        #expect(stderr.contains("in pause") || stderr.contains("S (sleeping)"), "no kernel state: \(stderr)")
        #expect(!stderr.contains("polite-at-exit"), "a thread that stopped is not lingering: \(stderr)")
    }

    @Test("a process whose threads all stop prints nothing at exit", .exitTest)
    func quietWhenClean() async throws {
        let outcome = await #expect(processExitsWith: .exitCode(0), observing: [\.standardErrorContent]) {
                do {
                    try ExitAudit.install(budget: .seconds(10))
                    try ThreadGroup.root.spawn(name: "polite") { token in _ = token.wait(timeout: .seconds(120)) }
                } catch {
                    exit(1)
                }
                exit(0)
            }
        let result = try #require(outcome)
        let stderr = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(!stderr.contains("exit audit"), "\(stderr)")
    }
}

@Suite("Exit audit in process", .managedThreads)
struct ExitAuditTests {
    @Test("audit() lists a stuck managed thread and an unmanaged thread started after the baseline")
    func auditNow() throws {
        let baseline = Set(ThreadAudit.snapshot().map(\.tid))
        let group = try ThreadGroup.current.makeChild(name: "audited")
        let gate = Gate()
        try group.spawn(name: "stuck-in-audit") { _ in gate.waitOpen() }
        try group.spawn(name: "polite-in-audit") { token in _ = token.wait(timeout: .seconds(120)) }
        let raw = try RawThread(name: "raw-in-audit", gate: gate)
        defer {
            gate.release()
            raw.join()
        }
        let findings = ExitAudit.audit(.init(group: group, budget: .milliseconds(200)), threadsBefore: baseline)
        #expect(findings.report.stuck == 1)
        #expect(findings.report.joined == 1)
        let managed = findings.lingering.filter { $0.kind == .managed }
        #expect(managed.map(\.name) == ["stuck-in-audit"])
        #expect(managed.first?.groupPath == group.path)
        #expect(managed.first?.kernel != nil)
        #expect(findings.lingering.contains { $0.kind == .unmanaged && $0.name == "raw-in-audit" && $0.tid == raw.tid })
        #expect(!findings.isClean)
        #expect("\(findings)".contains("stuck-in-audit"))
        gate.release()
        try waitFor("the stuck thread to end") { group.aliveThreads.isEmpty }
    }

    @Test("ignored name prefixes and the baseline keep the runtime's threads out")
    func ignoredPrefixes() throws {
        let baseline = Set(ThreadAudit.snapshot().map(\.tid))
        let gate = Gate()
        let raw = try RawThread(name: "runtime-pool-1", gate: gate)
        defer {
            gate.release()
            raw.join()
        }
        let group = ThreadGroup(name: "empty")
        let ignoring = ExitAudit.audit(.init(group: group, budget: .milliseconds(100), ignoredNamePrefixes: ["runtime-pool"]), threadsBefore: baseline)
        #expect(!ignoring.lingering.contains { $0.tid == raw.tid })
        let withBaseline = ExitAudit.audit(.init(group: group, budget: .milliseconds(100)), threadsBefore: baseline.union([raw.tid]))
        #expect(!withBaseline.lingering.contains { $0.tid == raw.tid })
    }

    @Test("a negative budget is a typed error")
    func negativeBudget() {
        #expect(throws: ThreadError.self) { try ExitAudit.install(budget: .milliseconds(-1)) }
    }
}

/// A raw pthread (not managed) that names itself and waits on a gate; for audits.
final class RawThread: Sendable {
    private let handle: UInt
    private let tidValue: Locked<Int32>
    var tid: Int32 { tidValue.value }

    private final class Context: Sendable {
        let name: String
        let gate: Gate
        let tid: Locked<Int32>
        init(name: String, gate: Gate, tid: Locked<Int32>) {
            self.name = name
            self.gate = gate
            self.tid = tid
        }
    }

    init(name: String, gate: Gate) throws {
        let tid = Locked<Int32>(0)
        let context = Unmanaged.passRetained(Context(name: name, gate: gate, tid: tid)).toOpaque()
        var thread = pthread_t()
        let rc = cshims_thread_create(&thread, nil, 0, { arg in
            let context = Unmanaged<Context>.fromOpaque(arg!).takeRetainedValue()
            _ = cshims_thread_setname(pthread_self(), context.name)
            context.tid.withLock { $0 = cshims_gettid() }
            context.gate.waitOpen()
            return nil
        }, context)
        try #require(rc == 0)
        handle = UInt(thread)
        tidValue = tid
        try waitFor("\(name) to start") { tid.value != 0 && kernelComm(tid.value) == name }
    }

    func join() {
        pthread_join(pthread_t(handle), nil)
    }
}

/// Runs in the child: a stuck managed thread, a polite one, and a raw pthread alive at exit.
func exitAuditChild() {
    do {
        try ExitAudit.install(budget: .milliseconds(300))
        let app = try ThreadGroup.root.makeChild(name: "app")
        try app.spawn(name: "stuck-at-exit") { _ in
            while true { pause() }
        }
        try app.spawn(name: "polite-at-exit") { token in _ = token.wait(timeout: .seconds(120)) }
        var raw = pthread_t()
        guard cshims_thread_create(&raw, nil, 0, { _ in
            _ = cshims_thread_setname(pthread_self(), "raw-lingerer")
            while true { pause() }
        }, nil) == 0 else { exit(1) }
        try waitFor("the raw thread to be named") {
            ThreadAudit.unmanagedThreads().contains { $0.name == "raw-lingerer" }
        }
    } catch {
        print("child failed: \(error)")
        exit(1)
    }
    exit(0)
}
