// `churn`: N short threads spawned and reaped, 100 in flight at a time, then resident memory
// compared with where it was before them. A managed run spawns them in one ThreadGroup (its
// bookkeeping must not grow with every thread it has ever had); the baseline uses
// pthread_create/pthread_join. A 1,000-thread warm-up comes first, so the stack pool, the heap
// and glibc's stack cache are in their steady state when "before" is read.
//
// One sample per round: RSS after - RSS before, in bytes (negative when memory was given back).
// There is no ratio: both figures should be near zero, and their quotient would say nothing.
import Glibc
import ManagedThreads

enum ChurnScenario {
    static let systems: [SystemID] = [.managed("group"), .pthread]
    static let inFlight = 100

    static func run(_ runner: Runner, threads: Int, rounds: Int, stackSize: Int?) {
        let point = Point(scenario: .churn, workload: "short", threads: threads, hogs: 0)
        var ranges: [SystemID: (before: Int, after: Int)] = [:]
        runner.measure(point, systems: systems, rounds: rounds, unit: "bytes", sample: { id, _ in
            let churn: (Int) throws -> Void = id.system == "managed"
                ? { try managed(count: $0, stackSize: stackSize) } : { try raw(count: $0, stackSize: stackSize) }
            try churn(1_000)
            let before = ResidentMemory.bytes()
            try churn(threads)
            let after = ResidentMemory.bytes()
            ranges[id] = (before, after)
            return [Int64(after - before)]
        }, notes: { id in
            guard let range = ranges[id] else { return [] }
            return ["RSS \(Format.bytes(Int64(range.before))) before, \(Format.bytes(Int64(range.after))) after (last round)"]
        })
    }

    private static func managed(count: Int, stackSize: Int?) throws {
        let group = ThreadGroup(name: "churn")
        var options = ThreadOptions()
        options.stackSize = stackSize
        var done = 0
        while done < count {
            let batch = min(inFlight, count - done)
            var threads: [ManagedThread] = []
            threads.reserveCapacity(batch)
            for _ in 0..<batch { threads.append(try group.spawn(name: "churn", options: options) { _ in }) }
            for thread in threads {
                guard try thread.join(timeout: managedJoinTimeout) else { throw BenchError("a churn thread did not exit") }
            }
            done += batch
        }
        let report = group.shutdown(timeout: managedJoinTimeout)
        guard report.isClean else { throw BenchError("the churn group's shutdown was not clean: \(report)") }
    }

    private static func raw(count: Int, stackSize: Int?) throws {
        var done = 0
        var threads: [pthread_t] = []
        threads.reserveCapacity(inFlight)
        while done < count {
            let batch = min(inFlight, count - done)
            threads.removeAll(keepingCapacity: true)
            for _ in 0..<batch { threads.append(try RawPThread.create(stackSize: stackSize, start: churnReturn, arg: nil)) }
            for thread in threads { RawPThread.join(thread) }
            done += batch
        }
    }
}

private func churnReturn(_: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? { nil }
