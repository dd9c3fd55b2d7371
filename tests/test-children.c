/* Unit test of children.c with real children: the cap and the per-source count follow
 * children_add() and reaping; a reaped child frees its source's slot; a child that is not
 * in the table is reaped but not counted; a child killed by a signal is logged as such, a
 * SIGKILL at the drain timeout as the end of its connection. Each child waits on a pipe
 * of its own, so the test decides which one ends. */
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

#include "children.h"
#include "log.h"
#include "tap.h"

#define N_CHURN 200

struct child {
        pid_t pid;
        int release_fd; /* closing it lets the child exit 0 */
};

/* A child that exits 0 once release_fd is closed (or when a signal kills it). */
static struct child child_start(void) {
        struct child ch = { .pid = -1, .release_fd = -1 };
        int pipe_fd[2];
        char b;

        if (pipe(pipe_fd) < 0)
                return ch;
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
        close(pipe_fd[0]);
        ch.release_fd = pipe_fd[1];
        return ch;
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

/* children_reap() with stderr captured into buf. */
static unsigned reap_logged(struct children *c, bool drain_killed, char *buf, size_t size) {
        FILE *f = tmpfile();
        int saved = dup(STDERR_FILENO);
        unsigned n;
        size_t len = 0;

        if (f)
                dup2(fileno(f), STDERR_FILENO);
        n = children_reap(c, drain_killed);
        dup2(saved, STDERR_FILENO);
        close(saved);
        if (f) {
                rewind(f);
                len = fread(buf, 1, size - 1, f);
                fclose(f);
        }
        buf[len] = '\0';
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

int main(void) {
        log_setup(LOG_INFO);
        test_counts();
        test_churn();
        return tap_done();
}
