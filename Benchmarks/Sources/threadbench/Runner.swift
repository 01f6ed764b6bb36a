// Round-robin measurement: in round r every system runs once, in a fixed order, before round
// r + 1 starts, so drift and noise (thermal, page cache, other tenants) hit every system alike.
import Glibc

/// The scenarios threadbench knows.
enum Scenario: String, CaseIterable, Sendable {
    case spawn, spawnstop, shutdown, stuck, memory, churn, executor, report

    /// Whether a ratio to the baseline means anything: not for an overshoot (it can be negative,
    /// or zero for the baseline) nor for a memory growth that should be near zero for both.
    var hasRatio: Bool { self != .stuck && self != .churn && self != .report }
}

/// One row group of the report: everything but the system.
struct Point: Hashable, CustomStringConvertible {
    var scenario: Scenario
    var workload: String
    var threads: Int
    var hogs: Int

    var description: String { "\(scenario.rawValue) \(workload) T=\(threads) L=\(hogs)" }
}

/// Runs points and collects their measurements.
final class Runner {
    private let progress: Progress
    private(set) var measurements: [Measurement] = []
    /// Run-wide notes: failures, skipped points.
    var notes: [String] = []
    private let totalPoints: Int
    private var pointsDone = 0
    /// Which stacks the managed rows use.
    let stacks: StackChoice
    /// Group shapes the shutdown scenario measures the managed system in.
    var shapes: [GroupShape] = [.handles, .group]

    init(progress: Progress, totalPoints: Int, stacks: StackChoice) {
        self.progress = progress
        self.totalPoints = totalPoints
        self.stacks = stacks
    }

    /// Only these systems (`managed`, `pthread`, `foundation`), or all when nil: for profiling
    /// one system with perf or strace.
    var onlySystems: Set<String>?

    /// The systems a scenario lists, with the managed ones expanded to the chosen stack variants.
    func systems(_ ids: [SystemID]) -> [SystemID] {
        stacks.expand(ids).filter { onlySystems?.contains($0.system) ?? true }
    }

    /// Records that `point` was not run, and why.
    func skip(_ point: Point, because reason: String) {
        pointsDone += 1
        notes.append("skipped \(point): \(reason)")
    }

    /// Measures `point` for every system, `rounds` rounds, interleaved.
    /// - Parameters:
    ///   - unit: `ns` or `bytes`.
    ///   - sample: runs system `id` once (round `r`) and returns its samples.
    ///   - notes: per-system notes, asked once all rounds are done.
    func measure(
        _ point: Point, systems: [SystemID], rounds: Int, unit: String = "ns",
        sample: (_ id: SystemID, _ round: Int) throws -> [Int64],
        notes: (SystemID) -> [String] = { _ in [] }
    ) {
        pointsDone += 1
        let systems = self.systems(systems)
        var distributions = [SystemID: Distribution]()
        var trims = [SystemID: Distribution]()
        var failures = [SystemID: String]()
        for round in 0..<rounds {
            for id in systems where failures[id] == nil {
                progress.update("[\(pointsDone)/\(totalPoints)] \(point) · round \(round + 1)/\(rounds) · \(id)")
                do {
                    let values = try sample(id, round)
                    distributions[id, default: Distribution()].record(values)
                } catch {
                    failures[id] = "failed in round \(round + 1): \(error)"
                    self.notes.append("\(point) \(id) \(failures[id]!)")
                }
                if id.system == "managed" {
                    trims[id, default: Distribution()].record(ManagedSystem.settle())
                }
            }
        }
        let baseline = systems.first(where: \.isBaseline).flatMap { distributions[$0] }?.percentile(50)
        for id in systems {
            guard let distribution = distributions[id], distribution.count > 0 else { continue }
            let summary = distribution.summary
            var ratio: Double?
            if point.scenario.hasRatio, let baseline, baseline > 0 { ratio = Double(summary.median) / Double(baseline) }
            var rowNotes = notes(id)
            if let failure = failures[id] { rowNotes.append(failure) }
            if let trim = trims[id]?.percentile(50), trim >= 10_000 {
                rowNotes.append("afterwards, untimed: trimming the stack pool took median \(Format.nanoseconds(trim))")
            }
            if distribution.negatives > 0 {
                rowNotes.append("\(distribution.negatives) of \(distribution.count) samples negative (stuck: returned before the deadline; churn: memory given back); percentiles exact")
            }
            measurements.append(Measurement(
                point: point, system: id, unit: unit, summary: summary, ratio: ratio,
                notes: rowNotes.isEmpty ? nil : rowNotes))
        }
    }
}

/// A one-line progress display on stderr, rewritten in place with `\r` when stderr is a terminal;
/// otherwise (CI logs) one plain line per point.
final class Progress {
    private let interactive: Bool
    private let enabled: Bool
    private let start = ContinuousClock.now
    private var lastPoint = ""

    init(enabled: Bool) {
        self.enabled = enabled
        interactive = isatty(2) == 1
    }

    func update(_ text: String) {
        guard enabled else { return }
        let seconds = Double(start.nanosecondsSince) / 1e9
        let stamp = "\(Int(seconds))s"
        if interactive {
            write("\r\u{1B}[K[\(stamp)] \(text)")
        } else {
            let point = String(text.prefix { $0 != "·" })
            if point != lastPoint {
                lastPoint = point
                write("[\(stamp)] \(point)\n")
            }
        }
    }

    /// Clears the progress line.
    func finish() {
        if enabled && interactive { write("\r\u{1B}[K") }
    }

    private func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }
}
