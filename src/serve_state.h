/* The accept loop's state, shared by its two halves: serve.c runs the loop, serve_accept.c
 * decides when connections are taken and takes them (accept, admit, fork). */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>

#include "backoff.h"
#include "child/client.h"
#include "drain.h"
#include "listen.h"
#include "notify.h"
#include "options.h"
#include "refused.h"
#include "tally.h"

struct serve {
        const struct options *options;
        struct listeners *listeners;
        /* [0]: signal_fd; [1 + i]: listeners->items[i]; then the pending connections */
        struct pollfd *pfds;
        struct signalfd_siginfo siginfo[16];
        int signal_fd;
        int fd_max; /* client.fd_max: 0 when close_range() works */
        struct children *children;
        struct udp *udp;         /* only with UDP sockets */
        struct pending *pending; /* only with PROXY protocol listeners */
        struct report *report;   /* only under journald: the children's reports */
        int report_fd;           /* client.report_fd: the end children send on, or -1 */
        struct notify notify;
        uint64_t n_served, n_refused;
        struct tally refused_log;
        struct refused refused_sources; /* who was refused since the last line */
        struct drain drain;             /* once a stop has begun */
        bool reloading;                 /* SIGHUP: re-execute once no connection waits for a header */
        bool at_cap;                    /* at the cap since the backlog was last seen empty */
        uint64_t n_cap_episodes;        /* times the cap was reached */
        struct tally cap_log;
        struct backoff backoff;        /* accept() or fork() failing for want of resources */
        size_t n_pending_max;          /* room in pfds for connections waiting for a PROXY header */
        int32_t handoff_report_fds[2]; /* the report socketpair a reload handed over */
        unsigned n_adopted;            /* children taken over from the image before a reload */
};

struct journal_record;

/* Refused in all: over the per-source cap, or without a valid PROXY header. */
uint64_t serve_refused(const struct serve *s);
/* STATUS=: "3/1024 clients active, 120 served, 0 refused[, N datagrams echoed, N dropped]". */
void serve_format_status(const struct serve *s, char *buf, size_t size);

/* serve_reload.c, see reexec.h. After a reload: takes over the children, counters and
 * report socket of the image before (before the report socket is set up), then its UDP
 * counts (once the UDP state exists). */
void serve_adopt(struct serve *s);
void serve_adopt_udp(struct serve *s);
/* ", reloaded, N clients taken over" for the ready line (and ECHOD_ADOPTED into rec) after
 * a reload; "" otherwise. */
void serve_reload_note(const struct serve *s, struct journal_record *rec, char *buf, size_t size);
/* SIGHUP, once no connection waits for its PROXY header: re-executes echod. Returns only
 * if that failed; the running image then serves on. */
void serve_reload(struct serve *s);

/* Which listeners to poll now, and until when poll() may sleep (ms, -1: forever). */
int serve_arm(struct serve *s, uint64_t now);
/* Whether a connection may be taken now: not stopping, below the cap, not paused. */
bool serve_accepting(const struct serve *s, uint64_t now);
/* Takes one connection of the stream listener l, and serves it or waits for its PROXY
 * header. */
void serve_accept(struct serve *s, const struct listener *l, uint64_t now);
/* A connection of a PROXY listener whose header is in (pending_ready_fn). */
void serve_admit_proxied(struct client *c, uint64_t now, void *userdata);
