/* The descriptors a reload state names (see handoff.h), checked before the new image uses
 * any: a state is written by the image before, but it arrives by a number in the
 * environment, and a wrong one would have echod close or serve what is not its own
 * (stdout, a file). Each must be what the image before would have handed over. */
#include "handoff.h"

#include <sys/socket.h>
#include <sys/stat.h>

/* Whether fd is open and a socket of that domain and type. */
static bool fd_is_socket(int fd, int domain, int type) {
        int v_domain, v_type;
        socklen_t len_domain = sizeof(v_domain), len_type = sizeof(v_type);
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
               getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v_domain, &len_domain) == 0 &&
               getsockopt(fd, SOL_SOCKET, SO_TYPE, &v_type, &len_type) == 0 &&
               (domain == AF_UNSPEC || v_domain == domain) && v_type == type;
}

bool handoff_state_fd_valid(int fd) {
        struct stat st;

        /* a memfd is a regular file (of its own file system) */
        return fd >= 3 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* Every descriptor a state names: the report fds, the --listen sockets. */
static size_t fds_named(const struct handoff *h, int *ret) {
        size_t n = 0;

        if (h->report_fds[0] >= 0 || h->report_fds[1] >= 0) {
                ret[n++] = h->report_fds[0];
                ret[n++] = h->report_fds[1];
        }
        for (uint32_t i = 0; i < h->n_opened && i < HANDOFF_MAX_OPENED; i++)
                ret[n++] = h->opened[i].fd;
        return n;
}

const char *handoff_fds_invalid(const struct handoff *h, int state_fd, int n_passed) {
        int fds[HANDOFF_MAX_OPENED + 2];
        size_t n = fds_named(h, fds);

        for (size_t i = 0; i < n; i++) {
                if (fds[i] < 3)
                        return "a descriptor below 3";
                if (fds[i] == state_fd || fds[i] < 3 + n_passed)
                        return "the state's own descriptor, or one of the sockets from systemd";
                for (size_t j = 0; j < i; j++)
                        if (fds[j] == fds[i])
                                return "one descriptor twice";
        }
        if ((h->report_fds[0] >= 0 || h->report_fds[1] >= 0) &&
            (!fd_is_socket(h->report_fds[0], AF_UNIX, SOCK_DGRAM) ||
             !fd_is_socket(h->report_fds[1], AF_UNIX, SOCK_DGRAM)))
                return "a report descriptor that is not an AF_UNIX datagram socket";
        for (uint32_t i = 0; i < h->n_opened; i++)
                if (!fd_is_socket(h->opened[i].fd, AF_UNSPEC, SOCK_STREAM) &&
                    !fd_is_socket(h->opened[i].fd, AF_UNSPEC, SOCK_DGRAM))
                        return "a --listen descriptor that is not a stream or datagram socket";
        return NULL;
}
