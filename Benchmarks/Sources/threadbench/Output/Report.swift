// The result model: what the JSON holds, and what the table, CSV, SVG and comparison read.
import Foundation

/// One measured configuration: a scenario and workload at a thread count and background load,
/// for one system, summarised over all rounds.
struct Measurement: Codable, Hashable {
    /// `spawn`, `spawnstop`, `shutdown`, `stuck` or `memory`.
    var scenario: String
    /// What the threads do (`idle`, `io`, `cpu`, `tick`; `trivial`/`blocked` for the spawn
    /// scenarios; `S stuck/spin` for `stuck`).
    var workload: String
    /// Threads per run (1 for the spawn scenarios, which run one at a time).
    var threads: Int
    /// CPU hogs running during the timed section.
    var hogs: Int
    /// `system/config`, e.g. `managed/futex`, `pthread`, `foundation`.
    var system: String
    /// `ns` for latencies (per operation for spawn/spawnstop, per run for shutdown, overshoot past
    /// the deadline for stuck), `bytes` for memory (resident bytes per thread).
    var unit: String
    var n: Int
    var min: Int64
    var median: Int64
    var p90: Int64
    var p99: Int64
    var max: Int64
    var mean: Double
    /// median(system) / median(raw pthread baseline) from the same rounds; 1 for the baseline.
    var ratio: Double?
    /// Anything a reader needs to trust the figure (failures, stuck threads not named, …).
    var notes: [String]?

    init(point: Point, system: SystemID, unit: String, summary: Summary, ratio: Double?, notes: [String]?) {
        scenario = point.scenario.rawValue
        workload = point.workload
        threads = point.threads
        hogs = point.hogs
        self.system = system.description
        self.unit = unit
        n = summary.n
        min = summary.min
        median = summary.median
        p90 = summary.p90
        p99 = summary.p99
        max = summary.max
        mean = summary.mean
        self.ratio = ratio
        self.notes = notes
    }

    /// What identifies the same measurement in another run.
    var key: String { "\(scenario)|\(workload)|\(threads)|\(hogs)|\(system)" }
}

/// The machine and toolchain a run was taken on.
struct MachineInfo: Codable, Hashable {
    var cores: Int
    var kernel: String
    var swift: String
    var cpu: String?
    var pageSize: Int
    /// glibc's default thread stack (RLIMIT_STACK), in bytes.
    var defaultStackBytes: Int?
    var date: String

    static func current() -> MachineInfo {
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: names.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_STACK.rawValue), &limit)
        let stack = limit.rlim_cur >= rlim_t(Int.max) ? nil : Int(limit.rlim_cur)
        return MachineInfo(
            cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), kernel: release, swift: swiftVersion,
            cpu: cpuModel(), pageSize: Int(sysconf(Int32(_SC_PAGESIZE))), defaultStackBytes: stack,
            date: ISO8601DateFormatter().string(from: Date()))
    }

    /// The compiler that built this binary (checked at compile time; no shelling out).
    static var swiftVersion: String {
        #if compiler(>=7.0)
        return ">=7.0"
        #elseif compiler(>=6.4)
        return "6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "<6.1"
        #endif
    }

    private static func cpuModel() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }
}

/// A whole run: the machine, what was asked, every measurement, and run-wide notes.
struct RunReport: Codable {
    var machine: MachineInfo
    /// The command line's settings, for the record.
    var settings: [String: String]
    /// Wall-clock time of the run, in seconds.
    var elapsedSeconds: Double
    var measurements: [Measurement]
    var notes: [String]

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    static func load(from path: String) throws -> RunReport {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(RunReport.self, from: data)
    }
}
