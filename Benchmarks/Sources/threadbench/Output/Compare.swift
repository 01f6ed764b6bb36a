// `--compare FILE`: the change of every measurement that also appears in a saved JSON run.

enum CompareOutput {
    static func render(current: RunReport, previous: RunReport, path: String) -> String {
        let old = Dictionary(previous.measurements.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        var rows = [["scenario", "workload", "threads", "hogs", "system/config", "old median", "new median", "change", "old ratio", "new ratio"]]
        var unmatched = 0
        for m in current.measurements {
            guard let before = old[m.key] else {
                unmatched += 1
                continue
            }
            let change: String
            if before.median != 0 {
                let percent = (Double(m.median) - Double(before.median)) / Double(abs(before.median)) * 100
                change = (percent >= 0 ? "+" : "") + Format.decimal(percent, digits: 1) + "%"
            } else {
                change = "-"
            }
            rows.append([
                m.scenario, m.workload, String(m.threads), String(m.hogs), m.system,
                Format.value(before.median, unit: before.unit), Format.value(m.median, unit: m.unit), change,
                Format.ratio(before.ratio), Format.ratio(m.ratio),
            ])
        }
        var lines = [
            "compared with \(path) (\(previous.machine.date), Linux \(previous.machine.kernel), \(previous.machine.cores) cores):",
            "",
        ]
        if rows.count == 1 {
            lines.append("no measurement of this run appears in \(path)")
        } else {
            lines += TableOutput.aligned(rows, rightAligned: Set(2..<rows[0].count), separatorAfterFirst: true)
        }
        if unmatched > 0 { lines.append("(\(unmatched) measurements of this run are not in \(path))") }
        return lines.joined(separator: "\n")
    }
}
