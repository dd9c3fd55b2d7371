/* Re-execution in place, the exec itself (see reexec.h). What the new image needs is what
 * systemd gave the first one: its passed sockets at 3.. with LISTEN_FDS, LISTEN_PID and
 * LISTEN_FDNAMES in the same order, NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID. Sockets
 * opened from --listen cannot be bound again while open: they go over by number in the
 * state. Everything that crosses execve() loses close-on-exec only for that call; if it
 * fails, it is put back. */
#include "reexec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

/* Clears (keep) or sets close-on-exec on fd. */
static int cloexec_set(int fd, bool on) {
        int flags = fcntl(fd, F_GETFD);

        if (flags < 0)
                return -errno;
        flags = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
        return fcntl(fd, F_SETFD, flags) < 0 ? -errno : 0;
}

/* The descriptors that cross execve(): passed listeners, opened ones, report fds, state.
 * Room for all of them (systemd may pass any number of sockets): one left out would keep
 * close-on-exec, and the new image would miss it. */
struct crossing {
        int *fds;
        size_t n, max;
};

static int crossing_new(size_t max, struct crossing *ret) {
        *ret = (struct crossing){ .fds = calloc(max, sizeof(int)), .max = max };
        return ret->fds ? 0 : -ENOMEM;
}

static void crossing_add(struct crossing *c, int fd) {
        if (fd >= 0 && c->n < c->max)
                c->fds[c->n++] = fd;
}

/* Returns 0, or the first failure's -errno (the others are still done). */
static int crossing_close_on_exec(const struct crossing *c, bool on) {
        int r = 0;

        for (size_t i = 0; i < c->n; i++) {
                int q = cloexec_set(c->fds[i], on);
                if (q < 0 && r == 0)
                        r = q;
        }
        return r;
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
                                             REEXEC_STATE_ENV };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                unsetenv(names[i]);
}

/* The environment systemd started the first image with, plus the state's fd. */
static int env_put_back(int n_passed, const char *notify_socket, uint64_t watchdog_usec, int state_fd) {
        int r = env_set_number(REEXEC_STATE_ENV, (uint64_t)state_fd);

        if (r == 0 && n_passed > 0) {
                r = env_set_number("LISTEN_FDS", (uint64_t)n_passed);
                if (r == 0)
                        r = env_set_number("LISTEN_PID", (uint64_t)getpid());
                if (r == 0 && reexec_fdnames() && setenv("LISTEN_FDNAMES", reexec_fdnames(), 1) < 0)
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

/* execve() of the binary with main()'s argv. Returns only on failure: -errno, with why. */
static int exec_self(char *why, size_t size) {
        int argc, r;
        char **args = reexec_args(NULL, &argc);

        if (!args) {
                snprintf(why, size, "out of memory");
                return -ENOMEM;
        }
        execve(reexec_path(), args, environ);
        r = -errno;
        snprintf(why, size, "execve(%s) failed: %s", reexec_path(), strerror(-r));
        free(args);
        return r;
}

int reexec_exec(struct handoff *h, const struct listeners *listeners, const char *notify_socket,
                uint64_t watchdog_usec, char *why, size_t size) {
        struct crossing c;
        int n_passed, state_fd, r;

        /* every listener, the two report fds, the state */
        if (crossing_new(listeners->n + 3, &c) < 0) {
                snprintf(why, size, "out of memory");
                return -ENOMEM;
        }
        n_passed = listeners_hand_over(listeners, h, &c);
        state_fd = n_passed < 0 ? -1 : handoff_write_fd(h);
        if (n_passed < 0 || state_fd < 0) {
                if (n_passed < 0)
                        snprintf(why, size, "the sockets from systemd are not at descriptors 3.. any more");
                else
                        snprintf(why, size, "cannot write the state: %s", strerror(-state_fd));
                free(c.fds);
                return n_passed < 0 ? n_passed : state_fd;
        }
        crossing_add(&c, h->report_fds[0]);
        crossing_add(&c, h->report_fds[1]);
        crossing_add(&c, state_fd);

        r = env_put_back(n_passed, notify_socket, watchdog_usec, state_fd);
        if (r < 0)
                snprintf(why, size, "cannot set the environment: %s", strerror(-r));
        else if ((r = crossing_close_on_exec(&c, false)) < 0)
                snprintf(why, size, "cannot clear close-on-exec: %s", strerror(-r));
        else
                r = exec_self(why, size);
        /* Back as it was: a descriptor left without it would cross the next exec too. */
        if (crossing_close_on_exec(&c, true) < 0)
                log_warning("After the failed reload, some descriptors could not be made close-on-exec "
                            "again");
        env_clear();
        close(state_fd);
        free(c.fds);
        return r;
}
