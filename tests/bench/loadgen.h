/* What the load generator's files share: the options, the error classes and their counters,
 * latency samples, the connection and reporting helpers (common.c) and one entry point per
 * mode. Everything else stays static in its file. Included first, before any system header. */
#ifndef LOADGEN_H
#define LOADGEN_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

enum err_class { E_REFUSED, E_RESET, E_TIMEOUT, E_MISMATCH, E_EOF, E_ADDR, E_OTHER, E_MAX };

struct opts {
        const char *host;
        int port;
        long clients;
        double seconds;
        uint64_t amount; /* bulk: bytes in total; pingpong: round trips; hold: connections */
        pid_t pid;
        bool split;
        bool seconds_set; /* -d given: for bulk, a cap on the sending time */
        bool spread;      /* bind to 127.0.0.x before connect */
        double timeout;
};

/* common.c */
extern struct sockaddr_in dest;
extern uint64_t errors[E_MAX];

uint64_t now_ns(void);
/* the attribute, not _Noreturn: cppcheck honours only the attribute across files */
void die(const char *what) __attribute__((noreturn));
enum err_class classify(int e);
void raise_nofile(rlim_t want);
int conn_start(const struct opts *o);
int sock_error(int fd);
void print_errors(void);

/* ---- latency samples ---- */
struct samples {
        uint64_t *v;
        size_t n, cap;
};

void samples_add(struct samples *s, uint64_t ns);
int cmp_u64(const void *a, const void *b);
double pct_us(struct samples *s, double p);

/* bulk.c: -W, send with send(2), as a server would, instead of splicing */
extern bool copy_send;

/* one entry point per mode, each prints its result line */
void mode_rate(const struct opts *o);
void mode_bulk(const struct opts *o, bool ceiling);
void mode_pingpong(const struct opts *o);
void mode_hold(const struct opts *o);

#endif
