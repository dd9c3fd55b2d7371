/* The byte loop of one stream connection: everything read is written back, in order, until
 * the peer's EOF (then pending bytes are flushed), a reset, the idle timeout or a stop. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum echo_end {
        ECHO_END_EOF,   /* the peer shut down its write side; all of it was echoed */
        ECHO_END_IDLE,  /* no progress in either direction for the idle timeout */
        ECHO_END_RESET, /* ECONNRESET/EPIPE: the peer went away */
        ECHO_END_STOP,  /* asked to stop: what had arrived was echoed, then closed */
        ECHO_END_ERROR, /* any other error; see echo_result.error */
        _ECHO_END_MAX,
};

struct echo_config {
        uint64_t idle_timeout_usec; /* 0: none */
        /* After a stop, how long echoing what had arrived and waiting for the peer to take
         * it may last (0: close at once), whoever else is there to kill the process. */
        uint64_t drain_timeout_usec;
        bool nonblocking; /* conn_fd is O_NONBLOCK already */
        bool oob_inline;  /* conn_fd has SO_OOBINLINE already (inherited from its listener) */
        /* Readable once the service stops: a signalfd for the stop signals, which the
         * caller keeps blocked. Polled, never read. -1: no stop. */
        int stop_fd;
};

struct echo_result {
        uint64_t n_bytes; /* bytes echoed back */
        enum echo_end end;
        int error; /* -errno when end is ECHO_END_ERROR, else 0 */
};

/* Serves conn_fd, a connected stream socket (TCP or AF_UNIX), until one of the ends above.
 * Makes it non-blocking, and makes urgent data (MSG_OOB) ordinary data in it
 * (SO_OOBINLINE), so that it is echoed in order like any byte; does not close it. */
void echo_stream(int conn_fd, const struct echo_config *config, struct echo_result *ret);

const char *echo_end_to_string(enum echo_end end);
