/* bulk and ceiling: C connections stream pseudo-random bytes, every echoed byte is verified.
 * Owns the pattern, the sending side (vmsplice+splice, or send(2) with -W), the optional
 * time cap and, for the ceiling, the no-op sink forked in place of a server. */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
/* The bulk stream repeats a pseudo-random block whose odd length matches no buffer size. */
#define PATTERN_LEN ((1u << 20) + 4093u)

static unsigned char *pattern;

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

bool copy_send; /* -W: send with send(2), as a server would, instead of splicing */

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

void mode_bulk(const struct opts *o, bool ceiling) {
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
