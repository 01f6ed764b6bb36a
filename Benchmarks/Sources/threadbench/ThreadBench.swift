// threadbench: ManagedThreads against raw pthreads and Foundation.Thread, measured in the same run.
//
// Everything is measured synchronously on the main thread: no Swift concurrency thread ever
// blocks in a join.
import ArgumentParser
import CBench
import Foundation
import Logging
import ManagedThreads

@main
struct ThreadBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "threadbench",
        abstract: "Compares ManagedThreads with raw pthreads and Foundation.Thread.",
        discussion: """
            Scenarios:
              spawn      create + start + join a thread that returns at once
              spawnstop  the same; the body blocks on its stop signal until stopped
              shutdown   T threads of a workload (idle, io, cpu, tick), L CPU hogs:
                         from "stop requested" until every thread is gone
              stuck      group shutdown with a deadline, S threads ignoring it:
                         overshoot past the deadline; are all S named?
              memory     resident memory per idle thread (RSS before/after N)
              churn      10^6 short threads spawned and reaped (100 in flight), in
                         one group: RSS growth from before them to after
              report     what writing a shutdown report costs: 1, 10, 100 blocked
                         threads ignore a 50 ms deadline; overshoot with and
                         without their stacks captured
              executor   pools of 1, 2, 4 threads: hop latency (handed over ->
                         running), throughput (ns per unit), and a shutdown with
                         10,000 units queued behind a busy worker

            Systems:
              managed/*  ManagedThreads; futex = token.wait, eventfd = poll on
                         token.fileDescriptor, flag = isStopRequested; for
                         stuck, the shutdown policy (shared, fair, ordered)
              pthread    raw pthread_create/pthread_join, one shared eventfd,
                         sequential joins: the baseline
              foundation Foundation.Thread, NSCondition + flag; "joined" once
                         its tid is gone from /proc/self/task
              executor:  managed/task (ManagedTaskExecutor), managed/blocking
                         (BlockingExecutor), global (the global concurrent
                         executor), nio (NIOThreadPool): the baseline there

            Systems alternate within each round. ratio = median / median of
            pthread in the same rounds. The bare command runs a representative
            comparison, 10,000-thread points included, in a few
            minutes on two cores.
            """)

    @Option(help: "Scenarios to run, comma-separated: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")).")
    var scenario: ListArgument<Scenario>?

    @Option(help: "Shutdown workloads, comma-separated: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload: ListArgument<Workload>?

    @Option(help: "Thread counts for shutdown, stuck and memory, comma-separated (e.g. 10,1000).")
    var threads: ListArgument<Int>?

    @Option(help: "Numbers of CPU hogs for shutdown and stuck, comma-separated (e.g. 0,2).")
    var hogs: ListArgument<Int>?

    @Option(help: "Rounds per measurement (default: 5; 2 with --smoke).")
    var rounds: Int?

    @Option(help: "Threads per system for spawn and spawnstop, spread over the rounds (default: 2000).")
    var ops: Int?

    @Option(name: .customLong("stack-size"), help: "Thread stack size for every system (bytes, or with K/M suffix); default: glibc's.")
    var stackSize: ByteCount?

    @Option(name: .customLong("stack-allocation"), help: "Managed threads' stacks: pooled (the library's default), system (glibc's), or both as separate rows.")
    var stackAllocation: StackChoice = .pooled

    @Option(help: "Join strategy / group shape for managed shutdowns, comma-separated: handles (sequential joins), group (one flat ThreadGroup, exit-order reaping), tree (depth 3). Default: handles,group; --full: all.")
    var shapes: ListArgument<GroupShape>?

    @Option(help: "Stuck threads per stuck shutdown (default: 5).")
    var stuck: Int?

    @Option(help: "Deadline of the stuck shutdown, in milliseconds (default: 100).")
    var deadline: Int?

    @Option(name: .customLong("stuck-mode"), help: "How stuck threads wait: spin (sched_yield loop) or block (poll).")
    var stuckMode: StuckMode?

    @Option(help: "Only these systems, comma-separated: managed, pthread, foundation (for profiling one; without pthread there are no ratios).")
    var systems: ListArgument<SystemName>?

    @Flag(help: "Run the whole matrix: every workload at 1…10,000 threads with 0, 1 and 2 hogs (long).")
    var full = false

    @Flag(help: "Run the controller and every thread it starts (hogs included) on CPU 0 only: the stable anchor for spawn, where cross-CPU wake-ups otherwise dominate.")
    var pin = false

    @Flag(help: "Tiny sizes, a few seconds in all: for CI.")
    var smoke = false

    @Option(help: "Output: table, json or csv.")
    var format: OutputFormat = .table

    @Option(help: "Also write an SVG chart of median latency against thread count to this file.")
    var svg: String?

    @Option(help: "Also write the JSON report to this file (for a later --compare).")
    var save: String?

    @Option(help: "Compare with a JSON report saved earlier and print the change per measurement.")
    var compare: String?

    @Flag(name: .customLong("no-progress"), help: "No progress line on stderr.")
    var noProgress = false

    @Option(help: "The library's log level (trace, debug, info, notice, warning, error, critical), to stderr. Stuck scenarios log a warning per stuck thread.")
    var logLevel: Logger.Level = .error

    func validate() throws {
        if full && smoke { throw ValidationError("--full and --smoke exclude each other") }
        if let rounds, rounds < 1 { throw ValidationError("--rounds must be at least 1") }
        if let ops, ops < 1 { throw ValidationError("--ops must be at least 1") }
        if let threads, threads.values.contains(where: { $0 < 1 }) { throw ValidationError("--threads must be positive") }
        if let hogs, hogs.values.contains(where: { $0 < 0 }) { throw ValidationError("--hogs must not be negative") }
        if let stuck, stuck < 1 { throw ValidationError("--stuck must be at least 1") }
        if let deadline, deadline < 1 { throw ValidationError("--deadline must be at least 1 ms") }
        if let stackSize, stackSize.bytes < ThreadOptions.minimumStackSize { throw ValidationError("--stack-size must be at least \(ThreadOptions.minimumStackSize / 1024)K") }
    }

    mutating func run() throws {
        // The library logs through swift-log; a server would bootstrap it like this. Events below
        // the level cost a level check, and none reach stdout, which carries the results.
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var plan = full ? Plan.full : smoke ? Plan.smoke : Plan.standard
        plan.apply(
            scenarios: scenario?.values, workloads: workload?.values, threads: threads?.values, hogs: hogs?.values,
            rounds: rounds, operations: ops, stuckCount: stuck, deadline: deadline.map { .milliseconds($0) },
            stuckMode: stuckMode)

        if pin {
            guard cbench_pin_to_cpu(0) == 0 else { throw ValidationError("--pin: sched_setaffinity to CPU 0 failed (errno \(errno))") }
        }
        let limit = DescriptorLimit.raise()
        let work = WorkUnit.calibrated()
        let threadsAtStart = TaskDirectory.liveTIDs().count
        let progress = Progress(enabled: !noProgress)
        let runner = Runner(progress: progress, totalPoints: plan.pointCount, stacks: stackAllocation)
        runner.onlySystems = systems.map { Set($0.values.map(\.rawValue)) }
        runner.shapes = shapes?.values ?? (full ? GroupShape.allCases : [.handles, .group])
        let stack = stackSize?.bytes
        let started = ContinuousClock.now

        for scenario in plan.scenarios {
            switch scenario {
            case .spawn:
                SpawnScenarios.runSpawn(runner, operations: plan.spawnOperations, rounds: plan.rounds, stackSize: stack)
            case .spawnstop:
                SpawnScenarios.runSpawnStop(runner, operations: plan.spawnOperations, rounds: plan.rounds, stackSize: stack)
            case .shutdown:
                for point in plan.shutdown {
                    ShutdownScenario.run(runner, point, rounds: plan.rounds, stackSize: stack, work: work)
                }
            case .stuck:
                for point in plan.stuck {
                    StuckScenario.run(runner, point, rounds: plan.stuckRounds, stackSize: stack)
                }
            case .memory:
                for threads in plan.memoryThreads {
                    MemoryScenario.run(runner, threads: threads, rounds: plan.memoryRounds, stackSize: stack, work: work)
                }
            case .churn:
                ChurnScenario.run(runner, threads: plan.churnThreads, rounds: plan.churnRounds, stackSize: stack)
            case .report:
                ReportScenario.run(runner, stuck: plan.reportStuck, rounds: plan.reportRounds, stackSize: stack)
            case .executor:
                ExecutorScenario.run(
                    runner, threads: plan.executorThreads, rounds: plan.rounds, hops: plan.executorHops,
                    jobs: plan.executorJobs, queued: plan.executorQueued)
            }
        }
        progress.finish()

        let leftover = TaskDirectory.liveTIDs().count - threadsAtStart
        if leftover > 0 {
            let names = TaskDirectory.liveTIDs().compactMap { tid in
                (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let counts = Dictionary(names.map { ($0, 1) }, uniquingKeysWith: +).sorted { $0.key < $1.key }
            runner.notes.append(
                "\(leftover) threads more than at the start were alive at the end of the run; by kernel name: "
                    + counts.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
                    + (names.contains { $0.hasSuffix("-qos") || $0.contains("qos.") }
                        ? " (the *-qos threads are Swift's global concurrent executor and Dispatch, which keep their workers)" : ""))
        }
        if pin { runner.notes.append("--pin: the controller and every thread ran on CPU 0 only") }
        let report = RunReport(
            machine: .current(),
            settings: [
                "plan": full ? "full" : smoke ? "smoke" : "default",
                "rounds": String(plan.rounds),
                "spawnOperations": String(plan.spawnOperations),
                "stackSize": stack.map(String.init) ?? "default",
                "stackAllocation": stackAllocation.rawValue,
                "workUnitIterations": String(work.iterations),
                "descriptorLimit": String(limit),
                "arguments": CommandLine.arguments.dropFirst().joined(separator: " "),
            ],
            elapsedSeconds: Double(started.nanosecondsSince) / 1e9,
            measurements: runner.measurements, notes: runner.notes)

        switch format {
        case .table: print(TableOutput.render(report))
        case .json: print(try report.json())
        case .csv: print(CSVOutput.render(report))
        }
        if let save {
            try (try report.json() + "\n").write(toFile: save, atomically: true, encoding: .utf8)
        }
        if let svg {
            try SVGChart.render(report).write(toFile: svg, atomically: true, encoding: .utf8)
        }
        if let compare {
            let text = CompareOutput.render(current: report, previous: try RunReport.load(from: compare), path: compare)
            if format == .table {
                print("\n" + text)
            } else {
                FileHandle.standardError.write(Data((text + "\n").utf8))  // keep stdout machine-readable
            }
        }
    }
}

/// A system's name for `--systems`.
enum SystemName: String, CaseIterable, ExpressibleByArgument {
    case managed, pthread, foundation
}

enum OutputFormat: String, CaseIterable, ExpressibleByArgument {
    case table, json, csv
}

extension Scenario: ExpressibleByArgument {}
extension Workload: ExpressibleByArgument {}
// Logger.Level is a String-backed CaseIterable enum from swift-log; this module only parses it.
extension Logger.Level: @retroactive ExpressibleByArgument {}
extension StuckMode: ExpressibleByArgument {}
extension StackChoice: ExpressibleByArgument {}
extension GroupShape: ExpressibleByArgument {}

/// A comma-separated list option: `--threads 10,100,1000`.
struct ListArgument<Element: ExpressibleByArgument>: ExpressibleByArgument {
    var values: [Element]

    init?(argument: String) {
        var values: [Element] = []
        for part in argument.split(separator: ",") {
            guard let value = Element(argument: part.trimmingCharacters(in: .whitespaces)) else { return nil }
            values.append(value)
        }
        guard !values.isEmpty else { return nil }
        self.values = values
    }
}

/// A byte count with an optional K, M or G suffix (powers of 1024): `65536`, `64K`, `8M`.
struct ByteCount: ExpressibleByArgument {
    var bytes: Int

    init?(argument: String) {
        var text = argument.uppercased()
        var scale = 1
        if text.hasSuffix("B") { text.removeLast() }
        if text.hasSuffix("I") { text.removeLast() }
        switch text.last {
        case "K": scale = 1024
        case "M": scale = 1024 * 1024
        case "G": scale = 1024 * 1024 * 1024
        default: break
        }
        if scale > 1 { text.removeLast() }
        guard let value = Int(text), value > 0 else { return nil }
        bytes = value * scale
    }
}
