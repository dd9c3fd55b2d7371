/* The start-up proof that a trimmed child (fork.c) really serves a client. */
#pragma once

#include <stddef.h>

/* Forks a child that runs the client's path (client_run_child) over a socketpair, echoes a
 * few bytes through it and reaps it, all within a few seconds. Returns 0 if it echoed them
 * and exited as after an EOF, else -EPROTO with why in reason (for the caller's one
 * warning). SIGCHLD must be blocked; other children's are not consumed. */
int forkcheck_run(char *reason, size_t size);
