/* Unit test of sdproto.c, against what libsystemd's sd_listen_fds_with_names(),
 * sd_is_socket*(), sd_notify() and sd_watchdog_enabled() do: fds passed to another pid are
 * not ours; names must match the count; the variables are unset whatever the result;
 * socket checks by type, family and listening state; a notification reaches a path and an
 * abstract socket; WATCHDOG_USEC for another pid is not ours. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdproto.h"
#include "tap.h"

static void set_listen(const char *pid, const char *fds, const char *names) {
        char buf[32];

        if (!pid) {
                snprintf(buf, sizeof(buf), "%d", (int)getpid());
                pid = buf;
        }
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", fds, 1);
        if (names)
                setenv("LISTEN_FDNAMES", names, 1);
        else
                unsetenv("LISTEN_FDNAMES");
}

static bool listen_env_gone(void) {
        return !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES");
}

static void free_names(char **names) {
        for (size_t i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
}

/* Puts a new socket of that type on fd at. */
static bool socket_at(int at, int type) {
        int fd = socket(AF_INET, type, 0);

        if (fd < 0 || (fd != at && dup2(fd, at) != at))
                return false;
        if (fd != at)
                close(fd);
        return true;
}

static void test_listen_fds(void) {
        char **names = NULL;
        int r;

        /* fds 3 and 4, as passed: a listening TCP socket, a UDP socket */
        tap(socket_at(3, SOCK_STREAM) && listen(3, 1) == 0 && socket_at(4, SOCK_DGRAM),
            "fds 3 and 4 are sockets");

        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        tap(sdproto_listen_fds(&names) == 0 && !names, "nothing passed: 0");
        set_listen(NULL, "2", "tcp:udp");
        r = sdproto_listen_fds(&names);
        tap(r == 2 && names && strcmp(names[0], "tcp") == 0 && strcmp(names[1], "udp") == 0 && !names[2],
            "2 fds with their names (%d)", r);
        tap(fcntl(3, F_GETFD) & FD_CLOEXEC && fcntl(4, F_GETFD) & FD_CLOEXEC, "... made FD_CLOEXEC");
        tap(listen_env_gone(), "... and the variables are unset");
        free_names(names);
        set_listen(NULL, "2", NULL);
        tap(sdproto_listen_fds(&names) == 2 && !names, "without LISTEN_FDNAMES: no names");
        set_listen(NULL, "2", "a::");
        tap(sdproto_listen_fds(&names) == -EINVAL && !names, "3 names for 2 fds: -EINVAL");
        set_listen(NULL, "2", "a");
        tap(sdproto_listen_fds(&names) == -EINVAL && listen_env_gone(), "1 name for 2 fds: -EINVAL, unset");
        set_listen(NULL, "2", ":");
        r = sdproto_listen_fds(&names);
        tap(r == 2 && names && !names[0][0] && !names[1][0], "empty names are names");
        free_names(names);
        set_listen("1", "2", NULL);
        tap(sdproto_listen_fds(&names) == 0 && listen_env_gone(), "LISTEN_PID of another process: 0, unset");
        set_listen("x", "2", NULL);
        tap(sdproto_listen_fds(&names) == -EINVAL, "LISTEN_PID not a number: -EINVAL");
        set_listen(NULL, "0", NULL);
        tap(sdproto_listen_fds(&names) == -EINVAL, "LISTEN_FDS=0: -EINVAL");
        set_listen(NULL, "2x", NULL);
        tap(sdproto_listen_fds(&names) == -EINVAL, "LISTEN_FDS not a number: -EINVAL");
}

