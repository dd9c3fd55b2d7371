/* Unit test of children.c and drain.c with real children: the cap and the per-source
 * count follow children_add() and reaping; a reaped child frees its source's slot; a child
 * that is not in the table is reaped but not counted; a child killed by a signal is logged
 * as such, a SIGKILL at the drain timeout as the end of its connection; a stop sends
 * SIGTERM at once and SIGKILL at its deadline, each with one line. Each child waits on a
 * pipe of its own, so the test decides which one ends. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "children.h"
#include "clock.h"
#include "drain.h"
#include "log.h"
#include "tap.h"

#define N_CHURN 200

struct child {
        pid_t pid;
        int release_fd; /* closing it lets the child exit 0 */
};

/* A child that exits 0 once release_fd is closed, or when a signal kills it; with
 * ignore_sigterm it survives a SIGTERM (set before the fork: no race with the kill). */
static struct child child_start_with(bool ignore_sigterm) {
        struct child ch = { .pid = -1, .release_fd = -1 };
        int pipe_fd[2];
        char b;

        if (pipe(pipe_fd) < 0)
                return ch;
        if (ignore_sigterm)
                signal(SIGTERM, SIG_IGN);
        ch.pid = fork();
        if (ch.pid == 0) {
                /* Only its own read end: an earlier child's write end kept here would keep
                 * that child from seeing its EOF. */
                for (int fd = 3; fd < 1024; fd++)
                        if (fd != pipe_fd[0])
                                close(fd);
                while (read(pipe_fd[0], &b, 1) < 0 && errno == EINTR)
                        ;
                _exit(0);
        }
        signal(SIGTERM, SIG_DFL);
        close(pipe_fd[0]);
        ch.release_fd = pipe_fd[1];
        return ch;
}

static struct child child_start(void) {
        return child_start_with(false);
}

/* Lets ch end, and returns once it is a zombie (not reaped: that is children_reap()'s). */
static bool child_end(struct child *ch) {
        siginfo_t si;

        if (ch->release_fd >= 0)
                close(ch->release_fd);
        ch->release_fd = -1;
        return waitid(P_PID, (id_t)ch->pid, &si, WEXITED | WNOWAIT) == 0;
}

static bool child_killed(struct child *ch) {
        siginfo_t si;

        return waitid(P_PID, (id_t)ch->pid, &si, WEXITED | WNOWAIT) == 0;
}

