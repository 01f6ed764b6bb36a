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

/// A drift-free periodic schedule on a `timerfd`, that ends as soon as stop is requested.
///
/// ```swift
/// for tick in try token.ticks(every: .milliseconds(100)) {
///     if tick.missed > 0 { log("fell behind by \(tick.missed) periods") }
///     doWork()
/// }   // the loop ends at once when stop is requested
/// ```
///
/// Unlike `while !stop { work(); wait(timeout: period) }`, the schedule does not slide by the time
/// `work()` takes: the kernel timer keeps the period and counts the expirations that were missed.
/// Waiting uses the token's futex, not a second descriptor; the ticker owns exactly one descriptor,
/// closed when the ticker is released or ``close()`` is called.
///
/// A ticker belongs to one thread: it is not `Sendable`.
public final class Ticker: Sequence, IteratorProtocol {
    private let state: StopState
    private var fd: Int32
    private var elapsed: UInt64 = 0

    /// The period.
    public let period: Duration

    #if DEBUG
    /// Debug builds only: runs between ``next()``'s empty read and its `timerfd_gettime`, with the
    /// descriptor, so a test can make the timer expire exactly there (the race it guards against).
    var afterEmptyRead: ((Int32) -> Void)?
    #endif

    /// The shortest period accepted: one microsecond.
    public static let minimumPeriod = Duration.microseconds(1)

    init(state: StopState, period: Duration) throws(ThreadError) {
        // Below a microsecond the kernel timer cannot keep up and the loop would spin at 100% CPU
        // without a single on-time tick; nothing real ticks that fast.
        guard period >= Ticker.minimumPeriod else {
            throw .invalidArgument("a ticker period must be at least \(Ticker.minimumPeriod), got \(period)")
        }
        self.state = state
        self.period = period
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

    /// The timer descriptor: readable when at least one period has elapsed. Put it in your own
    /// `poll` set beside ``StopToken/fileDescriptor``, then call ``poll()`` when it is readable.
    /// -1 after ``close()``.
    public var fileDescriptor: Int32 { fd }

    /// Releases the timer descriptor. Further ``next()`` calls return nil.
    public func close() {
        if fd >= 0 {
            closeDescriptor(fd)
            fd = -1
        }
    }

    /// Takes the elapsed periods without blocking: a tick if at least one period elapsed since the
    /// last one, nil otherwise (or after ``close()``).
    public func poll() -> Tick? {
        guard fd >= 0 else { return nil }
        let count: UInt64
        do {
            count = try TimerFD.expirations(fd)
        } catch {
            // read on our own non-blocking timerfd fails only with EAGAIN (handled) or a bug.
            preconditionFailure("reading the ticker's timerfd failed: \(error)")
        }
        guard count > 0 else { return nil }
        elapsed += count
        return Tick(index: elapsed, missed: count - 1)
    }

    /// Blocks until the next period elapses and returns its tick, or returns nil as soon as stop
    /// is requested (or after ``close()``).
    public func next() -> Tick? {
        while fd >= 0 {
            if state.isStopRequested {
                state.noteObserved()
                return nil
            }
            if let tick = poll() { return tick }
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
    /// The corresponding C functions are `timerfd_create` and `timerfd_settime`.
    /// - Parameter period: the interval between ticks; at least ``Ticker/minimumPeriod`` (1 µs).
    /// - Throws: ``ThreadError`` for a shorter period or when the timer cannot be created
    ///   (EMFILE, ENFILE, ENOMEM).
    public func ticks(every period: Duration) throws(ThreadError) -> Ticker {
        try Ticker(state: state, period: period)
    }
}
