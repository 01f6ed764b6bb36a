// A fixture for the check-threads guardrail, scanned by its tests and by .ci/check-threads with
// `--root`. It is never compiled: Tests/Fixtures is not a target.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Flagged: a Foundation thread with a trailing closure.
let worker = Thread { print("working") }
worker.start()

// Flagged: a raw pthread.
var handle = pthread_t()
let rc = pthread_create(&handle, nil, { _ in nil }, nil)
precondition(rc == 0)

// Not flagged: lookalikes, uses of Thread that create nothing, comments and strings.
let managed = ManagedThread(name: "x")   // a type that merely contains the word
print(Thread.current, Thread.isMainThread)
Thread.sleep(forTimeInterval: 0.01)
/* Thread { } and pthread_create(&h, nil, f, nil) in a block comment */
let text = "Thread(block: {}) and pthread_create"
let doc = """
    Thread.detachNewThread { }
    """
pthread_join(handle, nil)
