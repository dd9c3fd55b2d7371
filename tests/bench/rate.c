/* rate: C clients, each looping connect / send 64 B / read back / compare / close for the
 * given seconds; reports completed connections per second and their latency. Owns the
 * per-connection state machine (rconn) and its timeouts. */
#include "loadgen.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RATE_MSG 64

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

void mode_rate(const struct opts *o) {
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
