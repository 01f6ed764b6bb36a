// Text output for people: an aligned table, and CSV for spreadsheets.

/// Human-readable values.
enum Format {
    /// A latency in adaptive units: `850 ns`, `12.3 µs`, `4.56 ms`, `1.23 s`.
    static func nanoseconds(_ value: Int64) -> String {
        let magnitude = abs(Double(value))
        let sign = value < 0 ? "-" : ""
        switch magnitude {
        case ..<1_000: return "\(value) ns"
        case ..<1_000_000: return sign + fixed(magnitude / 1e3) + " µs"
        case ..<1_000_000_000: return sign + fixed(magnitude / 1e6) + " ms"
        default: return sign + fixed(magnitude / 1e9) + " s"
        }
    }

    /// A byte count: `812 B`, `8.25 KiB`, `1.50 MiB`.
    static func bytes(_ value: Int64) -> String {
        let magnitude = abs(Double(value))
        let sign = value < 0 ? "-" : ""
        switch magnitude {
        case ..<1024: return "\(value) B"
        case ..<(1024 * 1024): return sign + fixed(magnitude / 1024) + " KiB"
        default: return sign + fixed(magnitude / 1024 / 1024) + " MiB"
        }
    }

    /// `value` in the measurement's unit.
    static func value(_ value: Int64, unit: String) -> String {
        unit == "bytes" ? bytes(value) : nanoseconds(value)
    }

    /// Three significant digits: 1.23, 12.3, 123.
    static func fixed(_ value: Double) -> String {
        let digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
        return decimal(value, digits: digits)
    }

    /// `value` with exactly `digits` decimals (no Foundation formatting, no locale).
    static func decimal(_ value: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e15 else { return "\(value)" }
        let whole = Int64(scaled) / Int64(scale)
        let fraction = Int64(scaled) % Int64(scale)
        var text = (value < 0 && scaled != 0 ? "-" : "") + String(whole)
        if digits > 0 {
            let padded = String(fraction)
            text += "." + String(repeating: "0", count: digits - padded.count) + padded
        }
        return text
    }

    /// A ratio to the baseline: `0.83`.
    static func ratio(_ value: Double?) -> String {
        guard let value else { return "-" }
        return decimal(value, digits: 2)
    }
}

/// The aligned table printed by default.
enum TableOutput {
    static let header = ["scenario", "workload", "threads", "hogs", "system/config", "n", "median", "p90", "p99", "max", "ratio"]

    static func render(_ report: RunReport) -> String {
        var rows: [[String]] = []
        for m in report.measurements {
            rows.append([
                m.scenario, m.workload, String(m.threads), String(m.hogs), m.system, String(m.n),
                Format.value(m.median, unit: m.unit), Format.value(m.p90, unit: m.unit),
                // Below 100 samples the p99 is just one of the largest: not shown (CSV/JSON keep it).
                m.n >= 100 ? Format.value(m.p99, unit: m.unit) : "-", Format.value(m.max, unit: m.unit), Format.ratio(m.ratio),
            ])
        }
        let machine = report.machine
        var lines = [
            "threadbench: \(machine.cores) cores\(machine.cpu.map { " (\($0))" } ?? ""), Linux \(machine.kernel), "
                + "Swift \(machine.swift); \(Format.decimal(report.elapsedSeconds, digits: 1)) s",
            "ratio = median / median of the raw pthread baseline in the same rounds. spawn*: per thread; "
                + "shutdown: stop requested → all gone; stuck: overshoot past the deadline (no ratio); "
                + "memory: RSS per idle thread; churn: RSS growth (no ratio); executor: ratio to NIOThreadPool. p99 shown from 100 samples.",
            "",
        ]
        let headlines = headlines(report.measurements)
        if !headlines.isEmpty {
            lines += headlines
            lines.append("")
        }
        lines += aligned([header] + rows, rightAligned: Set(2..<header.count), separatorAfterFirst: true)
        let notes = report.measurements.flatMap { m in (m.notes ?? []).map { "\(m.scenario) \(m.workload) T=\(m.threads) L=\(m.hogs) \(m.system): \($0)" } }
            + report.notes
        if !notes.isEmpty {
            lines.append("")
            lines.append("notes:")
            lines += notes.map { "  - \($0)" }
        }
        return lines.joined(separator: "\n")
    }

