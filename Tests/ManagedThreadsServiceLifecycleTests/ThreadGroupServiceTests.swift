import Foundation
import Logging
@testable import ManagedThreads
import ManagedThreadsServiceLifecycle
import ManagedThreadsTesting
import ServiceLifecycle
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A service that runs until the graceful shutdown and notes when it ended.
struct OtherService: Service {
    let ended: Ended
    final class Ended: Sendable {
        let flag = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)
        var isSet: Bool { flag.load(ordering: .acquiring) }
        var hasStarted: Bool { started.load(ordering: .acquiring) }
    }
    func run() async throws {
        ended.started.store(true, ordering: .releasing)
        try? await gracefulShutdown()
        ended.flag.store(true, ordering: .releasing)
    }
}

/// Collects reports handed to `onReport`.
final class Reports: Sendable {
    private let reports = Lock<[ShutdownReport]>([])
    func append(_ report: ShutdownReport) { reports.withLock { $0.append(report) } }
    var all: [ShutdownReport] { reports.withLock { $0 } }
}

final class Gate: Sendable {
    private let open = Atomic<Bool>(false)
    func release() { open.store(true, ordering: .releasing) }
    func waitOpen() { while !open.load(ordering: .acquiring) { usleep(500) } }
}

@Suite("ThreadGroupService")
struct ThreadGroupServiceProcessTests {
    @Test("SIGTERM to a ServiceGroup stops the thread group with the other service, cleanly")
    func stopsWithServiceGroupOnSIGTERM() async {
        // ServiceLifecycle takes SIGTERM for good in the process it runs in: a child process.
        await #expect(processExitsWith: .success) {
            await serviceGroupChild()
        }
    }
}

@Suite("ThreadGroupService in process", .managedThreads)
struct ThreadGroupServiceTests {
    @Test("a graceful shutdown of the ServiceGroup shuts the thread group down and reports it")
    func gracefulShutdownStopsGroup() async throws {
        let group = try ThreadGroup.current.makeChild(name: "served")
        for index in 0..<3 {
            try group.spawn(name: "worker-\(index)") { token in _ = token.wait(timeout: .seconds(120)) }
        }
        let (serviceGroup, other, reports) = serviceGroupWithOtherService(group, handlesSIGTERM: false, label: "test")
        async let running: Void = serviceGroup.run()
        try await waitFor("three workers alive") { group.aliveThreads.count == 3 }
        await serviceGroup.triggerGracefulShutdown()
        try await running
        #expect(group.aliveThreads.isEmpty)
        #expect(reports.all.count == 1)
        #expect(reports.all.first?.isClean == true)
        #expect(reports.all.first?.joined == 3)
        #expect(other.ended.isSet)
    }

    @Test("cancelling the service's task stops the group too")
    func cancellationStopsGroup() async throws {
        let group = try ThreadGroup.current.makeChild(name: "cancelled")
        try group.spawn(name: "worker") { token in _ = token.wait(timeout: .seconds(120)) }
        let reports = Reports()
        let service = ThreadGroupService(group: group, timeout: .seconds(30), onReport: reports.append)
        let task = Task { try await service.run() }
        try await waitFor("worker alive") { group.aliveThreads.count == 1 }
        task.cancel()
        try await task.value
        #expect(group.aliveThreads.isEmpty)
        #expect(reports.all.first?.joined == 1)
    }

    @Test("failsWhenStuck: a stuck thread makes run() throw with the report, by the deadline")
    func stuckThrows() async throws {
        let group = try ThreadGroup.current.makeChild(name: "stuck")
        let gate = Gate()
        try group.spawn(name: "ignores-token") { _ in gate.waitOpen() }
        let service = group.service(timeout: .milliseconds(200), failsWhenStuck: true)
        let task = Task { try await service.run() }
        task.cancel()
        await #expect {
            try await task.value
        } throws: { error in
            guard let stuck = error as? StuckThreadsError else { return false }
            return stuck.report.stuckThreads.map(\.name) == ["ignores-token"] && "\(stuck)".contains("ignores-token")
        }
        gate.release()
        try await waitFor("the stuck thread to end") { group.aliveThreads.isEmpty }
    }
}

/// A ServiceGroup running another service, then the thread group's service (shut down in reverse).
func serviceGroupWithOtherService(_ group: ThreadGroup, handlesSIGTERM: Bool, label: String) -> (ServiceGroup, OtherService, Reports) {
    let reports = Reports()
    let other = OtherService(ended: .init())
    let serviceGroup = ServiceGroup(
        configuration: .init(
            services: [
                .init(service: other),
                .init(service: ThreadGroupService(group: group, timeout: .seconds(30), onReport: reports.append)),
            ],
            gracefulShutdownSignals: handlesSIGTERM ? [.sigterm] : [],
            logger: Logger(label: label)))
    return (serviceGroup, other, reports)
}

/// The child process: a ServiceGroup with a thread group and another service, stopped by SIGTERM.
func serviceGroupChild() async {
    do {
        let group = try ThreadGroup.root.makeChild(name: "server")
        let workers = try group.makeChild(name: "workers")
        for index in 0..<4 {
            try workers.spawn(name: "worker-\(index)") { token in
                while !token.wait(timeout: .seconds(1)) {}
            }
        }
        let (serviceGroup, other, reports) = serviceGroupWithOtherService(group, handlesSIGTERM: true, label: "child")
        async let running: Void = serviceGroup.run()
        try await waitFor("workers alive") { group.aliveThreads.count == 4 }
        // The ServiceGroup sets up its signal sources before it starts any service.
        try await waitFor("the service group to start") { other.ended.hasStarted }
        kill(getpid(), SIGTERM)
        try await running
        guard group.aliveThreads.isEmpty, reports.all.count == 1, reports.all[0].isClean, reports.all[0].joined == 4,
            other.ended.isSet
        else {
            print("unexpected: \(reports.all)")
            exit(1)
        }
    } catch {
        print("child failed: \(error)")
        exit(1)
    }
}
