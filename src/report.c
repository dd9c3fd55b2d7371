/* Children's reports in, connection records out (see report.h). The receive buffer and
 * the record live in parent-only memory: built once per connection, they would otherwise
 * be pages the parent writes after every fork, each one copied. */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "child/client.h"
#include "fork.h"
#include "journal-ids.h"
#include "log.h"

struct report {
        int fds[2]; /* [0] the parent reads, [1] children send */
        struct client_report in;
        struct journal_record record;
};

int report_new(struct report **ret) {
        struct report *r;

        *ret = NULL;
        if (!log_journal())
                return 0;
        r = fork_alloc_parent_only(sizeof(*r));
        if (!r)
                return -ENOMEM;
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, r->fds) < 0) {
                int error = errno;
                fork_free_parent_only(r, sizeof(*r));
                return -error;
        }
        *ret = r;
        return 0;
}

int report_adopt(const int32_t fds[2], struct report **ret) {
        struct report *r;

        if (fds[0] < 0 || fds[1] < 0)
                return report_new(ret);
        *ret = NULL;
        if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) < 0 || fcntl(fds[1], F_SETFD, FD_CLOEXEC) < 0 ||
            !log_journal() || !(r = fork_alloc_parent_only(sizeof(*r)))) {
                /* Without the journal the children's reports have no reader: they fail
                 * to send and each child writes its line itself. */
                close(fds[0]);
                close(fds[1]);
                return log_journal() ? report_new(ret) : 0;
        }
        r->fds[0] = fds[0];
        r->fds[1] = fds[1];
        *ret = r;
        return 0;
}

void report_fds(const struct report *r, int32_t ret_fds[2]) {
        ret_fds[0] = r ? r->fds[0] : -1;
        ret_fds[1] = r ? r->fds[1] : -1;
}

void report_free(struct report *r) {
        if (!r)
                return;
        close(r->fds[0]);
        close(r->fds[1]);
        fork_free_parent_only(r, sizeof(*r));
}

int report_child_fd(const struct report *r) {
        return r ? r->fds[1] : -1;
}

/* The connection's fields: the peer's address (--log-peer applied) and port, if it has
 * them (AF_UNIX peers are named in the text only; --log-peer none leaves the address out). */
static void add_peer(struct journal_record *rec, const struct client_report *in) {
        const struct sockaddr *sa = (const struct sockaddr *)&in->peer;
        char ip[INET6_ADDRSTRLEN + 16];
        unsigned port;

        if (in->peer_len < sizeof(struct sockaddr_in) ||
            (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
                return;
        if (sa->sa_family == AF_INET6 && in->peer_len < sizeof(struct sockaddr_in6))
                return;
        addr_format_peer_ip(sa, ip, sizeof(ip), &port);
        if (strcmp(ip, ADDR_HIDDEN) != 0) /* --log-peer none: no address at all */
                (void)journal_record_addf(rec, "ECHOD_PEER_ADDR", "%s", ip);
        (void)journal_record_addf(rec, "ECHOD_PEER_PORT", "%u", port);
}

static void report_log(struct report *r, size_t len) {
        struct client_report *in = &r->in;
        struct journal_record *rec = &r->record;
        int n_text = (int)(len - CLIENT_REPORT_HEADER_SIZE);

        journal_record_start(rec);
        add_peer(rec, in);
        (void)journal_record_addf(rec, "ECHOD_CHILD_PID", "%" PRId32, in->pid);
        (void)journal_record_addf(rec, "ECHOD_BYTES", "%" PRIu64, in->n_bytes);
        (void)journal_record_addf(rec, "ECHOD_DURATION_USEC", "%" PRIu64, in->duration_usec);
        (void)journal_record_addf(rec, "ECHOD_END", "%s", echo_end_to_string((enum echo_end)in->end));
        if (in->error > 0)
                (void)journal_record_addf(rec, "ERRNO", "%" PRId32, in->error);
        log_event(LOG_INFO, ECHOD_ID_CONNECTION_ENDED, rec, "%.*s", n_text, in->text);
}

void report_read_all(struct report *r) {
        if (!r)
                return;
        for (;;) {
                ssize_t n = recv(r->fds[0], &r->in, sizeof(r->in), MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return; /* EAGAIN: all read */
                if ((size_t)n < CLIENT_REPORT_HEADER_SIZE || r->in.end < 0 || r->in.end >= _ECHO_END_MAX)
                        continue; /* not a child's: only echod's children hold the other end */
                report_log(r, (size_t)n);
        }
}