    /// One line per scenario, before the detail: the managed rows' worst figure and where it was.
    static func headlines(_ measurements: [Measurement]) -> [String] {
        var lines: [String] = []
        var scenarios: [String] = []
        for m in measurements where !scenarios.contains(m.scenario) { scenarios.append(m.scenario) }
        for scenario in scenarios {
            let rows = measurements.filter { $0.scenario == scenario }
            let managed = rows.filter { $0.system.hasPrefix("managed") }
            func at(_ m: Measurement) -> String { "\(m.system), \(m.workload), T=\(m.threads), L=\(m.hogs)" }
            switch scenario {
            case Scenario.stuck.rawValue, Scenario.report.rawValue:
                guard let worst = managed.max(by: { $0.p99 < $1.p99 }) else { continue }
                let figure = worst.n >= 100 ? "p99 \(Format.nanoseconds(worst.p99))" : "max \(Format.nanoseconds(worst.max)) (n < 100)"
                lines.append("\(scenario): worst managed overshoot past the deadline: \(figure) (\(at(worst)))")
            case Scenario.churn.rawValue:
                let parts = rows.map { "\($0.system) \($0.median >= 0 ? "+" : "")\(Format.bytes($0.median))" }
                lines.append("churn: RSS growth over \(rows.first?.threads ?? 0) threads: \(parts.joined(separator: ", "))")
            default:
                let rated = managed.filter { $0.ratio != nil }
                guard let worst = rated.max(by: { $0.ratio! < $1.ratio! }), let best = rated.min(by: { $0.ratio! < $1.ratio! }) else { continue }
                lines.append(
                    "\(scenario): managed/\(scenario == Scenario.executor.rawValue ? "nio" : "pthread") median ratio: worst \(Format.ratio(worst.ratio)) (\(at(worst))), "
                        + "best \(Format.ratio(best.ratio)) over \(rated.count) rows")
            }
        }
        return lines
    }

    /// Pads every column to its widest cell.
    static func aligned(_ rows: [[String]], rightAligned: Set<Int>, separatorAfterFirst: Bool) -> [String] {
        guard let columns = rows.map(\.count).max() else { return [] }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        var lines: [String] = []
        for (r, row) in rows.enumerated() {
            let cells = row.enumerated().map { i, cell -> String in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return rightAligned.contains(i) ? pad + cell : cell + pad
            }
            lines.append(cells.joined(separator: "  ").trimmingTrailingSpaces())
            if r == 0 && separatorAfterFirst {
                lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  "))
            }
        }
        return lines
    }
}

/// Comma-separated values, one line per measurement, raw numbers (ns or bytes).
enum CSVOutput {
    static func render(_ report: RunReport) -> String {
        var lines = ["scenario,workload,threads,hogs,system,unit,n,min,median,p90,p99,max,mean,ratio,notes"]
        for m in report.measurements {
            let fields: [String] = [
                m.scenario, m.workload, String(m.threads), String(m.hogs), m.system, m.unit, String(m.n),
                String(m.min), String(m.median), String(m.p90), String(m.p99), String(m.max),
                Format.decimal(m.mean, digits: 1), m.ratio.map { Format.decimal($0, digits: 4) } ?? "",
                (m.notes ?? []).joined(separator: "; "),
            ]
            lines.append(fields.map(escape).joined(separator: ","))
        }
        return lines.joined(separator: "\n")
    }

    private static func escape(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return field }
        return "\"" + field.replacingAll("\"", with: "\"\"") + "\""
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }

    func replacingAll(_ target: Character, with replacement: String) -> String {
        var result = ""
        for character in self {
            if character == target { result += replacement } else { result.append(character) }
        }
        return result
    }
}
