/* Load generator for echo servers (RFC 862 over TCP): rate, bulk, pingpong, hold and the
 * generator's own bulk ceiling. epoll, libc only. Every run prints one line of key=value
 * pairs on stdout so that a script can take medians; diagnostics go to stderr.
 * Every payload that a line-buffered server must echo ends with '\n'. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RATE_MSG 64
#define CHUNK    (256 * 1024)
/* The bulk stream repeats a pseudo-random block whose odd length matches no buffer size. */
#define PATTERN_LEN ((1u << 20) + 4093u)

enum err_class { E_REFUSED, E_RESET, E_TIMEOUT, E_MISMATCH, E_EOF, E_ADDR, E_OTHER, E_MAX };
static const char *const err_name[E_MAX] = {
        "refused", "reset", "timeout", "mismatch", "eof", "addr", "other"
};

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

static struct sockaddr_in dest;
static uint64_t errors[E_MAX];
static unsigned src_next;
static unsigned char *pattern;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
        fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
        exit(2);
}

static enum err_class classify(int e) {
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

static void raise_nofile(rlim_t want) {
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
static int conn_start(const struct opts *o) {
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

static int sock_error(int fd) {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
                return errno;
        return e;
}

/* ---- latency samples ---- */
struct samples {
        uint64_t *v;
        size_t n, cap;
};

static void samples_add(struct samples *s, uint64_t ns) {
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 4096;
                s->v = realloc(s->v, s->cap * sizeof *s->v);
                if (!s->v)
                        die("realloc");
        }
        s->v[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile in microseconds; -1 when there is no sample. */
static double pct_us(struct samples *s, double p) {
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
static void print_errors(void) {
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

/* ---- rate: C clients, each looping connect / send 64 B / read back / compare / close ---- */
struct rconn {
        int fd;
        bool connected;
        size_t sent, got;
        uint64_t t0;
        unsigned char msg[RATE_MSG];
};

static void rate_msg(unsigned char *msg, uint64_t seq) {
        uint64_t x = seq * 0x9e3779b97f4a7c15u + 1;
        for (int i = 0; i < RATE_MSG - 1; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                msg[i] = (unsigned char)('!' + x % 90u); /* printable, never '\n' */
        }
        msg[RATE_MSG - 1] = '\n';
}

static void rconn_open(const struct opts *o, int ep, struct rconn *c, uint32_t idx, uint64_t seq) {
        for (;;) {
                c->t0 = now_ns();
                c->fd = conn_start(o);
                if (c->fd >= 0)
                        break;
                errors[classify(-c->fd)]++;
                if (-c->fd == EMFILE || -c->fd == ENFILE || -c->fd == ENOBUFS)
                        usleep(1000);
        }
        c->connected = false;
        c->sent = c->got = 0;
        rate_msg(c->msg, seq);
        struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = idx };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                die("epoll_ctl");
}

static void rconn_close(struct rconn *c) {
        close(c->fd);
        c->fd = -1;
}

/* Advances one connection; returns 1 when its echo is complete, -1 on error (counted), 0 to
 * wait for more. */
static int rconn_step(int ep, struct rconn *c, uint32_t idx, uint32_t events) {
        if (!c->connected) {
                int e = sock_error(c->fd);
                if (e) {
                        errors[classify(e)]++;
                        return -1;
                }
                c->connected = true;
        }
        if (c->sent < RATE_MSG) {
                ssize_t n = send(c->fd, c->msg + c->sent, RATE_MSG - c->sent, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN)
                                return 0;
                        errors[classify(errno)]++;
                        return -1;
                }
                c->sent += (size_t)n;
                if (c->sent == RATE_MSG) {
                        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };
                        if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                                die("epoll_ctl");
                }
                return 0;
        }
        if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                return 0;
        unsigned char buf[RATE_MSG + 1];
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0) {
                if (errno == EAGAIN)
                        return 0;
                errors[classify(errno)]++;
                return -1;
        }
        if (n == 0) {
                errors[E_EOF]++;
                return -1;
        }
        if (c->got + (size_t)n > RATE_MSG || memcmp(buf, c->msg + c->got, (size_t)n) != 0) {
                errors[E_MISMATCH]++;
                return -1;
        }
        c->got += (size_t)n;
        return c->got == RATE_MSG;
}

static void mode_rate(const struct opts *o) {
        long nc = o->clients;
        raise_nofile((rlim_t)nc + 64);
        struct rconn *cs = calloc((size_t)nc, sizeof *cs);
        struct epoll_event *evs = calloc((size_t)nc, sizeof *evs);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (!cs || !evs || ep < 0)
                die("setup");
        struct samples lat = { 0 };
        uint64_t seq = 0, done_in_window = 0;
        uint64_t start = now_ns();
        uint64_t end = start + (uint64_t)(o->seconds * 1e9);
        uint64_t tmo = (uint64_t)(o->timeout * 1e9);
        for (long i = 0; i < nc; i++)
                rconn_open(o, ep, &cs[i], (uint32_t)i, seq++);
        long active = nc;
        uint64_t last_scan = start;
        while (active > 0) {
                int n = epoll_wait(ep, evs, (int)nc, 10);
                if (n < 0 && errno != EINTR)
                        die("epoll_wait");
                uint64_t t = now_ns();
                bool window = t < end;
                for (int k = 0; k < n; k++) {
                        uint32_t idx = evs[k].data.u32;
                        struct rconn *c = &cs[idx];
                        if (c->fd < 0)
                                continue;
                        int r = rconn_step(ep, c, idx, evs[k].events);
                        if (r == 0)
                                continue;
                        if (r == 1) {
                                uint64_t t1 = now_ns();
                                if (t1 <= end) {
                                        done_in_window++;
                                        samples_add(&lat, t1 - c->t0);
                                }
                        }
                        rconn_close(c);
                        if (window)
                                rconn_open(o, ep, c, idx, seq++);
                        else
                                active--;
                }
                if (t - last_scan > 10000000u) {
                        last_scan = t;
                        for (long i = 0; i < nc; i++) {
                                if (cs[i].fd >= 0 && t > cs[i].t0 && t - cs[i].t0 > tmo) {
                                        errors[E_TIMEOUT]++;
                                        rconn_close(&cs[i]);
                                        if (window)
                                                rconn_open(o, ep, &cs[i], (uint32_t)i, seq++);
                                        else
                                                active--;
                                }
                        }
                }
        }
        qsort(lat.v, lat.n, sizeof *lat.v, cmp_u64);
        double secs = o->seconds;
        printf("mode=rate clients=%ld seconds=%.2f conns=%" PRIu64 " rate=%.1f p50_us=%.1f "
               "p99_us=%.1f max_us=%.1f",
               nc, secs, done_in_window, (double)done_in_window / secs, pct_us(&lat, 50), pct_us(&lat, 99),
               pct_us(&lat, 100));
        print_errors();
        close(ep);
        free(lat.v);
        free(cs);
        free(evs);
}

/* ---- bulk: C connections stream pseudo-random bytes, every echoed byte is verified ---- */
static void pattern_init(void) {
        pattern = malloc(PATTERN_LEN + CHUNK);
        if (!pattern)
                die("malloc");
        uint64_t x = 0x243f6a8885a308d3u;
        for (size_t i = 0; i < PATTERN_LEN; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(pattern + i, &x, 8 < PATTERN_LEN - i ? 8 : PATTERN_LEN - i);
        }
        /* so that any CHUNK-sized window starting inside the block is contiguous */
        memcpy(pattern + PATTERN_LEN, pattern, CHUNK);
}

struct bconn {
        int fd;
        uint64_t tx, rx, per;
        uint64_t queued; /* stream offset placed in the pipe (>= tx) */
        int pipe_r, pipe_w;
        bool shut;
};

static bool copy_send; /* -W: send with send(2), as a server would, instead of splicing */

static void bconn_pipe(struct bconn *c) {
        int p[2];
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
                die("pipe2");
        fcntl(p[0], F_SETPIPE_SZ, CHUNK);
        c->pipe_r = p[0];
        c->pipe_w = p[1];
}

/* Sends the next pattern bytes of c. The generator's own cost must stay below the server's,
 * so the constant pattern is not copied: its pages are vmsplice()d into a pipe and spliced
 * to the socket (the receiver's copy is the only one). Returns 0 or a positive errno;
 * EAGAIN is not an error. */
static int bconn_send(struct bconn *c) {
        if (copy_send) {
                uint64_t left = c->per - c->tx;
                size_t len = left < CHUNK ? (size_t)left : CHUNK;
                ssize_t w = send(c->fd, pattern + c->tx % PATTERN_LEN, len, MSG_NOSIGNAL);
                if (w > 0)
                        c->tx += (uint64_t)w;
                return w < 0 && errno != EAGAIN ? errno : 0;
        }
        if (c->queued == c->tx && c->queued < c->per) {
                uint64_t left = c->per - c->queued;
                struct iovec iov = { pattern + c->queued % PATTERN_LEN, left < CHUNK ? (size_t)left : CHUNK };
                ssize_t n = vmsplice(c->pipe_w, &iov, 1, SPLICE_F_NONBLOCK);
                if (n < 0)
                        return errno == EAGAIN ? 0 : errno;
                c->queued += (uint64_t)n;
        }
        ssize_t n = splice(c->pipe_r, NULL, c->fd, NULL, (size_t)(c->queued - c->tx),
                           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        if (n > 0)
                c->tx += (uint64_t)n;
        return n < 0 && errno != EAGAIN ? errno : 0;
}

/* The no-op sink for the ceiling: reads and discards, and independently sends the same
 * pattern stream the generator expects back. Runs in a forked child; never returns. */
static void sink_child(int listen_fd, long nc, uint64_t per) {
        /* run where a server would: on the CPUs the generator is not pinned to, if any */
        cpu_set_t gen, other;
        CPU_ZERO(&other);
        if (sched_getaffinity(0, sizeof gen, &gen) == 0 && CPU_COUNT(&gen) < get_nprocs()) {
                for (int i = 0; i < get_nprocs() && i < CPU_SETSIZE; i++)
                        if (!CPU_ISSET(i, &gen))
                                CPU_SET(i, &other);
                if (CPU_COUNT(&other) > 0)
                        sched_setaffinity(0, sizeof other, &other);
        }
        int ep = epoll_create1(0);
        struct bconn *cs = calloc((size_t)nc, sizeof *cs);
        int null_fd = open("/dev/null", O_WRONLY);
        int drain[2];
        if (ep < 0 || !cs || null_fd < 0 || pipe2(drain, O_NONBLOCK) < 0)
                _exit(3);
        fcntl(drain[0], F_SETPIPE_SZ, CHUNK);
        for (long i = 0; i < nc; i++) {
                cs[i].fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK);
                if (cs[i].fd < 0)
                        _exit(3);
                cs[i].per = per;
                bconn_pipe(&cs[i]);
                struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i };
                epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        }
        long open_ = nc;
        struct epoll_event evs[64];
        while (open_ > 0) {
                int n = epoll_wait(ep, evs, 64, 30000);
                if (n <= 0)
                        _exit(4);
                for (int k = 0; k < n; k++) {
                        struct bconn *c = &cs[evs[k].data.u32];
                        if (c->fd < 0)
                                continue;
                        if ((evs[k].events & EPOLLOUT) && c->tx < c->per) {
                                if (bconn_send(c))
                                        _exit(5);
                                if (c->tx == c->per) {
                                        shutdown(c->fd, SHUT_WR);
                                        struct epoll_event ev = { .events = EPOLLIN, .data = evs[k].data };
                                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                                }
                        }
                        if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                                /* discard without copying: socket -> pipe -> /dev/null */
                                ssize_t r = splice(c->fd, NULL, drain[1], NULL, CHUNK,
                                                   SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
                                if (r > 0)
                                        while (splice(drain[0], NULL, null_fd, NULL, CHUNK,
                                                      SPLICE_F_NONBLOCK) > 0)
                                                ;
                                if (r == 0 && c->tx == c->per) {
                                        close(c->fd);
                                        c->fd = -1;
                                        open_--;
                                } else if (r == 0) {
                                        /* keep sending until done, stop polling the EOF */
                                        c->shut = true;
                                        struct epoll_event ev = { .events = EPOLLOUT, .data = evs[k].data };
                                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                                } else if (r < 0 && errno != EAGAIN) {
                                        _exit(5);
                                }
                        }
                }
        }
        _exit(0);
}

static void mode_bulk(const struct opts *o, bool ceiling) {
        long nc = o->clients;
        uint64_t per = o->amount / (uint64_t)nc;
        if (per == 0)
                per = 1;
        raise_nofile((rlim_t)nc + 64);
        pattern_init();
        pid_t sink = -1;
        if (ceiling) {
                int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in a = { .sin_family = AF_INET };
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                socklen_t len = sizeof a;
                if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0 ||
                    getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
                        die("sink listener");
                dest = a;
                sink = fork();
                if (sink < 0)
                        die("fork");
                if (sink == 0)
                        sink_child(lfd, nc, per);
                close(lfd);
        }
        struct bconn *cs = calloc((size_t)nc, sizeof *cs);
        unsigned char *buf = malloc(CHUNK);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (!cs || !buf || ep < 0)
                die("setup");
        uint64_t start = now_ns();
        for (long i = 0; i < nc; i++) {
                cs[i].per = per;
                bconn_pipe(&cs[i]);
                cs[i].fd = conn_start(o);
                if (cs[i].fd < 0) {
                        errno = -cs[i].fd;
                        die("connect");
                }
                struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i };
                if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
                        die("epoll_ctl");
        }
        long open_ = nc;
        uint64_t tmo = (uint64_t)(o->timeout * 1e9), last_progress = start;
        /* the sink's stream has a fixed length: the ceiling is never capped */
        uint64_t cap_at = o->seconds_set && !ceiling ? start + (uint64_t)(o->seconds * 1e9) : 0;
        bool capped = false;
        struct epoll_event evs[64];
        while (open_ > 0) {
                int n = epoll_wait(ep, evs, 64, 100);
                if (n < 0 && errno != EINTR)
                        die("epoll_wait");
                uint64_t t = now_ns();
                if (cap_at && t > cap_at) {
                        /* time is up: send no new data, flush what is queued, verify it all */
                        cap_at = 0;
                        capped = true;
                        for (long i = 0; i < nc; i++) {
                                struct bconn *c = &cs[i];
                                if (c->fd < 0 || c->tx == c->per)
                                        continue;
                                c->per = copy_send ? c->tx : c->queued;
                                if (c->tx == c->per) {
                                        shutdown(c->fd, SHUT_WR);
                                        struct epoll_event ev = { .events = EPOLLIN,
                                                                  .data.u32 = (uint32_t)i };
                                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                                }
                        }
                }
                if (n > 0)
                        last_progress = t;
                else if (t - last_progress > tmo) {
                        for (long i = 0; i < nc; i++)
                                if (cs[i].fd >= 0) {
                                        errors[E_TIMEOUT]++;
                                        close(cs[i].fd);
                                        cs[i].fd = -1;
                                }
                        break;
                }
                for (int k = 0; k < n; k++) {
                        struct bconn *c = &cs[evs[k].data.u32];
                        if (c->fd < 0)
                                continue;
                        int fail = 0;
                        if ((evs[k].events & EPOLLOUT) && c->tx < c->per) {
                                fail = bconn_send(c);
                                if (!fail && c->tx == c->per) {
                                        shutdown(c->fd, SHUT_WR);
                                        struct epoll_event ev = { .events = EPOLLIN, .data = evs[k].data };
                                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                                }
                        }
                        if (!fail && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                                ssize_t r = recv(c->fd, buf, CHUNK, 0);
                                if (r > 0) {
                                        if (c->rx + (uint64_t)r > c->per ||
                                            memcmp(buf, pattern + c->rx % PATTERN_LEN, (size_t)r) != 0) {
                                                errors[E_MISMATCH]++;
                                                fail = -1;
                                        } else {
                                                c->rx += (uint64_t)r;
                                        }
                                } else if (r == 0) {
                                        if (c->rx != c->per)
                                                errors[E_EOF]++;
                                        close(c->fd);
                                        c->fd = -1;
                                        open_--;
                                        continue;
                                } else if (errno != EAGAIN) {
                                        fail = errno;
                                }
                        }
                        if (fail) {
                                if (fail > 0)
                                        errors[classify(fail)]++;
                                close(c->fd);
                                c->fd = -1;
                                open_--;
                        }
                }
        }
        double secs = (double)(now_ns() - start) / 1e9;
        uint64_t verified = 0, sent = 0;
        for (long i = 0; i < nc; i++) {
                verified += cs[i].rx;
                sent += cs[i].per;
        }
        if (sink > 0) {
                int st;
                waitpid(sink, &st, 0);
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                        errors[E_OTHER]++;
        }
        if (verified != sent && errors[E_MISMATCH] + errors[E_EOF] + errors[E_TIMEOUT] == 0)
                errors[E_EOF]++;
        printf("mode=%s conns=%ld bytes=%" PRIu64 " verified=%" PRIu64 " capped=%d seconds=%.3f mbps=%.1f",
               ceiling ? "ceiling" : "bulk", nc, sent, verified, capped, secs, (double)verified / secs / 1e6);
        print_errors();
        close(ep);
        free(cs);
        free(buf);
}

