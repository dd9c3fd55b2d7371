/* Re-execution in place (see reexec.h). What the new image needs is what systemd gave the
 * first one: its passed sockets at 3.. with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES in
 * the same order, NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID. Sockets opened from --listen
 * cannot be bound again while open: they go over by number in the state. Everything that
 * crosses execve() loses close-on-exec only for that call; if it fails, it is put back. */
#include "reexec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define STATE_ENV "ECHOD_STATE_FD"

extern char **environ;

static struct {
        char path[4096];
        char **argv; /* main()'s: it lives as long as the process */
        int argc;
        char *fdnames; /* LISTEN_FDNAMES as systemd set it, or NULL */
        void *state;   /* the handed-over state's buffer */
        struct handoff handoff;
        bool have_handoff;
        bool reloaded;
        pid_t *pids; /* a state of another version: its children's pids */
        size_t n_pids;
} re;

/* Reads the previous image's state from the memfd named in STATE_ENV, then closes it. */
static void handoff_take(void) {
        const char *e = getenv(STATE_ENV);
        ssize_t size, n;
        int fd, r;

        if (!e)
                return;
        fd = atoi(e);
        unsetenv(STATE_ENV);
        re.reloaded = true;
        size = fd > 2 ? handoff_read_fd(fd, &re.state) : -EBADF;
        if (fd > 2)
                close(fd);
        if (size < 0) {
                log_error_errno((int)size, "Failed to read the state of the image before the reload: %m; "
                                           "its children are not known");
                return;
        }
        r = handoff_decode(re.state, (size_t)size, &re.handoff);
        if (r == 0) {
                re.have_handoff = true;
                return;
        }
        n = handoff_pids(re.state, (size_t)size, NULL, 0);
        re.pids = n > 0 ? calloc((size_t)n, sizeof(pid_t)) : NULL;
        if (re.pids)
                re.n_pids = (size_t)handoff_pids(re.state, (size_t)size, re.pids, (size_t)n);
        if (n < 0)
                log_error("The state of the image before the reload is not readable: its children "
                          "are not known");
        else
                log_warning("The state of the image before the reload is of another version: its %zd "
                            "children are drained",
                            n);
}

void reexec_init(int argc, char *argv[]) {
        const char *names = getenv("LISTEN_FDNAMES");
        ssize_t n = readlink("/proc/self/exe", re.path, sizeof(re.path) - 1);

        /* The path as it was at start; a later upgrade renames a new file over it. */
        if (n <= 0 || (size_t)n >= sizeof(re.path) - 1)
                snprintf(re.path, sizeof(re.path), "%s", argv[0]);
        else
                re.path[n] = '\0';
        re.argv = argv;
        re.argc = argc;
        if (names && getenv("LISTEN_FDS"))
                re.fdnames = strdup(names);
        handoff_take();
}

const char *reexec_path(void) {
        return re.path;
}

const struct handoff *reexec_handoff(const pid_t **ret_pids, size_t *ret_n_pids) {
        *ret_pids = re.pids;
        *ret_n_pids = re.n_pids;
        return re.have_handoff ? &re.handoff : NULL;
}

bool reexec_reloaded(void) {
        return re.reloaded;
}

void reexec_handoff_done(void) {
        free(re.state);
        free(re.pids);
        re.state = NULL;
        re.pids = NULL;
        re.n_pids = 0;
        re.have_handoff = false;
}

/* Waits for pid until deadline; kills it then. Returns its wait status or -ETIMEDOUT. */
static int wait_bounded(pid_t pid, uint64_t deadline) {
        const struct timespec tick = { .tv_nsec = 5 * 1000 * 1000 };
        int status;

        for (;;) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return status;
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (clock_now_usec() >= deadline) {
                        (void)kill(pid, SIGKILL);
                        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                                ;
                        return -ETIMEDOUT;
                }
                nanosleep(&tick, NULL);
        }
}

int reexec_check(char *why, size_t size) {
        char **args = calloc((size_t)re.argc + 2, sizeof(char *));
        posix_spawnattr_t attr;
        sigset_t none;
        pid_t pid;
        int r;

        if (!args) {
                snprintf(why, size, "out of memory");
                return -ENOMEM;
        }
        args[0] = re.argv[0];
        args[1] = (char *)"--check";
        for (int i = 1; i < re.argc; i++)
                args[i + 1] = re.argv[i];
        /* posix_spawn(): no copy of the parent's memory (parts of it are not forked at all,
         * fork.c), and the check starts with no signal blocked, as from systemd. */
        sigemptyset(&none);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        r = -posix_spawn(&pid, re.path, NULL, &attr, args, environ);
        posix_spawnattr_destroy(&attr);
        free(args);
        if (r < 0) {
                snprintf(why, size, "cannot run %s --check: %s", re.path, strerror(-r));
                return r;
        }
        r = wait_bounded(pid, clock_now_usec() + REEXEC_CHECK_TIMEOUT_USEC);
        if (r == -ETIMEDOUT)
                snprintf(why, size, "%s --check did not finish within %llu s", re.path,
                         REEXEC_CHECK_TIMEOUT_USEC / USEC_PER_SEC);
        else if (r < 0)
                snprintf(why, size, "waiting for %s --check failed: %s", re.path, strerror(-r));
        else if (WIFSIGNALED(r))
                snprintf(why, size, "%s --check was killed by signal %s", re.path, strsignal(WTERMSIG(r)));
        else if (WEXITSTATUS(r) != 0)
                snprintf(why, size, "%s --check exited with status %d", re.path, WEXITSTATUS(r));
        else
                return 0;
        return r < 0 ? r : -ENOEXEC;
}

