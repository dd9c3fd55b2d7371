/* One client, served by a process of its own: a forked child of the accept loop, or echod
 * itself in inetd mode (Accept=yes). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "addr.h"
#include "echo.h"

struct client {
        int conn_fd;
        int stop_fd;                  /* readable when the service stops (see echo_config); -1: none */
        int report_fd;                /* under journald: where the child's report goes (report.h); -1: none */
        struct sockaddr_storage peer; /* from accept(); family AF_UNSPEC if unknown */
        socklen_t peer_len;
        char peer_text[ADDR_TEXT_MAX]; /* the peer as the log line names it */
        uint64_t start_usec;           /* CLOCK_MONOTONIC when accepted */
        uint64_t idle_timeout_usec;
        uint64_t drain_timeout_usec; /* after a stop, the most finishing may take */
        bool nonblocking;            /* conn_fd is O_NONBLOCK already (accept4 made it so) */
        bool oob_inline;             /* conn_fd has SO_OOBINLINE already (a TCP listener's) */
        /* 0 when close_range() works; else the highest descriptor the parent may hold at
         * the fork, up to which the child closes them one by one (client_fds_check()). */
        int fd_max;
};

/* A child's report of its connection, one datagram to the parent just before it exits
 * (under journald only): the parent sends the connection's journal record when it reaps
 * the child, so that journald still finds the child's unit (a record from a process
 * already gone loses it). Fixed layout, the text's length by the datagram's. */
struct client_report {
        int32_t pid;
        int32_t end;   /* enum echo_end */
        int32_t error; /* errno of an ECHO_END_ERROR, else 0 */
        uint32_t peer_len;
        uint64_t n_bytes;
        uint64_t duration_usec;
        struct sockaddr_in6 peer; /* the first peer_len bytes of client.peer (AF_INET6 at most) */
        char text[512];           /* the log line's text, without prefix or newline */
};
#define CLIENT_REPORT_HEADER_SIZE offsetof(struct client_report, text)

/* Echoes the connection until it ends, writes its one log line (or sends its report), closes conn_fd and
 * returns how it ended. A stop (stop_fd readable) makes it finish what had arrived and close. */
enum echo_end client_serve(const struct client *c);

/* In a just-forked child: drops everything inherited that is not this client's (fds,
 * signal mask), serves, and exits with the echo_end as status. Calls no libc. */
_Noreturn void client_run_child(const struct client *c);

/* In the parent, once: whether close_range() works here (a kernel before 5.9, or a seccomp
 * filter, may refuse it). Returns 0 if it does, else the highest descriptor the parent
 * holds now (open_max bounds the search), for client.fd_max. */
int client_fds_check(int open_max);
