/* Where the sockets come from. Passed fds are classified (listen_passed.c), --listen
 * values are bound here, or taken over after a reload (listen_adopt.c). Every TCP listener gets TCP_NODELAY
 * and SO_OOBINLINE, which Linux copies to each accepted connection, so no child pays a syscall for them. */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "libsystemd.h"
#include "log.h"

#define LISTEN_BACKLOG 4096

int listen_socket_prepare(struct listener *l) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char local[ADDR_TEXT_MAX];
        int flags, one = 1;
        const char *proto;

        if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0)
                return -errno;
        l->family = ss.ss_family;
        addr_format_local((struct sockaddr *)&ss, len, local, sizeof(local));
        if (l->family == AF_UNIX)
                proto = "unix";
        else
                proto = l->type == LISTENER_DGRAM ? "udp" : "tcp";
        snprintf(l->name, sizeof(l->name), "%s %s", proto, local);

        flags = fcntl(l->fd, F_GETFL);
        if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        /* A listener's options are copied to each connection it accepts; a connection
         * passed in inetd mode needs them itself. Urgent data is echoed in line. */
        if (l->type != LISTENER_DGRAM && l->family != AF_UNIX &&
            (setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
             setsockopt(l->fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)) < 0))
                return -errno;
        return 0;
}

/* --proxy-protocol: every TCP listener, or with a name only the passed ones of that name
 * (FileDescriptorName=). Never AF_UNIX or UDP ones. */
bool listen_wants_proxy(const struct options *o, const struct listener *l, const char *fd_name) {
        if (!o->proxy_protocol || l->family == AF_UNIX || l->type == LISTENER_DGRAM)
                return false;
        return !o->proxy_name || (fd_name && strcmp(fd_name, o->proxy_name) == 0);
}

static int unix_path_is_stale(const struct sockaddr_un *sun, socklen_t len) {
        struct stat st;
        int fd, r;

        if (lstat(sun->sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
                return 0;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 0;
        r = connect(fd, (const struct sockaddr *)sun, len) < 0 && errno == ECONNREFUSED;
        close(fd);
        return r;
}

static int open_one(const struct listen_spec *spec, struct listener *ret) {
        struct sockaddr_storage ss = {};
        socklen_t len;
        int fd, r, zero = 0, one = 1;
        int type = spec->kind == LISTEN_UDP ? SOCK_DGRAM : SOCK_STREAM;

        *ret = (struct listener){ .fd = -1,
                                  .type = spec->kind == LISTEN_UDP ? LISTENER_DGRAM : LISTENER_STREAM };
        if (spec->kind == LISTEN_UNIX) {
                struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
                sun->sun_family = AF_UNIX;
                strncpy(sun->sun_path, spec->value, sizeof(sun->sun_path) - 1);
                len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sun->sun_path) + 1);
        } else {
                r = addr_parse(spec->value, &ss, &len);
                if (r < 0)
                        return log_error_errno(r, "Invalid address '%s'", spec->value);
        }

        fd = socket(ss.ss_family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 && errno == EAFNOSUPPORT && ss.ss_family == AF_INET6 &&
            IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr)) {
                /* No IPv6 in this kernel: the wildcard becomes IPv4's. */
                struct sockaddr_in sin = { .sin_family = AF_INET,
                                           .sin_port = ((struct sockaddr_in6 *)&ss)->sin6_port };
                memset(&ss, 0, sizeof(ss));
                memcpy(&ss, &sin, sizeof(sin));
                len = sizeof(sin);
                fd = socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        }
        if (fd < 0)
                return log_error_errno(errno, "Failed to create a socket for '%s': %m", spec->value);
        ret->fd = fd;

        if (ss.ss_family != AF_UNIX)
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr))
                (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));

        r = bind(fd, (struct sockaddr *)&ss, len);
        if (r < 0 && errno == EADDRINUSE && ss.ss_family == AF_UNIX &&
            unix_path_is_stale((struct sockaddr_un *)&ss, len)) {
                /* left by an instance that is gone: nobody answers on it */
                (void)unlink(((struct sockaddr_un *)&ss)->sun_path);
                r = bind(fd, (struct sockaddr *)&ss, len);
        }
        if (r < 0)
                return log_error_errno(errno, "Failed to bind '%s': %m", spec->value);
        ret->created_path = ss.ss_family == AF_UNIX;
        if (type == SOCK_STREAM && listen(fd, LISTEN_BACKLOG) < 0)
                return log_error_errno(errno, "Failed to listen on '%s': %m", spec->value);

        r = listen_socket_prepare(ret);
        if (r < 0)
                return log_error_errno(r, "Failed to set up '%s': %m", spec->value);
        return 0;
}

