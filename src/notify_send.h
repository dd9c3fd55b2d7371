/* The notification datagram of sd_notify(3), sent without libsystemd: the fallback for
 * when libsystemd.so.0 cannot be loaded after the start (notify.c). */
#pragma once

/* Sends state as one datagram to the notify socket at path ("/..." or "@abstract").
 * Returns 0 or -errno. */
int notify_send(const char *path, const char *state);
