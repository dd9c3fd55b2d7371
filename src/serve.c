/* The accept loop. One poll() over a signalfd and the listeners; a listener is polled only
 * while there is room for another child, so the --max-clients cap is backpressure (clients
 * wait in the kernel's backlog) with no extra branch. Faults on accept() or fork() pause
 * the listeners with a growing delay: the service never spins and never gives up. */
#include "serve.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "clock.h"
#include "children.h"
#include "drain.h"
#include "fault.h"
#include "fork.h"
#include "journal-ids.h"
#include "log.h"
#include "map.h"
#include "notify.h"
#include "refused.h"
#include "report.h"
#include "pending.h"
#include "reexec.h"
#include "sys.h"
#include "tally.h"
#include "udp.h"

struct serve {
        const struct options *options;
        struct listeners *listeners;
        /* [0]: signal_fd; [1 + i]: listeners->items[i]; then the pending connections */
        struct pollfd *pfds;
        struct signalfd_siginfo siginfo[16];
        int signal_fd;
        int fd_max; /* client.fd_max: 0 when close_range() works */
        struct children *children;
        struct udp *udp;         /* only with UDP sockets */
        struct pending *pending; /* only with PROXY protocol listeners */
        struct report *report;   /* only under journald: the children's reports */
        int report_fd;           /* client.report_fd: the end children send on, or -1 */
        struct notify notify;
        uint64_t n_served, n_refused;
        struct tally refused_log;
        struct refused refused_sources; /* who was refused since the last line */
        struct drain drain;             /* once a stop has begun */
        bool reloading;                 /* SIGHUP: re-execute once no connection waits for a header */
        bool at_cap;                    /* at the cap since the backlog was last seen empty */
        uint64_t n_cap_episodes;        /* times the cap was reached */
        struct tally cap_log;
        struct fault fault;            /* accept() or fork() failing for want of resources */
        size_t n_pending_max;          /* room in pfds for connections waiting for a PROXY header */
        int32_t handoff_report_fds[2]; /* the report socketpair a reload handed over */
        unsigned n_adopted;            /* children taken over from the image before a reload */
};

/* Refused in all: over the per-source cap, or without a valid PROXY header. */
static uint64_t serve_refused(const struct serve *s) {
        return s->n_refused + (s->pending ? pending_refused(s->pending) : 0);
}

static void format_status(const struct serve *s, char *buf, size_t size) {
        int n = snprintf(buf, size, "%u/%u clients active, %" PRIu64 " served, %" PRIu64 " refused",
                         children_count(s->children), s->options->max_clients, s->n_served, serve_refused(s));

        if (s->udp && n > 0 && (size_t)n < size) {
                uint64_t echoed, dropped;
                udp_counts(s->udp, &echoed, &dropped);
                snprintf(buf + n, size - (size_t)n, ", %" PRIu64 " datagrams echoed, %" PRIu64 " dropped",
                         echoed, dropped);
        }
}

/* Hands one accepted connection to a new child. Returns 0 or -errno (fork failed; the
 * connection was closed). */
static int serve_spawn(struct serve *s, struct client *c, uint64_t source) {
        /* fork() semantics without libc's part of it (atfork handlers, locks, its thread
         * data): the child runs no libc (client.c). */
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
                fault_record(&s->fault, r, "fork()", now);
                return;
        }
        fault_end(&s->fault);
}

