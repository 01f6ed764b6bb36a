// Out-of-line wrappers for GNU-only and variadic libc entry points (see CShims.h for why each one exists).
#ifndef _GNU_SOURCE
#error "CShims must be compiled with _GNU_SOURCE (set by cSettings in Package.swift)"
#endif

#include "CShims.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <linux/futex.h>
#include <stdint.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

int cshims_thread_create(pthread_t *out, void *stack_addr, size_t stack_size,
                         cshims_thread_start_t start, void *arg) {
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0) {
        return rc;
    }
    rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_JOINABLE);
    if (rc == 0 && stack_addr != NULL) {
        rc = pthread_attr_setstack(&attr, stack_addr, stack_size);
    } else if (rc == 0 && stack_size > 0) {
        rc = pthread_attr_setstacksize(&attr, stack_size);
    }
    if (rc == 0) {
        rc = pthread_create(out, &attr, start, arg);
    }
    pthread_attr_destroy(&attr);
    return rc;
}

int cshims_thread_setname(pthread_t thread, const char *name) {
    return pthread_setname_np(thread, name);
}

int cshims_thread_getname(pthread_t thread, char *buf, size_t len) {
    return pthread_getname_np(thread, buf, len);
}

// The calling thread's kernel name as it was when first asked: a spawn records its spawner's
// name, and asking the kernel (prctl) on every spawn was one system call more than needed.
static __thread __attribute__((tls_model("initial-exec"))) char cshims_own_name[16];

int cshims_current_thread_name(char *buf, size_t len) {
    if (len < 16) {
        return ERANGE;
    }
    if (cshims_own_name[0] == 0) {
        int rc = pthread_getname_np(pthread_self(), cshims_own_name, sizeof cshims_own_name);
        if (rc != 0) {
            cshims_own_name[0] = 0;
            return rc;
        }
    }
    memcpy(buf, cshims_own_name, sizeof cshims_own_name);
    return 0;
}

int cshims_thread_stacksize(pthread_t thread, size_t *size) {
    pthread_attr_t attr;
    int rc = pthread_getattr_np(thread, &attr);
    if (rc != 0) {
        return rc;
    }
    rc = pthread_attr_getstacksize(&attr, size);
    pthread_attr_destroy(&attr);
    return rc;
}

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CSHIMS_TSAN 1
#endif
#endif

int cshims_thread_clockjoin(pthread_t thread, const struct timespec *abstime) {
#ifdef CSHIMS_TSAN
    // ThreadSanitizer intercepts pthread_timedjoin_np but not pthread_clockjoin_np: a join it does
    // not see leaves the thread "live" in its registry, and the next thread created on the same
    // (pooled) stack, which has the same pthread_t, trips its duplicate-thread check. Under TSan
    // only, translate the monotonic deadline into a CLOCK_REALTIME one (a wall-clock step can
    // then stretch the wait, which does not matter in a sanitizer run).
    struct timespec mono, real, target;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &real);
    // Saturate: a deadline centuries away (tv_sec near its maximum) must not overflow.
    long long secs = (long long)abstime->tv_sec - (long long)mono.tv_sec;
    if (secs > 100LL * 365 * 24 * 3600) {
        secs = 100LL * 365 * 24 * 3600;
    }
    long long left = secs * 1000000000LL + (abstime->tv_nsec - mono.tv_nsec);
    if (left < 0) {
        left = 0;
    }
    long long when = (long long)real.tv_sec * 1000000000LL + real.tv_nsec + left;
    target.tv_sec = (time_t)(when / 1000000000LL);
    target.tv_nsec = (long)(when % 1000000000LL);
    return pthread_timedjoin_np(thread, NULL, &target);
#else
    return pthread_clockjoin_np(thread, NULL, CLOCK_MONOTONIC, abstime);
#endif
}

pid_t cshims_gettid(void) {
    return gettid();
}

int cshims_futex_wait(uint32_t *addr, uint32_t expected, const struct timespec *timeout) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, timeout, NULL, 0);
}

int cshims_futex_wake(uint32_t *addr, int count) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

int cshims_futex_wait_bitset(uint32_t *addr, uint32_t expected, const struct timespec *timeout, uint32_t bitset) {
    struct timespec deadline;
    const struct timespec *absolute = NULL;
    if (timeout) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        // Saturate instead of overflowing: the caller's relative time is already clamped.
        if (deadline.tv_sec > INT64_MAX - timeout->tv_sec - 1) {
            deadline.tv_sec = INT64_MAX;
            deadline.tv_nsec = 0;
        } else {
            deadline.tv_sec += timeout->tv_sec;
            deadline.tv_nsec += timeout->tv_nsec;
            if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec += 1;
                deadline.tv_nsec -= 1000000000L;
            }
        }
        absolute = &deadline;
    }
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT_BITSET_PRIVATE, expected, absolute, NULL, bitset);
}

int cshims_futex_wake_bitset(uint32_t *addr, int count, uint32_t bitset) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE_BITSET_PRIVATE, count, NULL, NULL, bitset);
}

int cshims_tgkill(pid_t tid, int sig) {
    return (int)syscall(SYS_tgkill, getpid(), tid, sig);
}

