/* A trimmed child must work before the service says it is ready: this runs the real
 * client path in one, over a socketpair, with a bound on every wait. Its log line is not
 * a client's: the child silences its own copy of the log level. */
#include "forkcheck.h"

#include <errno.h>
#include <stdbool.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child/client.h"
#include "child/line.h"
#include "child/sys.h"
#include "clock.h"
#include "log.h"

#define FORKCHECK_TIMEOUT_USEC (5 * USEC_PER_SEC)

static const char probe[] = "echod fork check\n";

_Noreturn static void child_run(int conn_fd) {
        struct client c = {
                .conn_fd = conn_fd,
                .stop_fd = -1,
                .idle_timeout_usec = FORKCHECK_TIMEOUT_USEC,
                .peer_text = "the fork check",
        };

        log_max_level = -1;
        client_run_child(&c);
}

static int remaining_ms(uint64_t deadline) {
        uint64_t now = clock_now_usec();

        return now >= deadline ? 0 : (int)((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
}

/* Sends the probe, half-closes, reads to EOF (or the deadline). Returns bytes read back,
 * compared with the probe: the length if equal, else -1. */
static ssize_t echo_probe(int fd, uint64_t deadline) {
        char buf[sizeof(probe)];
        size_t n = 0;

        if (write(fd, probe, sizeof(probe) - 1) != (ssize_t)sizeof(probe) - 1)
                return -1;
        (void)shutdown(fd, SHUT_WR);
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t r;

                if (poll(&p, 1, remaining_ms(deadline)) <= 0)
                        return -1;
                r = read(fd, buf + n, sizeof(buf) - n);
                if (r <= 0)
                        break;
                n += (size_t)r;
                if (n == sizeof(buf))
                        return -1; /* more than was sent */
        }
        return n == sizeof(probe) - 1 && memcmp(buf, probe, n) == 0 ? (ssize_t)n : -1;
}

/* Reaps pid by the deadline, else kills it first. Returns its wait status, -1 if it had to
 * be killed. */
static int reap_wait(pid_t pid, uint64_t deadline, bool *ret_took_sigchld) {
        sigset_t chld;
        int status;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        while (waitpid(pid, &status, WNOHANG) == 0) {
                int ms = remaining_ms(deadline);
                struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

                if (ms == 0) {
                        (void)kill(pid, SIGKILL);
                        (void)waitpid(pid, &status, 0);
                        return -1;
                }
                /* SIGCHLD is blocked (a signalfd reads it): wait for it here. */
                if (sigtimedwait(&chld, NULL, &ts) == SIGCHLD)
                        *ret_took_sigchld = true;
        }
        return status;
}

/* After a reload the children taken over exist already, and the SIGCHLD taken here may
 * have been one of theirs too (standard signals merge): it is made pending again, and the
 * main loop, which reaps with waitpid(-1), sees it. */
static int reap(pid_t pid, uint64_t deadline) {
        bool took_sigchld = false;
        int status = reap_wait(pid, deadline, &took_sigchld);

        if (took_sigchld)
                (void)kill(getpid(), SIGCHLD);
        return status;
}

int forkcheck_run(char *reason, size_t size) {
        uint64_t deadline = clock_now_usec() + FORKCHECK_TIMEOUT_USEC;
        int fds[2], status;
        ssize_t echoed;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
                snprintf(reason, size, "socketpair: %s", strerror(errno));
                return -EPROTO;
        }
        pid = sys_fork();
        if (pid == 0)
                child_run(fds[1]);
        close(fds[1]);
        if (pid < 0) {
                close(fds[0]);
                snprintf(reason, size, "fork: %s", strerror((int)-pid));
                return -EPROTO;
        }
        echoed = echo_probe(fds[0], deadline);
        close(fds[0]);
        status = reap(pid, deadline);

        if (status == -1)
                snprintf(reason, size, "no end within %u s",
                         (unsigned)(FORKCHECK_TIMEOUT_USEC / USEC_PER_SEC));
        else if (WIFSIGNALED(status))
                snprintf(reason, size, "killed by signal %s", strsignal(WTERMSIG(status)));
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != ECHO_END_EOF)
                snprintf(reason, size, "exited with status %d", WEXITSTATUS(status));
        else if (echoed < 0)
                snprintf(reason, size, "its echo was not the bytes sent");
        else
                return 0;
        return -EPROTO;
}
