/* The sockets echod serves: handed over by systemd (sd_listen_fds) or opened from
 * --listen/--listen-udp. Each is validated and described before anything is served. */
#pragma once

#include "handoff.h"
#include "libsystemd.h"

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "options.h"

enum listener_type {
        LISTENER_STREAM,    /* listening TCP or AF_UNIX stream socket: accept and fork */
        LISTENER_DGRAM,     /* UDP socket: answered in the main process */
        LISTENER_CONNECTED, /* one connected stream socket (Accept=yes): serve it, then exit */
};

struct listener {
        int fd; /* owned; non-blocking, CLOEXEC */
        enum listener_type type;
        int family;
        bool created_path;            /* an AF_UNIX path this process bound: unlinked on exit */
        bool passed;                  /* from systemd (LISTEN_FDS), at fd 3 + its index */
        bool proxy;                   /* connections start with a PROXY header (--proxy-protocol) */
        char name[ADDR_TEXT_MAX + 8]; /* "tcp 127.0.0.1:7", "udp [::]:7", "unix /run/e.sock" */
};

struct listeners {
        struct listener *items;
        size_t n;
};

/* Collects the passed fds and opens the --listen ones (after a reload: takes them over
 * from the image before, reexec.h). On failure logs one line naming the
 * socket and returns -errno; there are none: -ENOENT (the caller explains how to run). */
int listen_fds_get(const struct options *options, struct listeners *ret);

/* At most this much of a log line names the listeners: the rest of the ready line (the
 * limits, the version, the reload's note) must fit after it in LOG_LINE_MAX. */
#define LISTEN_DESCRIBE_MAX 768

/* "tcp 127.0.0.1:7, udp [::]:7" into buf, in at most size and LISTEN_DESCRIBE_MAX bytes:
 * the listeners that do not fit become "... and N more". */
void listen_fds_describe(const struct listeners *l, char *buf, size_t size);

/* Closes every socket and unlinks the AF_UNIX paths this process created. */
void listen_fds_close(struct listeners *l);

/* Within listen.c and listen_adopt.c: non-blocking, its name, TCP_NODELAY and SO_OOBINLINE
 * on a TCP listener. Returns 0 or -errno. */
int listen_socket_prepare(struct listener *l);
/* --proxy-protocol applies to l (fd_name: its FileDescriptorName=, or NULL). */
bool listen_wants_proxy(const struct options *o, const struct listener *l, const char *fd_name);
/* Classifies the n passed fds into l (which has room), with their names (listen_passed.c).
 * Returns 0 or -errno, logged. */
int listen_passed_classify(const struct libsystemd *sd, const struct options *o, char **names, int n,
                           struct listeners *l);
/* The --listen sockets a reload handed over, if there are as many as options and each is a
 * socket of the kind its option asks for; NULL otherwise (a state whose sockets do not
 * match is refused then: reexec_handoff_refuse()). */
const struct handoff_opened *listen_handed_over(const struct options *options);
/* Takes over one of them as it is (listen_adopt.c). Returns 0 or -errno, logged. */
int listen_adopt_one(const struct listen_spec *spec, const struct handoff_opened *opened,
                     struct listener *ret);
