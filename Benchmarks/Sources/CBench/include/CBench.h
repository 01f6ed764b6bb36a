// CBench: the few libc pieces the benchmark's baselines need that Swift's Glibc module does not
// import. Every symbol is prefixed `cbench_` and returns libc's own result.
#ifndef CBENCH_H
#define CBENCH_H

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/types.h>
#include <time.h>

// sys/eventfd.h is not part of Swift's Glibc module: including it here makes `eventfd` and its
// flags visible to Swift directly.

#ifdef __cplusplus
extern "C" {
#endif

/// `gettid`, GNU-only: the kernel id of the calling thread, as listed in /proc/self/task.
/// The Foundation baseline uses it to tell when a `Thread` is really gone.
pid_t cbench_gettid(void);

/// `pthread_timedjoin_np`, GNU-only: joins `thread` or gives up at `abstime` (CLOCK_REALTIME).
/// The raw-pthread baseline of the `stuck` scenario uses it. Returns 0, ETIMEDOUT or an error code.
int cbench_timedjoin(pthread_t thread, const struct timespec *_Nonnull abstime);

/// `sched_setaffinity` of the calling thread to the one CPU `cpu` (CPU_SET is a macro Swift
/// cannot import). Threads it creates afterwards inherit the mask. Returns 0, or -1 with errno.
int cbench_pin_to_cpu(int cpu);

#ifdef __cplusplus
}
#endif

#endif
