/* Keeps every child of the accept loop lean: the mappings of libraries that only
 * libsystemd pulls in, and no child calls, are not copied by fork(). */
#pragma once

/* Marks those libraries MADV_DONTFORK and checks with one bare fork that a child still
 * runs. Call once, before the first fork. Returns how many libraries were left out, or
 * -ECHILD when the check failed and they were given back. A child must never call into them (it does not: it
 * serves with libc alone), and the binary is linked with -z now, so no lazy binding walks them. */
int lean_setup(void);
