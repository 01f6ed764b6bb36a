import CShims
import Foundation
import Synchronization
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

@Suite("ManagedThread", .managedThreads)
struct ManagedThreadTests {
    @Test("start, stop and join; the body sees state through its captures")
    func startStopJoin() throws {
        let iterations = Counter()
        let started = Counter()
        let thread = try ManagedThread.spawn(name: "worker", purpose: "test") { token in
            started.increment()
            while !token.wait(timeout: .milliseconds(5)) {
                iterations.increment()
            }
        }
        #expect(thread.name == "worker")
        #expect(thread.purpose == "test")
        try waitFor { started.count == 1 }
        #expect(thread.isAlive)
        #expect(try thread.stop(timeout: .seconds(10)))
        #expect(!thread.isAlive)
        #expect(thread.isJoined)
        #expect(thread.error == nil)
        #expect(thread.stopReason == .requested)
        #expect(thread.acknowledgedStop)
        #expect(try thread.join(timeout: .zero), "joining a joined thread again succeeds at once")
    }

    @Test("the body's captures are released when it returns")
    func capturesReleased() throws {
        let released = Counter()
        let probe = DeinitProbe(released)
        let thread = try ManagedThread.spawn(name: "captures") { [probe] _ in
            _ = probe
        }
        _ = consume probe
        #expect(try thread.join(timeout: .seconds(10)))
        #expect(released.count == 1)
    }

    @Test("a long or non-ASCII name is kept whole in Swift and cut to 15 bytes on a scalar boundary for the kernel",
          arguments: [
              ("short", "short"),
              ("exactly-15-byte", "exactly-15-byte"),
              ("a-much-longer-thread-name-than-fits", "a-much-longer-t"),
              ("überwachungs-thread", "überwachungs-t"),     // ü is 2 bytes: 14 bytes of prefix fit... plus "t"
              ("日本語のスレッド名です", "日本語のス"),          // 3-byte scalars: 5 fit in 15
              ("abcdefghijklmn😀x", "abcdefghijklmn"),      // the 4-byte emoji would straddle byte 15
          ])
    func names(full: String, kernel: String) throws {
        let named = Counter()
        let thread = try ManagedThread.spawn(name: full) { token in
            named.increment()
            _ = token.wait(until: .now.advanced(by: .seconds(60)))
        }
        defer { _ = try? thread.stop(timeout: .seconds(10)) }
        #expect(thread.name == full)
        #expect(thread.kernelName == kernel)
        #expect(thread.kernelName.utf8.count <= 15)
        try waitFor { named.count == 1 }
        let tid = try #require(thread.tid)
        #expect(kernelComm(tid) == kernel)
    }

