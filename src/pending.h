/* Connections accepted on a PROXY protocol listener that have not yet sent their whole
 * header. They wait in the accept loop's poll set, a bounded number of them, each until a
 * deadline, so a slow or silent balancer never stalls the loop; once the header is in, the
 * connection goes on as a fresh accept would, with the client's real address. */
#pragma once

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "child/client.h"
#include "clock.h"
#include "proxy.h"

/* How long a connection may take to send its header: HAProxy sends it with the connect. */
#define PENDING_TIMEOUT_USEC (3 * USEC_PER_SEC)
/* At most this many wait at once (and never more than --max-clients): when they are all
 * there, the PROXY listeners are not polled and new connections wait in the backlog. */
#define PENDING_MAX 128u

/* Why a connection was refused: a proxy_status error, or one of these. */
enum pending_refusal {
        PENDING_TIMEOUT = _PROXY_STATUS_MAX, /* no whole header within PENDING_TIMEOUT_USEC */
        PENDING_CLOSED,                      /* EOF before the header ended */
        PENDING_FAILED,                      /* recv() failed (a reset) */
        _PENDING_REASON_MAX,
};

struct pending;

/* A connection whose header is in: c->peer is the claimed client (or the connection's own
 * address for LOCAL/UNKNOWN), no byte after the header has been read. Takes c->conn_fd. */
typedef void (*pending_ready_fn)(struct client *c, uint64_t now, void *userdata);

/* Room for max connections; pfds (max entries, in the caller's poll set) is kept in step:
 * pfds[0..pending_count()) are the waiting connections. Returns 0 or -ENOMEM. */
int pending_new(size_t max, struct pollfd *pfds, struct pending **ret);
/* Closes every waiting connection and frees p (may be NULL). */
void pending_free(struct pending *p);

size_t pending_count(const struct pending *p);
bool pending_full(const struct pending *p);

/* Takes c (below pending_full()) and reads at once what has come of its header. Returns
 * how many connections were refused (0 or 1). */
unsigned pending_add(struct pending *p, const struct client *c, uint64_t now, pending_ready_fn ready,
                     void *userdata);
/* After poll(): reads where pfds say so, refuses what failed or is late, hands over what
 * is complete. Returns how many were refused. */
unsigned pending_serve(struct pending *p, uint64_t now, pending_ready_fn ready, void *userdata);
/* Closes every waiting connection (a stop), without counting them as refused. */
void pending_close_all(struct pending *p);

/* Refusals in all, for STATUS. */
uint64_t pending_refused(const struct pending *p);
/* Logs the refusals since the last report, at most once per TALLY_INTERVAL. */
void pending_tick(struct pending *p, uint64_t now);
/* The next deadline: a waiting connection's or a due report; UINT64_MAX if none. */
uint64_t pending_deadline(const struct pending *p);

/* inetd mode: reads c's header (c->conn_fd may be blocking), waiting at most timeout_usec.
 * Returns PROXY_DONE (c->peer as above) or why it failed; logs nothing. */
int pending_read_one(struct client *c, uint64_t timeout_usec);

/* "malformed v1 header", "no complete header within 3 s" and the like. */
const char *pending_reason_to_string(int reason);
