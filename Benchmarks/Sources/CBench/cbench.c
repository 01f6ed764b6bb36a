// Out-of-line wrappers for GNU-only functions; `_GNU_SOURCE` comes from Package.swift.
#ifndef _GNU_SOURCE
#error "CBench must be compiled with _GNU_SOURCE (set in Package.swift cSettings)"
#endif

#include <sched.h>
#include "CBench.h"

#include <unistd.h>

pid_t cbench_gettid(void) { return gettid(); }

int cbench_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

int cbench_timedjoin(pthread_t thread, const struct timespec *abstime) {
    return pthread_timedjoin_np(thread, NULL, abstime);
}
