/* The service manager's view of echod. STATUS= is rate-limited: the first change after a
 * quiet second goes out at once, later ones are coalesced into one message a second, so a
 * burst of connections costs the accept loop nothing. A message that cannot be sent is a
 * warning, once until one goes through again. */
#include "notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sdproto.h"

/* The notify socket's path, kept out of the environment: children are forked without it
 * and so cannot notify, whatever they run. */
static char *notify_socket;

static void send_state(struct notify *n, const char *state) {
        int r;

        if (!notify_socket)
                return;
        r = sdproto_notify(notify_socket, state);
        if (r < 0 && !n->failing)
                log_warning_errno(r, "Failed to notify the service manager: %m; will keep trying");
        else if (r >= 0 && n->failing)
                log_notice("Notifying the service manager works again");
        n->failing = r < 0;
}

void notify_setup(struct notify *n, uint64_t now) {
        const char *e = getenv("NOTIFY_SOCKET");
        uint64_t usec = 0;

        *n = (struct notify){};
        if (e) {
                free(notify_socket);
                notify_socket = strdup(e);
                unsetenv("NOTIFY_SOCKET");
                n->enabled = notify_socket != NULL;
        }
        /* WATCHDOG_PID and WATCHDOG_USEC are read once and dropped. */
        if (sdproto_watchdog(&usec) > 0) {
                n->watchdog_usec = usec;
                n->watchdog_next = now + usec / 2;
        }
}

void notify_ready(struct notify *n, const char *status, uint64_t now) {
        char buf[256];

        if (!n->enabled)
                return;
        snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%s", status);
        send_state(n, buf);
        n->status_dirty = false;
        n->status_next = now + NOTIFY_STATUS_INTERVAL_USEC;
}

void notify_stopping(struct notify *n) {
        if (n->enabled)
                send_state(n, "STOPPING=1");
}

bool notify_status_due(const struct notify *n, uint64_t now) {
        return n->enabled && n->status_dirty && now >= n->status_next;
}

void notify_status(struct notify *n, const char *status, uint64_t now) {
        char buf[256];

        snprintf(buf, sizeof(buf), "STATUS=%s", status);
        send_state(n, buf);
        n->status_dirty = false;
        n->status_next = now + NOTIFY_STATUS_INTERVAL_USEC;
}

void notify_watchdog(struct notify *n, uint64_t now) {
        if (n->watchdog_usec == 0 || now < n->watchdog_next)
                return;
        send_state(n, "WATCHDOG=1");
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
