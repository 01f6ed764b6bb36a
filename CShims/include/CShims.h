// CShims: the few pieces of libc that Swift cannot import, or cannot call safely.
//
// Rules: every symbol is prefixed `cshims_`; every function returns libc's own result
// (-1 with errno set, or a pthread error code); errors are translated in Swift.
// eventfd, timerfd, poll and friends import directly from Glibc and are wrapped in
// Sources/ManagedThreads/System, not here.
#ifndef CSHIMS_H
#define CSHIMS_H

#include <pthread.h>
#include <signal.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <time.h>

// sys/eventfd.h, sys/signalfd.h and sys/timerfd.h are not part of Swift's Glibc module; including
// them here lets Swift import eventfd(2), signalfd(2) and timerfd_*(2) directly, with no wrapper.

#ifdef __cplusplus
extern "C" {
#endif

/// Start routine type for `cshims_thread_create`.
typedef void *_Nullable (*cshims_thread_start_t)(void *_Nullable);

/// Creates a joinable pthread. Exists because building a `pthread_attr_t` (stack size, caller-owned
/// stack) from Swift means juggling an uninitialised opaque struct; here it is init/use/destroy in
/// one place.
/// - `stack_addr` non-NULL: the thread runs on that caller-owned stack of `stack_size` bytes
///   (`pthread_attr_setstack`: glibc neither caches nor unmaps it).
/// - `stack_addr` NULL and `stack_size` > 0: glibc allocates a stack of that size.
/// - both 0/NULL: glibc's default (RLIMIT_STACK).
/// Returns 0 or the pthread error code (EAGAIN, EINVAL, EPERM).
int cshims_thread_create(pthread_t *_Nonnull out, void *_Nullable stack_addr, size_t stack_size,
                         cshims_thread_start_t _Nonnull start, void *_Nullable arg);

/// `pthread_setname_np` is GNU-only, so it is not visible to Swift's import of <pthread.h>.
/// Returns 0 or the error code (ERANGE when `name` is longer than 15 bytes).
int cshims_thread_setname(pthread_t thread, const char *_Nonnull name);

/// `pthread_getname_np`, GNU-only. Returns 0 or the error code (ERANGE when `len` < 16).
int cshims_thread_getname(pthread_t thread, char *_Nonnull buf, size_t len);

/// The stack size glibc reports for `thread` (`pthread_getattr_np`, GNU-only), for diagnostics.
/// Returns 0 or the error code.
int cshims_thread_stacksize(pthread_t thread, size_t *_Nonnull size);

/// `pthread_clockjoin_np` (glibc >= 2.31), GNU-only, on CLOCK_MONOTONIC: unlike
/// `pthread_timedjoin_np` (CLOCK_REALTIME), a wall-clock step cannot stretch the wait.
/// `abstime` is an absolute CLOCK_MONOTONIC deadline. Returns 0, ETIMEDOUT, or another error code.
int cshims_thread_clockjoin(pthread_t thread, const struct timespec *_Nonnull abstime);

/// `gettid`, GNU-only (glibc >= 2.30). The kernel id of the calling thread, as in /proc/self/task.
pid_t cshims_gettid(void);

/// FUTEX_WAIT_PRIVATE: sleeps while `*addr == expected`, at most `timeout` (relative,
/// CLOCK_MONOTONIC; NULL waits until woken). Exists because `syscall(2)` is variadic and Swift
/// cannot call variadic C functions. Returns 0, or -1 with errno (EAGAIN: value differed,
/// ETIMEDOUT, EINTR).
int cshims_futex_wait(uint32_t *_Nonnull addr, uint32_t expected,
                      const struct timespec *_Nullable timeout);

/// FUTEX_WAKE_PRIVATE: wakes up to `count` waiters on `addr`. Returns the number woken, or -1.
int cshims_futex_wake(uint32_t *_Nonnull addr, int count);

/// `tgkill(2)`: sends `sig` to one thread of this process. `syscall(2)` is variadic, so Swift
/// cannot call it. Returns 0, or -1 with errno (ESRCH: the thread is gone).
int cshims_tgkill(pid_t tid, int sig);

/// Installs, for `sig`, a handler that forwards the signal to the thread set with
/// `cshims_signal_set_forward_target` (with `tgkill`, which is async-signal-safe), and stores the
/// previous action in `previous`. Exists because a `struct sigaction` holds its handler in a union
/// Swift cannot set, and the handler itself must be C (it runs in signal context).
///
/// Why forward: a process-directed signal goes to any thread that does not block it. A thread
/// started before the signals were blocked (by Dispatch, a C library, the test runner) would
/// otherwise take the default action, which for SIGTERM ends the process. Forwarded, the signal
/// becomes pending on the target thread, which blocks it and reads it from its signalfd.
/// The handler uses SA_RESTART, so the thread it lands on sees no EINTR.
/// Returns 0, or -1 with errno (EINVAL).
int cshims_signal_install_forwarder(int sig, struct sigaction *_Nonnull previous);

/// Sets (tid > 0) or clears (0) the thread the forwarding handler for `sig` sends to. With no
/// target the handler drops the signal. Returns 0, or -1 with errno EINVAL for a bad `sig`.
int cshims_signal_set_forward_target(int sig, pid_t tid);

/// Installs, for `sig`, a handler that does nothing and is installed *without* SA_RESTART, so
/// that delivering `sig` to a thread makes the blocking system call it sits in fail with EINTR.
/// The previous action goes to `previous`. Returns 0, or -1 with errno (EINVAL).
int cshims_signal_install_interrupter(int sig, struct sigaction *_Nonnull previous);

/// Puts back an action saved by one of the install functions. Returns 0, or -1 with errno.
int cshims_signal_restore(int sig, const struct sigaction *_Nonnull previous);

/// Whether the installed action for `sig` is still one of this library's handlers (1) or not (0);
/// -1 with errno on a bad `sig`. Lets a caller notice that someone replaced the handler.
int cshims_signal_is_ours(int sig);

// Sequentially consistent atomics on a futex word. Swift's `Atomic` cannot hand out the address
// the futex syscall needs, so the word lives in plain memory and is accessed only through these.
static inline uint32_t cshims_atomic_load_u32(const uint32_t *_Nonnull p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
static inline void cshims_atomic_store_u32(uint32_t *_Nonnull p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t cshims_atomic_exchange_u32(uint32_t *_Nonnull p, uint32_t v) {
    return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t cshims_atomic_fetch_add_u32(uint32_t *_Nonnull p, uint32_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t cshims_atomic_fetch_and_u32(uint32_t *_Nonnull p, uint32_t v) {
    return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST);
}
/// Returns 1 and stores `desired` when `*p == expected`; otherwise returns 0.
static inline int cshims_atomic_cas_u32(uint32_t *_Nonnull p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

#ifdef __cplusplus
}
#endif

#endif
