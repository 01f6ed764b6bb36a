import CShims
#if canImport(Glibc)
import Glibc
#endif

/// A 32-bit word in stable heap memory, used with the futex system call. Swift's `Atomic` keeps its
/// storage inline and cannot hand out the address the kernel needs, so the word is allocated here
/// and accessed only through the C atomics in CShims.
///
/// The library's one parking primitive: wait while the word holds a value, until woken or a
/// deadline passes; wake one, all, or the sleepers sharing a bit. Every blocking protocol is a
/// loop over it (a thread's ``ThreadLife``, ``StopState``, ``GroupStopWord``, ``ExitQueue``,
/// ``EventCount``): each re-reads its word after every return, so spurious and early returns are
/// harmless. Its own tests are `FutexWordTests`.
struct FutexWord: @unchecked Sendable {
    // @unchecked: the pointer is only dereferenced through sequentially consistent C atomics and
    // the futex syscall, both safe from any thread; the owner deallocates it once, in its deinit.
    let pointer: UnsafeMutablePointer<UInt32>

    static func allocate(_ initial: UInt32) -> FutexWord {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: initial)
        return FutexWord(pointer: p)
    }

    func deallocate() { pointer.deallocate() }

    @inline(__always) func load() -> UInt32 { cshims_atomic_load_u32(pointer) }
    @inline(__always) func store(_ v: UInt32) { cshims_atomic_store_u32(pointer, v) }
    @inline(__always) func exchange(_ v: UInt32) -> UInt32 { cshims_atomic_exchange_u32(pointer, v) }
    @inline(__always) func fetchAdd(_ v: UInt32) -> UInt32 { cshims_atomic_fetch_add_u32(pointer, v) }
    @inline(__always) func fetchAnd(_ v: UInt32) -> UInt32 { cshims_atomic_fetch_and_u32(pointer, v) }
    @inline(__always) func compareExchange(_ expected: UInt32, _ desired: UInt32) -> Bool {
        cshims_atomic_cas_u32(pointer, expected, desired) != 0
    }

    /// Sleeps while the word equals `expected`, until woken, a spurious wake-up, or `deadline`.
    /// Callers loop on their own condition. Returns false once the deadline has passed.
    func wait(whileEqualTo expected: UInt32, until deadline: ContinuousClock.Instant?) -> Bool {
        if let deadline {
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return false }
            var ts = remaining.timespec
            _ = cshims_futex_wait(pointer, expected, &ts)
        } else {
            _ = cshims_futex_wait(pointer, expected, nil)
        }
        // EAGAIN (value changed), EINTR, ETIMEDOUT and wake-ups all send the caller round its loop,
        // where it re-reads the word and the clock.
        return true
    }

    /// Like ``wait(whileEqualTo:until:)``, but only a wake whose bitset shares a bit with
    /// `bitset` wakes this sleeper (FUTEX_WAIT_BITSET): many threads can sleep on one word and
    /// still be woken one at a time.
    func wait(whileEqualTo expected: UInt32, until deadline: ContinuousClock.Instant?, bitset: UInt32) -> Bool {
        if let deadline {
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return false }
            var ts = remaining.timespec
            _ = cshims_futex_wait_bitset(pointer, expected, &ts, bitset)
        } else {
            _ = cshims_futex_wait_bitset(pointer, expected, nil, bitset)
        }
        return true
    }

    /// Wakes the sleepers whose bitset shares a bit with `bitset` (all of them for `.max`).
    func wake(bitset: UInt32) {
        _ = cshims_futex_wake_bitset(pointer, Int32.max, bitset)
    }

    /// Wakes every thread sleeping on the word.
    func wakeAll() {
        _ = cshims_futex_wake(pointer, Int32.max)
    }

    /// Wakes at most `count` threads sleeping on the word.
    func wake(count: Int32) {
        _ = cshims_futex_wake(pointer, count)
    }
}
