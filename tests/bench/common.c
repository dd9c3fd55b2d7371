/* The load generator's shared helpers: the clock, fatal errors, the error classes and their
 * counters, raising the descriptor limit, starting a connection to the server (from spread
 * source addresses), latency samples and the end of every result line. */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static const char *const err_name[E_MAX] = {
        "refused", "reset", "timeout", "mismatch", "eof", "addr", "other"
};

struct sockaddr_in dest;
uint64_t errors[E_MAX];
static unsigned src_next;

uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void die(const char *what) {
        fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
        exit(2);
}

enum err_class classify(int e) {
        switch (e) {
        case ECONNREFUSED:
                return E_REFUSED;
        case ECONNRESET:
        case EPIPE:
        case ECONNABORTED:
                return E_RESET;
        case ETIMEDOUT:
                return E_TIMEOUT;
        case EADDRNOTAVAIL:
        case EADDRINUSE:
                return E_ADDR;
        default:
                return E_OTHER;
        }
}

void raise_nofile(rlim_t want) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                die("getrlimit");
        if (rl.rlim_cur >= want)
                return;
        if (rl.rlim_max < want) {
                struct rlimit hard = { want, want };
                if (setrlimit(RLIMIT_NOFILE, &hard) == 0)
                        return;
        }
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                die("setrlimit(RLIMIT_NOFILE)");
        if (rl.rlim_cur < want)
                fprintf(stderr, "loadgen: only %ju descriptors allowed, wanted %ju\n", (uintmax_t)rl.rlim_cur,
                        (uintmax_t)want);
}

/* A non-blocking socket connecting to dest, from the next 127.0.0.x (x in 2..251) when
 * spreading. IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(), so the port is
 * unique per 4-tuple, not per source address. Returns the fd or -errno. */
int conn_start(const struct opts *o) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (o->spread) {
                struct sockaddr_in src = { .sin_family = AF_INET };
                src.sin_addr.s_addr = htonl(0x7f000000u | (2u + src_next++ % 250u));
                setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
                if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
                        int e = errno;
                        close(fd);
                        return -e;
                }
        }
        if (connect(fd, (struct sockaddr *)&dest, sizeof dest) < 0 && errno != EINPROGRESS) {
                int e = errno;
                close(fd);
                return -e;
        }
        return fd;
}

int sock_error(int fd) {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
                return errno;
        return e;
}

/* ---- latency samples ---- */
void samples_add(struct samples *s, uint64_t ns) {
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 4096;
                s->v = realloc(s->v, s->cap * sizeof *s->v);
                if (!s->v)
                        die("realloc");
        }
        s->v[s->n++] = ns;
}

int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile in microseconds; -1 when there is no sample. */
double pct_us(struct samples *s, double p) {
        if (s->n == 0)
                return -1;
        size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > s->n)
                rank = s->n;
        return (double)s->v[rank - 1] / 1000.0;
}

/* Ends the result line: error counts, and the generator's own CPU time (a generator near
 * one full core is the bottleneck, whatever the server). */
void print_errors(void) {
        uint64_t total = 0;
        for (int i = 0; i < E_MAX; i++) {
                printf(" err_%s=%" PRIu64, err_name[i], errors[i]);
                total += errors[i];
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
        printf(" gen_cpu_s=%.3f errors=%" PRIu64 "\n", cpu, total);
        fflush(stdout);
}
