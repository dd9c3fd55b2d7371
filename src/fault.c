/* The pause of a fault episode (see fault.h): the first failure is logged with its cause,
 * the rest only counted, and the first success says how many there were. */
#include "fault.h"

#include <errno.h>

#include "clock.h"
#include "journal-ids.h"
#include "log.h"

#define PAUSE_MIN_USEC (10 * USEC_PER_MSEC)
#define PAUSE_MAX_USEC (1 * USEC_PER_SEC)

void fault_record(struct fault *f, int error, const char *what, uint64_t now) {
        if (f->pause_usec == 0) {
                struct journal_record rec;
                journal_record_start(&rec);
                (void)journal_record_addf(&rec, "ERRNO", "%d", error < 0 ? -error : error);
                (void)journal_record_addf(&rec, "ECHOD_FAILED", "%s", what);
                (void)journal_record_addf(&rec, "ECHOD_BACKOFF", "start");
                errno = error < 0 ? -error : error;
                log_event(LOG_WARNING, ECHOD_ID_BACKOFF, &rec,
                          "%s failed: %m; pausing new connections, retrying with a growing delay up to 1 s",
                          what);
                f->pause_usec = PAUSE_MIN_USEC;
        } else if (f->pause_usec < PAUSE_MAX_USEC)
                f->pause_usec = f->pause_usec * 2 < PAUSE_MAX_USEC ? f->pause_usec * 2 : PAUSE_MAX_USEC;
        f->n_faults++;
        f->paused_until = now + f->pause_usec;
}

void fault_end(struct fault *f) {
        struct journal_record rec;

        if (f->pause_usec == 0)
                return;
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_BACKOFF", "end");
        (void)journal_record_addf(&rec, "ECHOD_FAILURES", "%u", f->n_faults);
        log_event(LOG_NOTICE, ECHOD_ID_BACKOFF, &rec, "Serving again after %u failed attempt%s", f->n_faults,
                  f->n_faults == 1 ? "" : "s");
        f->pause_usec = 0;
        f->n_faults = 0;
}

uint64_t fault_paused_until(const struct fault *f, uint64_t now) {
        return f->pause_usec != 0 && now < f->paused_until ? f->paused_until : 0;
}

bool fault_accept_is_transient(int error) {
        switch (error) {
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
        case EINTR:
                return true;
        default:
                return false;
        }
}
