/* The live children of the accept loop: which pids, and how many per client source
 * (--max-per-source); reaping them keeps the active count exact, and a stop reaches them all. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct children;

/* Room for max children; max_per_source 0: no per-source cap. Returns 0 or -ENOMEM. */
int children_new(unsigned max, unsigned max_per_source, struct children **ret);
void children_free(struct children *c);

unsigned children_count(const struct children *c);
bool children_full(const struct children *c);
/* True when source (addr_source_key()) has max_per_source live connections already. */
bool children_source_full(const struct children *c, uint64_t source);

/* Records a new child serving source. Returns 0, or -ENOSPC at the cap (the caller checks
 * children_full() first: a child it cannot record must not serve). */
int children_add(struct children *c, pid_t pid, uint64_t source);
/* Reaps every child that has ended and forgets it; logs each one a signal killed
 * (drain_killed: a SIGKILL is the drain timeout's, said as such). Returns how many. */
unsigned children_reap(struct children *c, bool drain_killed);
/* Calls f for every live child with its source key. */
void children_foreach(const struct children *c, void (*f)(pid_t pid, uint64_t source, void *userdata),
                      void *userdata);
/* Sends sig to every live child; returns how many there are. */
unsigned children_kill(const struct children *c, int sig);