static bool child_alive(const struct child *ch) {
        siginfo_t si = {};

        return waitid(P_PID, (id_t)ch->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0;
}

/* children_reap() with what it logs captured into buf. */
static unsigned reap_logged(struct children *c, bool at_drain_timeout, char *buf, size_t size) {
        unsigned n;

        capture_begin();
        n = children_reap(c, at_drain_timeout);
        capture_end(buf, size);
        return n;
}

static void test_counts(void) {
        const uint64_t a = 1, b = 2, none = UINT64_MAX;
        struct children *c;
        struct child ch[4], other;
        char log[1024];

        if (children_new(4, 2, &c) < 0) {
                tap(false, "children_new(4, 2)");
                return;
        }
        for (int i = 0; i < 4; i++)
                ch[i] = child_start();
        children_add(c, ch[0].pid, a);
        children_add(c, ch[1].pid, a);
        children_add(c, ch[2].pid, b);
        tap(children_count(c) == 3 && !children_full(c), "3 of 4 children: counted, not full");
        tap(children_source_full(c, a) && !children_source_full(c, b),
            "2 of 2 from one source: that source is full, "
            "another is not");
        children_add(c, ch[3].pid, none);
        tap(children_count(c) == 4 && children_full(c) && !children_source_full(c, none),
            "4 of 4: full; a source without a key (AF_UNIX) is never full");

        tap(child_end(&ch[0]) && reap_logged(c, false, log, sizeof(log)) == 1 && log[0] == '\0',
            "a child that exits 0 is reaped, with no log line");
        tap(children_count(c) == 3 && !children_full(c) && !children_source_full(c, a),
            "its slot and its source's slot are free again");

        other = child_start();
        tap(child_end(&other) && reap_logged(c, false, log, sizeof(log)) == 0 && children_count(c) == 3,
            "a child not in the table is reaped but not counted");

        tap(kill(ch[1].pid, SIGUSR1) == 0 && child_killed(&ch[1]) &&
                    reap_logged(c, false, log, sizeof(log)) == 1 &&
                    strstr(log, "was killed by signal User defined signal 1") != NULL,
            "a child killed by a signal is logged with the signal's name");
        if (!strstr(log, "User defined signal 1"))
                printf("# log: %s\n", log);

        tap(children_kill(c, SIGKILL) == 2 && child_killed(&ch[2]) && child_killed(&ch[3]) &&
                    reap_logged(c, true, log, sizeof(log)) == 2 &&
                    strstr(log, "ended: killed at the drain timeout") != NULL && !strstr(log, "was killed"),
            "SIGKILL at the drain timeout: each child's connection logged as ended there");
        if (!strstr(log, "drain timeout"))
                printf("# log: %s\n", log);
        tap(children_count(c) == 0 && !children_source_full(c, b), "every child reaped: none counted");
        tap(reap_logged(c, false, log, sizeof(log)) == 0, "reaping with no children reaps nothing");
        for (int i = 0; i < 4; i++)
                if (ch[i].release_fd >= 0)
                        close(ch[i].release_fd);
        children_free(c);
}

/* Up to 8 live children from 3 sources with at most 3 each, N_CHURN of them in turn
 * (the oldest ends when there is no room), checked against a count of our own after each
 * step. */
static void test_churn(void) {
        struct child live[8] = { 0 }; /* a ring: the oldest at head */
        uint64_t live_source[8] = { 0 };
        unsigned head = 0, n_live = 0, per_source[3] = { 0 };
        struct children *c;
        char log[256];
        bool ok = true;

        if (children_new(8, 3, &c) < 0) {
                tap(false, "children_new(8, 3)");
                return;
        }
        for (unsigned i = 0; i < N_CHURN && ok; i++) {
                uint64_t source = i % 3;
                unsigned tail;

                while (children_full(c) || children_source_full(c, source)) {
                        if (n_live == 0 || !child_end(&live[head]) ||
                            reap_logged(c, false, log, sizeof(log)) != 1) {
                                ok = false;
                                break;
                        }
                        per_source[live_source[head]]--;
                        head = (head + 1) % 8;
                        n_live--;
                }
                if (!ok)
                        break;
                tail = (head + n_live) % 8;
                live[tail] = child_start();
                live_source[tail] = source;
                ok = live[tail].pid > 0;
                children_add(c, live[tail].pid, source);
                n_live++;
                per_source[source]++;
                ok = ok && children_count(c) == n_live && children_full(c) == (n_live == 8);
                for (unsigned s = 0; s < 3; s++)
                        ok = ok && children_source_full(c, s) == (per_source[s] >= 3);
                if (!ok)
                        printf("# step %u: %u counted, %u live\n", i, children_count(c), n_live);
        }
        for (; n_live > 0; n_live--, head = (head + 1) % 8) {
                ok = ok && child_end(&live[head]);
                (void)children_reap(c, false);
        }
        tap(ok && children_count(c) == 0,
            "%u children in turn: counts and source slots follow each add and reap", N_CHURN);
        children_free(c);
}

/* Past the cap, children_add() refuses (the loop must not let a child serve untracked);
 * children counted but reaped elsewhere (waitpid() says ECHILD, as when SIGCHLD is
 * ignored) are forgotten, so the cap and a stop do not wait for them forever. */
static void test_full_and_unseen(void) {
        struct children *c;
        char log[256];
        int r;

        if (children_new(2, 2, &c) < 0) {
                tap(false, "children_new(2, 2)");
                return;
        }
        /* pids of no child of ours: this process has none left now */
        tap(children_add(c, 999991, 7) == 0 && children_add(c, 999992, 7) == 0, "two children added");
        r = children_add(c, 999993, 8);
        tap(r == -ENOSPC && children_count(c) == 2 && !children_source_full(c, 8),
            "a third past the cap of 2: -ENOSPC, not counted, its source untouched (r=%d)", r);
        tap(children_source_full(c, 7), "the two fill their source's slots");
        tap(reap_logged(c, false, log, sizeof(log)) == 2 && children_count(c) == 0 && !children_full(c) &&
                    !children_source_full(c, 7) && strstr(log, "2 children ended unseen") != NULL,
            "none to wait for (ECHILD): the 2 counted are forgotten, with a warning");
        if (!strstr(log, "unseen"))
                printf("# log: %s\n", log);
        children_free(c);
}

static void test_drain(void) {
        const uint64_t now = 100 * USEC_PER_SEC, timeout = 5 * USEC_PER_SEC;
        struct drain d = {}, d2 = {};
        struct children *c;
        struct child obeys, stays;
        char log[1024];
        bool killed;

        if (children_new(4, 0, &c) < 0) {
                tap(false, "children_new(4, 0)");
                return;
        }
        obeys = child_start();
        stays = child_start_with(true);
        children_add(c, obeys.pid, 1);
        children_add(c, stays.pid, 2);
        tap(!d.stopping && drain_deadline(&d) == UINT64_MAX && !drain_killed(&d), "no stop: no deadline");

        capture_begin();
        drain_begin(&d, c, timeout, now);
        drain_begin(&d, c, timeout, now + 1);
        capture_end(log, sizeof(log));
        tap(strcmp(log, "stopping: 2 clients draining, up to 5 s\n") == 0 &&
                    drain_deadline(&d) == now + timeout,
            "a stop: one line, the deadline 5 s on; a second stop changes nothing");
        if (strstr(log, "stopping") != log)
                printf("# log: %s", log);
        tap(child_killed(&obeys) && reap_logged(c, false, log, sizeof(log)) == 1 && child_alive(&stays),
            "SIGTERM to every child at once");

        capture_begin();
        drain_tick(&d, c, now + timeout - 1);
        capture_end(log, sizeof(log));
        tap(log[0] == '\0' && child_alive(&stays) && !drain_killed(&d),
            "before the deadline: nothing happens");

        capture_begin();
        drain_tick(&d, c, now + timeout);
        killed = drain_killed(&d);
        drain_tick(&d, c, now + timeout + 1);
        capture_end(log, sizeof(log));
        tap(strcmp(log, "Drain timeout: killed 1 remaining client\n") == 0 && killed &&
                    drain_deadline(&d) == UINT64_MAX,
            "at the deadline: SIGKILL to the rest, one line, once");
        if (strstr(log, "Drain") != log)
                printf("# log: %s", log);
        tap(child_killed(&stays) && reap_logged(c, drain_killed(&d), log, sizeof(log)) == 1 &&
                    strstr(log, "ended: killed at the drain timeout") != NULL && children_count(c) == 0,
            "the child it killed is reaped and its connection's end logged");

        capture_begin();
        drain_begin(&d2, c, 250 * USEC_PER_MSEC, now);
        drain_tick(&d2, c, now + 250 * USEC_PER_MSEC);
        capture_end(log, sizeof(log));
        tap(strcmp(log, "stopping: 0 clients draining, up to 0.250 s\n") == 0 && drain_killed(&d2),
            "no children: the stop's line in milliseconds, no kill line at the deadline");
        if (strstr(log, "stopping") != log)
                printf("# log: %s", log);
        close(obeys.release_fd);
        close(stays.release_fd);
        children_free(c);
}

int main(void) {
        log_setup(LOG_INFO);
        test_counts();
        test_churn();
        test_full_and_unseen();
        test_drain();
        return tap_done();
}
