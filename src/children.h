/* The live children of the main process, by pid: what keeps the active count exact and
 * lets a stop reach every one of them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct children;

/* A table for at most max children. Its memory is not inherited by children. */
int children_new(unsigned max, struct children **ret);
void children_free(struct children *c);

/* source: an opaque tag kept with the pid (the per-source key), returned on removal. */
int children_add(struct children *c, pid_t pid, uint64_t source);
/* Returns false when pid is not in the table (not one of ours). */
bool children_remove(struct children *c, pid_t pid, uint64_t *ret_source);
unsigned children_count(const struct children *c);
/* Sends sig to every live child; returns how many were signalled. */
unsigned children_kill(const struct children *c, int sig);