/* ---- pingpong: one connection, one message in flight ---- */
static void mode_pingpong(const struct opts *o) {
        struct opts blocking = *o;
        int fd = conn_start(&blocking);
        if (fd < 0) {
                errors[classify(-fd)]++;
                printf("mode=pingpong split=%d count=0 p50_us=-1 p99_us=-1", o->split);
                print_errors();
                return;
        }
        struct epoll_event ev = { .events = EPOLLOUT };
        int ep = epoll_create1(EPOLL_CLOEXEC);
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        int tmo_ms = (int)(o->timeout * 1000);
        int ready = epoll_wait(ep, &ev, 1, tmo_ms);
        int e = ready == 1 ? sock_error(fd) : 0;
        if (ready != 1 || e) {
                errors[e ? classify(e) : E_TIMEOUT]++;
                printf("mode=pingpong split=%d count=0 p50_us=-1 p99_us=-1", o->split);
                print_errors();
                close(fd);
                return;
        }
        ev.events = EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        struct samples lat = { 0 };
        uint64_t start = now_ns(), end = start + (uint64_t)(o->seconds * 1e9);
        const int warmup = 10;
        size_t len = o->split ? 2 : 1;
        for (uint64_t i = 0; i < o->amount + (uint64_t)warmup; i++) {
                unsigned char msg[2], got[2];
                /* 1-byte messages are '\n' so a line-buffered server answers them */
                msg[0] = o->split ? (unsigned char)('a' + i % 26) : '\n';
                msg[1] = '\n';
                uint64_t t0 = now_ns();
                bool fail = false;
                for (size_t w = 0; w < len && !fail; w++)
                        if (send(fd, msg + w, 1, MSG_NOSIGNAL) != 1) {
                                errors[classify(errno)]++;
                                fail = true;
                        }
                size_t have = 0;
                while (!fail && have < len) {
                        int r = epoll_wait(ep, &ev, 1, tmo_ms);
                        if (r == 0) {
                                errors[E_TIMEOUT]++;
                                fail = true;
                                break;
                        }
                        if (r < 0)
                                continue;
                        ssize_t n = recv(fd, got + have, len - have, MSG_DONTWAIT);
                        if (n > 0)
                                have += (size_t)n;
                        else if (n == 0) {
                                errors[E_EOF]++;
                                fail = true;
                        } else if (errno != EAGAIN) {
                                errors[classify(errno)]++;
                                fail = true;
                        }
                }
                if (fail)
                        break;
                if (memcmp(msg, got, len) != 0) {
                        errors[E_MISMATCH]++;
                        break;
                }
                uint64_t t1 = now_ns();
                if (i >= (uint64_t)warmup)
                        samples_add(&lat, t1 - t0);
                if (t1 > end)
                        break;
        }
        close(fd);
        close(ep);
        qsort(lat.v, lat.n, sizeof *lat.v, cmp_u64);
        printf("mode=pingpong split=%d count=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f", o->split, lat.n,
               pct_us(&lat, 50), pct_us(&lat, 99), pct_us(&lat, 100));
        print_errors();
        free(lat.v);
}

