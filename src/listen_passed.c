/* The sockets systemd passed (LISTEN_FDS): each checked with sd_is_socket*() and
 * classified as a listening stream socket, a UDP socket or one connected stream socket
 * (Accept=yes); anything else is refused with a line that says what it is. */
#include "listen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "log.h"

static const char *fd_kind(int fd, char *buf, size_t size) {
        struct stat st;
        int type;
        socklen_t len = sizeof(type);

        if (fstat(fd, &st) < 0)
                return "not open";
        if (S_ISFIFO(st.st_mode))
                return "a pipe";
        if (S_ISREG(st.st_mode))
                return "a regular file";
        if (S_ISCHR(st.st_mode))
                return "a character device";
        if (S_ISDIR(st.st_mode))
                return "a directory";
        if (!S_ISSOCK(st.st_mode))
                return "not a socket";
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                return "a socket of unknown type";
        snprintf(buf, size, "a %s socket",
                 type == SOCK_STREAM      ? "stream (not listening, not connected, or not TCP/unix)"
                 : type == SOCK_DGRAM     ? "datagram (not UDP)"
                 : type == SOCK_SEQPACKET ? "SOCK_SEQPACKET"
                 : type == SOCK_RAW       ? "SOCK_RAW"
                                          : "other type of");
        return buf;
}

/* Not listening is not the same as connected: a socket that is only bound has no peer. */
static bool is_connected(int fd) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        return getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
}

static int classify(const struct libsystemd *sd, int fd, const char *fd_name, struct listener *ret) {
        char buf[96];
        int r;

        *ret = (struct listener){ .fd = fd };
        if (sd->is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0)
                ret->type = LISTENER_STREAM;
        else if (sd->is_socket_inet(fd, AF_UNSPEC, SOCK_DGRAM, -1, 0) > 0)
                ret->type = LISTENER_DGRAM;
        else if (sd->is_socket(fd, AF_UNSPEC, SOCK_STREAM, 0) > 0 && is_connected(fd))
                ret->type = LISTENER_CONNECTED;
        else {
                log_error("Passed fd %d (%s) is %s; echod serves listening TCP or AF_UNIX stream "
                          "sockets, UDP sockets, or one connected stream socket",
                          fd, fd_name, fd_kind(fd, buf, sizeof(buf)));
                return -EBADF;
        }
        if (ret->type != LISTENER_DGRAM && sd->is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, -1, 0) <= 0 &&
            sd->is_socket_unix(fd, SOCK_STREAM, -1, NULL, 0) <= 0) {
                log_error("Passed fd %d (%s) is a stream socket of a family other than IPv4, IPv6 "
                          "or AF_UNIX",
                          fd, fd_name);
                return -EAFNOSUPPORT;
        }
        r = listen_socket_prepare(ret);
        if (r < 0)
                return log_error_errno(r, "Failed to set up passed fd %d (%s): %m", fd, fd_name);
        return 0;
}

int listen_passed_classify(const struct libsystemd *sd, const struct options *o, char **names, int n,
                           struct listeners *l) {
        int r = 0;

        for (int i = 0; i < n && r == 0; i++) {
                const char *name = names && names[i] ? names[i] : "unnamed";
                char safe_name[64];

                log_sanitize(safe_name, sizeof(safe_name), name, strlen(name));
                r = classify(sd, SD_LISTEN_FDS_START + i, safe_name, &l->items[l->n]);
                if (r == 0) {
                        l->items[l->n].passed = true;
                        l->items[l->n].proxy =
                                listen_wants_proxy(o, &l->items[l->n], names ? names[i] : NULL);
                        l->n++;
                }
        }
        return r;
}
