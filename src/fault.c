/* The pause of a fault episode (see fault.h): the first failure is logged with its cause,
 * the rest only counted, and the first success says how many there were. */
#include "fault.h"

#include <errno.h>

#include "clock.h"
#include "log.h"

#define PAUSE_MIN_USEC (10 * USEC_PER_MSEC)
#define PAUSE_MAX_USEC (1 * USEC_PER_SEC)

void fault_record(struct fault *f, int error, const char *what, uint64_t now) {
        if (f->pause_usec == 0) {
                log_warning_errno(error,
                                  "%s failed: %m; pausing new connections, retrying with a "
                                  "growing delay up to 1 s",
                                  what);
                f->pause_usec = PAUSE_MIN_USEC;
        } else if (f->pause_usec < PAUSE_MAX_USEC)
                f->pause_usec = f->pause_usec * 2 < PAUSE_MAX_USEC ? f->pause_usec * 2 : PAUSE_MAX_USEC;
        f->n_faults++;
        f->paused_until = now + f->pause_usec;
}

void fault_end(struct fault *f) {
        if (f->pause_usec == 0)
                return;
        log_notice("Serving again after %u failed attempt%s", f->n_faults, f->n_faults == 1 ? "" : "s");
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