// ---- The signal owner's C half (Sources/ManagedThreads/SignalOwner.swift owns the policy).

// Per signal: the eventfd the handler writes to, plus one (0: none). Read in signal context, so
// lock-free atomics only. Set before the handler is installed, never cleared: the descriptor is
// kept open for the life of the process, so a late handler never writes to a reused number.
static _Atomic int cshims_route_slots[_NSIG];
// The process that routed: a forked child sees another pid and gives the signal back.
static _Atomic pid_t cshims_route_pid;
// The actions in place before routing, written before the handler goes in.
static struct sigaction cshims_route_previous[_NSIG];
static _Atomic int cshims_route_running;

static void cshims_route_handler(int sig) {
    atomic_fetch_add(&cshims_route_running, 1);
    int saved = errno;
    if (sig > 0 && sig < _NSIG) {
        if (getpid() != atomic_load(&cshims_route_pid)) {
            // A forked child: nobody reads the eventfd here (and it is the parent's). Behave as
            // if the library had never been there: the old action, and the signal again. It is
            // blocked while this handler runs, so it is delivered, with that action, on return.
            sigaction(sig, &cshims_route_previous[sig], NULL);
            raise(sig);
        } else {
            int slot = atomic_load(&cshims_route_slots[sig]);
            if (slot > 0) {
                uint64_t one = 1;
                ssize_t n = write(slot - 1, &one, sizeof one);
                (void)n;  // EAGAIN: the counter is full, which still reads as "delivered".
            }
        }
    }
    errno = saved;
    atomic_fetch_sub(&cshims_route_running, 1);
}

static __thread __attribute__((tls_model("initial-exec"))) uint32_t *cshims_interrupt_word;

static void cshims_interrupt_handler(int sig) {
    (void)sig;
    uint32_t *word = cshims_interrupt_word;
    if (word != NULL) {
        __atomic_store_n(word, 0, __ATOMIC_SEQ_CST);
    }
}

void cshims_thread_set_interrupt_word(uint32_t *word) {
    cshims_interrupt_word = word;
}

static int cshims_install(int sig, void (*handler)(int), int flags, struct sigaction *previous) {
    if (sig <= 0 || sig >= _NSIG) {
        errno = EINVAL;
        return -1;
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = flags;
    sigfillset(&action.sa_mask);
    return sigaction(sig, &action, previous);
}

int cshims_signal_route(int sig, int fd, struct sigaction *previous) {
    if (sig <= 0 || sig >= _NSIG || fd < 0) {
        errno = EINVAL;
        return -1;
    }
    atomic_store(&cshims_route_pid, getpid());
    atomic_store(&cshims_route_slots[sig], fd + 1);
    if (sigaction(sig, NULL, &cshims_route_previous[sig]) != 0) {
        return -1;
    }
    *previous = cshims_route_previous[sig];
    return cshims_install(sig, cshims_route_handler, SA_RESTART, NULL);
}

int cshims_signal_unroute(int sig) {
    if (sig <= 0 || sig >= _NSIG) {
        errno = EINVAL;
        return -1;
    }
    return sigaction(sig, &cshims_route_previous[sig], NULL);
}

int cshims_signal_handlers_running(void) {
    return atomic_load(&cshims_route_running);
}

int cshims_signal_install_interrupter(int sig, struct sigaction *previous) {
    return cshims_install(sig, cshims_interrupt_handler, 0, previous);
}

int cshims_signal_restore(int sig, const struct sigaction *previous) {
    return sigaction(sig, previous, NULL);
}

int cshims_signal_is_ours(int sig) {
    struct sigaction current;
    if (sig <= 0 || sig >= _NSIG || sigaction(sig, NULL, &current) != 0) {
        errno = EINVAL;
        return -1;
    }
    return current.sa_handler == cshims_route_handler || current.sa_handler == cshims_interrupt_handler;
}

int cshims_signal_is_default(int sig) {
    struct sigaction current;
    if (sig <= 0 || sig >= _NSIG || sigaction(sig, NULL, &current) != 0) {
        errno = EINVAL;
        return -1;
    }
    return (current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == SIG_DFL;
}

int cshims_flush_stdout_if_unlocked(void) {
    if (ftrylockfile(stdout) != 0) {
        return 1;
    }
    int rc = fflush(stdout);
    funlockfile(stdout);
    return rc;
}

// ---- Fork: one policy, enforced at every entry point (Sources/ManagedThreads/Fork.swift).

static _Atomic int cshims_library_used;
static _Atomic int cshims_forked_child;

static void cshims_atfork_child(void) {
    if (atomic_load(&cshims_library_used)) {
        atomic_store(&cshims_forked_child, 1);
    }
}

__attribute__((constructor)) static void cshims_register_atfork(void) {
    pthread_atfork(NULL, NULL, cshims_atfork_child);
}

void cshims_fork_note_library_used(void) {
    if (!atomic_load_explicit(&cshims_library_used, memory_order_relaxed)) {
        atomic_store(&cshims_library_used, 1);
    }
}

int cshims_in_forked_child(void) {
    return atomic_load_explicit(&cshims_forked_child, memory_order_relaxed);
}
