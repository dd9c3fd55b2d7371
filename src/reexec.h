/* Reload by re-execution (see docs/design.md, "Reload by re-execution"): on SIGHUP the
 * main process checks that the installed binary can start, writes its state (handoff.h)
 * to a memfd, puts back the environment systemd started it with, and execve()s that
 * binary with the same argv and the same PID. The children, each with its own copy of the
 * old code, never notice. The new image takes the state at start (reexec_init()). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "handoff.h"
#include "listen.h"

/* The environment variable that names the state's descriptor in the new image. */
#define REEXEC_STATE_ENV "ECHOD_STATE_FD"

/* How long the new binary's --check may take before the reload is refused. */
#define REEXEC_CHECK_TIMEOUT_USEC (5ull * 1000000ull)

/* Remembers what a re-execution needs and only start-up knows: the binary's path (after
 * an upgrade /proc/self/exe names the old, deleted file), argv and LISTEN_FDNAMES. Then
 * takes the state a previous image handed over, if any (reexec_handoff()). Call first in
 * main(), before anything reads or unsets the environment. */
void reexec_init(int argc, char *argv[]);

/* The state handed over by the previous image, or NULL after a fresh start. With
 * *ret_pids set instead (and NULL returned), a state was there that this version cannot
 * read: those children are to be drained, as on a stop. */
const struct handoff *reexec_handoff(const pid_t **ret_pids, size_t *ret_n_pids);
/* A readable state whose --listen sockets do not match the options one for one (listen.c
 * checks): refused as one of another version, its children to be drained. One line. */
void reexec_handoff_refuse(const char *why);
/* Whether this image was started by a reload (a state was handed over, readable or not). */
bool reexec_reloaded(void);
/* Forgets the handed-over state (its descriptors are owned by their modules now). */
void reexec_handoff_done(void);

/* The environment variable that tells "--check" the state version the running image
 * writes (reexec_check.c). */
#define REEXEC_CHECK_VERSION_ENV "ECHOD_CHECK_STATE_VERSION"

/* Runs "BINARY --check ARGS..." with REEXEC_CHECK_VERSION_ENV set and waits for it, at most
 * timeout_usec (REEXEC_CHECK_TIMEOUT_USEC, or less under a watchdog). Returns 0 if it exited
 * 0, else -errno with why in the buffer. */
int reexec_check(uint64_t timeout_usec, char *why, size_t size);
/* In "--check": 0 if this binary reads the state version REEXEC_CHECK_VERSION_ENV names
 * (or it is not set), else -EPROTONOSUPPORT. */
int reexec_check_version(void);
/* argv as main() got it, with option inserted after argv[0] if not NULL (free() the
 * array only); *ret_argc its length. NULL if out of memory. */
char **reexec_args(const char *option, int *ret_argc);

/* Hands h (the caller filled counters, report fds and children; the --listen sockets
 * are added here) to a new image of the binary. Returns only on failure, with everything
 * as it was, -errno and why in the buffer. notify_socket: NULL or the path to put back. */
int reexec_exec(struct handoff *h, const struct listeners *listeners, const char *notify_socket,
                uint64_t watchdog_usec, char *why, size_t size);

/* LISTEN_FDNAMES as systemd set it at start, or NULL (for reexec_exec()). */
const char *reexec_fdnames(void);
/* The binary's path for messages ("/usr/sbin/echod"). */
const char *reexec_path(void);
