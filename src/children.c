/* Two maps in parent-only memory: pid -> source key, and source key -> live connections.
 * The second holds one entry per source with a live connection, so it is sized like the
 * first and can never fill. The struct itself is parent-only too: a child has no pointer
 * to it (the loop's state is not in the child either), so it must not be on the heap. */
#include "children.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "addr.h"
#include "fork.h"
#include "journal-ids.h"
#include "log.h"
#include "map.h"

struct children {
        struct map *pids;    /* pid -> source key */
        struct map *sources; /* source key -> count; NULL without a per-source cap */
        unsigned max, max_per_source;
};

int children_new(unsigned max, unsigned max_per_source, struct children **ret) {
        struct children *c = fork_alloc_parent_only(sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->max = max;
        c->max_per_source = max_per_source;
        if (map_new(max, &c->pids) < 0 || (max_per_source > 0 && map_new(max, &c->sources) < 0)) {
                children_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void children_free(struct children *c) {
        if (!c)
                return;
        map_free(c->pids);
        map_free(c->sources);
        fork_free_parent_only(c, sizeof(*c));
}

unsigned children_count(const struct children *c) {
        return (unsigned)map_size(c->pids);
}

bool children_full(const struct children *c) {
        return children_count(c) >= c->max;
}

bool children_source_full(const struct children *c, uint64_t source) {
        uint64_t n = 0;

        if (!c->sources || source == ADDR_SOURCE_NONE)
                return false;
        (void)map_get(c->sources, source, &n);
        return n >= c->max_per_source;
}

int children_add(struct children *c, pid_t pid, uint64_t source) {
        uint64_t n = 0;
        int r;

        r = map_put(c->pids, (uint64_t)pid, source);
        if (r < 0 || !c->sources || source == ADDR_SOURCE_NONE)
                return r;
        (void)map_get(c->sources, source, &n);
        /* One entry per source with a live child: room whenever pids had room. */
        r = map_put(c->sources, source, n + 1);
        if (r < 0)
                (void)map_remove(c->pids, (uint64_t)pid, NULL);
        return r;
}

/* Forgets pid; false if it is not one of ours. */
static bool children_remove(struct children *c, pid_t pid) {
        uint64_t source, n = 0;

        if (!map_remove(c->pids, (uint64_t)pid, &source))
                return false;
        if (!c->sources || source == ADDR_SOURCE_NONE || !map_get(c->sources, source, &n))
                return true;
        if (n <= 1)
                (void)map_remove(c->sources, source, NULL);
        else
                (void)map_put(c->sources, source, n - 1);
        return true;
}

static void kill_one(uint64_t pid, uint64_t source, void *userdata) {
        (void)source;
        (void)kill((pid_t)pid, *(const int *)userdata);
}

struct foreach_call {
        void (*f)(pid_t pid, uint64_t source, void *userdata);
        void *userdata;
};

static void foreach_one(uint64_t pid, uint64_t source, void *userdata) {
        struct foreach_call *call = userdata;

        call->f((pid_t)pid, source, call->userdata);
}

void children_foreach(const struct children *c, void (*f)(pid_t pid, uint64_t source, void *userdata),
                      void *userdata) {
        struct foreach_call call = { f, userdata };

        map_foreach(c->pids, foreach_one, &call);
}

unsigned children_kill(const struct children *c, int sig) {
        map_foreach(c->pids, kill_one, &sig);
        return children_count(c);
}

/* A child a signal ended: its own line or report never came. Never inlined: the record
 * stays off the loop's stack frame (see serve.c). */
static __attribute__((noinline)) void log_signaled(pid_t pid, int sig, bool drain_killed) {
        struct journal_record rec;

        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_CHILD_PID", "%d", (int)pid);
        (void)journal_record_addf(&rec, "ECHOD_SIGNAL", "%d", sig);
        if (drain_killed && sig == SIGKILL)
                /* say how this connection ended */
                log_event(LOG_INFO, ECHOD_ID_DRAIN_KILLED, &rec,
                          "connection of pid %d ended: killed at the drain timeout", (int)pid);
        else
                log_event(LOG_WARNING, ECHOD_ID_CHILD_SIGNALED, &rec, "Child %d was killed by signal %s",
                          (int)pid, strsignal(sig));
}

unsigned children_reap(struct children *c, bool drain_killed) {
        unsigned n = 0;

        /* Only while there are children: waitpid() with none fails and writes errno. */
        while (children_count(c) > 0) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);

                if (pid < 0 && errno == ECHILD) {
                        /* Counted, yet none to wait for: they were reaped behind our back
                         * (SIGCHLD ignored, which main() undoes). None is left to stop. */
                        n += children_count(c);
                        log_warning("%u children ended unseen: forgotten", children_count(c));
                        map_clear(c->pids);
                        if (c->sources)
                                map_clear(c->sources);
                        break;
                }
                if (pid <= 0)
                        break;
                if (!children_remove(c, pid))
                        continue;
                n++;
                if (WIFSIGNALED(status))
                        log_signaled(pid, WTERMSIG(status), drain_killed);
        }
        return n;
}
