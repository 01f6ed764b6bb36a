// Distributions: an HDR histogram per measurement (3 significant digits), plus the exact extremes.
import Histogram

/// The samples of one measurement: latencies in nanoseconds, or bytes.
struct Distribution {
    private var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 1 << 44, numberOfSignificantValueDigits: .three)
    private(set) var count = 0
    private(set) var minimum = Int64.max
    private(set) var maximum = Int64.min
    private var sum: Double = 0
    /// Samples below zero (a stuck shutdown that returned before its deadline; a memory delta).
    /// The histogram cannot hold them, so a distribution with any is summarised from `samples`.
    private(set) var negatives = 0
    private var samples: [Int64] = []

    mutating func record(_ value: Int64) {
        count += 1
        minimum = min(minimum, value)
        maximum = max(maximum, value)
        sum += Double(value)
        if value < 0 { negatives += 1 }
        samples.append(value)
        let clamped = UInt64(max(0, min(value, Int64(histogram.highestTrackableValue))))
        histogram.record(clamped)
    }

    mutating func record(_ values: [Int64]) {
        for value in values { record(value) }
    }

    /// The value at `percentile` (0–100), within the histogram's precision.
    func percentile(_ percentile: Double) -> Int64 {
        guard count > 0 else { return 0 }
        if percentile >= 100 { return maximum }
        if negatives > 0 {
            // Exact nearest-rank percentile over the raw samples.
            let sorted = samples.sorted()
            let rank = Int((percentile / 100 * Double(sorted.count)).rounded(.up))
            return sorted[min(max(rank, 1), sorted.count) - 1]
        }
        // The histogram answers with the top of a bucket; never report beyond what was seen.
        return min(Int64(histogram.valueAtPercentile(percentile)), maximum)
    }

    var mean: Double { count == 0 ? 0 : sum / Double(count) }

    /// The summary that goes into the report.
    var summary: Summary {
        Summary(
            n: count, min: count > 0 ? minimum : 0, median: percentile(50), p90: percentile(90),
            p99: percentile(99), max: count > 0 ? maximum : 0, mean: mean)
    }
}

/// Order statistics of a distribution.
struct Summary: Codable, Hashable {
    var n: Int
    var min: Int64
    var median: Int64
    var p90: Int64
    var p99: Int64
    var max: Int64
    var mean: Double
}
