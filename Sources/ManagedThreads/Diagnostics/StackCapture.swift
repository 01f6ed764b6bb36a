import CShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The user-space stack of a thread, captured while it ran (or slept), or why it could not be.
///
/// It holds the raw addresses; the frames are named (``frames``) only when they are read, printed
/// or encoded, so a shutdown that captures stacks spends no time on symbol tables.
public struct StackTrace: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The code addresses, innermost first (the instruction the thread was at, then the return
    /// address of each caller).
    public var addresses: [UInt]
    /// Why there is no stack (`signals blocked`, …); nil when there is one.
    public var unavailable: String?
    /// Frames as decoded from JSON (a stack from another process cannot be named here).
    private var decoded: [StackFrame]?

    /// A stack of `addresses`, innermost first.
    public init(addresses: [UInt]) {
        self.addresses = addresses
    }

    /// No stack, for `reason`.
    public init(unavailable reason: String) {
        self.addresses = []
        self.unavailable = reason
    }

    /// The frames, named from this process's symbol tables (executables' `.symtab`, libraries'
    /// exports), Swift names demangled.
    public var frames: [StackFrame] {
        if let decoded { return decoded }
        return addresses.enumerated().map { index, address in
            // A return address points after its call: name the call (address - 1).
            Symbolicator.shared.frame(for: address, lookup: index == 0 ? address : address - 1)
        }
    }

    /// One frame per line, `#n 0x… function + offset (image)`, or `stack unavailable: <reason>`.
    public var description: String {
        if let unavailable { return "stack unavailable: \(unavailable)" }
        return frames.enumerated().map { "#\($0.offset) \($0.element)" }.joined(separator: "\n")
    }

    /// Two stacks are equal when they hold the same addresses (or the same reason): the names are
    /// derived from them.
    public static func == (a: StackTrace, b: StackTrace) -> Bool {
        a.addresses == b.addresses && a.unavailable == b.unavailable
    }

    /// Hashes the addresses and the reason.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(addresses)
        hasher.combine(unavailable)
    }

    private enum CodingKeys: String, CodingKey { case frames, unavailable }

    /// Encodes the named frames (and the reason when there are none).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(frames, forKey: .frames)
        try container.encodeIfPresent(unavailable, forKey: .unavailable)
    }

    /// Decodes a stack as encoded: its frames keep the names they were written with.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let frames = try container.decodeIfPresent([StackFrame].self, forKey: .frames) ?? []
        addresses = frames.map(\.address)
        decoded = frames
        unavailable = try container.decodeIfPresent(String.self, forKey: .unavailable)
    }
}

/// One frame of a ``StackTrace``: a code address and what it is in.
public struct StackFrame: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The return address (for the innermost frame, the instruction the thread was at).
    public var address: UInt
    /// The function, demangled when it is Swift, if the symbol tables name it.
    public var symbol: String?
    /// The byte offset of `address` into `symbol`'s function.
    public var offset: UInt?
    /// The file name of the executable or library the code is in.
    public var image: String?

    /// A frame with the given fields (``StackCapture`` fills them in).
    public init(address: UInt, symbol: String? = nil, offset: UInt? = nil, image: String? = nil) {
        self.address = address
        self.symbol = symbol
        self.offset = offset
        self.image = image
    }

    /// `0x… symbol + offset (image)`.
    public var description: String {
        let hex = "0x" + String(address, radix: 16)
        let name = symbol.map { " \($0)" + (offset.map { " + \($0)" } ?? "") } ?? ""
        return hex + name + (image.map { " (\($0))" } ?? "")
    }
}

