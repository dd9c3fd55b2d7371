/* sys.h's functions as libc's calls, for the portable path (see sys.h): a child made with
 * _Fork() has a consistent libc, and libc, the loader, the heap and the vDSO are forked
 * with it (trim.c). Same contract: the result or -errno. Included by sys.h only. */
#pragma once

#include <fcntl.h>
#include <sys/ioctl.h>

static inline long sys_result(long r) {
        return r < 0 ? -errno : r;
}

static inline ssize_t sys_read(int fd, void *buf, size_t size) {
        return sys_result(read(fd, buf, size));
}

static inline ssize_t sys_write(int fd, const void *buf, size_t size) {
        return sys_result(write(fd, buf, size));
}

static inline ssize_t sys_send(int fd, const void *buf, size_t size, int flags) {
        return sys_result(send(fd, buf, size, flags));
}

static inline ssize_t sys_splice(int fd_in, int fd_out, size_t size, unsigned flags) {
        return sys_result(splice(fd_in, NULL, fd_out, NULL, size, flags));
}

static inline int sys_pipe2(int fds[2], int flags) {
        return (int)sys_result(pipe2(fds, flags));
}

static inline int sys_close(int fd) {
        return (int)sys_result(close(fd));
}

static inline int sys_close_range(unsigned first, unsigned last) {
        return (int)sys_result(close_range(first, last, 0));
}

static inline int sys_setsockopt(int fd, int level, int name, const void *value, socklen_t size) {
        return (int)sys_result(setsockopt(fd, level, name, value, size));
}

static inline int sys_shutdown(int fd, int how) {
        return (int)sys_result(shutdown(fd, how));
}

static inline int sys_ioctl(int fd, unsigned long request, void *arg) {
        return (int)sys_result(ioctl(fd, request, arg));
}

static inline int sys_fcntl(int fd, int cmd, long arg) {
        return (int)sys_result(fcntl(fd, cmd, arg));
}

/* ppoll() without a signal mask: the mask stays as it is while waiting. */
static inline int sys_poll(struct pollfd *fds, unsigned n, const struct timespec *timeout) {
        return (int)sys_result(ppoll(fds, n, timeout, NULL));
}

static inline int sys_sigmask_set(uint64_t mask) {
        sigset_t set;

        sigemptyset(&set);
        for (int sig = 1; sig <= 64; sig++)
                if (mask & SYS_SIGBIT(sig))
                        sigaddset(&set, sig);
        return (int)sys_result(sigprocmask(SIG_SETMASK, &set, NULL));
}

static inline pid_t sys_getpid(void) {
        return getpid();
}

static inline uint64_t sys_now_usec(void) {
        return clock_now_usec();
}

/* fork() without the atfork handlers (libsystemd's among them): returns the child's pid,
 * 0 in the child, or -errno. */
static inline pid_t sys_fork(void) {
        return (pid_t)sys_result(_Fork());
}

_Noreturn static inline void sys_exit(int status) {
        _exit(status);
}
