/* Taking connections: which listeners the loop polls (not at the cap, not during a
 * backoff, not while stopping), then accept, the per-source cap, and the fork of the
 * child that serves each. */
#include "serve_state.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "children.h"
#include "child/sys.h"
#include "clock.h"
#include "journal-ids.h"
#include "log.h"
#include "pending.h"
#include "udp.h"

/* Hands one accepted connection to a new child. Returns 0 or -errno (fork failed; the
 * connection was closed). */
static int serve_spawn(struct serve *s, struct client *c, uint64_t source) {
        /* fork() semantics without libc's part of it (atfork handlers, locks, its thread
         * data): the child runs no libc (child/client.c). */
        pid_t pid = sys_fork();

        if (pid == 0)
                client_run_child(c);
        close(c->conn_fd);
        if (pid < 0)
                return pid;
        if (children_add(s->children, pid, source) < 0) {
                /* Cannot happen: the loop accepts only below the cap. A child the table does
                 * not hold would get no stop and outlive echod: it must not serve. */
                log_error("No room for child %d in the table of %u: killed", (int)pid,
                          s->options->max_clients);
                (void)kill(pid, SIGKILL);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                return 0;
        }
        s->n_served++;
        notify_status_changed(&s->notify);
        log_debug("accepted %s (pid %d)", c->peer_text, (int)pid);
        return 0;
}

/* Serves an accepted connection whose peer is known: the per-source cap, then a child. */
static inline void serve_admit(struct serve *s, struct client *c, uint64_t now) {
        uint64_t source;
        int r;

        source = addr_source_key((struct sockaddr *)&c->peer, c->peer_len);
        if (children_source_full(s->children, source)) {
                /* Closed at once: the peer sees its connection end with no data. */
                close(c->conn_fd);
                s->n_refused++;
                refused_add(&s->refused_sources, source);
                notify_status_changed(&s->notify);
                return;
        }
        addr_describe_peer(c->conn_fd, (struct sockaddr *)&c->peer, c->peer_len, c->peer_text,
                           sizeof(c->peer_text));
        r = serve_spawn(s, c, source);
        if (r < 0) {
                backoff_record(&s->backoff, r, "fork()", now);
                return;
        }
        backoff_end(&s->backoff);
}

/* A connection of a PROXY listener whose header is in (pending_ready_fn). */
void serve_admit_proxied(struct client *c, uint64_t now, void *userdata) {
        serve_admit(userdata, c, now);
}

/* accept4() into *c. Returns false if there was no connection (a failure is recorded). */
static inline bool serve_take(struct serve *s, const struct listener *l, uint64_t now, struct client *c) {
        *c = (struct client){
                .stop_fd = s->signal_fd,
                .report_fd = s->report_fd,
                .idle_timeout_usec = s->options->idle_timeout_usec,
                .drain_timeout_usec = s->options->drain_timeout_usec,
                .nonblocking = true,
                .oob_inline = l->family != AF_UNIX, /* copied from the TCP listener */
                .fd_max = s->fd_max,
                .peer_len = sizeof(c->peer),
        };
        c->conn_fd = accept4(l->fd, (struct sockaddr *)&c->peer, &c->peer_len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c->conn_fd < 0) {
                if (errno != EAGAIN && !backoff_accept_is_transient(errno))
                        backoff_record(&s->backoff, errno, "accept()", now);
                return false;
        }
        c->start_usec = now;
        return true;
}

/* A PROXY listener's connection: the header first, the client's real address decides the
 * rest. Two such listeners may both be readable in one pass with one place left. */
static void serve_accept_proxied(struct serve *s, const struct listener *l, uint64_t now) {
        struct client c;

        if (pending_full(s->pending) || !serve_take(s, l, now, &c))
                return;
        if (pending_add(s->pending, &c, now, serve_admit_proxied, s) > 0)
                notify_status_changed(&s->notify);
}

/* Takes one connection: poll() says when there is another. Looping until EAGAIN would
 * cost a failed accept4() per connection at low load, and its errno write a page fault in
 * the parent (every page it writes is copy-on-write after each fork). */
