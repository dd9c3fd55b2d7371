/* The state one echod image hands to the next on a reload (reexec.c): the live children,
 * the counters, and the descriptors that must go on. It travels in a memfd that survives
 * execve(). The format's first part never changes: a magic, a version, the sizes, and where
 * the children's pids are, so that an image that does not understand a version can still
 * find the children and drain them, as on a stop. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HANDOFF_VERSION    1u
#define HANDOFF_MAX_OPENED 64 /* OPTIONS_MAX_LISTEN, asserted in listen_adopt.c */

struct handoff_child {
        int32_t pid; /* first in every version: handoff_pids() reads only this */
        uint32_t reserved;
        uint64_t source; /* addr_source_key() of its client, for --max-per-source */
};

/* A listener this image opened from --listen (systemd's come again as LISTEN_FDS). */
struct handoff_opened {
        int32_t fd;
        uint32_t created_path; /* an AF_UNIX path it bound: unlinked on exit */
};

struct handoff {
        uint64_t n_served, n_refused;
        uint64_t udp_echoed, udp_dropped;
        int32_t report_fds[2]; /* the children's report socketpair, or -1 */
        uint32_t n_opened;
        struct handoff_opened opened[HANDOFF_MAX_OPENED];
        size_t n_children;
        struct handoff_child *children; /* handoff_decode(): points into the buffer */
};

/* Whether handoff_decode() reads a state of that version. */
bool handoff_version_readable(uint32_t version);
/* Bytes that handoff_encode() needs for n_children. */
size_t handoff_size(size_t n_children);
/* Writes h into buf (handoff_size() bytes). Returns the size, or -ENOBUFS. */
ssize_t handoff_encode(const struct handoff *h, void *buf, size_t size);
/* Reads buf into *ret (ret->children points into buf, which must be 8-byte aligned).
 * Returns 0; -EBADMSG if it is not a state at all (wrong magic, truncated, inconsistent
 * sizes); -EPROTONOSUPPORT if it is one of another version (handoff_pids() then). */
int handoff_decode(const void *buf, size_t size, struct handoff *ret);
/* The children's pids of a state of any version, from the part that never changes: up to
 * max into ret. Returns how many there are, or -EBADMSG (also if any pid is 0 or below). */
ssize_t handoff_pids(const void *buf, size_t size, pid_t *ret, size_t max);

/* h into a new memfd (close-on-exec: the caller clears it just before execve()). Returns
 * the fd or -errno. */
int handoff_write_fd(const struct handoff *h);
/* Whether fd can be a state's memfd: 3 or above, a regular file. */
bool handoff_state_fd_valid(int fd);
/* What is wrong with the descriptors h names, given the state's own fd and the number of
 * sockets systemd passed (at 3..): below 3, named twice, one of those, or not a socket of
 * the kind the image before hands over. NULL if nothing. Whether each
 * --listen socket matches its option is listen.c's to check. */
const char *handoff_fds_invalid(const struct handoff *h, int state_fd, int n_passed);
/* The memfd's content into a buffer of its own (*ret_buf, free() it; 8-byte aligned).
 * Returns its size or -errno. */
ssize_t handoff_read_fd(int fd, void **ret_buf);
