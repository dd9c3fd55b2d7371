/* The stop sequence (see drain.h). */
#include "drain.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>

#include "clock.h"
#include "journal-ids.h"
#include "log.h"

/* "5 s", "0.250 s" */
static const char *format_seconds(uint64_t usec, char *buf, size_t size) {
        if (usec % USEC_PER_SEC == 0)
                snprintf(buf, size, "%" PRIu64 " s", (uint64_t)(usec / USEC_PER_SEC));
        else
                snprintf(buf, size, "%" PRIu64 ".%03" PRIu64 " s", (uint64_t)(usec / USEC_PER_SEC),
                         (uint64_t)(usec % USEC_PER_SEC / USEC_PER_MSEC));
        return buf;
}

void drain_begin(struct drain *d, struct children *children, uint64_t timeout_usec, uint64_t now) {
        char buf[32];
        struct journal_record rec;
        unsigned n;

        if (d->stopping)
                return;
        d->stopping = true;
        n = children_kill(children, SIGTERM);
        d->deadline = now + timeout_usec;
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_CLIENTS", "%u", n);
        (void)journal_record_addf(&rec, "ECHOD_DRAIN_TIMEOUT_USEC", "%" PRIu64, timeout_usec);
        log_event(LOG_NOTICE, ECHOD_ID_STOPPING, &rec, "stopping: %u client%s draining, up to %s", n,
                  n == 1 ? "" : "s", format_seconds(timeout_usec, buf, sizeof(buf)));
}

void drain_tick(struct drain *d, struct children *children, uint64_t now) {
        unsigned n;

        if (d->deadline == 0 || now < d->deadline)
                return;
        n = children_kill(children, SIGKILL);
        if (n > 0) {
                struct journal_record rec;
                journal_record_start(&rec);
                (void)journal_record_addf(&rec, "ECHOD_CLIENTS", "%u", n);
                log_event(LOG_WARNING, ECHOD_ID_DRAIN_TIMEOUT, &rec,
                          "Drain timeout: killed %u remaining client%s", n, n == 1 ? "" : "s");
        }
        d->deadline = 0;
}

uint64_t drain_deadline(const struct drain *d) {
        return d->deadline != 0 ? d->deadline : UINT64_MAX;
}

bool drain_killed(const struct drain *d) {
        return d->stopping && d->deadline == 0;
}
