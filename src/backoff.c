/* The pause of a backoff episode (see backoff.h): the first failure is logged with its cause,
 * the rest only counted, and the first success says how many there were. */
#include "backoff.h"

#include <errno.h>

#include "clock.h"
#include "journal-ids.h"
#include "log.h"

#define PAUSE_MIN_USEC (10 * USEC_PER_MSEC)
#define PAUSE_MAX_USEC (1 * USEC_PER_SEC)

void backoff_record(struct backoff *b, int error, const char *what, uint64_t now) {
        if (b->pause_usec == 0) {
                struct journal_record rec;
                journal_record_start(&rec);
                (void)journal_record_addf(&rec, "ERRNO", "%d", error < 0 ? -error : error);
                (void)journal_record_addf(&rec, "ECHOD_FAILED", "%s", what);
                (void)journal_record_addf(&rec, "ECHOD_BACKOFF", "start");
                errno = error < 0 ? -error : error;
                log_event(LOG_WARNING, ECHOD_ID_BACKOFF, &rec,
                          "%s failed: %m; pausing new connections, retrying with a growing delay up to 1 s",
                          what);
                b->pause_usec = PAUSE_MIN_USEC;
        } else if (b->pause_usec < PAUSE_MAX_USEC)
                b->pause_usec = b->pause_usec * 2 < PAUSE_MAX_USEC ? b->pause_usec * 2 : PAUSE_MAX_USEC;
        b->n_failures++;
        b->paused_until = now + b->pause_usec;
}

void backoff_end(struct backoff *b) {
        struct journal_record rec;

        if (b->pause_usec == 0)
                return;
        journal_record_start(&rec);
        (void)journal_record_addf(&rec, "ECHOD_BACKOFF", "end");
        (void)journal_record_addf(&rec, "ECHOD_FAILURES", "%u", b->n_failures);
        log_event(LOG_NOTICE, ECHOD_ID_BACKOFF, &rec, "Serving again after %u failed attempt%s",
                  b->n_failures, b->n_failures == 1 ? "" : "s");
        b->pause_usec = 0;
        b->n_failures = 0;
}

uint64_t backoff_paused_until(const struct backoff *b, uint64_t now) {
        return b->pause_usec != 0 && now < b->paused_until ? b->paused_until : 0;
}

bool backoff_accept_is_transient(int error) {
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
