// Stack capture of another thread: a signal handler that unwinds the interrupted thread's stack
// into a slot armed for it (Sources/ManagedThreads/Diagnostics/StackCapture.swift owns the policy).
//
// Why this is safe to run in a signal handler, on a thread stopped anywhere:
// - the unwinder is libgcc's `_Unwind_Backtrace`, which walks `.eh_frame` (Swift code keeps no
//   frame pointers at -O, so a frame-pointer walk would lose most frames). Since glibc 2.35 it
//   finds each frame's unwind table with `_dl_find_object`, which takes no lock and allocates
//   nothing; its one-time set-up is done outside any handler (`cshims_capture_warm_up`);
// - the handler touches only its own slot, with atomics, and the futex syscall;
// - a slot is claimed by CAS (armed -> writing) by the one handler whose tid matches, so a late
//   handler (the requester gave up) finds the slot no longer armed and writes nothing.

#include "CShims.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>
#include <unwind.h>

enum { SLOT_FREE = 0, SLOT_ARMED = 1, SLOT_WRITING = 2, SLOT_DONE = 3 };

struct cshims_capture_slot {
    _Atomic uint32_t state;
    _Atomic pid_t tid;
    /// Set when the requester gave up while a handler was writing: the next arm may reuse it.
    _Atomic int abandoned;
    int count;
    uintptr_t interrupted_pc;
    uintptr_t frames[CSHIMS_CAPTURE_FRAMES];
};

static struct cshims_capture_slot cshims_capture_slots[CSHIMS_CAPTURE_SLOTS];

// Threads running the capture handler now (every signal is blocked there, which /proc shows:
// a requester must not take that for "blocks the signal").
static _Atomic pid_t cshims_capture_running[CSHIMS_CAPTURE_SLOTS];

int cshims_capture_handler_running(pid_t tid) {
    for (int i = 0; i < CSHIMS_CAPTURE_SLOTS; i++) {
        if (atomic_load(&cshims_capture_running[i]) == tid) {
            return 1;
        }
    }
    return 0;
}

struct cshims_unwind_state {
    struct cshims_capture_slot *slot;
};

static _Unwind_Reason_Code cshims_capture_frame(struct _Unwind_Context *context, void *arg) {
    struct cshims_unwind_state *state = arg;
    struct cshims_capture_slot *slot = state->slot;
    if (slot->count >= CSHIMS_CAPTURE_FRAMES) {
        return _URC_END_OF_STACK;
    }
    int before = 0;
    uintptr_t ip = (uintptr_t)_Unwind_GetIPInfo(context, &before);
    if (ip == 0) {
        return _URC_END_OF_STACK;
    }
    slot->frames[slot->count++] = ip;
    return _URC_NO_REASON;
}

static void cshims_capture_handler(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)info;
    int saved = errno;
    pid_t me = (pid_t)syscall(SYS_gettid);
    int running = -1;
    for (int i = 0; i < CSHIMS_CAPTURE_SLOTS && running < 0; i++) {
        pid_t none = 0;
        if (atomic_compare_exchange_strong(&cshims_capture_running[i], &none, me)) {
            running = i;
        }
    }
    for (int i = 0; i < CSHIMS_CAPTURE_SLOTS; i++) {
        struct cshims_capture_slot *slot = &cshims_capture_slots[i];
        if (atomic_load(&slot->tid) != me) {
            continue;
        }
        uint32_t armed = SLOT_ARMED;
        if (!atomic_compare_exchange_strong(&slot->state, &armed, SLOT_WRITING)) {
            continue;
        }
        slot->count = 0;
        slot->interrupted_pc = 0;
        if (context != NULL) {
            ucontext_t *uc = context;
            slot->interrupted_pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
        }
        struct cshims_unwind_state state = {slot};
        _Unwind_Backtrace(cshims_capture_frame, &state);
        atomic_store(&slot->state, SLOT_DONE);
        syscall(SYS_futex, &slot->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    if (running >= 0) {
        atomic_store(&cshims_capture_running[running], 0);
    }
    errno = saved;
}

static _Unwind_Reason_Code cshims_capture_discard(struct _Unwind_Context *context, void *arg) {
    (void)context;
    (void)arg;
    return _URC_NO_REASON;
}

int cshims_sigrtmax(void) {
    return SIGRTMAX;
}

void cshims_capture_warm_up(void) {
    // The unwinder's one-time set-up (its register table, under pthread_once) happens here, on
    // an ordinary thread, never first in a handler.
    _Unwind_Backtrace(cshims_capture_discard, NULL);
}

int cshims_capture_install(int sig, struct sigaction *previous) {
    if (sig <= 0 || sig >= _NSIG) {
        errno = EINVAL;
        return -1;
    }
    cshims_capture_warm_up();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = cshims_capture_handler;
    // SA_RESTART: a read or accept the thread is blocked in resumes after the capture (calls the
    // kernel never restarts, such as poll, return EINTR as for any signal).
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&action.sa_mask);
    return sigaction(sig, &action, previous);
}

