/* Re-execution in place, what start-up knows (see reexec.h): the binary's path, argv and
 * LISTEN_FDNAMES, which a reload puts back (reexec_exec.c), and the state the image before
 * handed over, checked before anything uses it: the descriptor it came in, its version,
 * the descriptors it names. */
#include "reexec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

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
} startup;

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
        startup.pids = calloc(startup.handoff.n_children + 1, sizeof(pid_t));
        for (size_t i = 0; startup.pids && i < startup.handoff.n_children; i++)
                startup.pids[startup.n_pids++] = startup.handoff.children[i].pid;
        startup.have_handoff = false;
        log_error("The state of the image before the reload names %s: refused, its %zu %s drained", why,
                  startup.handoff.n_children, startup.handoff.n_children == 1 ? "child is" : "children are");
}

/* The descriptor REEXEC_STATE_ENV names, if it is a whole number; -1 if not. */
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

/* Reads the previous image's state from the memfd named in REEXEC_STATE_ENV, then closes it. */
static void state_take(void) {
        const char *e = getenv(REEXEC_STATE_ENV), *invalid;
        ssize_t size, n;
        int fd;

        if (!e)
                return;
        startup.reloaded = true;
        fd = state_fd_parse(e);
        if (!handoff_state_fd_valid(fd)) {
                log_error("The state of the image before the reload is refused: %s=%s is not a "
                          "descriptor of 3 or above open on a memfd; its children are not known",
                          REEXEC_STATE_ENV, e);
                unsetenv(REEXEC_STATE_ENV);
                return;
        }
        unsetenv(REEXEC_STATE_ENV);
        size = handoff_read_fd(fd, &startup.state);
        close(fd);
        if (size < 0) {
                log_error_errno((int)size, "Failed to read the state of the image before the reload: %m; "
                                           "its children are not known");
                return;
        }
        if (handoff_decode(startup.state, (size_t)size, &startup.handoff) == 0) {
                startup.have_handoff = true;
                invalid = handoff_fds_invalid(&startup.handoff, fd, passed_count());
                if (invalid)
                        state_refuse(invalid);
                return;
        }
        n = handoff_pids(startup.state, (size_t)size, NULL, 0);
        startup.pids = n > 0 ? calloc((size_t)n, sizeof(pid_t)) : NULL;
        if (startup.pids)
                startup.n_pids = (size_t)handoff_pids(startup.state, (size_t)size, startup.pids, (size_t)n);
        if (n < 0)
                log_error("The state of the image before the reload is not readable: its children "
                          "are not known");
        else
                log_warning("The state of the image before the reload is of another version: its %zd "
                            "%s drained",
                            n, n == 1 ? "child is" : "children are");
}

void reexec_handoff_refuse(const char *why) {
        if (startup.have_handoff)
                state_refuse(why);
}

/* The binary's path as it was at start; a later upgrade renames a new file over it.
 * argv[0] when it is absolute and names the file running now: through a symlink
 * (/proc/self/exe resolves them), an upgrade that points the link at a new file is
 * followed. Else what /proc/self/exe names, else argv[0] as it is. */
static void path_remember(const char *argv0) {
        struct stat st_exe, st_argv0;
        ssize_t n = readlink("/proc/self/exe", startup.path, sizeof(startup.path) - 1);

        if (n <= 0 || (size_t)n >= sizeof(startup.path) - 1) {
                snprintf(startup.path, sizeof(startup.path), "%s", argv0);
                return;
        }
        startup.path[n] = '\0';
        if (argv0[0] == '/' && strlen(argv0) < sizeof(startup.path) && stat(startup.path, &st_exe) == 0 &&
            stat(argv0, &st_argv0) == 0 && st_exe.st_dev == st_argv0.st_dev &&
            st_exe.st_ino == st_argv0.st_ino)
                snprintf(startup.path, sizeof(startup.path), "%s", argv0);
}

void reexec_init(int argc, char *argv[]) {
        const char *names = getenv("LISTEN_FDNAMES");

        path_remember(argv[0]);
        startup.argv = argv;
        startup.argc = argc;
        if (names && getenv("LISTEN_FDS"))
                startup.fdnames = strdup(names);
        if (getenv(REEXEC_STATE_ENV))
                inherited_close_on_exec();
        state_take();
}

char **reexec_args(const char *option, int *ret_argc) {
        char **args = calloc((size_t)startup.argc + 2, sizeof(char *));
        int n = 0;

        if (!args)
                return NULL;
        args[n++] = startup.argv[0];
        if (option)
                args[n++] = (char *)option;
        for (int i = 1; i < startup.argc; i++)
                args[n++] = startup.argv[i];
        *ret_argc = n;
        return args;
}

const char *reexec_fdnames(void) {
        return startup.fdnames;
}

const char *reexec_path(void) {
        return startup.path;
}

const struct handoff *reexec_handoff(const pid_t **ret_pids, size_t *ret_n_pids) {
        *ret_pids = startup.pids;
        *ret_n_pids = startup.n_pids;
        return startup.have_handoff ? &startup.handoff : NULL;
}

bool reexec_reloaded(void) {
        return startup.reloaded;
}

void reexec_handoff_done(void) {
        free(startup.state);
        free(startup.pids);
        startup.state = NULL;
        startup.pids = NULL;
        startup.n_pids = 0;
        startup.have_handoff = false;
}