    @Test("bad names and stack sizes are typed errors")
    func invalidArguments() {
        for (name, options) in [("", ThreadOptions()), ("a\0b", ThreadOptions()), ("ok", ThreadOptions(stackSize: 1024))] {
            #expect {
                _ = try ManagedThread.spawn(name: name, options: options) { _ in }
            } throws: { error in
                (error as? ThreadError)?.code == .invalidArgument
            }
        }
    }

    @Test("a custom stack size is honoured")
    func stackSize() throws {
        let size = 256 * 1024
        let seen = Lock<Int>(0)
        let thread = try ManagedThread.spawn(name: "small-stack", options: ThreadOptions(stackSize: size)) { _ in
            var actual = 0
            guard cshims_thread_stacksize(pthread_self(), &actual) == 0 else { return }
            seen.withLock { $0 = actual }
        }
        #expect(try thread.join(timeout: .seconds(10)))
        let actual = seen.withLock { $0 }
        #expect(actual >= size && actual < size + 64 * 1024)
    }

    @Test("a thread blocked in poll() on its own empty pipe wakes through the token's descriptor")
    func pollWakesOnStop() throws {
        let pipe = Pipe()
        let polling = Counter()
        let outcome = Lock<String>("none")
        let thread = try ManagedThread.spawn(name: "poller") { token in
            var fds = [
                pollfd(fd: pipe.readEnd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: try token.fileDescriptor, events: Int16(POLLIN), revents: 0),
            ]
            polling.increment()
            let n = poll(&fds, 2, -1)  // no timeout: only the token can end this
            outcome.withLock {
                $0 = n == 1 && fds[1].revents & Int16(POLLIN) != 0 && fds[0].revents == 0 ? "token" : "other \(n)"
            }
        }
        try waitFor { polling.count == 1 }
        // Let it really sit in the syscall: the kernel says so.
        let tid = try #require(thread.tid)
        try waitFor { procText("/proc/self/task/\(tid)/stat")?.contains(") S ") ?? false }
        #expect(try thread.stop(timeout: .seconds(10)))
        #expect(outcome.withLock { $0 } == "token")
    }

    @Test("wait(forReadable:) reports data, stop and timeout")
    func waitForReadable() throws {
        let pipe = Pipe()
        let source = StopSource()
        #expect(try source.token.wait(forReadable: pipe.readEnd, timeout: .milliseconds(20)) == .timedOut)
        var byte: UInt8 = 1
        #expect(write(pipe.writeEnd, &byte, 1) == 1)
        #expect(try source.token.wait(forReadable: pipe.readEnd, timeout: .seconds(10)) == .ready)
        source.requestStop()
        #expect(try source.token.wait(forReadable: pipe.readEnd) == .stopRequested)
    }

    @Test("a body that ignores its token: stop(timeout:) returns false, and the thread is still joinable later")
    func ignoresStop() throws {
        let gate = Gate()
        let thread = try ManagedThread.spawn(name: "stubborn") { _ in gate.waitOpen() }
        let start = ContinuousClock.now
        let exited = try thread.stop(timeout: .milliseconds(100))
        let elapsed = ContinuousClock.now - start
        #expect(!exited)
        #expect(elapsed >= .milliseconds(100))
        #expect(elapsed < .seconds(5), "bounded join overran: \(elapsed)")
        #expect(thread.isAlive)
        #expect(!thread.acknowledgedStop)
        gate.release()
        #expect(try thread.join(timeout: .seconds(10)))
    }

    @Test("a throwing body does not crash the process; its error is kept")
    func throwingBody() throws {
        struct Boom: Error, Equatable { let value: Int }
        let thread = try ManagedThread.spawn(name: "thrower") { _ in throw Boom(value: 42) }
        #expect(try thread.join(timeout: .seconds(10)))
        #expect(thread.error as? Boom == Boom(value: 42))
    }

    @Test("joining from the thread itself is an error, not a deadlock")
    func selfJoin() throws {
        let result = Lock<ThreadError.Code?>(nil)
        let box = Lock<ManagedThread?>(nil)
        let ready = Gate()
        let thread = try ManagedThread.spawn(name: "self-joiner") { _ in
            ready.waitOpen()
            guard let me = box.withLock({ $0 }) else { return }
            do {
                _ = try me.join(timeout: .seconds(30))
            } catch let error as ThreadError {
                result.withLock { $0 = error.code }
            } catch {}
        }
        box.withLock { $0 = thread }
        ready.release()
        #expect(try thread.join(timeout: .seconds(10)))
        box.withLock { $0 = nil }
        #expect(result.withLock { $0 } == .selfJoin)
    }

    @Test("stop is idempotent: a second request is a no-op and keeps the first reason")
    func doubleStop() throws {
        let thread = try ManagedThread.spawn(name: "twice") { token in _ = token.wait(until: .now.advanced(by: .seconds(60))) }
        #expect(thread.requestStop(reason: .user("first")))
        #expect(!thread.requestStop(reason: .shutdown))
        #expect(try thread.stop(timeout: .seconds(10)))
        #expect(try thread.stop(timeout: .seconds(10)))
        #expect(thread.stopReason == .user("first"))
    }

    @Test("many threads stopping and joining one thread at once all see it exit, once")
    func concurrentStopAndJoin() throws {
        let callbacks = Counter()
        let target = try ManagedThread.spawn(name: "target") { token in
            token.onStop { callbacks.increment() }
            _ = token.wait(until: .now.advanced(by: .seconds(60)))
        }
        let winners = Counter()
        let joined = Counter()
        let go = Gate()
        var stoppers: [ManagedThread] = []
        for i in 0..<16 {
            stoppers.append(try ManagedThread.spawn(name: "stopper-\(i)") { _ in
                go.waitOpen()
                if target.requestStop() { winners.increment() }
                if (try? target.join(timeout: .seconds(30))) == true { joined.increment() }
            })
        }
        go.release()
        for stopper in stoppers { #expect(try stopper.join(timeout: .seconds(30))) }
        #expect(winners.count == 1)
        #expect(joined.count == 16)
        #expect(callbacks.count == 1)
        #expect(target.isJoined)
    }

    @Test("a joiner whose deadline passes in the kernel join hands over to the next joiner, which reaps the thread")
    func reaperHandOver() throws {
        // A join of a running thread goes straight to the kernel join (ThreadLife's reaper bit);
        // others wait on the life word. The first joiner here times out there; the waiting one
        // must be woken to take over, and must see the exit.
        let gate = Gate()
        let target = try ManagedThread.spawn(name: "slow-to-end") { _ in gate.waitOpen() }
        let shortResult = Lock<Bool?>(nil)
        let short = try ManagedThread.spawn(name: "short-joiner") { _ in
            shortResult.withLock { $0 = try? target.join(timeout: .milliseconds(300)) }
        }
        usleep(50_000)  // so that, most often, the short joiner is the one in the kernel join
        let longResult = Lock<Bool?>(nil)
        let long = try ManagedThread.spawn(name: "long-joiner") { _ in
            longResult.withLock { $0 = try? target.join(timeout: .seconds(60)) }
        }
        #expect(try short.join(timeout: .seconds(30)))
        #expect(shortResult.withLock { $0 } == false, "the thread was still running")
        #expect(target.isAlive && !target.isJoined)
        // A third joiner with a short deadline times out too, whichever of them holds the join.
        #expect(try target.join(timeout: .milliseconds(50)) == false)
        gate.release()
        #expect(try long.join(timeout: .seconds(30)))
        #expect(longResult.withLock { $0 } == true)
        #expect(target.isJoined && !target.isAlive)
        #expect(try target.join(timeout: .zero), "joined stays joined, even with no time left")
    }

    @Test("dropping the last handle to a finished, unjoined thread detaches it; the kernel thread goes away")
    func droppedHandleDetaches() throws {
        let tidBox = Lock<pid_t>(0)
        let released = Counter()
        do {
            let probe = DeinitProbe(released)
            let thread = try ManagedThread.spawn(name: "forgotten") { [probe] _ in
                _ = probe
                tidBox.withLock { $0 = PThread.currentTID }
            }
            _ = thread
        }
        try waitFor { released.count == 1 }
        let tid = tidBox.withLock { $0 }
        #expect(tid != 0)
        try waitFor { !taskExists(tid) }
    }
}