static void test_is_socket(void) {
        int pipe_fd[2];

        tap(sdproto_is_socket(3, AF_UNSPEC, SOCK_STREAM, 1) == 1, "a listening TCP socket is one");
        tap(sdproto_is_socket(3, AF_UNSPEC, SOCK_STREAM, 0) == 0, "... not a connected one");
        tap(sdproto_is_socket(3, AF_INET6, 0, -1) == 0, "... not of AF_INET6");
        tap(sdproto_is_socket_inet(3, AF_UNSPEC, SOCK_STREAM, -1) == 1, "... an inet one");
        tap(sdproto_is_socket_unix(3, SOCK_STREAM, -1) == 0, "... not an AF_UNIX one");
        tap(sdproto_is_socket_inet(4, AF_UNSPEC, SOCK_DGRAM, -1) == 1,
            "a UDP socket is an inet datagram one");
        tap(pipe(pipe_fd) == 0 && sdproto_is_socket(pipe_fd[0], AF_UNSPEC, 0, -1) == 0,
            "a pipe is not a socket");
        close(pipe_fd[0]);
        close(pipe_fd[1]);
        tap(sdproto_is_socket(99, AF_UNSPEC, 0, -1) == -EBADF, "a closed fd: -EBADF");
}

static void test_notify(void) {
        char dir[] = "/tmp/test-sdproto-XXXXXX", path[128], abstract[64], got[64] = "";
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), afd;
        ssize_t n;

        tap(mkdtemp(dir) != NULL, "a temporary directory");
        snprintf(path, sizeof(path), "%s/notify", dir);
        strcpy(sun.sun_path, path);
        tap(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "a notify socket at a path");
        tap(sdproto_notify(path, "READY=1") == 0, "a message sent to it");
        n = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
        tap(n == 7 && memcmp(got, "READY=1", 7) == 0, "... arrives whole");

        snprintf(abstract, sizeof(abstract), "@test-sdproto-%d", (int)getpid());
        afd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path + 1, abstract + 1, strlen(abstract) - 1);
        tap(bind(afd, (struct sockaddr *)&sun,
                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(abstract))) == 0,
            "an abstract notify socket");
        tap(sdproto_notify(abstract, "WATCHDOG=1") == 0, "a message sent to it");
        n = recv(afd, got, sizeof(got) - 1, MSG_DONTWAIT);
        tap(n == 10 && memcmp(got, "WATCHDOG=1", 10) == 0, "... arrives whole");

        close(fd);
        unlink(path);
        tap(sdproto_notify(path, "STATUS=x") == -ENOENT, "to a socket that is gone: -ENOENT");
        tap(sdproto_notify("relative", "STATUS=x") == -EAFNOSUPPORT,
            "to an address of no known kind: -EAFNOSUPPORT");
        close(afd);
        rmdir(dir);
}

static void test_watchdog(void) {
        char pid[16];
        uint64_t usec = 0;

        snprintf(pid, sizeof(pid), "%d", (int)getpid());
        unsetenv("WATCHDOG_USEC");
        tap(sdproto_watchdog(&usec) == 0, "no WATCHDOG_USEC: 0");
        setenv("WATCHDOG_USEC", "400000", 1);
        tap(sdproto_watchdog(&usec) == 1 && usec == 400000, "WATCHDOG_USEC=400000: 1, 400000");
        tap(!getenv("WATCHDOG_USEC"), "... unset");
        setenv("WATCHDOG_USEC", "400000", 1);
        setenv("WATCHDOG_PID", pid, 1);
        tap(sdproto_watchdog(&usec) == 1 && !getenv("WATCHDOG_PID"), "WATCHDOG_PID ours: 1, unset");
        setenv("WATCHDOG_USEC", "400000", 1);
        setenv("WATCHDOG_PID", "1", 1);
        tap(sdproto_watchdog(&usec) == 0, "WATCHDOG_PID of another process: 0");
        setenv("WATCHDOG_USEC", "0", 1);
        tap(sdproto_watchdog(&usec) == -EINVAL, "WATCHDOG_USEC=0: -EINVAL");
}

int main(void) {
        test_listen_fds();
        test_is_socket();
        test_notify();
        test_watchdog();
        return tap_done();
}
