#if canImport(Glibc)
import Glibc
#endif

/// What the kernel says a thread is doing, read from `/proc/self/task/<tid>/…`.
///
/// This is what turns "shutdown hangs" into "thread `db-writer` is asleep in `read` on a pipe and
/// has used no CPU since the stop": state and wait channel from `stat` and `wchan`, the system call
/// it sits in from `syscall`, and its CPU time (growing: spinning; flat: blocked).
public struct KernelThreadState: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The kernel thread id.
    public var tid: Int32
    /// The kernel's name for the thread (`comm`, at most 15 bytes).
    public var name: String
    /// The state letter from `stat`: `R` running, `S` sleeping, `D` uninterruptible, `T` stopped,
    /// `Z` zombie, …
    public var state: String
    /// The wait channel (`wchan`): the kernel function the thread sleeps in, when the kernel
    /// exposes it (it may be hidden, shown as nil).
    public var waitChannel: String?
    /// The system call number the thread is blocked in (from `syscall`), or nil when it is running
    /// in user space or the file is not readable.
    public var syscallNumber: Int?
    /// CPU time consumed in user and kernel mode, in nanoseconds.
    public var cpuTimeNanoseconds: Int64
    /// For a system call on a descriptor (`read`, `accept`, `recvmsg`, …): the descriptor and what
    /// it is, `fd 7 → pipe:[12345]` or `fd 9 → socket:[…] TCP 0.0.0.0:8080 LISTEN`.
    public var descriptor: String?
    /// The kernel's stack of the thread (`/proc/self/task/<tid>/stack`), when it is readable (it
    /// usually needs `CAP_SYS_ADMIN`), innermost first.
    public var kernelStack: [String]?

    /// The state as a word ("running", "sleeping", …).
    public var stateName: String {
        switch state {
        case "R": return "running"
        case "S": return "sleeping"
        case "D": return "disk sleep"
        case "T": return "stopped"
        case "t": return "tracing stop"
        case "Z": return "zombie"
        case "X": return "dead"
        case "I": return "idle"
        default: return state
        }
    }

    /// The system call's name when known (for example `read`, `futex`, `poll`), else its number.
    public var syscallName: String? {
        syscallNumber.map { SyscallNames.name(for: $0) ?? "syscall \($0)" }
    }

    /// CPU time consumed, user plus system.
    public var cpuTime: Duration { .nanoseconds(cpuTimeNanoseconds) }

    /// One line for reports: state, system call, wait channel and CPU time, for example
    /// `S (sleeping), in read, wchan anon_pipe_read, cpu 0.0ms`.
    public var description: String {
        var parts = ["\(state) (\(stateName))"]
        if let syscallName {
            if let descriptor {
                parts.append("in \(syscallName)(\(descriptor))")
            } else if syscallName == "futex" {
                parts.append("in futex (waiting on a lock, a condition or a futex word)")
            } else {
                parts.append("in \(syscallName)")
            }
        }
        if let waitChannel { parts.append("wchan \(waitChannel)") }
        parts.append("cpu \(cpuTime.formattedMilliseconds)")
        return parts.joined(separator: ", ")
    }

    /// Reads the kernel's view of a thread of this process; nil if it no longer exists.
    public static func read(tid: Int32) -> KernelThreadState? {
        let base = "/proc/self/task/\(tid)"
        guard let stat = ProcFS.read("\(base)/stat") else { return nil }
        // Format: "tid (comm) S ppid …"; comm may contain spaces and parentheses, so split at
        // the last ')'.
        guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let name = String(stat[stat.index(after: open)..<close])
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3); utime and stime are fields 14 and 15.
        guard fields.count > 13 else { return nil }
        let ticks = (Int64(fields[11]) ?? 0) + (Int64(fields[12]) ?? 0)
        let cpu = ticks * 1_000_000_000 / Int64(ProcFS.clockTicks)
        var wchan = ProcFS.read("\(base)/wchan")?.trimmingSpaces
        if wchan == "0" || wchan == "" { wchan = nil }
        var syscallNumber: Int?
        var descriptor: String?
        if let text = ProcFS.read("\(base)/syscall") {
            let words = text.split(separator: " ")
            // "running" while in user space, "-1 …" when blocked but not in a system call.
            if let first = words.first, let number = Int(first.trimmingSpaces), number >= 0 {
                syscallNumber = number
                // The first argument, in hex: the descriptor, for the calls that take one.
                if let name = SyscallNames.name(for: number), DescriptorNames.takesDescriptor.contains(name),
                    words.count > 1, let fd = Int(words[1].dropFirst(2), radix: 16), fd < Int(Int32.max)
                {
                    descriptor = "fd \(fd)" + (DescriptorNames.describe(fd).map { " → \($0)" } ?? "")
                }
            }
        }
        let kernelStack = ProcFS.read("\(base)/stack").map { text in
            // "[<0>] pipe_read+0x2f1/0x4a0": the function and offset.
            text.split(separator: "\n").map { line in String(line.split(separator: " ").last ?? line) }
        }
        return KernelThreadState(
            tid: tid, name: name, state: String(fields[0]), waitChannel: wchan,
            syscallNumber: syscallNumber, cpuTimeNanoseconds: cpu, descriptor: descriptor,
            kernelStack: kernelStack?.isEmpty == false ? kernelStack : nil)
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(self.drop(while: { $0 == " " || $0 == "\n" }).reversed().drop(while: { $0 == " " || $0 == "\n" }).reversed())
    }
}

extension Duration {
    /// "12.3ms", for reports.
    var formattedMilliseconds: String {
        let (seconds, attoseconds) = saturatedComponents
        let micros = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        let sign = micros < 0 ? "-" : ""
        let magnitude = abs(micros)
        return "\(sign)\(magnitude / 1000).\(magnitude % 1000 / 100)ms"
    }

    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = saturatedComponents
        let ns = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if ns.overflow { return seconds < 0 ? .min : .max }
        return ns.partialValue + attoseconds / 1_000_000_000
    }
}

/// Names of the system calls a stuck thread typically sits in.
enum SyscallNames {
    static func name(for number: Int) -> String? {
        #if arch(x86_64)
        let table: [Int: String] = [
            0: "read", 1: "write", 7: "poll", 17: "pread64", 19: "readv", 23: "select", 24: "sched_yield",
            34: "pause", 35: "nanosleep", 42: "connect", 43: "accept", 45: "recvfrom", 47: "recvmsg",
            61: "wait4", 72: "fcntl", 73: "flock", 202: "futex", 230: "clock_nanosleep",
            232: "epoll_wait", 247: "waitid", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait",
            288: "accept4", 299: "recvmmsg", 441: "epoll_pwait2",
        ]
        #elseif arch(arm64)
        let table: [Int: String] = [
            22: "epoll_pwait", 25: "fcntl", 32: "flock", 63: "read", 64: "write", 65: "readv",
            67: "pread64", 72: "pselect6", 73: "ppoll", 95: "waitid", 98: "futex", 101: "nanosleep",
            115: "clock_nanosleep", 124: "sched_yield", 202: "accept", 203: "connect", 207: "recvfrom",
            212: "recvmsg", 242: "accept4", 243: "recvmmsg", 260: "wait4", 441: "epoll_pwait2",
        ]
        #else
        let table: [Int: String] = [:]
        #endif
        return table[number]
    }
}
