import Foundation
import ManagedThreadsTesting
import Testing
@testable import ManagedThreads
#if canImport(Glibc)
import Glibc
#endif

/// Error paths the kernel will not produce on demand, reached with debug-build fault injection.
/// Faults are armed for the calling thread only, so these run safely beside other tests.
@Suite("Fault injection", .managedThreads)
struct FaultInjectionTests {
    @Test("pthread_create failing with EAGAIN is a typed error; the body and its captures are released")
    func spawnEAGAIN() throws {
        let released = Counter()
        let ran = Counter()
        var probe: DeinitProbe? = DeinitProbe(released)
        let error = FaultInjection.with(.pthreadCreate, errno: EAGAIN) { () -> ThreadError? in
            do {
                _ = try ManagedThread.spawn(name: "never-runs") { [probe] _ in
                    _ = probe
                    ran.increment()
                }
                return nil
            } catch let error as ThreadError {
                return error
            } catch {
                return nil
            }
        }
        probe = nil
        let thrown = try #require(error)
        #expect(thrown.code == .systemCall)
        #expect(thrown.call == "pthread_create")
        #expect(thrown.errno == EAGAIN)
        #expect(thrown.description.contains("pthread_create"))
        #expect(thrown.description.contains("EAGAIN"))
        #expect(released.count == 1, "the body closure was not released")
        #expect(ran.count == 0)
        // The fault was one-shot: the next spawn works.
        let thread = try ManagedThread.spawn(name: "after-fault") { _ in ran.increment() }
        #expect(try thread.join(timeout: .seconds(10)))
        #expect(ran.count == 1)
    }

    @Test("eventfd failing with EMFILE is a typed error; no descriptor leaks and a later request works")
    func eventfdEMFILE() throws {
        let source = StopSource()
        #expect {
            try FaultInjection.with(.eventfd, errno: EMFILE) { () throws(ThreadError) in
                _ = try source.token.fileDescriptor
            }
        } throws: { error in
            let error = error as? ThreadError
            return error?.code == .systemCall && error?.call == "eventfd" && error?.errno == EMFILE
                && error?.message.contains("RLIMIT_NOFILE") == true
        }
        // Nothing half-made was cached: the next access creates a working descriptor.
        let fd = try source.token.fileDescriptor
        source.requestStop()
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 0) == 1)
    }

    @Test("a body whose descriptor request fails sees the error and the thread still stops cleanly")
    func eventfdFailsInsideBody() throws {
        let seen = Counter()
        // The fault must hit the new thread, so arm it from inside the body.
        let thread = try ManagedThread.spawn(name: "no-fd") { token in
            do {
                try FaultInjection.with(.eventfd, errno: ENFILE) { () throws(ThreadError) in
                    _ = try token.fileDescriptor
                }
            } catch let error as ThreadError where error.errno == ENFILE {
                seen.increment()
            }
            _ = token.wait(until: .now.advanced(by: .seconds(60)))
        }
        try waitFor { seen.count == 1 }
        #expect(try thread.stop(timeout: .seconds(10)))
    }

    @Test("timerfd_create failing with EMFILE is a typed error from a pollable ticks(every:pollable:)")
    func timerfdEMFILE() {
        let source = StopSource()
        #expect {
            try FaultInjection.with(.timerfdCreate, errno: EMFILE) { () throws(ThreadError) in
                _ = try source.token.ticks(every: .milliseconds(10), pollable: true)
            }
        } throws: { ($0 as? ThreadError)?.call == "timerfd_create" }
    }

    @Test("timerfd_settime failing closes the timer it created")
    func timerfdSettimeFails() throws {
        let source = StopSource()
        var failed = false
        do {
            try FaultInjection.with(.timerfdSettime, errno: ENOMEM) { () throws(ThreadError) in
                _ = try source.token.ticks(every: .milliseconds(10), pollable: true)
            }
        } catch {
            failed = error.call == "timerfd_settime" && error.errno == ENOMEM
        }
        #expect(failed)
        // (A double close would have trapped above; the exit test in ProcessLimitTests counts
        // descriptors exactly, where no parallel test can disturb the count.)
    }

    @Test("EINTR from a restartable call is retried transparently")
    func eintrRetried() throws {
        let source = StopSource()
        let fd = try FaultInjection.with(.eventfd, errno: EINTR, count: 3) { () throws(ThreadError) in
            try source.token.fileDescriptor
        }
        #expect(fd >= 0)
        let made = FaultInjection.with(.eventfdWrite, errno: EINTR, count: 2) {
            source.requestStop()
        }
        #expect(made)
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 0) == 1, "the retried write made the descriptor readable")
    }

    @Test("EINTR from poll is retried with the remaining time")
    func pollEINTR() throws {
        let pipe = Pipe()
        let source = StopSource()
        let outcome = try FaultInjection.with(.poll, errno: EINTR, count: 2) { () throws(ThreadError) in
            try source.token.wait(forReadable: pipe.readEnd, timeout: .milliseconds(30))
        }
        #expect(outcome == .timedOut)
    }

    @Test("a fault armed on one thread does not hit another")
    func faultsAreThreadScoped() throws {
        let otherFailed = Counter()
        try FaultInjection.with(.eventfd, errno: EMFILE, count: 100) { () throws(ThreadError) in
            let thread = try ManagedThread.spawn(name: "unaffected") { token in
                if (try? token.fileDescriptor) == nil { otherFailed.increment() }
            }
            #expect(try thread.join(timeout: .seconds(10)))
        }
        #expect(otherFailed.count == 0)
    }
}
