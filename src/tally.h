/* A count the operator reads about at most once per interval (refused connections,
 * dropped datagrams): the first line comes at once, each later one says how many came
 * since the one before. A flood of refusals must not become a flood of log lines. */
#pragma once

#include <stdint.h>

#include "clock.h"

#define TALLY_INTERVAL (10 * USEC_PER_SEC)

struct tally {
        uint64_t n_logged; /* the count at the last line */
        uint64_t next;     /* no line before this time */
};

/* How many of the n counted in all to report now: 0 when none are new or it is too soon.
 * A non-zero return starts the next interval. */
static inline uint64_t tally_due(struct tally *t, uint64_t n, uint64_t now) {
        uint64_t n_new;

        if (n <= t->n_logged || now < t->next)
                return 0;
        n_new = n - t->n_logged;
        t->n_logged = n;
        t->next = now + TALLY_INTERVAL;
        return n_new;
}

/* When the ones not yet reported become due; UINT64_MAX when there are none. */
static inline uint64_t tally_deadline(const struct tally *t, uint64_t n) {
        return n > t->n_logged ? t->next : UINT64_MAX;
}
