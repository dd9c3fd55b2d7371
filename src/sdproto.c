/* systemd's socket passing and notification, spoken directly. libsystemd would cost every
 * connection: with the six libraries it pulls in on Debian 12 it is 38 more mappings, and a
 * fork pays for each mapping of the parent even when it is marked MADV_DONTFORK (the kernel
 * copies the whole map, then takes those out one by one). Loaded only while called, it
 * can fail to load after an upgrade, and notifications would stop. Both protocols are
 * small, documented (sd_listen_fds(3), sd_notify(3)) and stable, so echod speaks them
 * itself: no library to load, nothing for packagers to declare. */
#include "sdproto.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A decimal number in [min, max], the whole string. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char *end;
        uint64_t v;

        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* 1 if the variable names this process or is unset (when unset_ok), 0 if another, -errno. */
static int pid_is_ours(const char *name, bool unset_ok) {
        const char *e = getenv(name);
        uint64_t pid;

        if (!e)
                return unset_ok;
        if (parse_u64(e, 1, INT32_MAX, &pid) < 0)
                return -EINVAL;
        return (pid_t)pid == getpid();
}

/* Splits LISTEN_FDNAMES at ':' into exactly n names (empty ones kept). */
static int names_split(const char *e, int n, char ***ret) {
        char **names = calloc((size_t)n + 1, sizeof(char *));
        int i = 0, r = 0;

        if (!names)
                return -ENOMEM;
        for (const char *p = e;; p++) {
                size_t len = strcspn(p, ":");

                if (i == n) {
                        r = -EINVAL; /* more names than fds */
                        break;
                }
                names[i] = strndup(p, len);
                if (!names[i++]) {
                        r = -ENOMEM;
                        break;
                }
                p += len;
                if (*p == '\0')
                        break;
        }
        if (r == 0 && i != n)
                r = -EINVAL; /* fewer */
        if (r < 0) {
                for (int j = 0; j < n; j++)
                        free(names[j]);
                free(names);
                return r;
        }
        *ret = names;
        return 0;
}

static int listen_fds(char ***ret_names) {
        uint64_t n;
        int r = pid_is_ours("LISTEN_PID", false);

        if (r <= 0)
                return r;
        if (!getenv("LISTEN_FDS"))
                return 0;
        if (parse_u64(getenv("LISTEN_FDS"), 1, INT32_MAX - SDPROTO_LISTEN_FDS_START, &n) < 0)
                return -EINVAL;
        for (int fd = SDPROTO_LISTEN_FDS_START; fd < SDPROTO_LISTEN_FDS_START + (int)n; fd++) {
                int flags = fcntl(fd, F_GETFD);
                if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
                        return -errno;
        }
        if (getenv("LISTEN_FDNAMES")) {
                r = names_split(getenv("LISTEN_FDNAMES"), (int)n, ret_names);
                if (r < 0)
                        return r;
        }
        return (int)n;
}

int sdproto_listen_fds(char ***ret_names) {
        int r;

        *ret_names = NULL;
        r = listen_fds(ret_names);
        /* Children must not think the sockets are theirs. */
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        return r;
}

static int socket_family(int fd, int type, int listening) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        struct stat st;
        int value;
        socklen_t size = sizeof(value);

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISSOCK(st.st_mode))
                return AF_UNSPEC;
        if (type != 0 && (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &size) < 0 || value != type))
                return AF_UNSPEC;
        size = sizeof(value);
        if (listening >= 0 &&
            (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &size) < 0 || !value != !listening))
                return AF_UNSPEC;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return -errno;
        if (len < offsetof(struct sockaddr_storage, ss_family) + sizeof(ss.ss_family) ||
            ss.ss_family == AF_UNSPEC)
                return -EINVAL;
        return ss.ss_family;
}

int sdproto_is_socket(int fd, int family, int type, int listening) {
        int f = socket_family(fd, type, listening);

        if (f <= 0)
                return f;
        return family == AF_UNSPEC || f == family;
}

int sdproto_is_socket_inet(int fd, int family, int type, int listening) {
        int f = socket_family(fd, type, listening);

        if (f <= 0)
                return f;
        return (f == AF_INET || f == AF_INET6) && (family == AF_UNSPEC || f == family);
}

int sdproto_is_socket_unix(int fd, int type, int listening) {
        int f = socket_family(fd, type, listening);

        return f <= 0 ? f : f == AF_UNIX;
}

int sdproto_notify(const char *path, const char *state) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        size_t path_len = strlen(path);
        socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
        int fd, r = 0;

        if (path[0] != '/' && path[0] != '@')
                return -EAFNOSUPPORT;
        if (path_len < 2 || path_len >= sizeof(sun.sun_path))
                return -EINVAL;
        memcpy(sun.sun_path, path, path_len);
        if (sun.sun_path[0] == '@')
                sun.sun_path[0] = '\0'; /* abstract: no terminating NUL counted */
        else
                len++;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
                r = -errno;
        close(fd);
        return r;
}

int sdproto_watchdog(uint64_t *ret_usec) {
        const char *e = getenv("WATCHDOG_USEC");
        int r = 0;

        if (e) {
                r = parse_u64(e, 1, UINT64_MAX - 1, ret_usec);
                if (r == 0)
                        r = pid_is_ours("WATCHDOG_PID", true);
        }
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        return r;
}
