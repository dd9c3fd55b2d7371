/* The check a reload runs before it re-executes (see reexec.h): "BINARY --check ARGS...",
 * told which state version the running image writes (REEXEC_CHECK_VERSION_ENV), so that a
 * binary that could not read it refuses before the exec, not after, when the children and
 * the sockets would be lost. */
#include "reexec.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "clock.h"

extern char **environ;

/* Waits for pid until deadline; kills it then, with its process group (it leads one:
 * whatever it started goes too). Returns its wait status or -ETIMEDOUT. */
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
                        (void)kill(-pid, SIGKILL); /* alive, so the group is still its own */
                        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                                ;
                        return -ETIMEDOUT;
                }
                nanosleep(&tick, NULL);
        }
}

/* posix_spawn(): no copy of the parent's memory (parts of it are not forked at all,
 * fork.c), and the check starts with no signal blocked, as from systemd, in a process
 * group of its own, so that a timeout kills what it started too. */
static int check_spawn(const char *path, char **args, pid_t *ret_pid) {
        posix_spawnattr_t attr;
        sigset_t none;
        int r;

        sigemptyset(&none);
        r = posix_spawnattr_init(&attr);
        if (r != 0)
                return -r;
        r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
        if (r == 0)
                r = posix_spawn(ret_pid, path, NULL, &attr, args, environ);
        (void)posix_spawnattr_destroy(&attr);
        return -r;
}

int reexec_check(uint64_t timeout_usec, char *why, size_t size) {
        const char *path = reexec_path();
        char **args, version[16];
        int argc, r;
        pid_t pid;

        args = reexec_args("--check", &argc);
        if (!args) {
                snprintf(why, size, "out of memory");
                return -ENOMEM;
        }
        snprintf(version, sizeof(version), "%u", HANDOFF_VERSION);
        r = setenv(REEXEC_CHECK_VERSION_ENV, version, 1) < 0 ? -errno : check_spawn(path, args, &pid);
        (void)unsetenv(REEXEC_CHECK_VERSION_ENV);
        free(args);
        if (r < 0) {
                snprintf(why, size, "cannot run %s --check: %s", path, strerror(-r));
                return r;
        }
        r = wait_bounded(pid, clock_now_usec() + timeout_usec);
        if (r == -ETIMEDOUT)
                snprintf(why, size, "%s --check did not finish within %.3g s", path,
                         (double)timeout_usec / USEC_PER_SEC);
        else if (r < 0)
                snprintf(why, size, "waiting for %s --check failed: %s", path, strerror(-r));
        else if (WIFSIGNALED(r))
                snprintf(why, size, "%s --check was killed by signal %s", path, strsignal(WTERMSIG(r)));
        else if (WEXITSTATUS(r) != 0)
                snprintf(why, size, "%s --check exited with status %d", path, WEXITSTATUS(r));
        else
                return 0;
        return r < 0 ? r : -ENOEXEC;
}

int reexec_check_version(void) {
        const char *e = getenv(REEXEC_CHECK_VERSION_ENV);
        char *end;
        long v;

        if (!e)
                return 0; /* run by hand, not by a reload */
        errno = 0;
        v = strtol(e, &end, 10);
        if (errno != 0 || end == e || *end != '\0' || v < 0 || v > (long)UINT32_MAX ||
            !handoff_version_readable((uint32_t)v))
                return -EPROTONOSUPPORT;
        (void)unsetenv(REEXEC_CHECK_VERSION_ENV);
        return 0;
}
