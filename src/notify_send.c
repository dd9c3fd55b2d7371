/* systemd's notification protocol, spoken directly, for the one case libsystemd cannot
 * serve: an upgrade replaced libsystemd.so.0 with one this running process cannot load.
 * The protocol is small, documented (sd_notify(3)) and stable: one datagram of
 * newline-separated assignments to the AF_UNIX socket named by NOTIFY_SOCKET, a path or
 * an abstract name written with a leading '@'. */
#include "notify_send.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_send(const char *path, const char *state) {
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
