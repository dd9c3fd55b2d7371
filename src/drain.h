/* A stop of the accept loop: every child gets SIGTERM and echoes back what it has already
 * received; those still running at the drain deadline get SIGKILL. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "children.h"

struct drain {
        bool stopping;
        uint64_t deadline; /* when the children left get SIGKILL; 0 before a stop and once sent */
};

/* Starts the stop (once; later calls do nothing): SIGTERM to every child, one log line. */
void drain_begin(struct drain *d, struct children *children, uint64_t timeout_usec, uint64_t now);
/* At the deadline: SIGKILL to the children left, one log line if there were any. */
void drain_tick(struct drain *d, struct children *children, uint64_t now);
/* When drain_tick() has work; UINT64_MAX when it has none. */
uint64_t drain_deadline(const struct drain *d);
/* True once the SIGKILL is sent: the children's deaths by it are the drain's, not news. */
bool drain_killed(const struct drain *d);