/* ---- hold: N verified connections kept open while the server's memory is read ---- */
struct tree_mem {
        uint64_t pss_kib, pte_kib;
        long procs;
};

static uint64_t field_kib(const char *path, const char *key) {
        FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        char line[256];
        size_t kl = strlen(key);
        uint64_t v = 0;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, key, kl) == 0) {
                        v = strtoull(line + kl, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

struct proc_link {
        pid_t pid, ppid;
};

static int cmp_ppid(const void *a, const void *b) {
        const struct proc_link *x = a, *y = b;
        return x->ppid < y->ppid ? -1 : x->ppid > y->ppid;
}

/* Sums Pss (smaps_rollup) and VmPTE (status) over root and all its descendants; with
 * count_only, just counts them. */
static struct tree_mem tree_measure(pid_t root, bool count_only) {
        struct tree_mem m = { 0, 0, 0 };
        size_t cap = 65536, n = 0;
        struct proc_link *links = malloc(cap * sizeof *links);
        DIR *d = opendir("/proc");
        if (!links || !d)
                die("tree_measure");
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!isdigit((unsigned char)de->d_name[0]))
                        continue;
                char path[300], buf[512];
                snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t r = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (r <= 0)
                        continue;
                buf[r] = 0;
                char *p = strrchr(buf, ')');
                int pp;
                if (!p || sscanf(p + 1, " %*c %d", &pp) != 1)
                        continue;
                if (n == cap) {
                        cap *= 2;
                        links = realloc(links, cap * sizeof *links);
                        if (!links)
                                die("realloc");
                }
                links[n].pid = atoi(de->d_name);
                links[n++].ppid = pp;
        }
        closedir(d);
        /* breadth-first: children of p are the run of links sorted by ppid equal to p */
        qsort(links, n, sizeof *links, cmp_ppid);
        pid_t *queue = malloc((n + 1) * sizeof *queue);
        if (!queue)
                die("malloc");
        size_t qh = 0, qt = 0;
        queue[qt++] = root;
        while (qh < qt) {
                pid_t p = queue[qh++];
                size_t lo = 0, hi = n;
                while (lo < hi) {
                        size_t mid = (lo + hi) / 2;
                        if (links[mid].ppid < p)
                                lo = mid + 1;
                        else
                                hi = mid;
                }
                for (size_t i = lo; i < n && links[i].ppid == p && qt <= n; i++)
                        queue[qt++] = links[i].pid;
        }
        for (size_t i = 0; i < qt; i++) {
                m.procs++;
                if (count_only)
                        continue;
                char path[64];
                snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)queue[i]);
                m.pss_kib += field_kib(path, "Pss:");
                snprintf(path, sizeof path, "/proc/%d/status", (int)queue[i]);
                m.pte_kib += field_kib(path, "VmPTE:");
        }
        free(queue);
        free(links);
        return m;
}