int listen_fds_get(const struct options *options, struct listeners *ret) {
        const struct handoff_opened *opened = listen_handed_over(options);
        struct listeners l = {};
        struct libsystemd sd = {};
        char **names = NULL;
        int n_passed = 0, r = 0;

        if (getenv("LISTEN_FDS")) {
                r = libsystemd_open(&sd);
                if (r < 0)
                        return log_error_errno(r,
                                               "Sockets were passed (LISTEN_FDS) but libsystemd.so.0, "
                                               "needed to check them, cannot be loaded: %s",
                                               sd.error);
                /* unset_environment=1: children must not think the sockets are theirs */
                n_passed = sd.listen_fds_with_names(1, &names);
                if (n_passed < 0) {
                        libsystemd_close(&sd);
                        return log_error_errno(n_passed, "Failed to read the sockets passed by systemd: %m");
                }
        }
        if (n_passed == 0 && options->n_listen == 0) {
                libsystemd_close(&sd);
                return -ENOENT;
        }

        l.items = calloc((size_t)n_passed + options->n_listen, sizeof(struct listener));
        if (!l.items)
                r = log_error_errno(ENOMEM, "Failed to allocate listeners: %m");
        else
                r = listen_passed_classify(&sd, options, names, n_passed, &l);
        for (int i = 0; names && i < n_passed; i++)
                free(names[i]);
        free(names);
        libsystemd_close(&sd);

        for (size_t i = 0; r == 0 && i < options->n_listen; i++) {
                r = opened ? listen_adopt_one(&options->listen[i], &opened[i], &l.items[l.n])
                           : open_one(&options->listen[i], &l.items[l.n]);
                l.items[l.n].proxy = r == 0 && listen_wants_proxy(options, &l.items[l.n], NULL);
                if (r == 0 || l.items[l.n].fd >= 0)
                        l.n++; /* a failed one is closed with the rest */
        }
        if (r == 0) {
                size_t n_connected = 0;
                for (size_t i = 0; i < l.n; i++)
                        n_connected += l.items[i].type == LISTENER_CONNECTED;
                if (n_connected > 0 && l.n > 1) {
                        log_error("A connected socket (Accept=yes) must be the only one passed; "
                                  "got %zu sockets",
                                  l.n);
                        r = -EINVAL;
                }
        }
        if (r < 0) {
                listen_fds_close(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void listen_fds_describe(const struct listeners *l, char *buf, size_t size) {
        char more[32];
        size_t off = 0, room;

        if (size > LISTEN_DESCRIBE_MAX)
                size = LISTEN_DESCRIBE_MAX;
        if (size == 0)
                return;
        buf[0] = '\0';
        for (size_t i = 0; i < l->n; i++) {
                int n = snprintf(more, sizeof(more), ", ... and %zu more", l->n - i);
                /* the last one needs no room for the "more" */
                size_t need = i + 1 < l->n ? (size_t)n : 0;
                room = size - off > need ? size - off - need : 0;
                n = snprintf(buf + off, size - off, "%s%s%s", i ? ", " : "", l->items[i].name,
                             l->items[i].proxy ? " (PROXY protocol)" : "");
                if (n < 0 || (size_t)n >= room) {
                        buf[off] = '\0';
                        snprintf(buf + off, size - off, "%s... and %zu more", i ? ", " : "", l->n - i);
                        return;
                }
                off += (size_t)n;
        }
}

void listen_fds_close(struct listeners *l) {
        for (size_t i = 0; i < l->n; i++) {
                struct listener *it = &l->items[i];
                if (it->created_path) {
                        struct sockaddr_un sun;
                        socklen_t len = sizeof(sun);
                        if (getsockname(it->fd, (struct sockaddr *)&sun, &len) == 0 &&
                            len > offsetof(struct sockaddr_un, sun_path))
                                (void)unlink(sun.sun_path);
                }
                close(it->fd);
        }
        free(l->items);
        *l = (struct listeners){};
}
