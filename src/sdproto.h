/* The two systemd protocols echod speaks, implemented here instead of through libsystemd
 * (see sdproto.c): socket passing (LISTEN_FDS, sd_listen_fds(3)) and readiness
 * notification (NOTIFY_SOCKET, WATCHDOG_USEC, sd_notify(3)). Same semantics as the
 * sd_*() calls they replace, with unset_environment=1. */
#pragma once

#include <stdint.h>

#define SDPROTO_LISTEN_FDS_START 3

/* The number of fds passed to this process (from SDPROTO_LISTEN_FDS_START on, each made
 * FD_CLOEXEC), 0 if none, or -errno; *ret_names: their names (LISTEN_FDNAMES, a
 * NULL-terminated array to free) or NULL without names. Unsets LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES, whatever the result. */
int sdproto_listen_fds(char ***ret_names);

/* 1 if fd is a socket of that family (AF_UNSPEC: any), type (0: any) and listening state
 * (-1: either), 0 if not, -errno if fd cannot be looked at. */
int sdproto_is_socket(int fd, int family, int type, int listening);
/* The same, for an IPv4 or IPv6 socket (family AF_UNSPEC: either) ... */
int sdproto_is_socket_inet(int fd, int family, int type, int listening);
/* ... and for an AF_UNIX one. */
int sdproto_is_socket_unix(int fd, int type, int listening);

/* Sends state to the notify socket at path ("/..." or "@abstract"). Returns 0 or -errno. */
int sdproto_notify(const char *path, const char *state);

/* WATCHDOG_USEC, if set for this process (WATCHDOG_PID unset or ours): 1 and *ret_usec, 0
 * if not set, -errno if malformed. Unsets both. */
int sdproto_watchdog(uint64_t *ret_usec);
