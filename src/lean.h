/* Keeps every child of the accept loop lean: the mappings of libraries only the main
 * process uses (libsystemd and what it pulls in) are not copied by fork(). */
#pragma once

/* Marks those libraries MADV_DONTFORK. Call once, before the first fork. Returns how many
 * libraries were marked. A child must never call into them (it does not: it serves with
 * libc alone), and the binary is linked with -z now, so no lazy binding walks them. */
int lean_setup(void);