/// Captures the user-space stacks of other threads of this process without stopping them for
/// longer than a signal handler's run, and names the frames afterwards.
///
/// A capture sends ``signal`` to the thread; its handler (CShims/capture.c) unwinds the
/// interrupted stack with libgcc's unwinder into a pre-allocated slot, allocating nothing and
/// taking no lock, and the requester waits for it with a deadline. Naming the frames
/// (an internal symbolicator) happens later, on the caller's thread, off any deadline.
///
/// The handler is installed with `SA_RESTART`, so a `read`, `write` or `accept` the thread is
/// blocked in goes on after it; calls the kernel never restarts (`poll`, `epoll_wait`, a futex
/// wait with a timeout, `nanosleep`) return `EINTR` once, as for any signal. A thread that blocks
/// the signal is reported "signals blocked" at once, never waited for: managed threads unblock
/// it as they start, and so do threads that never changed their mask. Under ThreadSanitizer,
/// which delivers signals late (a thread asleep in a raw futex call takes it only when it wakes),
/// captures of sleeping threads may time out.
public enum StackCapture {
    /// The signal the captures use: `SIGRTMAX - 3`, claimed through the library's signal owner.
    /// An application that already handles it keeps it, and captures report why they cannot run.
    public static var signal: Int32 { cshims_sigrtmax() - 3 }

    /// Whether shutdown reports, the exit audit and the second-signal path capture the stacks of
    /// the threads still running (true by default). Each capture is a signal and a wait of at
    /// most 2 ms for all of them together; turn it off to keep that out of a shutdown.
    public static var capturesInReports: Bool {
        get { reportCaptures.load(ordering: .relaxed) }
        set { reportCaptures.store(newValue, ordering: .relaxed) }
    }

    private static let reportCaptures = Atomic<Bool>(true)

    /// Installs the handler once (at the first managed thread's start, and before any capture).
    /// Returns why captures cannot run, or nil.
    @discardableResult
    static func prepare() -> String? {
        SignalOwner.prepareCapture(signal)
    }

    /// Captures signalled and not yet collected (see ``begin(_:)``).
    struct Pending {
        fileprivate var armed: [(tid: Int32, slot: Int32)] = []
        fileprivate var results: [Int32: RawStack] = [:]
        /// Whether nothing was begun.
        var isEmpty: Bool { armed.isEmpty && results.isEmpty }
    }

    /// The raw frames of `tids`, each captured at most until `deadline`: all signalled first, then
    /// all awaited, so N stuck threads cost one wait, not N.
    /// In batches of ``batchSize``, so a dump of hundreds of threads fits the 64 capture slots
    /// (with room left for a capture running at the same time elsewhere).
    static func capture(_ tids: [Int32], until deadline: ContinuousClock.Instant) -> [Int32: RawStack] {
        var result: [Int32: RawStack] = [:]
        var start = 0
        while start < tids.count {
            let batch = Array(tids[start..<min(tids.count, start + batchSize)])
            result.merge(finish(begin(batch), until: deadline)) { _, new in new }
            start += batchSize
        }
        return result
    }

    /// Threads captured at once by ``capture(_:until:)``.
    static let batchSize = 32

    /// Signals every thread of `tids` to capture its stack, and returns at once: the handlers run
    /// while the caller does other work (a report reads /proc meanwhile).
    static func begin(_ tids: [Int32]) -> Pending {
        var pending = Pending()
        for tid in tids { begin(tid, into: &pending) }
        return pending
    }

    /// Signals `tid` to capture its stack, adding it to `pending`.
    static func begin(_ tid: Int32, into pending: inout Pending) {
        if let problem = prepare() {
            pending.results[tid] = .unavailable(problem)
            return
        }
        if let blocked = blocksCaptureSignal(tid) {
            pending.results[tid] = .unavailable(blocked)
            return
        }
        let slot = cshims_capture_arm(tid)
        guard slot >= 0 else {
            pending.results[tid] = .unavailable("too many captures in flight")
            return
        }
        guard (try? Signals.send(signal, toThread: tid)) == true else {
            _ = cshims_capture_cancel(slot)
            pending.results[tid] = .unavailable("the thread has ended")
            return
        }
        pending.armed.append((tid, slot))
    }

