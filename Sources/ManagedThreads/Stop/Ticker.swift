#if canImport(Glibc)
import Glibc
#endif

/// One period of a ``Ticker``.
public struct Tick: Sendable, Hashable {
    /// The number of periods elapsed since the ticker started, counting missed ones (1 for the first).
    public let index: UInt64
    /// Periods that elapsed without a tick being taken since the previous tick (0 when on time).
    public let missed: UInt64
}

/// A drift-free periodic schedule that ends as soon as stop is requested.
///
/// ```swift
/// for tick in try token.ticks(every: .milliseconds(100)) {
///     if tick.missed > 0 { log("fell behind by \(tick.missed) periods") }
///     doWork()
/// }   // the loop ends at once when stop is requested
/// ```
///
/// Unlike `while !stop { work(); wait(timeout: period) }`, the schedule does not slide by the time
/// `work()` takes: tick *n* is due at start + *n* × period, and periods that passed without a tick
/// being taken are counted as missed.
///
/// Two kinds, chosen at creation:
/// - ``StopToken/ticks(every:pollable:)`` with `pollable: false` (the default) needs no
///   descriptor: due times are computed on `ContinuousClock`, and the wait is the token's futex
///   wait until the next one (a stop wakes it at once). 10,000 threads can each run one under
///   the default 1,024-descriptor limit.
/// - With `pollable: true` the schedule is a `timerfd` (``fileDescriptor``), for bodies that put
///   it in their own `poll` set beside ``StopToken/fileDescriptor``; the kernel timer keeps the
///   period and counts expirations. The descriptor is closed when the ticker is released or
///   ``close()`` is called.
///
/// A ticker belongs to one thread: it is not `Sendable`.
public final class Ticker: Sequence, IteratorProtocol {
    private let state: StopState
    /// The timerfd of a pollable ticker; -1 for a clock ticker, or after ``close()``.
    private var fd: Int32
    private let pollable: Bool
    private var closed = false
    private var elapsed: UInt64 = 0
    /// A clock ticker's start, and its period in nanoseconds.
    private let start: ContinuousClock.Instant
    private let periodNanoseconds: Int64

    /// The period.
    public let period: Duration

    #if DEBUG
    /// Debug builds only: runs between ``next()``'s empty read and its `timerfd_gettime`, with the
    /// descriptor, so a test can make the timer expire exactly there (the race it guards against).
    var afterEmptyRead: ((Int32) -> Void)?
    #endif

    /// The shortest period accepted: one microsecond.
    public static let minimumPeriod = Duration.microseconds(1)

    init(state: StopState, period: Duration, pollable: Bool) throws(ThreadError) {
        // Below a microsecond the kernel timer cannot keep up and the loop would spin at 100% CPU
        // without a single on-time tick; nothing real ticks that fast.
        guard period >= Ticker.minimumPeriod else {
            throw .invalidArgument("a ticker period must be at least \(Ticker.minimumPeriod), got \(period)")
        }
        self.state = state
        self.period = period
        self.pollable = pollable
        self.periodNanoseconds = period.nanosecondsClamped
        self.start = .now
        guard pollable else {
            fd = -1
            return
        }
        fd = try TimerFD.create()
        do {
            try TimerFD.arm(fd, initial: period, interval: period)
        } catch {
            // Every stored property is set, so deinit will run too: close() marks the fd gone.
            close()
            throw error
        }
    }

    deinit { close() }

    /// A pollable ticker's timer descriptor: readable when at least one period has elapsed. Put it
    /// in your own `poll` set beside ``StopToken/fileDescriptor``, then call ``poll()`` when it is
    /// readable. -1 for a ticker made without `pollable: true`, and after ``close()``.
    public var fileDescriptor: Int32 { fd }

    /// Ends the schedule (and releases a pollable ticker's descriptor). Further ``next()`` and
    /// ``poll()`` calls return nil.
    public func close() {
        closed = true
        if fd >= 0 {
            closeDescriptor(fd)
            fd = -1
        }
    }

    /// Takes the elapsed periods without blocking: a tick if at least one period elapsed since the
    /// last one, nil otherwise (or after ``close()``).
    public func poll() -> Tick? {
        guard !closed else { return nil }
        let count: UInt64
        if pollable {
            do {
                count = try TimerFD.expirations(fd)
            } catch {
                // read on our own non-blocking timerfd fails only with EAGAIN (handled) or a bug.
                preconditionFailure("reading the ticker's timerfd failed: \(error)")
            }
        } else {
            // Periods due by now, counted from the start: no drift, however late the reads.
            let due = UInt64(Swift.max(0, start.duration(to: .now).nanosecondsClamped / periodNanoseconds))
            count = due > elapsed ? due - elapsed : 0
        }
        guard count > 0 else { return nil }
        elapsed += count
        return Tick(index: elapsed, missed: count - 1)
    }

    /// When the next tick of a clock ticker is due.
    private var nextDue: ContinuousClock.Instant {
        let (product, overflow) = Int64(clamping: elapsed + 1).multipliedReportingOverflow(by: periodNanoseconds)
        return start.advanced(by: overflow ? Duration.farthest : .nanoseconds(product))
    }

    /// Blocks until the next period elapses and returns its tick, or returns nil as soon as stop
    /// is requested (or after ``close()``).
    public func next() -> Tick? {
        while !closed {
            if state.isStopRequested {
                state.noteObserved()
                return nil
            }
            if let tick = poll() { return tick }
            guard pollable else {
                // The token's futex wait until the tick is due; a stop wakes it at once.
                _ = state.wait(until: nextDue)
                continue
            }
            #if DEBUG
            afterEmptyRead?(fd)
            #endif
            let remaining: Duration
            do {
                remaining = try TimerFD.remaining(fd)
            } catch {
                preconditionFailure("timerfd_gettime on the ticker's timerfd failed: \(error)")
            }
            // The timer may have expired between the empty read and timerfd_gettime, which then
            // reports the time to the expiry after: read once more, or the banked tick would be
            // slept through and reported a period late as missed. If it expires after this read,
            // `remaining` was measured before that expiry and is right.
            if let tick = poll() { return tick }
            // Sleep on the token's futex until the expiry; a stop wakes us at once.
            _ = state.wait(until: .now.advanced(by: remaining))
        }
        return nil
    }
}

extension StopToken {
    /// A drift-free periodic schedule that ends when stop is requested; see ``Ticker``.
    /// - Parameters:
    ///   - period: the interval between ticks; at least ``Ticker/minimumPeriod`` (1 µs).
    ///   - pollable: false (the default): no descriptor, due times on `ContinuousClock`. True: a
    ///     `timerfd` (``Ticker/fileDescriptor``) to put in your own `poll` set; the corresponding C
    ///     functions are `timerfd_create` and `timerfd_settime`.
    /// - Throws: ``ThreadError`` for a shorter period; for a pollable ticker, also when the timer
    ///   cannot be created (EMFILE, ENFILE, ENOMEM).
    public func ticks(every period: Duration, pollable: Bool = false) throws(ThreadError) -> Ticker {
        try Ticker(state: state, period: period, pollable: pollable)
    }
}