struct hconn {
        int fd;
        int state; /* 0 connecting, 1 sent, 2 verified (held), -1 failed */
        size_t got;
        uint64_t t0;
};

static void hold_msg(char *msg, uint64_t i) {
        snprintf(msg, 9, "%07" PRIu64, i % 10000000u);
        msg[7] = '\n';
}

static void mode_hold(const struct opts *o) {
        long nc = (long)o->amount;
        raise_nofile((rlim_t)nc + 256);
        struct hconn *cs = calloc((size_t)nc, sizeof *cs);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (!cs || ep < 0)
                die("setup");
        struct tree_mem base = { 0, 0, 0 };
        if (o->pid > 0)
                base = tree_measure(o->pid, false);
        uint64_t start = now_ns(), tmo = (uint64_t)(o->timeout * 1e9);
        long next = 0, pending = 0, held = 0, failed = 0;
        const long in_flight = 256;
        struct epoll_event evs[256];
        while (held + failed < nc) {
                while (next < nc && pending < in_flight) {
                        struct hconn *c = &cs[next];
                        c->t0 = now_ns();
                        c->fd = conn_start(o);
                        if (c->fd < 0) {
                                errors[classify(-c->fd)]++;
                                c->state = -1;
                                failed++;
                                next++;
                                continue;
                        }
                        struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = (uint32_t)next };
                        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                        next++;
                        pending++;
                }
                int n = epoll_wait(ep, evs, 256, 50);
                if (n < 0 && errno != EINTR)
                        die("epoll_wait");
                for (int k = 0; k < n; k++) {
                        uint32_t idx = evs[k].data.u32;
                        struct hconn *c = &cs[idx];
                        if (c->state < 0 || c->state == 2)
                                continue;
                        char msg[9], buf[9];
                        hold_msg(msg, idx);
                        int e = 0;
                        if (c->state == 0) {
                                e = sock_error(c->fd);
                                if (!e && send(c->fd, msg, 8, MSG_NOSIGNAL) != 8)
                                        e = errno ? errno : EIO;
                                if (!e) {
                                        c->state = 1;
                                        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };
                                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                                }
                        } else {
                                ssize_t r = recv(c->fd, buf, 8 - c->got, 0);
                                if (r > 0) {
                                        if (memcmp(buf, msg + c->got, (size_t)r) != 0) {
                                                errors[E_MISMATCH]++;
                                                c->state = -1;
                                        } else if ((c->got += (size_t)r) == 8) {
                                                c->state = 2;
                                                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                                                held++;
                                                pending--;
                                        }
                                } else if (r == 0) {
                                        errors[E_EOF]++;
                                        c->state = -1;
                                } else if (errno != EAGAIN) {
                                        e = errno;
                                }
                        }
                        if (e) {
                                errors[classify(e)]++;
                                c->state = -1;
                        }
                        if (c->state == -1) {
                                close(c->fd);
                                c->fd = -1;
                                failed++;
                                pending--;
                        }
                }
                uint64_t t = now_ns();
                for (long i = 0; i < next; i++) {
                        struct hconn *c = &cs[i];
                        if ((c->state == 0 || c->state == 1) && t > c->t0 && t - c->t0 > tmo) {
                                errors[E_TIMEOUT]++;
                                c->state = -1;
                                close(c->fd);
                                c->fd = -1;
                                failed++;
                                pending--;
                        }
                }
        }
        double open_s = (double)(now_ns() - start) / 1e9;
        /* let the last children settle (a fork server's child touches pages as it starts) */
        usleep(200000);
        struct tree_mem m = { 0, 0, 0 };
        if (o->pid > 0)
                m = tree_measure(o->pid, false);
        /* every held connection must still be open and silent */
        long dropped = 0;
        for (long i = 0; i < nc; i++) {
                if (cs[i].state != 2)
                        continue;
                char b;
                ssize_t r = recv(cs[i].fd, &b, 1, MSG_DONTWAIT);
                if (r == 0 || (r < 0 && errno != EAGAIN))
                        dropped++;
        }
        errors[E_EOF] += (uint64_t)dropped;
        for (long i = 0; i < nc; i++)
                if (cs[i].fd >= 0)
                        close(cs[i].fd);
        /* wait for a fork server to get back to its idle process count */
        double settle_s = 0;
        if (o->pid > 0) {
                uint64_t t0 = now_ns();
                while (now_ns() - t0 < 20000000000u && tree_measure(o->pid, true).procs > base.procs)
                        usleep(50000);
                settle_s = (double)(now_ns() - t0) / 1e9;
        }
        long ok = held - dropped;
        double per = ok > 0 ? 1.0 / (double)ok : 0;
        double pss_pc = ((double)m.pss_kib - (double)base.pss_kib) * per;
        double pte_pc = ((double)m.pte_kib - (double)base.pte_kib) * per;
        printf("mode=hold n=%ld held=%ld open_s=%.3f procs=%ld base_procs=%ld pss_kib=%" PRIu64
               " pte_kib=%" PRIu64 " base_pss_kib=%" PRIu64 " base_pte_kib=%" PRIu64
               " pss_per_client_kib=%.1f pte_per_client_kib=%.1f mem_per_client_kib=%.1f "
               "settle_s=%.2f",
               nc, ok, open_s, m.procs, base.procs, m.pss_kib, m.pte_kib, base.pss_kib, base.pte_kib, pss_pc,
               pte_pc, pss_pc + pte_pc, settle_s);
        print_errors();
        close(ep);
        free(cs);
}

