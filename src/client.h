/* One client, served by a process of its own: a forked child of the accept loop, or echod
 * itself in inetd mode (Accept=yes). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "echo.h"

struct client {
        int conn_fd;
        struct sockaddr_storage peer; /* from accept(); family AF_UNSPEC if unknown */
        socklen_t peer_len;
        uint64_t start_usec; /* CLOCK_MONOTONIC when accepted */
        uint64_t idle_timeout_usec;
        bool nonblocking; /* conn_fd is O_NONBLOCK already (accept4 made it so) */
};

/* Installs the stop handler (SIGTERM/SIGINT) that clients inherit. Call once, before the
 * first client, with those signals blocked. */
void client_setup(void);

/* Echoes the connection until it ends, writes its one log line, closes conn_fd and returns
 * how it ended. SIGTERM/SIGINT make it finish what had arrived and stop; the caller must
 * have them blocked and have called client_setup(). */
enum echo_end client_serve(const struct client *c);

/* In a just-forked child: drops everything inherited that is not this client's (fds,
 * signal mask), serves, and _exit()s with the echo_end as status. */
_Noreturn void client_run_child(const struct client *c);
