#if canImport(Glibc)
import Glibc
#endif

extension Duration {
    /// The longest duration the library converts for the kernel or a report: as many seconds as
    /// fit Int64 nanoseconds (about 292 years). Anything longer means "no real limit" and is
    /// treated as this, so no conversion can trap (`components` traps beyond Int64 seconds, a
    /// deadline `.now + .seconds(.max) + .seconds(.max)` away) or overflow.
    static let farthest = Duration.seconds(Int64.max / 1_000_000_000)

    /// The duration clamped to ±``farthest``: every conversion to C time or to integers starts here.
    var saturated: Duration { min(max(self, .zero - Self.farthest), Self.farthest) }

    /// `components` of the ``saturated`` duration.
    var saturatedComponents: (seconds: Int64, attoseconds: Int64) { saturated.components }

    /// The duration as a `timespec`, clamped at zero (negative durations mean "already due").
    var timespec: timespec {
        let (seconds, attoseconds) = saturatedComponents
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) {
            return Glibc.timespec(tv_sec: 0, tv_nsec: 0)
        }
        return Glibc.timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
    }

    init(_ ts: timespec) {
        self = .seconds(ts.tv_sec) + .nanoseconds(ts.tv_nsec)
    }

    /// Whole milliseconds, rounded up, for `poll`; nil means "no timeout". Clamped to Int32.
    var pollMilliseconds: Int32 {
        let (seconds, attoseconds) = saturatedComponents
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let ms = seconds.multipliedReportingOverflow(by: 1000)
        if ms.overflow { return Int32.max }
        let extra = (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        let total = ms.partialValue.addingReportingOverflow(extra)
        return total.overflow || total.partialValue > Int64(Int32.max) ? Int32.max : Int32(total.partialValue)
    }
}

/// Converts a deadline into the absolute CLOCK_MONOTONIC time `pthread_clockjoin_np` wants, by
/// adding what remains to "now" on that clock. Saturates instead of overflowing.
func monotonicDeadline(for deadline: ContinuousClock.Instant) -> timespec {
    let remaining = ContinuousClock.now.duration(to: deadline)
    var now = Glibc.timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    var ts = remaining.timespec
    let (sum, overflow) = ts.tv_sec.addingReportingOverflow(now.tv_sec)
    if overflow { return Glibc.timespec(tv_sec: Int.max, tv_nsec: 999_999_999) }
    ts.tv_sec = sum
    ts.tv_nsec += now.tv_nsec
    if ts.tv_nsec >= 1_000_000_000 {
        if ts.tv_sec == Int.max { return Glibc.timespec(tv_sec: Int.max, tv_nsec: 999_999_999) }
        ts.tv_sec += 1
        ts.tv_nsec -= 1_000_000_000
    }
    return ts
}

extension ContinuousClock.Instant {
    /// Now plus `timeout`, saturating: timeouts beyond a century mean "a century" rather than an
    /// arithmetic trap (`.seconds(.max)` is a legitimate way to say "no real limit").
    static func after(_ timeout: Duration) -> ContinuousClock.Instant {
        let century = Duration.seconds(100 * 365 * 24 * 3600)
        return ContinuousClock.now.advanced(by: min(max(timeout, .zero - century), century))
    }
}
