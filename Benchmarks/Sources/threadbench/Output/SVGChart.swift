// A hand-written SVG chart: median latency against thread count, one panel per scenario and
// workload, one line per system configuration and background load. The thread axis is logarithmic;
// the time axis too, except in panels with values at or below zero (a stuck shutdown's overshoot is
// negative when it returned before its deadline), which are linear. Every system has its own colour.
import Foundation

enum SVGChart {
    private static let panelWidth = 460.0
    private static let panelHeight = 300.0
    private static let margin = (left: 70.0, right: 16.0, top: 34.0, bottom: 44.0)
    private static let columns = 2
    private static let palette = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
        "#bcbd22", "#393b79", "#ad494a", "#637939",
    ]

    /// The colour of the `index`th system: the palette, then hues spread by the golden angle.
    private static func color(_ index: Int) -> String {
        if index < palette.count { return palette[index] }
        let hue = (Double(index - palette.count) * 137.508).truncatingRemainder(dividingBy: 360)
        return "hsl(\(Int(hue)), 65%, 40%)"
    }
    private static let dashes = ["", "7 4", "2 3", "10 3 2 3"]

    /// A series: one system configuration at one background load.
    private struct Series {
        var system: String
        var hogs: Int
        var points: [(threads: Int, median: Int64)]
    }

    private struct Panel {
        var title: String
        var series: [Series]
    }

    static func render(_ report: RunReport) -> String {
        // Latency measurements whose thread count varies by design (not the one-at-a-time spawns).
        let rows = report.measurements.filter { $0.unit == "ns" && $0.scenario != "spawn" && $0.scenario != "spawnstop" }
        var panels: [Panel] = []
        var panelIndex: [String: Int] = [:]
        var systems: [String] = []
        var hogLevels = Set<Int>()
        for row in rows {
            let title = "\(row.scenario) · \(row.workload)" + (row.scenario == "stuck" ? " (overshoot)" : "")
            if panelIndex[title] == nil {
                panelIndex[title] = panels.count
                panels.append(Panel(title: title, series: []))
            }
            let p = panelIndex[title]!
            if !systems.contains(row.system) { systems.append(row.system) }
            hogLevels.insert(row.hogs)
            if let s = panels[p].series.firstIndex(where: { $0.system == row.system && $0.hogs == row.hogs }) {
                panels[p].series[s].points.append((row.threads, row.median))
            } else {
                panels[p].series.append(Series(system: row.system, hogs: row.hogs, points: [(row.threads, row.median)]))
            }
        }
        let rowsOfPanels = max(1, (panels.count + columns - 1) / columns)
        let legendHeight = 30.0 + 18.0 * Double((systems.count + 3) / 4) + 18.0
        let width = panelWidth * Double(columns)
        let height = 40.0 + panelHeight * Double(rowsOfPanels) + legendHeight
        var svg = [
            #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(n(width))" height="\#(n(height))" viewBox="0 0 \#(n(width)) \#(n(height))" font-family="sans-serif" font-size="11">"#,
            #"<rect width="100%" height="100%" fill="white"/>"#,
            #"<text x="\#(n(width / 2))" y="22" text-anchor="middle" font-size="15">threadbench: median time vs threads (\#(escape(report.machine.kernel)), \#(report.machine.cores) cores)</text>"#,
        ]
        if panels.isEmpty {
            svg.append(#"<text x="\#(n(width / 2))" y="\#(n(height / 2))" text-anchor="middle">no shutdown or stuck measurements in this run</text>"#)
        }
        for (i, panel) in panels.enumerated() {
            let x = panelWidth * Double(i % columns)
            let y = 40.0 + panelHeight * Double(i / columns)
            svg += draw(panel, x: x, y: y, systems: systems)
        }
        svg += legend(systems: systems, hogs: hogLevels.sorted(), y: 40.0 + panelHeight * Double(rowsOfPanels) + 10, width: width)
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    private static func draw(_ panel: Panel, x: Double, y: Double, systems: [String]) -> [String] {
        let allPoints = panel.series.flatMap(\.points)
        let threads = allPoints.map { Double(max(1, $0.threads)) }
        let linear = allPoints.contains { $0.median <= 0 }
        let values = allPoints.map { linear ? Double($0.median) : Double(max(1, $0.median)) }
        var xLow = floor(log10(threads.min() ?? 1)), xHigh = ceil(log10(threads.max() ?? 10))
        if xHigh <= xLow {
            if xLow > 0 { xLow -= 1 }
            xHigh += 1
        }
        var yLow: Double, yHigh: Double
        if linear {
            yLow = min(0, values.min() ?? 0)
            yHigh = max(0, values.max() ?? 1)
            if yHigh <= yLow { yHigh = yLow + 1 }
        } else {
            yLow = floor(log10(values.min() ?? 1))
            yHigh = ceil(log10(values.max() ?? 10))
            if yHigh <= yLow { yHigh = yLow + 1 }
        }
        let left = x + margin.left, right = x + panelWidth - margin.right
        let top = y + margin.top, bottom = y + panelHeight - margin.bottom
        func px(_ t: Double) -> Double { left + (log10(t) - xLow) / (xHigh - xLow) * (right - left) }
        func py(_ v: Double) -> Double {
            let position = linear ? (v - yLow) / (yHigh - yLow) : (log10(v) - yLow) / (yHigh - yLow)
            return bottom - position * (bottom - top)
        }

        var out = [
            #"<g>"#,
            #"<text x="\#(n((left + right) / 2))" y="\#(n(y + 20))" text-anchor="middle" font-size="13">\#(escape(panel.title))</text>"#,
            #"<rect x="\#(n(left))" y="\#(n(top))" width="\#(n(right - left))" height="\#(n(bottom - top))" fill="none" stroke="gray"/>"#,
        ]
        for decade in stride(from: xLow, through: xHigh, by: 1) {
            let gx = px(pow(10, decade))
            out.append(#"<line x1="\#(n(gx))" y1="\#(n(top))" x2="\#(n(gx))" y2="\#(n(bottom))" stroke="gainsboro"/>"#)
            out.append(#"<text x="\#(n(gx))" y="\#(n(bottom + 15))" text-anchor="middle">\#(countLabel(pow(10, decade)))</text>"#)
        }
        let ticks = linear
            ? (0...4).map { yLow + (yHigh - yLow) * Double($0) / 4 }
            : stride(from: yLow, through: yHigh, by: 1).map { pow(10, $0) }
        for tick in ticks {
            let gy = py(tick)
            let label = linear ? Format.nanoseconds(Int64(tick.rounded())) : durationLabel(tick)
            out.append(#"<line x1="\#(n(left))" y1="\#(n(gy))" x2="\#(n(right))" y2="\#(n(gy))" stroke="\#(linear && tick == 0 ? "gray" : "gainsboro")"/>"#)
            out.append(#"<text x="\#(n(left - 5))" y="\#(n(gy + 4))" text-anchor="end">\#(label)</text>"#)
        }
        out.append(#"<text x="\#(n((left + right) / 2))" y="\#(n(bottom + 32))" text-anchor="middle">threads (log)</text>"#)
        for series in panel.series {
            let color = color(systems.firstIndex(of: series.system) ?? 0)
            let dash = dashes[min(series.hogs, dashes.count - 1)]
            let points = series.points.sorted { $0.threads < $1.threads }
                .map { (px(Double(max(1, $0.threads))), py(linear ? Double($0.median) : Double(max(1, $0.median)))) }
            if points.count > 1 {
                let path = points.map { "\(n($0.0)),\(n($0.1))" }.joined(separator: " ")
                out.append(#"<polyline points="\#(path)" fill="none" stroke="\#(color)" stroke-width="1.8"\#(dashAttribute(dash))/>"#)
            }
            for (cx, cy) in points {
                out.append(marker(hogs: series.hogs, x: cx, y: cy, color: color, tooltip: "\(series.system) L=\(series.hogs)"))
            }
        }
        out.append("</g>")
        return out
    }

    private static func legend(systems: [String], hogs: [Int], y: Double, width: Double) -> [String] {
        var out: [String] = []
        for (i, system) in systems.enumerated() {
            let lx = 20.0 + Double(i % 4) * (width - 40) / 4
            let ly = y + 18.0 * Double(i / 4)
            out.append(#"<line x1="\#(n(lx))" y1="\#(n(ly))" x2="\#(n(lx + 24))" y2="\#(n(ly))" stroke="\#(color(i))" stroke-width="3"/>"#)
            out.append(#"<text x="\#(n(lx + 30))" y="\#(n(ly + 4))">\#(escape(system))</text>"#)
        }
        let hy = y + 18.0 * Double((systems.count + 3) / 4) + 6
        for (i, level) in hogs.enumerated() {
            let lx = 20.0 + Double(i) * 150
            let dash = dashes[min(level, dashes.count - 1)]
            out.append(#"<line x1="\#(n(lx))" y1="\#(n(hy))" x2="\#(n(lx + 36))" y2="\#(n(hy))" stroke="dimgray" stroke-width="1.8"\#(dashAttribute(dash))/>"#)
            out.append(marker(hogs: level, x: lx + 18, y: hy, color: "dimgray", tooltip: nil))
            out.append(#"<text x="\#(n(lx + 42))" y="\#(n(hy + 4))">\#(level) CPU hog\#(level == 1 ? "" : "s")</text>"#)
        }
        return out
    }

    /// A point's marker: a circle without hogs, a square with one, a diamond with more.
    private static func marker(hogs: Int, x: Double, y: Double, color: String, tooltip: String?) -> String {
        let title = tooltip.map { "<title>\(escape($0))</title>" } ?? ""
        switch hogs {
        case 0:
            return #"<circle cx="\#(n(x))" cy="\#(n(y))" r="3.2" fill="\#(color)">\#(title)</circle>"#
        case 1:
            return #"<rect x="\#(n(x - 3))" y="\#(n(y - 3))" width="6" height="6" fill="\#(color)">\#(title)</rect>"#
        default:
            let points = "\(n(x)),\(n(y - 4.5)) \(n(x + 4.5)),\(n(y)) \(n(x)),\(n(y + 4.5)) \(n(x - 4.5)),\(n(y))"
            return #"<polygon points="\#(points)" fill="white" stroke="\#(color)" stroke-width="1.6">\#(title)</polygon>"#
        }
    }

    /// A power of ten nanoseconds as an axis label: `100 µs`, `1 s`.
    private static func durationLabel(_ nanoseconds: Double) -> String {
        let value = nanoseconds.rounded()
        switch value {
        case 1e9...: return "\(Int(value / 1e9)) s"
        case 1e6...: return "\(Int(value / 1e6)) ms"
        case 1e3...: return "\(Int(value / 1e3)) µs"
        default: return "\(Int(value)) ns"
        }
    }

    private static func countLabel(_ value: Double) -> String {
        value >= 1_000_000 ? "\(Int(value / 1_000_000))M" : value >= 1000 ? "\(Int(value / 1000))k" : "\(Int(value))"
    }

    private static func n(_ value: Double) -> String { Format.decimal(value, digits: 1) }

    private static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}

extension SVGChart {
    /// ` stroke-dasharray="…"`, or nothing for a solid line.
    fileprivate static func dashAttribute(_ dash: String) -> String {
        dash.isEmpty ? "" : " stroke-dasharray=\"\(dash)\""
    }
}
