/* The accept loop. One poll() over a signalfd and the listeners; a listener is polled only
 * while there is room for another child, so the --max-clients cap is backpressure (clients
 * wait in the kernel's backlog) with no extra branch. Failures of accept() or fork() pause
 * the listeners with a growing delay: the service never spins and never gives up. Which
 * listeners are polled, and taking a connection, are serve_accept.c's. See docs/design.md,
 * "The main loop". */
#include "serve.h"
#include "serve_state.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "child/client.h"
#include "config.h"
#include "clock.h"
#include "children.h"
#include "drain.h"
#include "fork.h"
#include "journal-ids.h"
#include "log.h"
#include "notify.h"
#include "refused.h"
#include "report.h"
#include "pending.h"
#include "reexec.h"
#include "tally.h"
#include "udp.h"

/* Refused in all: over the per-source cap, or without a valid PROXY header. */
uint64_t serve_refused(const struct serve *s) {
        return s->n_refused + (s->pending ? pending_refused(s->pending) : 0);
}

void serve_format_status(const struct serve *s, char *buf, size_t size) {
        int n = snprintf(buf, size, "%u/%u clients active, %" PRIu64 " served, %" PRIu64 " refused",
                         children_count(s->children), s->options->max_clients, s->n_served, serve_refused(s));

        if (s->udp && n > 0 && (size_t)n < size) {
                uint64_t echoed, dropped;
                udp_counts(s->udp, &echoed, &dropped);
                snprintf(buf + n, size - (size_t)n, ", %" PRIu64 " datagrams echoed, %" PRIu64 " dropped",
                         echoed, dropped);
        }
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
                serve_format_status(s, status, sizeof(status));
                notify_status(&s->notify, status, now);
        }
        notify_watchdog(&s->notify, now);
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
        char names[1024], status[160], reloaded[64];
        struct journal_record rec;

        listen_fds_describe(s->listeners, names, sizeof(names));
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_LISTENERS", "%s", names);
        (void)journal_record_addf(&rec, "ECHOD_MAX_CLIENTS", "%u", s->options->max_clients);
        (void)journal_record_addf(&rec, "ECHOD_MAX_PER_SOURCE", "%u", s->options->max_per_source);
        (void)journal_record_addf(&rec, "ECHOD_VERSION", "%s", ECHOD_VERSION);
        serve_reload_note(s, &rec, reloaded, sizeof(reloaded));
        log_event(LOG_NOTICE, ECHOD_ID_READY, &rec, "ready: %s; max %u clients; echod %s%s", names,
                  s->options->max_clients, ECHOD_VERSION, reloaded);
        serve_format_status(s, status, sizeof(status));
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
        struct serve *s = fork_alloc_parent_only(size);
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
                /* The loop's frames in one stack page: a fork costs the parent one copy, not two. */
                r = fork_call_page_top(serve_run, s);
        }

        children_free(s->children);
        udp_free(s->udp);
        pending_free(s->pending);
        report_free(s->report);
        if (s->signal_fd >= 0)
                close(s->signal_fd);
        fork_free_parent_only(s, size);
        return r;
}
