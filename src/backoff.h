/* Backoff episodes of the accept loop: accept() or fork() failing for want of resources
 * (descriptors, memory, processes). New connections pause with a delay that doubles from
 * 10 ms up to 1 s while the failures go on: the service never spins and never gives up.
 * See docs/design.md, "Backoff on accept and fork failures". */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct backoff {
        uint64_t paused_until;
        uint64_t pause_usec; /* 0: no episode */
        unsigned n_failures;
};

/* A failure of what ("accept()", "fork()") with -errno or errno error: pauses, logs the
 * first of an episode. */
void backoff_record(struct backoff *b, int error, const char *what, uint64_t now);
/* A success: ends the episode, if any, with one line. */
void backoff_end(struct backoff *b);
/* Until when new connections wait (a time after now), or 0. */
uint64_t backoff_paused_until(const struct backoff *b, uint64_t now);

/* accept() errors that are one connection's, not the listener's: take the next one. */
bool backoff_accept_is_transient(int error);
