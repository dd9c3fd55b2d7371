/* Linux system calls made directly, for the client's process. A forked child has no page
 * mapped that it has not touched since fork(): every libc function it calls costs it a page
 * fault, and its exit then unmaps all that fault-around mapped with it. So the child's code
 * (client.c, echo.c, line.c) calls these, and runs on echod's own pages only. They return
 * the result or -errno and never touch errno (a write to libc's thread data, one more page).
 * That fast path exists on x86_64 and aarch64 (trim.c says what it assumes). Everywhere
 * else, in sanitizer builds (whose runtimes check libc's calls) and with
 * -Dportable_child=true, SYS_VIA_LIBC: the same functions are libc's calls, returning
 * -errno, and children keep libc (trim.c). See docs/design.md, "A client's process". */
#pragma once

#include <errno.h>
#include <poll.h>
#include <signal.h> /* SIGCHLD, SIG_SETMASK */
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#if defined(ECHOD_SANITIZED) || defined(ECHOD_PORTABLE_CHILD)
#define SYS_VIA_LIBC 1
#elif defined(__x86_64__)
static inline long sys_call6(long n, long a1, long a2, long a3, long a4, long a5, long a6) {
        register long r10 __asm__("r10") = a4;
        register long r8 __asm__("r8") = a5;
        register long r9 __asm__("r9") = a6;
        long ret;

        __asm__ volatile("syscall"
                         : "=a"(ret)
                         : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                         : "rcx", "r11", "memory");
        return ret;
}
#elif defined(__aarch64__)
static inline long sys_call6(long n, long a1, long a2, long a3, long a4, long a5, long a6) {
        register long x8 __asm__("x8") = n;
        register long x0 __asm__("x0") = a1;
        register long x1 __asm__("x1") = a2;
        register long x2 __asm__("x2") = a3;
        register long x3 __asm__("x3") = a4;
        register long x4 __asm__("x4") = a5;
        register long x5 __asm__("x5") = a6;

        __asm__ volatile("svc 0"
                         : "+r"(x0)
                         : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                         : "memory");
        return x0;
}
#else
#define SYS_VIA_LIBC 1
#endif

/* A signal set as the kernel takes it: bit (sig - 1) for each signal. */
#define SYS_SIGBIT(sig) (1ull << ((sig)-1))

#ifdef SYS_VIA_LIBC
#include "sys-libc.h"
#else

#define sys_call(n, a1, a2, a3) sys_call6((n), (long)(a1), (long)(a2), (long)(a3), 0, 0, 0)

#define SYS_SIGSET_SIZE 8 /* the kernel's sigset_t: 64 bits */

static inline ssize_t sys_read(int fd, void *buf, size_t size) {
        return sys_call(SYS_read, fd, buf, size);
}

static inline ssize_t sys_write(int fd, const void *buf, size_t size) {
        return sys_call(SYS_write, fd, buf, size);
}

static inline ssize_t sys_send(int fd, const void *buf, size_t size, int flags) {
        return sys_call6(SYS_sendto, fd, (long)buf, (long)size, flags, 0, 0);
}

static inline ssize_t sys_splice(int fd_in, int fd_out, size_t size, unsigned flags) {
        return sys_call6(SYS_splice, fd_in, 0, fd_out, 0, (long)size, flags);
}

static inline int sys_pipe2(int fds[2], int flags) {
        return (int)sys_call(SYS_pipe2, fds, flags, 0);
}

static inline int sys_close(int fd) {
        return (int)sys_call(SYS_close, fd, 0, 0);
}

static inline int sys_close_range(unsigned first, unsigned last) {
        return (int)sys_call(SYS_close_range, first, last, 0);
}

static inline int sys_setsockopt(int fd, int level, int name, const void *value, socklen_t size) {
        return (int)sys_call6(SYS_setsockopt, fd, level, name, (long)value, (long)size, 0);
}

static inline int sys_shutdown(int fd, int how) {
        return (int)sys_call(SYS_shutdown, fd, how, 0);
}

static inline int sys_ioctl(int fd, unsigned long request, void *arg) {
        return (int)sys_call(SYS_ioctl, fd, request, arg);
}

static inline int sys_fcntl(int fd, int cmd, long arg) {
        return (int)sys_call(SYS_fcntl, fd, cmd, arg);
}

/* ppoll() without a signal mask: the mask stays as it is while waiting. */
static inline int sys_poll(struct pollfd *fds, unsigned n, const struct timespec *timeout) {
        return (int)sys_call6(SYS_ppoll, (long)fds, n, (long)timeout, 0, SYS_SIGSET_SIZE, 0);
}

static inline int sys_sigmask_set(uint64_t mask) {
        return (int)sys_call6(SYS_rt_sigprocmask, SIG_SETMASK, (long)&mask, 0, SYS_SIGSET_SIZE, 0, 0);
}

static inline pid_t sys_getpid(void) {
        return (pid_t)sys_call(SYS_getpid, 0, 0, 0);
}

/* A system call, not the vDSO: the vDSO is two more pages to fault in. */
static inline uint64_t sys_now_usec(void) {
        struct timespec ts = {};

        sys_call(SYS_clock_gettime, CLOCK_MONOTONIC, &ts, 0);
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000u;
}

/* fork() semantics, as _Fork(): a copy of the address space and the descriptor table,
 * SIGCHLD to the parent at exit. Returns the child's pid, 0 in the child, or -errno. The
 * child must not call libc: libc's idea of its thread (its tid, its robust mutex list) is
 * still the parent's. */
static inline pid_t sys_fork(void) {
        return (pid_t)sys_call(SYS_clone, SIGCHLD, 0, 0);
}

_Noreturn static inline void sys_exit(int status) {
        for (;;)
                sys_call(SYS_exit_group, status, 0, 0);
}
#endif
