/* Keeps every child of the accept loop lean: libsystemd and the libraries it pulls in are
 * used by the main process only, so fork() does not copy their mappings into children. */
#pragma once

#include <sys/types.h>

/* Marks those libraries MADV_DONTFORK and checks with one bare lean_fork() that a child
 * still runs. Call once, before the first fork. Returns how many libraries were left out,
 * or -ECHILD when the check failed and they were given back. */
int lean_setup(void);

/* fork() semantics (a new process with a copy of the address space and fd table) without
 * running pthread_atfork() handlers: libsystemd has one, and its code is not mapped in the
 * child. echod is single-threaded, so no lock can be held across the fork. */
pid_t lean_fork(void);
