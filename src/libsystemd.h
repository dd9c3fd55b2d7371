/* libsystemd, mapped only while it is called. echod uses it at start-up (the passed
 * sockets) and when it notifies (a few times a second at most); between those moments
 * it is not in the address space, so every fork() copies what a libc-only program's does.
 * Packagers see the dependency in the binary's .note.dlopen (libsystemd.c). */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct libsystemd {
        void *handle;
        int (*listen_fds_with_names)(int unset_environment, char ***names);
        int (*is_socket)(int fd, int family, int type, int listening);
        int (*is_socket_inet)(int fd, int family, int type, int listening, uint16_t port);
        int (*is_socket_unix)(int fd, int type, int listening, const char *path, size_t length);
        int (*notify)(int unset_environment, const char *state);
        int (*watchdog_enabled)(int unset_environment, uint64_t *usec);
        char error[256]; /* why it could not be loaded, for the caller's message */
};

/* Maps libsystemd.so.0 and resolves the calls above. Returns 0, or -ENOENT with the
 * loader's reason in ret->error (nothing logged: the caller decides what that means). */
int libsystemd_open(struct libsystemd *ret);

/* Unmaps it again (with the six libraries it pulls in). */
void libsystemd_close(struct libsystemd *l);
