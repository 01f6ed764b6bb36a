// CShims: the few pieces of libc that Swift cannot import, or cannot call safely.
//
// Rules: every symbol is prefixed `cshims_`; every function returns libc's own result
// (-1 with errno set, or a pthread error code); errors are translated in Swift.
// eventfd, timerfd, poll and friends import directly from Glibc and are wrapped in
// Sources/ManagedThreads/System, not here.
#ifndef CSHIMS_H
#define CSHIMS_H

#if !defined(__linux__)
#error "ManagedThreads supports Linux only (glibc): it is built on pthreads, futexes, eventfd, timerfd and /proc"
#endif

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

/// The calling thread's kernel name, read from the kernel the first time and kept per thread
/// (so a later rename of an unmanaged thread is not seen). Returns 0 or the error code.
int cshims_current_thread_name(char *_Nonnull buf, size_t len);

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

/// FUTEX_WAIT_BITSET: sleeps while `*addr == expected`, for at most `timeout` (relative, made an
/// absolute CLOCK_MONOTONIC deadline here; NULL: no limit); only a wake whose bitset shares a bit
/// with `bitset` wakes it. Returns 0 or -1 with errno (EAGAIN, EINTR, ETIMEDOUT).
int cshims_futex_wait_bitset(uint32_t *_Nonnull addr, uint32_t expected,
                             const struct timespec *_Nullable timeout, uint32_t bitset);

/// FUTEX_WAKE_BITSET: wakes at most `count` sleepers whose bitset shares a bit with `bitset`.
int cshims_futex_wake_bitset(uint32_t *_Nonnull addr, int count, uint32_t bitset);

/// `tgkill(2)`: sends `sig` to one thread of this process. `syscall(2)` is variadic, so Swift
/// cannot call it. Returns 0, or -1 with errno (ESRCH: the thread is gone).
int cshims_tgkill(pid_t tid, int sig);

/// Routes `sig` to the library's signal owner: installs a handler (SA_RESTART, every signal
/// blocked while it runs) that adds one to the eventfd `fd` and does nothing else, so whichever
/// thread the kernel picks, no mask is changed and nothing but an async-signal-safe `write` runs
/// in signal context. The action in place before is saved (for the fork rule below) and copied
/// to `previous`. `fd` must stay open for the rest of the process: a handler already running on
/// another thread may still write to it after `cshims_signal_unroute`.
///
/// In a process forked from the one that routed (no watcher thread exists there), the handler
/// puts the saved action back and raises the signal again, so the child behaves as it would
/// without the library (for SIGTERM by default: it ends) instead of dropping the signal.
/// Returns 0, or -1 with errno (EINVAL).
int cshims_signal_route(int sig, int fd, struct sigaction *_Nonnull previous);

/// Puts back the action saved by `cshims_signal_route` for `sig`. Returns 0, or -1 with errno.
int cshims_signal_unroute(int sig);

/// How many routing handlers are running right now, on any thread. After an unroute, a caller
/// waits for zero to know every delivery that reached the handler has been counted.
int cshims_signal_handlers_running(void);

/// Installs, for `sig`, a handler installed *without* SA_RESTART, so that delivering `sig` to a
/// thread makes the blocking system call it sits in fail with EINTR. The handler's only effect is
/// to clear the calling thread's interrupt word (see `cshims_thread_set_interrupt_word`), which
/// tells the sender the signal is no longer pending. The previous action goes to `previous`.
/// Returns 0, or -1 with errno (EINVAL).
int cshims_signal_install_interrupter(int sig, struct sigaction *_Nonnull previous);

/// Sets the calling thread's interrupt word (NULL: none). The interrupt handler stores 0 there;
/// a sender stores 1 before `tgkill` and sends nothing while it is 1, so a thread that masks the
/// signal has at most one copy pending. Thread-local (initial-exec TLS, safe in a handler).
void cshims_thread_set_interrupt_word(uint32_t *_Nullable word);

/// Puts back an action saved by `cshims_signal_install_interrupter`. Returns 0, or -1 with errno.
int cshims_signal_restore(int sig, const struct sigaction *_Nonnull previous);

/// Whether the installed action for `sig` is still one of this library's handlers (1) or not (0);
/// -1 with errno on a bad `sig`. Lets a caller notice that someone replaced the handler.
int cshims_signal_is_ours(int sig);

/// Whether `sig` has the default action (SIG_DFL) installed: 1, 0, or -1 with errno.
int cshims_signal_is_default(int sig);

/// Marks the library as in use in this process (the first managed thread or group). A process
/// forked after this is a "forked child" (see `cshims_in_forked_child`); one forked before is not.
void cshims_fork_note_library_used(void);

/// 1 in a process forked (without exec) from one where the library was in use, 0 otherwise. Set
/// by a `pthread_atfork` child handler registered when the shims are loaded. In such a child the
/// parent's threads do not exist and the library's locks may be held by threads that are gone.
int cshims_in_forked_child(void);

/// Flushes `stdout` unless another thread holds its lock right now (`ftrylockfile`), for a
/// process about to `_exit`: a stream locked mid-write could never be unlocked then, so waiting
/// for it would hang. Swift cannot name `stdout` under strict concurrency. Returns 0 when
/// flushed, 1 when skipped, EOF when the flush failed.
int cshims_flush_stdout_if_unlocked(void);

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


// ---- Stack capture (CShims/capture.c; policy in Diagnostics/StackCapture.swift).

/// Capture slots: at most this many captures in flight at once.
#define CSHIMS_CAPTURE_SLOTS 64
/// Frames kept per capture.
#define CSHIMS_CAPTURE_FRAMES 64

/// Installs the capture handler on `sig` (SA_SIGINFO | SA_RESTART, every signal blocked while it
/// runs), after warming up the unwinder. Returns 0 or -1 with errno.
int cshims_capture_install(int sig, struct sigaction *_Nonnull previous);
/// Whether `sig`'s handler is the capture handler.
int cshims_capture_is_installed(int sig);
/// `dladdr` (GNU): the image containing `address` and its load base, and the nearest exported
/// symbol at or below it (NULL when none). Returns 1 when `address` is in a loaded image.
int cshims_dladdr(const void *_Nullable address, const char *_Nullable *_Nonnull file,
                  uintptr_t *_Nonnull file_base, const char *_Nullable *_Nonnull symbol,
                  uintptr_t *_Nonnull symbol_address);
/// SIGRTMAX (a macro over a glibc call, which Swift cannot import).
int cshims_sigrtmax(void);
/// Runs the unwinder's one-time set-up outside any handler.
void cshims_capture_warm_up(void);
/// Whether thread `tid` is running the capture handler now.
int cshims_capture_handler_running(pid_t tid);
/// Arms a free slot for thread `tid`; returns its index, or -1 when all are in use.
int cshims_capture_arm(pid_t tid);
/// Waits (at most `timeout`, relative) until the slot's handler has written; 1 when it has.
int cshims_capture_wait(int index, const struct timespec *_Nullable timeout);
/// Copies a written slot's frames out (at most `capacity`) and frees it; returns the count.
int cshims_capture_take(int index, uintptr_t *_Nonnull frames, int capacity, uintptr_t *_Nonnull interrupted_pc);
/// Gives up on a slot: frees it unless a handler is writing it now (then returns 1; it is freed
/// by a later take or cancel once the handler is done).
int cshims_capture_cancel(int index);

#ifdef __cplusplus
}
#endif

#endif
