// The raw baseline: what a careful C programmer writes with pthreads and one shared eventfd.
import Glibc
import Synchronization

/// What one baseline thread gets as its `pthread_create` argument: its run's environment and its
/// index. The slots live in one buffer allocated before the threads start, so the threads cost no
/// allocation of their own.
struct BaselineSlot {
    var environment: Unmanaged<WorkloadEnvironment>
    var index: Int
}

enum PThreadSystem {
    /// `spawn`: `pthread_create` of a routine that returns at once, then `pthread_join`.
    static func spawnJoin(count: Int, stackSize: Int?) throws -> [Int64] {
        var samples: [Int64] = []
        samples.reserveCapacity(count)
        for _ in 0..<count {
            let start = ContinuousClock.now
            let thread = try RawPThread.create(stackSize: stackSize, start: baselineReturn, arg: nil)
            RawPThread.join(thread)
            samples.append(start.nanosecondsSince)
        }
        return samples
    }

    /// `spawnstop`: the body blocks in `poll` on a shared eventfd; stop = write it; join.
    static func spawnStopJoin(count: Int, stackSize: Int?) throws -> [Int64] {
        let context = SpawnStopContext(stop: try EventFD())
        var samples: [Int64] = []
        samples.reserveCapacity(count)
        for i in 0..<count {
            let start = ContinuousClock.now
            let thread = try RawPThread.create(
                stackSize: stackSize, start: baselineSpawnStop, arg: Unmanaged.passUnretained(context).toOpaque())
            do {
                try context.started.spin(until: i + 1)
            } catch {
                context.stop.signal()
                RawPThread.join(thread)
                throw error
            }
            context.stop.signal()
            RawPThread.join(thread)
            samples.append(start.nanosecondsSince)
            context.stop.drain()  // untimed: ready for the next thread
        }
        return samples
    }

    /// The context of the `spawnstop` baseline; outlives every thread that gets it.
    final class SpawnStopContext: Sendable {
        let stop: EventFD
        let started = StartCounter()
        init(stop: EventFD) { self.stop = stop }
    }
}

/// Raw pthreads running a workload. Stop: write the one shared eventfd once (and set the flag the
/// `cpu` loop checks), then `pthread_join` each thread in turn.
final class PThreadFleet: Fleet {
    private let environment: WorkloadEnvironment
    private let stackSize: Int?
    private var handles: [pthread_t] = []
    private let slots: UnsafeMutableBufferPointer<BaselineSlot>

    init(environment: WorkloadEnvironment, stackSize: Int?) {
        self.environment = environment
        self.stackSize = stackSize
        slots = .allocate(capacity: environment.threadCount)
        for index in 0..<environment.threadCount {
            slots.initializeElement(at: index, to: BaselineSlot(environment: .passUnretained(environment), index: index))
        }
    }

    deinit {
        precondition(handles.isEmpty, "a baseline fleet was dropped with threads running")
        slots.deinitialize()
        slots.deallocate()
    }

    private var startRoutine: PThreadStart {
        switch environment.workload {
        case .idle: baselineIdle
        case .io: baselineIO
        case .cpu: baselineCPU
        case .tick: baselineTick
        }
    }

    func spawnAll() throws {
        handles.reserveCapacity(environment.threadCount)
        let start = startRoutine
        do {
            for index in 0..<environment.threadCount {
                handles.append(try RawPThread.create(stackSize: stackSize, start: start, arg: slots.baseAddress! + index))
            }
        } catch {
            environment.abandon()
            try? stopAndJoin()
            throw error
        }
    }

    func stopAndJoin() throws {
        environment.stopFlag.store(true, ordering: .relaxed)
        environment.stopEvent.signal()
        for handle in handles { RawPThread.join(handle) }
        handles.removeAll()
    }
}

// MARK: Start routines (plain functions, as in C)

private func slotContents(_ arg: UnsafeMutableRawPointer?) -> (WorkloadEnvironment, Int) {
    let slot = arg!.assumingMemoryBound(to: BaselineSlot.self).pointee
    return (slot.environment.takeUnretainedValue(), slot.index)
}

private func baselineReturn(_: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    nil
}

private func baselineSpawnStop(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<PThreadSystem.SpawnStopContext>.fromOpaque(arg!).takeUnretainedValue()
    context.started.bump()
    Poller.readable(context.stop.fd)
    return nil
}

private func baselineIdle(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let (environment, _) = slotContents(arg)
    environment.enter()
    Poller.readable(environment.stopEvent.fd)
    return nil
}

private func baselineIO(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let (environment, index) = slotContents(arg)
    let pipe = environment.pipe(index)
    environment.enter()
    Poller.untilReadable(environment.stopEvent.fd, alongside: pipe)
    return nil
}

private func baselineCPU(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let (environment, index) = slotContents(arg)
    environment.enterSpinning()
    var acc = UInt64(index)
    while !environment.stopFlag.load(ordering: .relaxed) {
        acc = environment.work.run(acc)
    }
    blackHole(acc)
    return nil
}

private func baselineTick(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let (environment, index) = slotContents(arg)
    environment.enter()
    var acc = UInt64(index)
    while !Poller.readable(environment.stopEvent.fd, timeoutMilliseconds: 100) {
        acc = environment.work.run(acc)
    }
    blackHole(acc)
    return nil
}
