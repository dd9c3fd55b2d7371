/* The table of connections waiting for their PROXY header (see pending.h). Bytes are
 * looked at with MSG_PEEK and only the header is ever taken from the socket: what follows
 * it stays queued for the child to echo. An incomplete header is taken as far as it goes
 * (every byte of it is header), so a waiting socket is readable only when more came. */
#include "pending.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "fork.h"
#include "journal-ids.h"
#include "log.h"
#include "tally.h"

struct entry {
        struct client client;
        uint64_t deadline;
        size_t n_taken; /* header bytes read from the socket so far, in buf */
        uint8_t buf[PROXY_HEADER_MAX];
};

struct pending {
        struct pollfd *pfds; /* pfds[i] watches entries[i] */
        size_t n, max, size;
        uint64_t n_refused[_PENDING_REASON_MAX];
        uint64_t n_refused_all;
        struct tally refused_log;
        int last_reason;
        char last_peer[ADDR_TEXT_MAX]; /* the connection refused last (the balancer) */
        struct entry entries[];
};

int pending_new(size_t max, struct pollfd *pfds, struct pending **ret) {
        size_t size = sizeof(struct pending) + max * sizeof(struct entry);
        struct pending *p = fork_alloc_parent_only(size);

        if (!p)
                return -ENOMEM;
        p->pfds = pfds;
        p->max = max;
        p->size = size;
        *ret = p;
        return 0;
}

void pending_close_all(struct pending *p) {
        for (size_t i = 0; i < p->n; i++)
                close(p->entries[i].client.conn_fd);
        p->n = 0;
}

void pending_free(struct pending *p) {
        if (!p)
                return;
        pending_close_all(p);
        fork_free_parent_only(p, p->size);
}

size_t pending_count(const struct pending *p) {
        return p->n;
}

bool pending_full(const struct pending *p) {
        return p->n >= p->max;
}

/* Reads what has come of e's header. Returns PROXY_DONE (header taken, e->client.peer set),
 * PROXY_NEED_MORE, or a refusal reason. */
