import CShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a shutdown does, beyond asking, about threads that do not stop: the part of a
/// ``ShutdownPolicy`` that goes past cooperation. The default, ``cooperative``, only asks and
/// reports.
///
/// ```swift
/// // Half the budget to stop on their own; then SIGURG to each straggler, so a read() or
/// // accept() that does not watch the token returns EINTR; whoever is left is abandoned.
/// let policy = ShutdownPolicy.shared.escalating(.interrupt(then: .abandon))
/// let report = group.shutdown(timeout: .seconds(4), policy: policy)
/// ```
///
/// The interrupt step sends a dedicated signal (``defaultInterruptSignal``, SIGURG) with `tgkill`
/// to each thread still running that has not acknowledged the stop and holds no deadline
/// extension. The library installs a handler for it that lacks `SA_RESTART`, so the blocking
/// system call the thread sits in fails with `EINTR`; code that then checks its token ends. The
/// signal must be one the application does not use: if something else has installed an action
/// for it, or it is a ``ShutdownSignals`` signal, the step is skipped and an error is logged. It
/// is re-sent every 10 ms until the thread ends or the deadline comes (a signal that lands just
/// before the thread enters the call interrupts nothing), but never while an earlier copy is still
/// pending on the thread. Managed threads unblock the interrupt signal as they start; declare a
/// signal other than ``defaultInterruptSignal`` with ``reserveInterruptSignal(_:)`` before
/// starting threads.
public struct Escalation: Sendable, Hashable, CustomStringConvertible {
    /// What happens to threads still running at the deadline.
    public struct Final: Sendable, Hashable, CustomStringConvertible {
        enum Kind: String { case report, abandon, abort }
        let kind: Kind

        /// They are reported ``ShutdownReport/Status/stuck`` and stay the group's (the default).
        public static let report = Final(kind: .report)
        /// They are reported ``ShutdownReport/Status/abandoned`` (leaked on purpose): a later
        /// shutdown of a parent does not wait for them again, and their resources go back when
        /// they end on their own.
        public static let abandon = Final(kind: .abandon)
        /// The report goes to standard error and the logger (critical), then the process calls
        /// `abort()`: for supervisors that restart a process rather than let it limp on.
        public static let abort = Final(kind: .abort)

        /// `report`, `abandon` or `abort`.
        public var description: String { kind.rawValue }
    }

    /// The signal of the interrupt step, or nil for no interrupt step.
    public var interruptSignal: Int32?
    /// The share of the budget (0...1) threads get to stop on their own before the interrupt.
    public var cooperativeShare: Double
    /// What happens to threads still running at the deadline.
    public var final: Final

    /// Ask, wait, report: no signals, nothing abandoned.
    public static let cooperative = Escalation(interruptSignal: nil, cooperativeShare: 1, final: .report)

    /// The default interrupt signal: `SIGURG`, as Go's runtime uses for preemption. It does not
    /// queue (a thread that masks it holds one pending copy at most) and its default action is to
    /// be ignored, so a managed thread unblocking it can never end or disturb the process. Pick
    /// another with ``interrupt(signal:after:then:)`` and ``reserveInterruptSignal(_:)`` if your
    /// program uses SIGURG itself (out-of-band socket data with `F_SETOWN`).
    public static var defaultInterruptSignal: Int32 { SIGURG }

    /// An interrupt step after `share` of the budget, then `final`.
    /// - Parameters:
    ///   - signal: the signal sent to stuck threads; ``defaultInterruptSignal`` by default.
    ///   - share: the part of the budget (clamped to 0...1) before the interrupt.
    ///   - final: what happens to threads still running at the deadline.
    public static func interrupt(signal: Int32? = nil, after share: Double = 0.5, then final: Final = .report) -> Escalation {
        Escalation(interruptSignal: signal ?? defaultInterruptSignal, cooperativeShare: min(max(share, 0), 1), final: final)
    }

    /// No interrupt step; `final` at the deadline.
    public static func atDeadline(_ final: Final) -> Escalation {
        Escalation(interruptSignal: nil, cooperativeShare: 1, final: final)
    }

    /// `cooperative`, or the steps: `interrupt(SIGURG after 50%)+abandon`.
    public var description: String {
        var steps: [String] = []
        if let interruptSignal {
            steps.append("interrupt(\(Signals.name(interruptSignal)) after \(Int((cooperativeShare * 100).rounded()))%)")
        }
        if final != .report { steps.append(final.description) }
        return steps.isEmpty ? "cooperative" : steps.joined(separator: "+")
    }

    /// Declares `signal` as an interrupt signal before threads start: its handler is installed
    /// now, and every managed thread started from now on unblocks it (threads spawned from
    /// Dispatch or concurrency-pool threads inherit a mask that blocks it otherwise, and a blocked
    /// signal interrupts nothing). ``defaultInterruptSignal`` needs no declaring.
    ///
    /// The handler goes in before any thread unblocks the signal, so a delivery can never meet the
    /// default action (which, for a real-time signal, ends the process).
    /// - Throws: ``ThreadError/Code/invalidArgument`` for a reserved or invalid signal, one the
    ///   application has installed an action for, or one that ``ShutdownSignals`` watches.
    public static func reserveInterruptSignal(_ signal: Int32) throws(ThreadError) {
        try SignalOwner.reserveInterrupt(signal)
    }
}

extension ShutdownPolicy {
    /// This policy with `escalation` for threads that do not stop on their own.
    public func escalating(_ escalation: Escalation) -> ShutdownPolicy {
        var copy = self
        copy.escalation = escalation
        return copy
    }
}
