/* sd_notify from the main process only: READY, a coalesced STATUS, STOPPING, WATCHDOG.
 * Every call is a no-op when NOTIFY_SOCKET is not set. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define NOTIFY_STATUS_INTERVAL_USEC 1000000u

struct notify {
        bool enabled;
        bool status_dirty;
        bool failing;           /* the last message could not be sent (warned once) */
        bool unloadable;        /* libsystemd.so.0 could not be loaded (warned once) */
        uint64_t status_next;   /* earliest time for the next STATUS= */
        uint64_t watchdog_usec; /* 0: no watchdog */
        uint64_t watchdog_next;
};

void notify_setup(struct notify *n, uint64_t now);
/* Sends "READY=1\nSTATUS=<status>", with WATCHDOG=1 under a watchdog. */
void notify_ready(struct notify *n, const char *status, uint64_t now);
void notify_stopping(struct notify *n);
/* A reload begins: RELOADING=1 with MONOTONIC_USEC (now; systemd >= 253 reads it, older
 * ones ignore it) and WATCHDOG=1, so the new image starts with a whole watchdog period. */
void notify_reloading(struct notify *n, uint64_t now);
/* The notify socket's path, for a new image of echod (NULL: none). */
const char *notify_socket_path(const struct notify *n);
/* Something in the status changed: it will be sent within NOTIFY_STATUS_INTERVAL_USEC. */
static inline void notify_status_changed(struct notify *n) {
        n->status_dirty = true;
}
/* True when a status update is due now; the caller then calls notify_status(). */
bool notify_status_due(const struct notify *n, uint64_t now);
void notify_status(struct notify *n, const char *status, uint64_t now);
/* Sends WATCHDOG=1 if it is due. */
void notify_watchdog(struct notify *n, uint64_t now);
/* Sends WATCHDOG=1 now (under a watchdog), before something that blocks the loop. */
void notify_watchdog_now(struct notify *n, uint64_t now);
/* The earliest time notify wants to be called again (UINT64_MAX: never). */
uint64_t notify_deadline(const struct notify *n);
