import ManagedThreadsTesting
import Testing
@testable import ManagedThreads

// The ledger is where "every thread is accounted for exactly once" lives. These drive one by hand
// with real threads (spawned outside any group, so only the test tells the ledger of their end)
// through each of its moves, and check that each thread is in exactly one place after each.
@Suite("Thread ledger", .managedThreads)
struct ThreadLedgerTests {
    private func ended(_ thread: ManagedThread) throws -> ManagedThread {
        #expect(try thread.join(timeout: .seconds(30)))
        return thread
    }

    @Test("each thread is in exactly one place: finished, handed over, queued, outliving")
    func everyMove() throws {
        let ledger = ThreadLedger()
        let early = try ManagedThread.spawn(name: "early") { _ in }
        let during = try ManagedThread.spawn(name: "during") { token in _ = token.wait(timeout: .seconds(60)) }
        let outlives = try ManagedThread.spawn(name: "outlives") { token in _ = token.wait(timeout: .seconds(60)) }
        defer {
            for thread in [early, during, outlives] {
                thread.requestStop()
                _ = try? thread.join(timeout: .seconds(30))
            }
        }
        ledger.admit(early, serial: 1, priority: 0)
        ledger.admit(during, serial: 2, priority: 0)
        ledger.admit(outlives, serial: 3, priority: 0)
        #expect(ledger.counts == (running: 3, finished: 0))

        // Ended before any shutdown: out of `running`, into `finished`.
        #expect(ledger.threadEnded(try ended(early)) == false)
        #expect(ledger.counts == (running: 2, finished: 1))

        // The hand-over takes the finished one as ended and the others as running; nothing stays
        // in `finished` for a spawn to reap (and count) a second time.
        let queue = ExitQueue()
        let handover = ledger.handOver(to: queue)
        #expect(handover.ended.map(\.name) == ["early"])
        #expect(Set(handover.running.values.map(\.value.name)) == ["during", "outlives"])
        #expect(ledger.counts == (running: 2, finished: 0))
        #expect(ledger.shutdownQueue === queue)

        // Ends during the shutdown: onto the queue, not into `finished`.
        during.requestStop()
        #expect(ledger.threadEnded(try ended(during)) == false)
        #expect(queue.drain().map(\.name) == ["during"])
        #expect(ledger.counts == (running: 2, finished: 0), "listed until the shutdown is over")

        // The shutdown is over: the one still alive outlives it; its end is refused by the closed
        // queue and announced once, as the last outliver's.
        ledger.close()
        #expect(ledger.counts == (running: 0, finished: 0))
        #expect(ledger.lingering.map(\.name) == ["outlives"], "joined threads need no record")
        #expect(ledger.outliversEnded == false)
        outlives.requestStop()
        #expect(ledger.threadEnded(try ended(outlives)) == true)
        #expect(ledger.outliversEnded)
        #expect(queue.drain().isEmpty)
        #expect(ledger.threadEnded(outlives) == false, "a second report of the same end announces nothing")
    }

    @Test("a thread that ended before the shutdown and has been reaped is counted once, with its failure")
    func reapedOnce() throws {
        struct Boom: Error {}
        let ledger = ThreadLedger()
        let clean = try ManagedThread.spawn(name: "clean") { _ in }
        let failing = try ManagedThread.spawn(name: "failing") { _ in throw Boom() }
        for thread in [clean, failing] {
            ledger.admit(thread, serial: 0, priority: 0)
            _ = ledger.threadEnded(try ended(thread))
        }
        ledger.reapFinished(groupPath: "test")
        ledger.reapFinished(groupPath: "test")  // nothing left: counts nothing twice
        let handover = ledger.handOver(to: ExitQueue())
        #expect(handover.ended.isEmpty)
        #expect(handover.reapedJoined == 1)
        #expect(handover.reapedFailures.map(\.name) == ["failing"])
        ledger.close()
    }
}
