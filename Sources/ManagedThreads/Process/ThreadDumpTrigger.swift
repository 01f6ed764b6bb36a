import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Writes a ``ThreadDump`` each time a signal arrives, and lets the process run on: the live
/// "what is every thread doing" of `kill -QUIT <pid>` on a JVM or a Go program, for Swift.
///
/// ```swift
/// let trigger = try ThreadDump.installTrigger()                  // SIGQUIT → stderr
/// // elsewhere: kill -QUIT <pid>
/// ```
///
/// The signal is claimed through the library's one signal owner (it cannot also be a shutdown or
/// an interrupt signal) and routed to a descriptor; a background managed thread,
/// `thread-dump`, waits on it and writes the dump, so the handler itself does one write and
/// nothing else. ``cancel()`` puts the signal's previous action back.
public final class ThreadDumpTrigger: Sendable {
    /// Where the dumps go.
    public enum Destination: Sendable, Hashable {
        /// Standard error.
        case standardError
        /// A file, created if needed, each dump appended.
        case file(String)
    }

    /// The signal that triggers a dump.
    public let signal: Int32
    /// Where dumps are written.
    public let destination: Destination

    private let descriptor: Int32
    private let stop = StopSource()
    private let watcher = Lock<ManagedThread?>(nil)
    private let written = Lock<Int>(0)

    /// How many dumps it has written.
    public var dumpsWritten: Int { written.withLock { $0 } }

    fileprivate init(signal: Int32, destination: Destination, descriptor: Int32) {
        self.signal = signal
        self.destination = destination
        self.descriptor = descriptor
    }

    fileprivate func start() throws(ThreadError) {
        var options = ThreadOptions()
        options.isBackground = true
        let thread = try ManagedThread.spawn(
            name: "thread-dump", purpose: "writes a thread dump on \(Signals.name(signal))", options: options
        ) { _ in
            ExitAudit.asInfrastructure { self.watch() }
        }
        watcher.withLock { $0 = thread }
    }

    private func watch() {
        let stopFD = try? stop.token.fileDescriptor
        while !stop.token.isStopRequested {
            var fds = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
            if let stopFD { fds.append(pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)) }
            if (try? Poll.wait(&fds, until: stopFD == nil ? .after(.milliseconds(100)) : nil)) == nil {
                _ = stop.token.wait(timeout: .milliseconds(10))
            }
            guard let count = try? readCounter(descriptor, .eventfdRead), count > 0 else { continue }
            write(ThreadDump.capture().description + "\n")
        }
    }

    private func write(_ text: String) {
        switch destination {
        case .standardError:
            StandardError.write(text)
        case .file(let path):
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                StandardError.write("thread dump: cannot open \(path) (errno \(Errno.current)); writing it here\n" + text)
                break
            }
            defer { closeDescriptor(fd) }
            var bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if n > 0 {
                    offset += n
                } else if !(n == -1 && Errno.current == EINTR) {
                    break
                }
            }
        }
        written.withLock { $0 += 1 }
    }

    /// Stops writing dumps: the signal's previous action is back, and the watcher has ended.
    /// Idempotent.
    public func cancel() {
        guard stop.requestStop() else { return }
        SignalOwner.unrouteSignals([signal])
        let thread = watcher.withLock { $0 }
        _ = try? thread?.join(until: .after(.seconds(10)))
        _ = SignalOwner.releaseSignals([signal])
    }
}

extension ThreadDump {
    /// Writes a dump to `destination` each time `signal` arrives; see ``ThreadDumpTrigger``.
    /// - Throws: ``ThreadError/Code/invalidArgument`` when `signal` cannot be caught or already
    ///   has a role in the library (a shutdown or interrupt signal); ``ThreadError/Code/invalidState``
    ///   when another trigger has it.
    public static func installTrigger(
        signal: Int32 = SIGQUIT, destination: ThreadDumpTrigger.Destination = .standardError
    ) throws(ThreadError) -> ThreadDumpTrigger {
        if let problem = SignalOwner.unusable(signal) { throw .invalidArgument(problem) }
        let descriptor = try SignalOwner.routeSignals([signal], role: .dump)[0]
        let trigger = ThreadDumpTrigger(signal: signal, destination: destination, descriptor: descriptor)
        do {
            try trigger.start()
        } catch {
            SignalOwner.unrouteSignals([signal])
            _ = SignalOwner.releaseSignals([signal])
            throw error
        }
        return trigger
    }
}
