/* The --listen sockets a reload hands over (see reexec.h): taken over as they are, since
 * binding again would fail while they are open and connections in their backlogs would be
 * lost. Each must be the socket its option asks for; a state that names others is refused. */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "log.h"
#include "reexec.h"

_Static_assert(HANDOFF_MAX_OPENED == OPTIONS_MAX_LISTEN, "a reload state names every --listen socket");

static int sockopt_int(int fd, int name) {
        int v;
        socklen_t len = sizeof(v);

        return getsockopt(fd, SOL_SOCKET, name, &v, &len) < 0 ? -1 : v;
}

/* Whether fd is the socket spec would open: its family, its type, listening if a stream. */
static bool socket_matches(int fd, const struct listen_spec *spec) {
        int domain = sockopt_int(fd, SO_DOMAIN);
        int type = sockopt_int(fd, SO_TYPE);

        if (spec->kind == LISTEN_UNIX ? domain != AF_UNIX : domain != AF_INET && domain != AF_INET6)
                return false;
        if (spec->kind == LISTEN_UDP)
                return type == SOCK_DGRAM;
        return type == SOCK_STREAM && sockopt_int(fd, SO_ACCEPTCONN) == 1;
}

const struct handoff_opened *listen_handed_over(const struct options *options) {
        const pid_t *pids;
        size_t n_pids;
        const struct handoff *h = reexec_handoff(&pids, &n_pids);

        if (!h || options->n_listen == 0 || h->n_opened != options->n_listen)
                return NULL;
        for (size_t i = 0; i < options->n_listen; i++)
                if (!socket_matches(h->opened[i].fd, &options->listen[i])) {
                        reexec_handoff_refuse("a --listen socket that does not match its option");
                        return NULL;
                }
        return h->opened;
}

int listen_adopt_one(const struct listen_spec *spec, const struct handoff_opened *opened,
                     struct listener *ret) {
        int r;

        *ret = (struct listener){ .fd = opened->fd,
                                  .type = spec->kind == LISTEN_UDP ? LISTENER_DGRAM : LISTENER_STREAM,
                                  .created_path = opened->created_path != 0 };
        if (fcntl(ret->fd, F_SETFD, FD_CLOEXEC) < 0)
                return log_error_errno(errno, "Failed to take over '%s' after the reload: %m", spec->value);
        r = listen_socket_prepare(ret);
        if (r < 0)
                return log_error_errno(r, "Failed to take over '%s' after the reload: %m", spec->value);
        return 0;
}