static void usage(void) {
        fputs("Usage: loadgen MODE [-H HOST] -p PORT [OPTION]...\n"
              "  rate      -c CLIENTS -d SECONDS    connect/send 64 B/echo/close loops\n"
              "  bulk      -c CONNS -n BYTES [-d S] stream and verify BYTES in total (stop\n"
              "                                     sending after S seconds if given)\n"
              "  ceiling   -c CONNS -n BYTES        bulk against a built-in no-op sink (no -p)\n"
              "  pingpong  -n COUNT -d SECONDS [-s] 1-byte round trips (-s: 2 bytes, 2 writes)\n"
              "  hold      -n CONNS [-P PID]        hold verified connections, read PID's tree\n"
              "  -t SECONDS  per-connection timeout (default 10)\n"
              "  -S          do not spread sources over 127.0.0.2-251\n"
              "  -W          bulk/ceiling: send with send(2) instead of vmsplice+splice\n"
              "BYTES take a K, M or G suffix (binary).\n",
              stderr);
        exit(64);
}

static uint64_t parse_size(const char *s) {
        char *end;
        uint64_t v = strtoull(s, &end, 10);
        switch (*end) {
        case 'G':
                v <<= 10;
                /* fallthrough */
        case 'M':
                v <<= 10;
                /* fallthrough */
        case 'K':
                v <<= 10;
                end++;
                break;
        default:
                break;
        }
        if (*end || end == s)
                usage();
        return v;
}