int cshims_capture_is_installed(int sig) {
    struct sigaction current;
    if (sig <= 0 || sig >= _NSIG || sigaction(sig, NULL, &current) != 0) {
        return 0;
    }
    return (current.sa_flags & SA_SIGINFO) != 0 && current.sa_sigaction == cshims_capture_handler;
}

int cshims_capture_arm(pid_t tid) {
    for (int i = 0; i < CSHIMS_CAPTURE_SLOTS; i++) {
        struct cshims_capture_slot *slot = &cshims_capture_slots[i];
        uint32_t free_state = SLOT_FREE;
        uint32_t done = SLOT_DONE;
        if (atomic_compare_exchange_strong(&slot->state, &free_state, SLOT_WRITING) ||
            (atomic_load(&slot->abandoned) && atomic_compare_exchange_strong(&slot->state, &done, SLOT_WRITING))) {
            atomic_store(&slot->abandoned, 0);
            // Held as "writing" while the tid is set, so no handler claims it half-made.
            slot->count = 0;
            atomic_store(&slot->tid, tid);
            atomic_store(&slot->state, SLOT_ARMED);
            return i;
        }
    }
    return -1;
}

int cshims_capture_wait(int index, const struct timespec *timeout) {
    if (index < 0 || index >= CSHIMS_CAPTURE_SLOTS) {
        errno = EINVAL;
        return -1;
    }
    struct cshims_capture_slot *slot = &cshims_capture_slots[index];
    uint32_t state = atomic_load(&slot->state);
    if (state == SLOT_DONE) {
        return 1;
    }
    syscall(SYS_futex, &slot->state, FUTEX_WAIT_PRIVATE, state, timeout, NULL, 0);
    return atomic_load(&slot->state) == SLOT_DONE ? 1 : 0;
}

int cshims_capture_take(int index, uintptr_t *frames, int capacity, uintptr_t *interrupted_pc) {
    if (index < 0 || index >= CSHIMS_CAPTURE_SLOTS) {
        return -1;
    }
    struct cshims_capture_slot *slot = &cshims_capture_slots[index];
    int count = slot->count < capacity ? slot->count : capacity;
    memcpy(frames, slot->frames, (size_t)count * sizeof(uintptr_t));
    *interrupted_pc = slot->interrupted_pc;
    atomic_store(&slot->tid, 0);
    atomic_store(&slot->state, SLOT_FREE);
    return count;
}

int cshims_capture_cancel(int index) {
    if (index < 0 || index >= CSHIMS_CAPTURE_SLOTS) {
        return -1;
    }
    struct cshims_capture_slot *slot = &cshims_capture_slots[index];
    uint32_t armed = SLOT_ARMED;
    if (atomic_compare_exchange_strong(&slot->state, &armed, SLOT_WRITING)) {
        // No handler had claimed it: free it.
        atomic_store(&slot->tid, 0);
        atomic_store(&slot->state, SLOT_FREE);
        return 0;
    }
    // A handler is writing (or has written): marked abandoned, so the next arm reuses it once the
    // handler is done; a writer that never finishes (a thread stopped in its handler for good)
    // keeps one slot of 64.
    atomic_store(&slot->abandoned, 1);
    uint32_t done = SLOT_DONE;
    if (atomic_compare_exchange_strong(&slot->state, &done, SLOT_WRITING)) {
        atomic_store(&slot->abandoned, 0);
        atomic_store(&slot->tid, 0);
        atomic_store(&slot->state, SLOT_FREE);
        return 0;
    }
    return 1;
}

int cshims_dladdr(const void *address, const char **file, uintptr_t *file_base, const char **symbol,
                  uintptr_t *symbol_address) {
    Dl_info info;
    memset(&info, 0, sizeof info);
    if (dladdr(address, &info) == 0) {
        return 0;
    }
    *file = info.dli_fname;
    *file_base = (uintptr_t)info.dli_fbase;
    *symbol = info.dli_sname;
    *symbol_address = (uintptr_t)info.dli_saddr;
    return 1;
}
