import ManagedThreadsTesting
import Synchronization
import Testing
@testable import ManagedThreads

// FutexWord is the one parking primitive the library's protocols share (a thread's life word,
// the stop state, the group stop word, the exit queue, the event count): wait while a word
// holds a value, until woken or a deadline passes; wake one, all, or those sharing a bit.
@Suite("Futex word", .managedThreads)
struct FutexWordTests {
    /// Spawns `count` threads that each wait on `word` while it holds `value` (bitset `bits[i]`,
    /// or a plain wait), counting in `woken` as they return; returns once all of them sleep in
    /// the futex call, as /proc says.
    private func sleepers(
        _ count: Int, on word: FutexWord, value: UInt32, bits: [UInt32]? = nil, woken: Counter, group: ThreadGroup
    ) throws -> [ManagedThread] {
        var threads: [ManagedThread] = []
        for index in 0..<count {
            let bit = bits?[index]
            threads.append(try group.spawn(name: "sleeper-\(index)") { _ in
                let deadline = ContinuousClock.now.advanced(by: .seconds(60))
                if let bit {
                    _ = word.wait(whileEqualTo: value, until: deadline, bitset: bit)
                } else {
                    _ = word.wait(whileEqualTo: value, until: deadline)
                }
                woken.increment()
            })
        }
        try waitFor("every sleeper to sleep in futex") {
            threads.allSatisfy { thread in thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "futex" }
        }
        return threads
    }

    @Test("a deadline in the past returns false at once; a value that differs returns at once")
    func immediateReturns() {
        let word = FutexWord.allocate(7)
        defer { word.deallocate() }
        #expect(word.wait(whileEqualTo: 7, until: .now.advanced(by: .milliseconds(-1))) == false)
        let start = ContinuousClock.now
        #expect(word.wait(whileEqualTo: 8, until: .now.advanced(by: .seconds(60))), "the word is 7, not 8")
        #expect(start.duration(to: .now) < .seconds(30), "it did not sleep out the deadline")
    }

    @Test("a timed wait returns when the deadline passes, and the next call says the deadline has passed")
    func deadlinePasses() {
        let word = FutexWord.allocate(0)
        defer { word.deallocate() }
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(20))
        while word.wait(whileEqualTo: 0, until: deadline) {}
        #expect(ContinuousClock.now >= deadline, "false only once the deadline has passed")
    }

    @Test("wake(count: 1) wakes one sleeper of three; wakeAll wakes the rest")
    func wakeOneThenAll() throws {
        let word = FutexWord.allocate(0)
        let group = try ThreadGroup.current.makeChild(name: "futex-one")
        let woken = Counter()
        let threads = try sleepers(3, on: word, value: 0, woken: woken, group: group)
        word.wake(count: 1)
        try waitFor("one sleeper to wake") { woken.count >= 1 }
        #expect(woken.count == 1, "wake(count: 1) woke \(woken.count)")
        word.wakeAll()
        try waitFor("the others to wake") { woken.count == 3 }
        for thread in threads { #expect(try thread.join(timeout: .seconds(30))) }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
        word.deallocate()
    }

    @Test("a bitset wake wakes only the sleepers sharing a bit")
    func bitsetWake() throws {
        let word = FutexWord.allocate(0)
        let group = try ThreadGroup.current.makeChild(name: "futex-bits")
        let woken = Counter()
        let threads = try sleepers(3, on: word, value: 0, bits: [1, 2, 2], woken: woken, group: group)
        word.wake(bitset: 1)
        try waitFor("the bit-1 sleeper to wake") { woken.count >= 1 }
        #expect(woken.count == 1)
        try waitFor("the bit-1 sleeper to end") { !threads[0].isAlive }
        #expect(threads[1].isAlive && threads[2].isAlive, "a bit-1 wake woke a bit-2 sleeper")
        word.wake(bitset: .max)
        try waitFor("the bit-2 sleepers to wake") { woken.count == 3 }
        for thread in threads { #expect(try thread.join(timeout: .seconds(30))) }
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
        word.deallocate()
    }

    @Test("a sleeper that sees the word change after a wake returns; one woken with the word unchanged may sleep again")
    func changeThenWake() throws {
        let word = FutexWord.allocate(0)
        let group = try ThreadGroup.current.makeChild(name: "futex-change")
        let returned = Counter()
        // The callers' loop: sleep while the word is 0.
        let thread = try group.spawn(name: "looping-sleeper") { _ in
            let deadline = ContinuousClock.now.advanced(by: .seconds(60))
            while word.load() == 0, word.wait(whileEqualTo: 0, until: deadline) {}
            returned.increment()
        }
        try waitFor("the sleeper to sleep in futex") { thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "futex" }
        word.wakeAll()  // unchanged: it loops and sleeps again
        try waitFor("the sleeper to sleep again") { thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "futex" }
        #expect(returned.count == 0)
        word.store(1)
        word.wakeAll()
        #expect(try thread.join(timeout: .seconds(30)))
        #expect(returned.count == 1)
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
        word.deallocate()
    }

    @Test("an announced sleeper sets its bit and sleeps; the update clears the bit and wakes it")
    func announcedSleeper() throws {
        let sleeper: UInt32 = 1
        let done: UInt32 = 2
        let word = FutexWord.allocate(0)
        let group = try ThreadGroup.current.makeChild(name: "futex-announced")
        let thread = try group.spawn(name: "announced-sleeper") { _ in
            let deadline = ContinuousClock.now.advanced(by: .seconds(60))
            while word.load() & done == 0, word.sleep(announcing: sleeper, seen: word.load(), until: deadline) {}
        }
        try waitFor("the sleeper to sleep in futex") { thread.tid.flatMap { KernelThreadState.read(tid: $0)?.syscallName } == "futex" }
        #expect(word.load() == sleeper, "it announced itself before sleeping")
        let old = word.update(wakingSleepers: sleeper) { $0 | done }
        #expect(old == sleeper)
        #expect(word.load() == done, "the update cleared the sleeper bit")
        #expect(try thread.join(timeout: .seconds(30)), "the update woke it")
        #expect(group.shutdown(timeout: .seconds(30)).isClean)
        word.deallocate()
    }

    @Test("an announced sleep returns at once when the word moved on, and false past the deadline")
    func announcedSleepEdges() {
        let word = FutexWord.allocate(4)
        defer { word.deallocate() }
        let start = ContinuousClock.now
        #expect(word.sleep(announcing: 1, seen: 0, until: .now.advanced(by: .seconds(60))), "seen 0, word 4: loop again")
        #expect(word.load() == 4, "no bit set on a word that moved on")
        #expect(start.duration(to: .now) < .seconds(30))
        #expect(word.sleep(announcing: 1, seen: 4, until: .now.advanced(by: .milliseconds(-1))) == false)
        #expect(word.load() == 5, "the bit is set before the deadline is looked at; the next update clears it")
        word.update(wakingSleepers: 1) { $0 }
        #expect(word.load() == 4)
    }
}
