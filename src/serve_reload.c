/* Reload by re-execution, the accept loop's side (see reexec.h and docs/design.md, "Reload
 * by re-execution"): what the old image hands over on SIGHUP, and how the new one takes it
 * over. The children are the point: each keeps its connection and its copy of the old
 * code, and the new image counts, reaps, signals and drains them like its own. */
#include "serve_state.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addr.h"
#include "children.h"
#include "clock.h"
#include "config.h"
#include "journal-ids.h"
#include "log.h"
#include "reexec.h"
#include "report.h"
#include "udp.h"

/* Whether pid is a child of this process (running, or ended and not yet reaped). A state
 * names only the children of the image before; one that names another process is corrupt,
 * and that process must be neither counted nor signalled. */
static bool child_is_ours(pid_t pid) {
        siginfo_t info;

        return pid > 0 && waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

void serve_adopt(struct serve *s) {
        const pid_t *pids;
        size_t n_pids;
        const struct handoff *h = reexec_handoff(&pids, &n_pids);
        unsigned n_lost = 0, n_strangers = 0;

        for (size_t i = 0; !h && i < n_pids; i++) {
                if (!child_is_ours(pids[i])) {
                        n_strangers++;
                        continue;
                }
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
                        if (!child_is_ours(h->children[i].pid))
                                n_strangers++;
                        else if (children_add(s->children, h->children[i].pid, h->children[i].source) < 0) {
                                (void)kill(h->children[i].pid, SIGTERM); /* cannot be: same cap */
                                n_lost++;
                        }
                s->n_adopted = children_count(s->children);
        }
        if (n_strangers > 0)
                log_error("The state of the image before the reload names %u processes that are not "
                          "children of echod: ignored",
                          n_strangers);
        if (n_lost > 0)
                log_error("No room for %u children of the image before the reload: stopped", n_lost);
        if (h || n_pids > 0)
                (void)children_reap(s->children, false);
}
void serve_adopt_udp(struct serve *s) {
        const pid_t *pids;
        size_t n_pids;
        const struct handoff *h = reexec_handoff(&pids, &n_pids);

        if (h && s->udp)
                udp_counts_carry(s->udp, h->udp_echoed, h->udp_dropped);
        reexec_handoff_done();
}

void serve_reload_note(const struct serve *s, struct journal_record *rec, char *buf, size_t size) {
        buf[0] = '\0';
        if (!reexec_reloaded())
                return;
        (void)journal_record_addf(rec, "ECHOD_ADOPTED", "%u", s->n_adopted);
        snprintf(buf, size, ", reloaded, %u client%s taken over", s->n_adopted, s->n_adopted == 1 ? "" : "s");
}

static void child_hand_over(pid_t pid, uint64_t source, void *userdata) {
        struct handoff *h = userdata;

        h->children[h->n_children++] = (struct handoff_child){ .pid = pid, .source = source };
}

/* The check blocks the loop (datagrams wait in their socket's buffer meanwhile): it starts
 * with a fresh watchdog ping and takes at most half the watchdog's period. */
static uint64_t check_timeout(struct notify *n) {
        uint64_t timeout = REEXEC_CHECK_TIMEOUT_USEC;

        notify_watchdog_now(n, clock_now_usec());
        if (n->watchdog_usec > 0 && n->watchdog_usec / 2 < timeout)
                timeout = n->watchdog_usec / 2;
        return timeout;
}

/* New connections wait in the backlog meanwhile (serve_accepting()). If the new image
 * cannot start, READY=1 (with "reload failed" in STATUS) ends the reload for systemd. */
void serve_reload(struct serve *s) {
        struct handoff h = { .n_served = s->n_served, .n_refused = serve_refused(s) };
        char why[512], status[160], state[sizeof(status) + 64];
        struct journal_record rec;
        int r;

        s->reloading = false;
        log_notice("reloading: checking that %s can start", reexec_path());
        r = reexec_check(check_timeout(&s->notify), why, sizeof(why));
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
                        notify_watchdog_now(&s->notify, clock_now_usec());
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
        serve_format_status(s, status, sizeof(status));
        snprintf(state, sizeof(state), "%s; reload failed", status);
        notify_ready(&s->notify, state, clock_now_usec());
        notify_status_changed(&s->notify); /* the counts alone again within a second */
}