static int header_step(struct entry *e) {
        struct client *c = &e->client;
        struct proxy_header h;
        enum proxy_status st;
        size_t take;
        ssize_t n;

        n = recv(c->conn_fd, e->buf + e->n_taken, sizeof(e->buf) - e->n_taken, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? PROXY_NEED_MORE : PENDING_FAILED;
        if (n == 0)
                return PENDING_CLOSED;
        st = proxy_parse(e->buf, e->n_taken + (size_t)n, &h);
        if (st == PROXY_NEED_MORE)
                take = (size_t)n; /* all of it is header: the header is longer */
        else if (st == PROXY_DONE)
                take = h.length - e->n_taken;
        else
                return st;
        /* What was peeked is queued: this takes exactly take bytes. */
        if (recv(c->conn_fd, e->buf + e->n_taken, take, MSG_DONTWAIT) != (ssize_t)take)
                return PENDING_FAILED;
        e->n_taken += take;
        if (st == PROXY_DONE && h.address_len > 0) {
                memcpy(&c->peer, &h.source, h.address_len);
                c->peer_len = h.address_len;
        }
        return st;
}

static void refuse(struct pending *p, struct client *c, int reason) {
        addr_format_peer((struct sockaddr *)&c->peer, c->peer_len, p->last_peer, sizeof(p->last_peer));
        close(c->conn_fd);
        p->n_refused[reason]++;
        p->n_refused_all++;
        p->last_reason = reason;
}

/* Ends entry i's wait with result r (not PROXY_NEED_MORE). Returns 1 if it was refused. */
static unsigned finish(struct pending *p, size_t i, int r, uint64_t now, pending_ready_fn ready,
                       void *userdata) {
        struct client c = p->entries[i].client;

        /* The last one takes the freed place: the poll set stays dense. */
        p->n--;
        if (i != p->n) {
                p->entries[i] = p->entries[p->n];
                p->pfds[i] = p->pfds[p->n];
        }
        if (r != PROXY_DONE) {
                refuse(p, &c, r);
                return 1;
        }
        ready(&c, now, userdata);
        return 0;
}

unsigned pending_add(struct pending *p, const struct client *c, uint64_t now, pending_ready_fn ready,
                     void *userdata) {
        size_t i = p->n++;
        struct entry *e = &p->entries[i];
        int r;

        e->client = *c;
        e->deadline = now + PENDING_TIMEOUT_USEC;
        e->n_taken = 0;
        p->pfds[i] = (struct pollfd){ .fd = c->conn_fd, .events = POLLIN };
        /* A balancer sends the header with the connect: it is usually there already. */
        r = header_step(e);
        return r == PROXY_NEED_MORE ? 0 : finish(p, i, r, now, ready, userdata);
}

unsigned pending_serve(struct pending *p, uint64_t now, pending_ready_fn ready, void *userdata) {
        unsigned n_refused = 0;

        /* Backwards: finish() moves the last entry, already seen, into the freed place. */
        for (size_t i = p->n; i-- > 0;) {
                int r = PROXY_NEED_MORE;

                if (p->pfds[i].revents)
                        r = header_step(&p->entries[i]);
                if (r == PROXY_NEED_MORE && now >= p->entries[i].deadline)
                        r = PENDING_TIMEOUT;
                if (r != PROXY_NEED_MORE)
                        n_refused += finish(p, i, r, now, ready, userdata);
        }
        return n_refused;
}

uint64_t pending_refused(const struct pending *p) {
        return p->n_refused_all;
}

void pending_tick(struct pending *p, uint64_t now) {
        uint64_t n_new = tally_due(&p->refused_log, p->n_refused_all, now);
        const uint64_t *n = p->n_refused;
        struct journal_record rec;

        if (n_new == 0)
                return;
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_REFUSED", "%" PRIu64, n_new);
        (void)journal_record_addf(&rec, "ECHOD_LAST_SOURCE", "%s", p->last_peer);
        (void)journal_record_addf(&rec, "ECHOD_LAST_REASON", "%s", pending_reason_to_string(p->last_reason));
        log_event(LOG_WARNING, ECHOD_ID_REFUSED_PROXY, &rec,
                  "Refused %" PRIu64 " connection%s without a valid PROXY header since the last "
                  "report, the last from %s: %s (in all: %" PRIu64 " no header, %" PRIu64
                  " malformed, %" PRIu64 " unsupported, %" PRIu64 " oversized, %" PRIu64 " too slow, %" PRIu64
                  " closed or reset before its end)",
                  n_new, n_new == 1 ? "" : "s", p->last_peer, pending_reason_to_string(p->last_reason),
                  n[PROXY_MISSING], n[PROXY_BAD_V1] + n[PROXY_BAD_V2], n[PROXY_UNSUPPORTED],
                  n[PROXY_OVERSIZED], n[PENDING_TIMEOUT], n[PENDING_CLOSED] + n[PENDING_FAILED]);
}

uint64_t pending_deadline(const struct pending *p) {
        uint64_t d = tally_deadline(&p->refused_log, p->n_refused_all);

        for (size_t i = 0; i < p->n; i++)
                if (p->entries[i].deadline < d)
                        d = p->entries[i].deadline;
        return d;
}

int pending_read_one(struct client *c, uint64_t timeout_usec) {
        uint64_t deadline = clock_now_usec() + timeout_usec;
        struct entry e = { .client = *c };
        int r;

        while ((r = header_step(&e)) == PROXY_NEED_MORE) {
                struct pollfd pfd = { .fd = c->conn_fd, .events = POLLIN };
                uint64_t now = clock_now_usec();

                if (now >= deadline)
                        return PENDING_TIMEOUT;
                if (poll(&pfd, 1, (int)((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC)) < 0 &&
                    errno != EINTR)
                        return PENDING_FAILED;
        }
        *c = e.client;
        return r;
}

_Static_assert(PENDING_TIMEOUT_USEC == 3 * USEC_PER_SEC, "the reason's text names the timeout");

const char *pending_reason_to_string(int reason) {
        switch (reason) {
        case PENDING_TIMEOUT:
                return "no complete header within 3 s";
        case PENDING_CLOSED:
                return "closed before the header ended";
        case PENDING_FAILED:
                return "reset before the header ended";
        default:
                return proxy_status_to_string((enum proxy_status)reason);
        }
}