/* Clears (keep) or sets close-on-exec on fd. */
static int cloexec_set(int fd, bool on) {
        int flags = fcntl(fd, F_GETFD);

        if (flags < 0)
                return -errno;
        flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
        return fcntl(fd, F_SETFD, flags) < 0 ? -errno : 0;
}

/* The descriptors that cross execve(): passed listeners, opened ones, report fds, state. */
struct crossing {
        int fds[HANDOFF_MAX_OPENED * 2 + 8];
        size_t n;
};

static void crossing_add(struct crossing *c, int fd) {
        if (fd >= 0 && c->n < sizeof(c->fds) / sizeof(c->fds[0]))
                c->fds[c->n++] = fd;
}

static void crossing_close_on_exec(const struct crossing *c, bool on) {
        for (size_t i = 0; i < c->n; i++)
                (void)cloexec_set(c->fds[i], on);
}

/* The listeners into the state and the crossing set; the passed ones must be where systemd
 * put them (3.., in order) for LISTEN_FDS to name them again. Returns how many were passed. */
static int listeners_hand_over(const struct listeners *l, struct handoff *h, struct crossing *c) {
        size_t n_passed = 0;

        h->n_opened = 0;
        for (size_t i = 0; i < l->n; i++) {
                const struct listener *it = &l->items[i];
                if (it->passed) {
                        if (it->fd != 3 + (int)n_passed)
                                return -EBADFD;
                        n_passed++;
                } else if (h->n_opened < HANDOFF_MAX_OPENED) {
                        h->opened[h->n_opened++] = (struct handoff_opened){
                                .fd = it->fd,
                                .created_path = it->created_path,
                        };
                }
                crossing_add(c, it->fd);
        }
        return (int)n_passed;
}

static int env_set_number(const char *name, uint64_t v) {
        char buf[32];

        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        return setenv(name, buf, 1) < 0 ? -errno : 0;
}

static void env_clear(void) {
        static const char *const names[] = { "LISTEN_FDS",    "LISTEN_PID",    "LISTEN_FDNAMES",
                                             "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                             STATE_ENV };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                unsetenv(names[i]);
}

/* The environment systemd started the first image with, plus the state's fd. */
static int env_put_back(int n_passed, const char *notify_socket, uint64_t watchdog_usec, int state_fd) {
        int r = env_set_number(STATE_ENV, (uint64_t)state_fd);

        if (r == 0 && n_passed > 0) {
                r = env_set_number("LISTEN_FDS", (uint64_t)n_passed);
                if (r == 0)
                        r = env_set_number("LISTEN_PID", (uint64_t)getpid());
                if (r == 0 && re.fdnames && setenv("LISTEN_FDNAMES", re.fdnames, 1) < 0)
                        r = -errno;
        }
        if (r == 0 && notify_socket && setenv("NOTIFY_SOCKET", notify_socket, 1) < 0)
                r = -errno;
        if (r == 0 && watchdog_usec > 0) {
                r = env_set_number("WATCHDOG_USEC", watchdog_usec);
                if (r == 0)
                        r = env_set_number("WATCHDOG_PID", (uint64_t)getpid());
        }
        return r;
}

int reexec_exec(struct handoff *h, const struct listeners *listeners, const char *notify_socket,
                uint64_t watchdog_usec, char *why, size_t size) {
        struct crossing c = { .n = 0 };
        int n_passed, state_fd, r;

        n_passed = listeners_hand_over(listeners, h, &c);
        if (n_passed < 0) {
                snprintf(why, size, "the sockets from systemd are not at descriptors 3.. any more");
                return n_passed;
        }
        crossing_add(&c, h->report_fds[0]);
        crossing_add(&c, h->report_fds[1]);
        state_fd = handoff_write_fd(h);
        if (state_fd < 0) {
                snprintf(why, size, "cannot write the state: %s", strerror(-state_fd));
                return state_fd;
        }
        crossing_add(&c, state_fd);

        r = env_put_back(n_passed, notify_socket, watchdog_usec, state_fd);
        if (r == 0) {
                crossing_close_on_exec(&c, false);
                execve(re.path, re.argv, environ);
                r = -errno;
                snprintf(why, size, "execve(%s) failed: %s", re.path, strerror(errno));
                crossing_close_on_exec(&c, true);
        } else
                snprintf(why, size, "cannot set the environment: %s", strerror(-r));
        env_clear();
        close(state_fd);
        return r;
}