void serve_accept(struct serve *s, const struct listener *l, uint64_t now) {
        struct client c;

        if (l->proxy) {
                serve_accept_proxied(s, l, now);
                return;
        }
        if (serve_take(s, l, now, &c))
                serve_admit(s, &c, now);
}

static __attribute__((noinline)) void serve_log_cap(struct serve *s, uint64_t now) {
        uint64_t n = tally_due(&s->cap_log, s->n_cap_episodes, now);
        struct journal_record rec;

        if (n == 0)
                return;
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_MAX_CLIENTS", "%u", s->options->max_clients);
        (void)journal_record_addf(&rec, "ECHOD_EPISODES", "%" PRIu64, n);
        if (n == 1)
                log_event(LOG_WARNING, ECHOD_ID_AT_CAP, &rec,
                          "at the limit of %u clients: accepting paused until one ends",
                          s->options->max_clients);
        else
                log_event(LOG_WARNING, ECHOD_ID_AT_CAP, &rec,
                          "at the limit of %u clients: accepting paused until one ends (%" PRIu64
                          " times since the last report)",
                          s->options->max_clients, n);
}

/* At the cap: children and connections waiting for their PROXY header count alike. */
static bool serve_full(const struct serve *s) {
        size_t n_waiting = s->pending ? pending_count(s->pending) : 0;

        return children_count(s->children) + n_waiting >= s->options->max_clients;
}

/* Whether a connection may be taken now: not stopping, below the cap, not paused. Looked
 * at before each accept, since one pass may find several listeners ready. */
bool serve_accepting(const struct serve *s, uint64_t now) {
        return !s->drain.stopping && !s->reloading && !serve_full(s) &&
               backoff_paused_until(&s->backoff, now) == 0;
}

/* Which listeners to poll now, and until when poll() may sleep (ms, -1: forever). */
int serve_arm(struct serve *s, uint64_t now) {
        bool waiting_full = s->pending && pending_full(s->pending);
        bool full = serve_full(s);
        uint64_t paused_until = backoff_paused_until(&s->backoff, now);
        bool paused = paused_until != 0;
        bool accepting = serve_accepting(s, now);
        bool answering = !s->drain.stopping && s->udp && !udp_paused(s->udp, now);
        bool looking = false; /* a stream listener is polled */
        uint64_t deadline = notify_deadline(&s->notify);
        uint64_t refused_due = tally_deadline(&s->refused_log, s->n_refused);

        /* An episode ends when the backlog is found empty (serve_run). A client that
         * cycles one connection at the cap starts one each time: counted, and logged at
         * most once per interval. */
        if (full && !s->at_cap && !s->drain.stopping) {
                s->at_cap = true;
                s->n_cap_episodes++;
        }
        serve_log_cap(s, now);

        for (size_t i = 0; i < s->listeners->n; i++) {
                const struct listener *l = &s->listeners->items[i];
                bool on = l->type == LISTENER_STREAM ? accepting && !(l->proxy && waiting_full) : answering;
                s->pfds[1 + i].fd = on ? l->fd : -1;
                looking |= on && l->type == LISTENER_STREAM;
        }
        if (s->udp && udp_deadline(s->udp, now) < deadline)
                deadline = udp_deadline(s->udp, now);
        if (refused_due < deadline)
                deadline = refused_due;
        if (tally_deadline(&s->cap_log, s->n_cap_episodes) < deadline)
                deadline = tally_deadline(&s->cap_log, s->n_cap_episodes);
        if (s->pending && pending_deadline(s->pending) < deadline)
                deadline = pending_deadline(s->pending);
        if (paused && paused_until < deadline)
                deadline = paused_until;
        if (drain_deadline(&s->drain) < deadline)
                deadline = drain_deadline(&s->drain);
        /* Below the cap again during an at-the-limit episode: look at the backlog without
         * waiting; if nobody is there, the loop ends the episode. Not while no stream listener
         * is polled (PROXY listeners only, their waiting table full): nothing would end it. */
        if (s->at_cap && looking)
                return 0;
        return clock_timeout_ms(deadline, now);
}
