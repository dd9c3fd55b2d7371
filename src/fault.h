/* Fault episodes of the accept loop: accept() or fork() failing for want of resources
 * (descriptors, memory, processes). New connections pause with a delay that doubles from
 * 10 ms up to 1 s while the faults go on: the service never spins and never gives up. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct fault {
        uint64_t paused_until;
        uint64_t pause_usec; /* 0: no episode */
        unsigned n_faults;
};

/* A failure of what ("accept()", "fork()") with -errno or errno error: pauses, logs the
 * first of an episode. */
void fault_record(struct fault *f, int error, const char *what, uint64_t now);
/* A success: ends the episode, if any, with one line. */
void fault_end(struct fault *f);
/* Until when new connections wait (a time after now), or 0. */
uint64_t fault_paused_until(const struct fault *f, uint64_t now);

/* accept() errors that are one connection's, not the listener's: take the next one. */
bool fault_accept_is_transient(int error);