/* A connection of a PROXY listener whose header is in (pending_ready_fn). */
static void serve_admit_proxied(struct client *c, uint64_t now, void *userdata) {
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
                if (errno != EAGAIN && !fault_accept_is_transient(errno))
                        fault_record(&s->fault, errno, "accept()", now);
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
static void serve_accept(struct serve *s, const struct listener *l, uint64_t now) {
        struct client c;

        if (l->proxy) {
                serve_accept_proxied(s, l, now);
                return;
        }
        if (serve_take(s, l, now, &c))
                serve_admit(s, &c, now);
}

static void serve_stop(struct serve *s, uint64_t now) {
        if (!s->drain.stopping)
                notify_stopping(&s->notify);
        if (s->pending)
                pending_close_all(s->pending); /* not yet clients: nothing to drain */
        drain_begin(&s->drain, s->children, s->options->drain_timeout_usec, now);
}

static void serve_signals(struct serve *s, uint64_t now) {
        struct signalfd_siginfo *si = s->siginfo;
        ssize_t n;

        /* One read takes every pending signal (they coalesce: a handful at most). */
        n = read(s->signal_fd, si, sizeof(s->siginfo));
        for (ssize_t i = 0; i < n / (ssize_t)sizeof(si[0]); i++) {
                switch (si[i].ssi_signo) {
                case SIGCHLD:
                        break; /* reaped below */
                case SIGTERM:
                case SIGINT:
                        serve_stop(s, now);
                        break;
                case SIGHUP:
                        /* Said at once: the reload may wait for PROXY headers first. */
                        if (!s->drain.stopping && !s->reloading)
                                notify_reloading(&s->notify, now);
                        s->reloading = !s->drain.stopping;
                        break;
                default:
                        log_debug("Ignoring signal %s", strsignal((int)si[i].ssi_signo));
                }
        }
        /* Reaped whatever the signal. After the drain timeout a SIGKILL is ours. Reports
         * first: a child queues its report before it exits. */
        report_read_all(s->report);
        if (children_reap(s->children, drain_killed(&s->drain)) > 0)
                notify_status_changed(&s->notify);
}

/* See serve_log_stopped(): records stay off the loop's frame. */
static __attribute__((noinline)) void serve_log_refused(struct serve *s, uint64_t n_refused) {
        struct journal_record rec;
        char sources[256];

        refused_report(&s->refused_sources, sources, sizeof(sources));
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_REFUSED", "%" PRIu64, n_refused);
        (void)journal_record_addf(&rec, "ECHOD_MAX_PER_SOURCE", "%u", s->options->max_per_source);
        if (sources[0])
                (void)journal_record_addf(&rec, "ECHOD_SOURCES", "%s", sources + 2);
        log_event(LOG_WARNING, ECHOD_ID_REFUSED_SOURCE, &rec,
                  "Refused %" PRIu64 " connection%s over the limit of %u per source since the last report%s",
                  n_refused, n_refused == 1 ? "" : "s", s->options->max_per_source, sources);
}

static void serve_timers(struct serve *s, uint64_t now) {
        uint64_t n_refused;

        drain_tick(&s->drain, s->children, now);
        if (s->udp && udp_tick(s->udp, now))
                notify_status_changed(&s->notify);
        if (s->pending)
                pending_tick(s->pending, now);
        n_refused = tally_due(&s->refused_log, s->n_refused, now);
        if (n_refused > 0)
                serve_log_refused(s, n_refused);
        if (notify_status_due(&s->notify, now)) {
                char status[160];
                format_status(s, status, sizeof(status));
                notify_status(&s->notify, status, now);
        }
        notify_watchdog(&s->notify, now);
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
static bool serve_accepting(const struct serve *s, uint64_t now) {
        return !s->drain.stopping && !s->reloading && !serve_full(s) &&
               fault_paused_until(&s->fault, now) == 0;
}

/* Which listeners to poll now, and until when poll() may sleep (ms, -1: forever). */
static int serve_arm(struct serve *s, uint64_t now) {
        bool waiting_full = s->pending && pending_full(s->pending);
        bool full = serve_full(s);
        uint64_t paused_until = fault_paused_until(&s->fault, now);
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

/* After a reload: the children, counters and report socket of the image before. Its
 * children are ours like any other; one that ended during the exec is reaped at once. A
 * state this version cannot read still names the children: they are drained as on a stop. */
static void serve_adopt(struct serve *s) {
        const pid_t *pids;
        size_t n_pids;
        const struct handoff *h = reexec_handoff(&pids, &n_pids);
        unsigned n_lost = 0;

        for (size_t i = 0; !h && i < n_pids; i++) {
                if (children_add(s->children, pids[i], ADDR_SOURCE_NONE) < 0)
                        n_lost++;
                (void)kill(pids[i], SIGTERM);
        }
        if (h) {
                s->n_served = h->n_served;
                s->n_refused = h->n_refused;
                s->refused_log.n_logged = h->n_refused; /* logged by the image before */
                s->handoff_report_fds[0] = h->report_fds[0];
                s->handoff_report_fds[1] = h->report_fds[1];
                for (size_t i = 0; i < h->n_children; i++)
                        if (children_add(s->children, h->children[i].pid, h->children[i].source) < 0) {
                                (void)kill(h->children[i].pid, SIGTERM); /* cannot be: same cap */
                                n_lost++;
                        }
                s->n_adopted = children_count(s->children);
        }
        if (n_lost > 0)
                log_error("No room for %u children of the image before the reload: stopped", n_lost);
        if (h || n_pids > 0)
                (void)children_reap(s->children, false);
}

/* The datagram counts of the image before a reload, once there is a UDP state. */
static void serve_adopt_udp(struct serve *s) {
        const pid_t *pids;
        size_t n_pids;
        const struct handoff *h = reexec_handoff(&pids, &n_pids);

        if (h && s->udp)
                udp_counts_carry(s->udp, h->udp_echoed, h->udp_dropped);
        reexec_handoff_done();
}

static int serve_setup(struct serve *s) {
        struct rlimit limit;
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (s->signal_fd < 0)
                return log_error_errno(errno, "Failed to create signalfd: %m");

        r = children_new(s->options->max_clients, s->options->max_per_source, &s->children);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the table of %u clients: %m",
                                       s->options->max_clients);
        serve_adopt(s);
        r = report_adopt(s->handoff_report_fds, &s->report);
        if (r < 0)
                return log_error_errno(r, "Failed to create the socket for the children's reports: %m");
        s->report_fd = report_child_fd(s->report);
        r = udp_setup(s->listeners, clock_now_usec(), &s->udp);
        if (r < 0)
                return r;
        serve_adopt_udp(s);
        if (s->n_pending_max > 0) {
                r = pending_new(s->n_pending_max, s->pfds + 1 + s->listeners->n, &s->pending);
                if (r < 0)
                        return log_error_errno(r, "Failed to allocate the table of connections waiting "
                                                  "for their PROXY header: %m");
        }

        s->pfds[0] = (struct pollfd){ .fd = s->signal_fd, .events = POLLIN };
        for (size_t i = 0; i < s->listeners->n; i++)
                s->pfds[1 + i].events = POLLIN;

        /* Last: every descriptor the loop keeps is open now. */
        if (getrlimit(RLIMIT_NOFILE, &limit) < 0 || limit.rlim_max > INT_MAX)
                limit.rlim_max = INT_MAX;
        s->fd_max = client_fds_check((int)limit.rlim_max);
        /* Connections waiting for their PROXY header hold descriptors above those. The
         * lowest free one is always the next, and at most n_pending_max of them and one
         * more (a plain listener's connection, a notification's socket) are open at once. */
        if (s->fd_max > 0 && s->n_pending_max > 0)
                s->fd_max += (int)s->n_pending_max + 1;
        if (s->fd_max > 0) {
                struct journal_record rec;
                journal_record_start(&rec);
                (void)journal_record_addf(&rec, "ECHOD_CHECK", "close_range");
                (void)journal_record_addf(&rec, "ECHOD_FD_MAX", "%d", s->fd_max);
                log_event(LOG_WARNING, ECHOD_ID_STARTUP_CHECK, &rec,
                          "close_range() is refused here (a kernel before 5.9, or a seccomp filter): "
                          "each child closes descriptors 3 to %d one by one",
                          s->fd_max);
        }
        return 0;
}

static __attribute__((noinline)) void serve_ready(struct serve *s, uint64_t now) {
        char names[1024], status[160];
        struct journal_record rec;

        listen_fds_describe(s->listeners, names, sizeof(names));
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_LISTENERS", "%s", names);
        (void)journal_record_addf(&rec, "ECHOD_MAX_CLIENTS", "%u", s->options->max_clients);
        (void)journal_record_addf(&rec, "ECHOD_MAX_PER_SOURCE", "%u", s->options->max_per_source);
        (void)journal_record_addf(&rec, "ECHOD_VERSION", "%s", ECHOD_VERSION);
        if (s->n_adopted > 0 || reexec_reloaded()) {
                (void)journal_record_addf(&rec, "ECHOD_ADOPTED", "%u", s->n_adopted);
                log_event(LOG_NOTICE, ECHOD_ID_READY, &rec,
                          "ready: %s; max %u clients; echod %s, reloaded, %u clients taken over", names,
                          s->options->max_clients, ECHOD_VERSION, s->n_adopted);
        } else
                log_event(LOG_NOTICE, ECHOD_ID_READY, &rec, "ready: %s; max %u clients; echod %s", names,
                          s->options->max_clients, ECHOD_VERSION);
        format_status(s, status, sizeof(status));
        notify_ready(&s->notify, status, now);
}

/* Events are logged from functions of their own (never inlined): their records stay off
 * the loop's stack frame, which the fork path keeps small (fork_call_page_top()). */
static __attribute__((noinline)) void serve_log_stopped(const struct serve *s) {
        struct journal_record rec;

        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_SERVED", "%" PRIu64, s->n_served);
        (void)journal_record_addf(&rec, "ECHOD_REFUSED", "%" PRIu64, serve_refused(s));
        /* records the journal did not take (each was written to stderr as its line) */
        (void)journal_record_addf(&rec, "ECHOD_JOURNAL_DROPPED", "%lu", log_journal_dropped());
        log_event(LOG_NOTICE, ECHOD_ID_STOPPED, &rec, "stopped: %" PRIu64 " served, %" PRIu64 " refused",
                  s->n_served, serve_refused(s));
}

static void child_hand_over(pid_t pid, uint64_t source, void *userdata) {
        struct handoff *h = userdata;

        h->children[h->n_children++] = (struct handoff_child){ .pid = pid, .source = source };
}

/* SIGHUP, once no connection waits for its PROXY header (their header comes within
 * PENDING_TIMEOUT_USEC; new connections wait in the backlog meanwhile): a new image of
 * the installed binary takes over (reexec.h). Returns only if it could not: this image
 * serves on and tells the service manager so, READY=1 ending the reload. */
static __attribute__((noinline)) void serve_reload(struct serve *s) {
        struct handoff h = { .n_served = s->n_served, .n_refused = serve_refused(s) };
        char why[512], status[160], state[sizeof(status) + 64];
        struct journal_record rec;
        int r;

        s->reloading = false;
        log_notice("reloading: checking that %s can start", reexec_path());
        r = reexec_check(why, sizeof(why));
        if (r == 0) {
                /* The reports of children that ended are logged here, by the image that
                 * counted them; a child that ends from now on is reaped by the next. */
                report_read_all(s->report);
                (void)children_reap(s->children, false);
                report_fds(s->report, h.report_fds);
                if (s->udp)
                        udp_counts(s->udp, &h.udp_echoed, &h.udp_dropped);
                h.children = calloc(children_count(s->children) + 1, sizeof(struct handoff_child));
                if (!h.children) {
                        r = -ENOMEM;
                        snprintf(why, sizeof(why), "out of memory");
                } else {
                        children_foreach(s->children, child_hand_over, &h);
                        r = reexec_exec(&h, s->listeners, notify_socket_path(&s->notify),
                                        s->notify.watchdog_usec, why, sizeof(why));
                }
                free(h.children);
        }
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_VERSION", "%s", ECHOD_VERSION);
        (void)journal_record_addf(&rec, "ERRNO", "%d", -r);
        log_event(LOG_ERR, ECHOD_ID_RELOAD_FAILED, &rec,
                  "Reload failed, still serving with echod %s (pid %d), no connection dropped: %s",
                  ECHOD_VERSION, (int)getpid(), why);
        format_status(s, status, sizeof(status));
        snprintf(state, sizeof(state), "%s; reload failed", status);
        notify_ready(&s->notify, state, clock_now_usec());
        notify_status_changed(&s->notify); /* the counts alone again within a second */
}

/* The loop, until a stop has drained. Returns 0, or -errno after logging (poll() failed). */
static int serve_run(void *userdata) {
        struct serve *s = userdata;
        uint64_t now = clock_now_usec();

        while (!s->drain.stopping || children_count(s->children) > 0) {
                int timeout_ms = serve_arm(s, now);
                size_t n_fds = 1 + s->listeners->n + (s->pending ? pending_count(s->pending) : 0);

                if (poll(s->pfds, n_fds, timeout_ms) < 0 && errno != EINTR)
                        return log_error_errno(errno, "poll() failed: %m");
                now = clock_now_usec();
                if (s->pfds[0].revents)
                        serve_signals(s, now);
                for (size_t i = 0; i < s->listeners->n; i++) {
                        const struct listener *l = &s->listeners->items[i];
                        bool readable = s->pfds[1 + i].revents & POLLIN;

                        if (l->type != LISTENER_STREAM) {
                                if (readable)
                                        udp_serve(s->udp, l->fd, now);
                        } else if (readable) {
                                if (serve_accepting(s, now))
                                        serve_accept(s, l, now);
                        } else if (s->pfds[1 + i].fd >= 0)
                                s->at_cap = false; /* polled and nobody waits: the episode is over */
                }
                if (s->pending && pending_serve(s->pending, now, serve_admit_proxied, s) > 0)
                        notify_status_changed(&s->notify);
                serve_timers(s, now);
                if (s->reloading && !s->drain.stopping && (!s->pending || pending_count(s->pending) == 0))
                        serve_reload(s);
        }
        serve_log_stopped(s);
        return 0;
}

/* How many connections may wait for their PROXY header at once: none without such a
 * listener, and never more than --max-clients, which they count toward. */
static size_t pending_room(const struct options *options, const struct listeners *listeners) {
        for (size_t i = 0; i < listeners->n; i++)
                if (listeners->items[i].proxy)
                        return options->max_clients < PENDING_MAX ? options->max_clients : PENDING_MAX;
        return 0;
}

int serve_loop(const struct options *options, struct listeners *listeners) {
        /* The loop's state and poll set live in parent-only memory: after each fork the
         * parent writes them without copy-on-write faults. */
        size_t n_pending_max = pending_room(options, listeners);
        size_t size = sizeof(struct serve) + (1 + listeners->n + n_pending_max) * sizeof(struct pollfd);
        struct serve *s = map_alloc_parent_only(size);
        uint64_t now = clock_now_usec();
        int r;

        if (!s)
                return log_error_errno(ENOMEM, "Failed to allocate the accept loop's state: %m");
        *s = (struct serve){
                .options = options,
                .listeners = listeners,
                .pfds = (struct pollfd *)(s + 1),
                .signal_fd = -1,
                .report_fd = -1,
                .n_pending_max = n_pending_max,
                .handoff_report_fds = { -1, -1 },
        };
        notify_setup(&s->notify, now);
        r = serve_setup(s);
        if (r >= 0) {
                (void)fork_trim();
                serve_ready(s, now);
                r = fork_call_page_top(serve_run, s);
        }

        children_free(s->children);
        udp_free(s->udp);
        pending_free(s->pending);
        report_free(s->report);
        if (s->signal_fd >= 0)
                close(s->signal_fd);
        map_free_parent_only(s, size);
        return r;
}
