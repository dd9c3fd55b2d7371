/* The main process's loop: accept and fork per client, answer UDP, reap, notify, stop. */
#pragma once

#include "listen.h"
#include "options.h"

/* Serves until SIGTERM/SIGINT and the drain that follows. Signals SIGCHLD, SIGTERM,
 * SIGINT and SIGHUP must be blocked by the caller. Returns 0 after a clean stop, or -errno
 * after logging a failure. */
int serve_loop(const struct options *options, struct listeners *listeners);