int main(int argc, char **argv) {
        if (argc < 2)
                usage();
        const char *mode = argv[1];
        struct opts o = { .host = "127.0.0.1",
                          .port = 0,
                          .clients = 1,
                          .seconds = 3,
                          .amount = 0,
                          .pid = 0,
                          .split = false,
                          .spread = true,
                          .timeout = 10 };
        optind = 2;
        int opt;
        while ((opt = getopt(argc, argv, "H:p:c:d:n:P:t:sSW")) != -1) {
                switch (opt) {
                case 'H':
                        o.host = optarg;
                        break;
                case 'p':
                        o.port = atoi(optarg);
                        break;
                case 'c':
                        o.clients = atol(optarg);
                        break;
                case 'd':
                        o.seconds = atof(optarg);
                        o.seconds_set = true;
                        break;
                case 'n':
                        o.amount = parse_size(optarg);
                        break;
                case 'P':
                        o.pid = (pid_t)atoi(optarg);
                        break;
                case 't':
                        o.timeout = atof(optarg);
                        break;
                case 's':
                        o.split = true;
                        break;
                case 'S':
                        o.spread = false;
                        break;
                case 'W':
                        copy_send = true;
                        break;
                default:
                        usage();
                }
        }
        if (o.clients < 1 || o.seconds <= 0 || o.timeout <= 0)
                usage();
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);
        bool ceiling = strcmp(mode, "ceiling") == 0;
        if (!ceiling) {
                dest.sin_family = AF_INET;
                dest.sin_port = htons((uint16_t)o.port);
                if (o.port <= 0 || o.port > 65535 || inet_pton(AF_INET, o.host, &dest.sin_addr) != 1)
                        usage();
                if ((ntohl(dest.sin_addr.s_addr) >> 24) != 127)
                        o.spread = false;
        } else {
                o.spread = false;
        }
        if (strcmp(mode, "rate") == 0)
                mode_rate(&o);
        else if (strcmp(mode, "bulk") == 0 || ceiling)
                mode_bulk(&o, ceiling);
        else if (strcmp(mode, "pingpong") == 0) {
                if (o.amount == 0)
                        o.amount = 10000;
                mode_pingpong(&o);
        } else if (strcmp(mode, "hold") == 0) {
                if (o.amount == 0)
                        usage();
                mode_hold(&o);
        } else
                usage();
        return 0;
}
