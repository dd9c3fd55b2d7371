/* Re-execution in place (see reexec.h). What the new image needs is what systemd gave the
 * first one: its passed sockets at 3.. with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES in
 * the same order, NOTIFY_SOCKET, WATCHDOG_USEC/WATCHDOG_PID. Sockets opened from --listen
 * cannot be bound again while open: they go over by number in the state. Everything that
 * crosses execve() loses close-on-exec only for that call; if it fails, it is put back. */
#include "reexec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* After a reload, the image before may have left descriptors open without close-on-exec
 * (a refused state's report fds and --listen sockets, whatever an older version passed):
 * every one from 3 up gets it, and what this image adopts keeps it (its modules set it
 * again). close_range() may be refused (a kernel before 5.9, a seccomp filter): then one
 * by one, as /proc/self/fd lists them, or up to the limit of open files without /proc. */
static void fd_close_on_exec(int fd) {
        int flags = fcntl(fd, F_GETFD);

        if (flags >= 0 && !(flags & FD_CLOEXEC))
                (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

static void inherited_close_on_exec(void) {
        DIR *dir;
        struct dirent *de;
        long max;

        if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0)
                return;
        dir = opendir("/proc/self/fd");
        if (dir) {
                while ((de = readdir(dir)))
                        if (atoi(de->d_name) >= 3 && atoi(de->d_name) != dirfd(dir))
                                fd_close_on_exec(atoi(de->d_name));
                closedir(dir);
                return;
        }
        max = sysconf(_SC_OPEN_MAX);
        for (int fd = 3; fd < (max > 0 ? max : 1024); fd++)
                fd_close_on_exec(fd);
}

/* A state that is readable but names descriptors that cannot be the image before's: it is
 * refused as one of another version is, its children drained. */
static void state_refuse(const char *why) {
        re.pids = calloc(re.handoff.n_children + 1, sizeof(pid_t));
        for (size_t i = 0; re.pids && i < re.handoff.n_children; i++)
                re.pids[re.n_pids++] = re.handoff.children[i].pid;
        re.have_handoff = false;
        log_error("The state of the image before the reload names %s: refused, its %zu %s drained", why,
                  re.handoff.n_children, re.handoff.n_children == 1 ? "child is" : "children are");
}

/* The descriptor STATE_ENV names, if it is a whole number; -1 if not. */
static int state_fd_parse(const char *e) {
        char *end;
        long v;

        errno = 0;
        v = strtol(e, &end, 10);
        return errno == 0 && end != e && *end == '\0' && v >= 0 && v <= INT_MAX ? (int)v : -1;
}

/* The number of sockets systemd passed (LISTEN_FDS, when LISTEN_PID is this process). */
static int passed_count(void) {
        const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");

        if (!fds || !pid || state_fd_parse(pid) != (int)getpid())
                return 0;
        return state_fd_parse(fds) > 0 ? state_fd_parse(fds) : 0;
}

/* Reads the previous image's state from the memfd named in STATE_ENV, then closes it. */
static void state_take(void) {
        const char *e = getenv(STATE_ENV), *invalid;
        ssize_t size, n;
        int fd;

        if (!e)
                return;
        re.reloaded = true;
        fd = state_fd_parse(e);
        if (!handoff_state_fd_valid(fd)) {
                log_error("The state of the image before the reload is refused: %s=%s is not a "
                          "descriptor of 3 or above open on a memfd; its children are not known",
                          STATE_ENV, e);
                unsetenv(STATE_ENV);
                return;
        }
        unsetenv(STATE_ENV);
        size = handoff_read_fd(fd, &re.state);
        close(fd);
        if (size < 0) {
                log_error_errno((int)size, "Failed to read the state of the image before the reload: %m; "
                                           "its children are not known");
                return;
        }
        if (handoff_decode(re.state, (size_t)size, &re.handoff) == 0) {
                re.have_handoff = true;
                invalid = handoff_fds_invalid(&re.handoff, fd, passed_count());
                if (invalid)
                        state_refuse(invalid);
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
                            "%s drained",
                            n, n == 1 ? "child is" : "children are");
}

void reexec_handoff_refuse(const char *why) {
        if (re.have_handoff)
                state_refuse(why);
}

/* The binary's path as it was at start; a later upgrade renames a new file over it.
 * argv[0] when it is absolute and names the file running now: through a symlink
 * (/proc/self/exe resolves them), an upgrade that points the link at a new file is
 * followed. Else what /proc/self/exe names, else argv[0] as it is. */
static void path_remember(const char *argv0) {
        struct stat st_exe, st_argv0;
        ssize_t n = readlink("/proc/self/exe", re.path, sizeof(re.path) - 1);

        if (n <= 0 || (size_t)n >= sizeof(re.path) - 1) {
                snprintf(re.path, sizeof(re.path), "%s", argv0);
                return;
        }
        re.path[n] = '\0';
        if (argv0[0] == '/' && strlen(argv0) < sizeof(re.path) && stat(re.path, &st_exe) == 0 &&
            stat(argv0, &st_argv0) == 0 && st_exe.st_dev == st_argv0.st_dev &&
            st_exe.st_ino == st_argv0.st_ino)
                snprintf(re.path, sizeof(re.path), "%s", argv0);
}

void reexec_init(int argc, char *argv[]) {
        const char *names = getenv("LISTEN_FDNAMES");

        path_remember(argv[0]);
        re.argv = argv;
        re.argc = argc;
        if (names && getenv("LISTEN_FDS"))
                re.fdnames = strdup(names);
        if (getenv(STATE_ENV))
                inherited_close_on_exec();
        state_take();
}

char **reexec_args(const char *option, int *ret_argc) {
        char **args = calloc((size_t)re.argc + 2, sizeof(char *));
        int n = 0;

        if (!args)
                return NULL;
        args[n++] = re.argv[0];
        if (option)
                args[n++] = (char *)option;
        for (int i = 1; i < re.argc; i++)
                args[n++] = re.argv[i];
        *ret_argc = n;
        return args;
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
        free(c.fds);
        return r;
}
