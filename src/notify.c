/* The service manager's view of echod. STATUS= is rate-limited: the first change after a
 * quiet second goes out at once, later ones are coalesced into one message a second, so a
 * burst of connections costs the accept loop nothing. */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libsystemd.h"
#include "log.h"

/* The notify socket's path, kept out of the environment: children are forked without it
 * and so cannot notify, whatever they run. It is in the environment only while
 * sd_notify() reads it. */
static char *notify_socket;

static void send_state(const char *state) {
        struct libsystemd sd;
        int r;

        if (!notify_socket || libsystemd_open(&sd) < 0)
                return;
        if (setenv("NOTIFY_SOCKET", notify_socket, 1) == 0) {
                r = sd.notify(0, state);
                unsetenv("NOTIFY_SOCKET");
                if (r < 0)
                        log_debug("Failed to notify the service manager: %s", state);
        }
        libsystemd_close(&sd);
}

void notify_setup(struct notify *n, uint64_t now) {
        const char *e = getenv("NOTIFY_SOCKET");
        struct libsystemd sd;
        uint64_t usec = 0;

        *n = (struct notify){};
        if (!e && !getenv("WATCHDOG_USEC"))
                return;
        if (libsystemd_open(&sd) < 0) {
                log_warning("NOTIFY_SOCKET is set but libsystemd.so.0 cannot be loaded: "
                            "the service manager will not hear from echod");
                return;
        }
        if (e) {
                free(notify_socket);
                notify_socket = strdup(e);
                unsetenv("NOTIFY_SOCKET");
                n->enabled = notify_socket != NULL;
        }
        /* unset_environment=1: WATCHDOG_PID and WATCHDOG_USEC are read once and dropped. */
        if (sd.watchdog_enabled(1, &usec) > 0 && usec > 0) {
                n->watchdog_usec = usec;
                n->watchdog_next = now + usec / 2;
        }
        libsystemd_close(&sd);
}

void notify_ready(struct notify *n, const char *status, uint64_t now) {
        char buf[256];

        if (!n->enabled)
                return;
        snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%s", status);
        send_state(buf);
        n->status_dirty = false;
        n->status_next = now + NOTIFY_STATUS_INTERVAL_USEC;
}

void notify_stopping(struct notify *n) {
        if (n->enabled)
                send_state("STOPPING=1");
}

bool notify_status_due(const struct notify *n, uint64_t now) {
        return n->enabled && n->status_dirty && now >= n->status_next;
}

void notify_status(struct notify *n, const char *status, uint64_t now) {
        char buf[256];

        snprintf(buf, sizeof(buf), "STATUS=%s", status);
        send_state(buf);
        n->status_dirty = false;
        n->status_next = now + NOTIFY_STATUS_INTERVAL_USEC;
}

void notify_watchdog(struct notify *n, uint64_t now) {
        if (n->watchdog_usec == 0 || now < n->watchdog_next)
                return;
        send_state("WATCHDOG=1");
        /* On the schedule, not from now: a late wake-up (a loaded machine, a slow
         * sd_notify) must not push every later ping back by as much. */
        n->watchdog_next += n->watchdog_usec / 2;
        if (n->watchdog_next <= now)
                n->watchdog_next = now + n->watchdog_usec / 2;
}

uint64_t notify_deadline(const struct notify *n) {
        uint64_t d = UINT64_MAX;

        if (n->enabled && n->status_dirty)
                d = n->status_next;
        if (n->watchdog_usec > 0 && n->watchdog_next < d)
                d = n->watchdog_next;
        return d;
}