    /// Collects what ``begin(_:)`` started, waiting at most until `deadline`.
    static func finish(_ pending: Pending, until deadline: ContinuousClock.Instant) -> [Int32: RawStack] {
        var result = pending.results
        for (tid, slot) in pending.armed {
            var written = false
            while !written {
                let remaining = ContinuousClock.now.duration(to: deadline)
                if remaining <= .zero {
                    // One last look: the handler may have finished just now.
                    var zero = timespec()
                    written = cshims_capture_wait(slot, &zero) == 1
                    break
                }
                var ts = remaining.timespec
                written = cshims_capture_wait(slot, &ts) == 1
            }
            guard written else {
                _ = cshims_capture_cancel(slot)
                result[tid] = .unavailable("the thread did not run its capture handler in time (not scheduled, or stopped)")
                continue
            }
            var frames = [UInt](repeating: 0, count: Int(CSHIMS_CAPTURE_FRAMES))
            var interrupted: UInt = 0
            let count = frames.withUnsafeMutableBufferPointer { buffer in
                cshims_capture_take(slot, buffer.baseAddress!, Int32(buffer.count), &interrupted)
            }
            result[tid] = .frames(Array(frames.prefix(Int(max(0, count)))), interrupted: interrupted)
        }
        return result
    }

    /// Why `tid` cannot take the capture signal now (it blocks it), from its status in /proc.
    private static func blocksCaptureSignal(_ tid: Int32) -> String? {
        // The thread may be inside the capture handler of an earlier capture, where every signal
        // is blocked: the new one is delivered as the handler returns, so it is not "blocked".
        // (A handler that has just marked itself done may still be returning: look twice.)
        for attempt in 0..<2 {
            if cshims_capture_handler_running(tid) == 1 { return nil }
            guard let bytes = ProcFS.bytes("/proc/self/task/\(tid)/status") else { return "the thread has ended" }
            guard let mask = Self.hexField(bytes, named: Array("SigBlk:".utf8)) else { return nil }
            if mask & (1 << UInt64(signal - 1)) == 0 { return nil }
            if attempt == 0 { sched_yield() }
        }
        return "signals blocked (the thread blocks \(Signals.name(signal)))"
    }

    /// The hex value after `name` at the start of a line of `bytes` (a /proc status file),
    /// scanned as bytes: this runs once per captured thread, inside a report's reserve.
    static func hexField(_ bytes: [UInt8], named name: [UInt8]) -> UInt64? {
        var index = 0
        while index + name.count <= bytes.count {
            if (index == 0 || bytes[index - 1] == 0x0A) && bytes[index..<index + name.count].elementsEqual(name) {
                var cursor = index + name.count
                while cursor < bytes.count, bytes[cursor] == 0x20 || bytes[cursor] == 0x09 { cursor += 1 }
                var value: UInt64 = 0
                var digits = 0
                while cursor < bytes.count, let digit = Self.hexDigit(bytes[cursor]) {
                    value = value << 4 | UInt64(digit)
                    digits += 1
                    cursor += 1
                }
                return digits > 0 ? value : nil
            }
            index += 1
        }
        return nil
    }

    private static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte - 0x30
        case 0x61...0x66: byte - 0x61 + 10
        case 0x41...0x46: byte - 0x41 + 10
        default: nil
        }
    }

    /// Captures the stack of each of `tids`, waiting for the captures at most until `deadline`
    /// (naming the frames happens when they are read).
    public static func stacks(of tids: [Int32], until deadline: ContinuousClock.Instant) -> [Int32: StackTrace] {
        capture(tids, until: deadline).mapValues(\.trace)
    }

    /// The stack of one thread of this process; see ``stacks(of:until:)``.
    public static func stack(of tid: Int32, timeout: Duration = .milliseconds(100)) -> StackTrace {
        stacks(of: [tid], until: .after(timeout))[tid] ?? StackTrace(unavailable: "not captured")
    }
}

/// What a capture got: addresses, or why none.
enum RawStack: Sendable {
    case frames([UInt], interrupted: UInt)
    case unavailable(String)

    /// The stack, with the handler's own frames and the signal trampoline (which the unwinder
    /// saw first) dropped: it starts at the interrupted instruction.
    var trace: StackTrace {
        switch self {
        case .unavailable(let reason):
            return StackTrace(unavailable: reason)
        case .frames(let addresses, let interrupted):
            // Not found (a sanitizer ran the handler from its own frames): drop the handler's frame.
            guard let start = addresses.firstIndex(of: interrupted) else { return StackTrace(addresses: Array(addresses.dropFirst())) }
            return StackTrace(addresses: Array(addresses[start...]))
        }
    }
}
