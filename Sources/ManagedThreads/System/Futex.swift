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
///
/// Two shapes of protocol are built on it:
/// - **An announced sleeper** (``ThreadLife``, a lone ``StopState``, ``ExitQueue``): a waiter sets
///   a sleeper bit before it sleeps (``sleep(announcing:seen:until:)``), and whoever changes the
///   word next clears the bit and issues the wake syscall only if it was set
///   (``update(wakingSleepers:_:)``), so a change nobody waits for costs no syscall.
///   ``ExitQueue``'s writers wake the announced sleeper only once a batch of exits has piled up.
/// - **An event sequence** (``EventCount``, ``GroupStopWord``'s low bits, a callback's end): the
///   writer bumps the word and wakes; a waiter sleeps while the word still holds the value it read
///   before it last looked at the condition, so no wake-up is lost between the look and the sleep.
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

    /// One step of an announced sleeper's loop: sets `bit` in the word (unless `seen` has it
    /// already), then sleeps while the word still holds `seen` with the bit. Returns false once the
    /// deadline has passed; true when the caller should re-read the word and loop (woken, the word
    /// changed, or another thread changed it before the bit could be set).
    func sleep(announcing bit: UInt32, seen: UInt32, until deadline: ContinuousClock.Instant?) -> Bool {
        var value = seen
        if value & bit == 0 {
            guard compareExchange(value, value | bit) else { return true }
            value |= bit
        }
        return wait(whileEqualTo: value, until: deadline)
    }

    /// The other side of ``sleep(announcing:seen:until:)``: replaces the word with `change(old)`
    /// with `bit` cleared, and wakes every sleeper if `old` had the bit. Returns `old`.
    @discardableResult
    func update(wakingSleepers bit: UInt32, _ change: (UInt32) -> UInt32) -> UInt32 {
        while true {
            let old = load()
            if compareExchange(old, change(old) & ~bit) {
                if old & bit != 0 { wakeAll() }
                return old
            }
        }
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
