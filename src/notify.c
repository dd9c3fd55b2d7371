/* The service manager's view of echod. STATUS= is rate-limited: the first change after a
 * quiet second goes out at once, later ones are coalesced into one message a second, so a
 * burst of connections costs the accept loop nothing. Messages go through sd_notify(), with
 * libsystemd loaded for the call (libsystemd.c); if it cannot be loaded any more (an upgrade
 * replaced it), they are sent directly (notify_send.c), so the watchdog stays fed. Either
 * failure is a warning, once until it is over. */
#include "notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libsystemd.h"
#include "log.h"
#include "notify_send.h"

/* The notify socket's path, kept out of the environment: children are forked without it
 * and so cannot notify, whatever they run. It is in the environment only while
 * sd_notify() reads it. */
static char *notify_socket;

#define UNLOADABLE_FORMAT                                                                                    \
        "Cannot load libsystemd.so.0 (%s): sending notifications to the service manager directly%s"

/* Warns once per episode of libsystemd not loading; a notice when it loads again. */
static void unloadable_note(struct notify *n, bool unloadable, const char *why) {
        if (unloadable && !n->unloadable)
                log_warning(UNLOADABLE_FORMAT, why, "");
        else if (!unloadable && n->unloadable)
                log_notice("libsystemd.so.0 loads again: notifying the service manager through it");
        n->unloadable = unloadable;
}

/* sd_notify() of libsystemd, opened by the caller: 0 once sent, or -errno. */
static int send_sd_notify(const struct libsystemd *sd, const char *state) {
        int r;

        if (setenv("NOTIFY_SOCKET", notify_socket, 1) < 0)
                return -errno;
        r = sd->notify(0, state); /* 0 would mean no NOTIFY_SOCKET, which cannot be */
        unsetenv("NOTIFY_SOCKET");
        return r < 0 ? r : 0;
}

static void send_state(struct notify *n, const char *state) {
        struct libsystemd sd;
        int r;

        if (!notify_socket)
                return;
        if (libsystemd_open(&sd) < 0) {
                unloadable_note(n, true, sd.error);
                r = notify_send(notify_socket, state);
        } else {
                unloadable_note(n, false, NULL);
                r = send_sd_notify(&sd, state);
                libsystemd_close(&sd);
        }
        if (r < 0 && !n->failing)
                log_warning_errno(r, "Failed to notify the service manager: %m; will keep trying");
        else if (r >= 0 && n->failing)
                log_notice("Notifying the service manager works again");
        n->failing = r < 0;
}

void notify_setup(struct notify *n, uint64_t now) {
        const char *e = getenv("NOTIFY_SOCKET");
        struct libsystemd sd;
        uint64_t usec = 0;

        *n = (struct notify){};
        if (!e && !getenv("WATCHDOG_USEC"))
                return;
        if (e) {
                free(notify_socket);
                notify_socket = strdup(e);
                unsetenv("NOTIFY_SOCKET");
                n->enabled = notify_socket != NULL;
        }
        if (libsystemd_open(&sd) < 0) {
                /* The notifications still go out (send_state), warned about once, here;
                 * but WATCHDOG_USEC is libsystemd's to read, so say that too. */
                if (n->enabled)
                        log_warning(UNLOADABLE_FORMAT, sd.error,
                                    getenv("WATCHDOG_USEC")
                                            ? "; WATCHDOG_USEC cannot be read: the watchdog will not be fed"
                                            : "");
                n->unloadable = true;
                unsetenv("WATCHDOG_USEC");
                unsetenv("WATCHDOG_PID");
                return;
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
        /* With the watchdog's ping: after a reload, the new image's first one would come
         * only half a period after its start. */
        snprintf(buf, sizeof(buf), "READY=1\nSTATUS=%s%s", status,
                 n->watchdog_usec > 0 ? "\nWATCHDOG=1" : "");
        send_state(n, buf);
        if (n->watchdog_usec > 0)
                n->watchdog_next = now + n->watchdog_usec / 2;
        n->status_dirty = false;
        n->status_next = now + NOTIFY_STATUS_INTERVAL_USEC;
}

void notify_stopping(struct notify *n) {
        if (n->enabled)
                send_state(n, "STOPPING=1");
}

void notify_reloading(struct notify *n, uint64_t now) {
        char buf[128];

        snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=Reloading%s", now,
                 n->watchdog_usec > 0 ? "\nWATCHDOG=1" : "");
        if (n->enabled)
                send_state(n, buf);
        if (n->watchdog_usec > 0)
                n->watchdog_next = now + n->watchdog_usec / 2;
}

const char *notify_socket_path(const struct notify *n) {
        return n->enabled ? notify_socket : NULL;
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

void notify_watchdog_now(struct notify *n, uint64_t now) {
        if (n->watchdog_usec == 0)
                return;
        send_state(n, "WATCHDOG=1");
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
