/* Command line of echod: what the user asked for, validated, before any socket exists. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define OPTIONS_MAX_LISTEN 64

enum listen_kind {
        LISTEN_TCP,  /* [HOST:]PORT, stream */
        LISTEN_UNIX, /* a path (the value contains '/'), stream */
        LISTEN_UDP,  /* [HOST:]PORT, datagram */
};

struct listen_spec {
        enum listen_kind kind;
        const char *value; /* points into argv */
};

struct options {
        struct listen_spec listen[OPTIONS_MAX_LISTEN];
        size_t n_listen;
        unsigned max_clients;        /* >= 1 */
        unsigned max_per_source;     /* 0: no cap */
        uint64_t idle_timeout_usec;  /* 0: none */
        uint64_t drain_timeout_usec; /* 0: kill at once */
        int log_level;               /* LOG_ERR .. LOG_DEBUG */
        enum addr_log_peer log_peer; /* how much of a client's address the logs show */
        bool proxy_protocol;         /* TCP listeners expect a PROXY header */
        const char *proxy_name;      /* only those passed with this name; NULL: all */
        bool check;                  /* --check: the start-up self-test only */
};

#define OPTIONS_DEFAULT_MAX_CLIENTS 1024u
#define OPTIONS_MAX_MAX_CLIENTS     1000000u
#define OPTIONS_DEFAULT_IDLE_USEC   (300ull * 1000000ull)
#define OPTIONS_MAX_IDLE_USEC       (86400ull * 1000000ull)
#define OPTIONS_DEFAULT_DRAIN_USEC  (5ull * 1000000ull)
#define OPTIONS_MAX_DRAIN_USEC      (3600ull * 1000000ull)

/* Parses argv into *ret (defaults first). Returns 0 to run, 1 when --help or --version was
 * printed to stdout, -EINVAL after printing one line to stderr. Never exits. */
int options_parse(int argc, char *argv[], struct options *ret);

/* Parses a duration: an integer with an optional unit (us, ms, s, min, h; none means
 * seconds). Returns 0 or -EINVAL/-ERANGE. */
int options_parse_duration(const char *s, uint64_t max_usec, uint64_t *ret_usec);
