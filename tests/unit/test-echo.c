/* Unit test of echo.c: echo_stream() runs in a forked child over one end of an AF_UNIX
 * socketpair or a loopback TCP pair; the test is the client on the other end. The child
 * reports its echo_result through a pipe. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "child/echo.h"
#include "tap.h"

static bool valgrind;
/* The child's drain timeout (echo_config): long, but for the test of a stop that cannot
 * finish. */
static uint64_t drain_usec = 60000000;

__attribute__((format(printf, 1, 2))) static void diag(const char *fmt, ...) {
        va_list ap;

        printf("# ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
}

static int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a, 64 bit: enough to tell a reordered, lost or altered byte from the right stream. */
#define FNV_INIT 0xcbf29ce484222325ull
static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                h ^= p[i];
                h *= 0x100000001b3ull;
        }
        return h;
}

/* The byte at stream offset i: xorshift-ish, not periodic within the sizes used here. */
static uint8_t gen_byte(uint64_t i) {
        uint64_t x = i * 0x9e3779b97f4a7c15ull;
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 32;
        return (uint8_t)x;
}

static void gen_fill(uint8_t *buf, uint64_t offset, size_t n) {
        for (size_t i = 0; i < n; i++)
                buf[i] = gen_byte(offset + i);
}

enum pair_kind { PAIR_UNIX, PAIR_TCP };
static const char *pair_name(enum pair_kind k) {
        return k == PAIR_UNIX ? "socketpair" : "tcp";
}

/* ret[0] is the server (echo) end, ret[1] the client end. */
static int make_pair(enum pair_kind kind, int ret[2]) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int lfd, cfd, afd;

        if (kind == PAIR_UNIX)
                return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ret) < 0 ? -errno : 0;

        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0)
                return -errno;
        if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
            getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
                close(lfd);
                return -errno;
        }
        cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(lfd);
                return -errno;
        }
        afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        close(lfd);
        if (afd < 0)
                return -errno;
        ret[0] = afd;
        ret[1] = cfd;
        return 0;
}

struct server {
        pid_t pid;
        int result_fd;
};

/* Forks a child that runs echo_stream() on fds[0]; the parent keeps fds[1] and closes
 * fds[0]. SIGUSR1 to the child is its stop (read through a signalfd, as echod's SIGTERM). */
static int server_start(int fds[2], uint64_t idle_usec, struct server *ret) {
        sigset_t usr1, old;
        int p[2];

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, &old); /* blocked for the child's signalfd; restored in the parent */
        ret->pid = fork();
        if (ret->pid < 0)
                return -errno;
        if (ret->pid == 0) {
                struct echo_config config = { .idle_timeout_usec = idle_usec,
                                              .drain_timeout_usec = drain_usec };
                struct echo_result result;

                close(p[0]);
                close(fds[1]);
                config.stop_fd = signalfd(-1, &usr1, SFD_CLOEXEC | SFD_NONBLOCK);
                if (config.stop_fd < 0)
                        _exit(3);
                memset(&result, 0, sizeof(result));
                echo_stream(fds[0], &config, &result);
                if (write(p[1], &result, sizeof(result)) != (ssize_t)sizeof(result))
                        _exit(2);
                _exit(0);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        close(p[1]);
        close(fds[0]);
        ret->result_fd = p[0];
        return 0;
}

/* make_pair() and server_start() for one test: false, and a failing "set up" line, if
 * either fails. */
static bool setup(enum pair_kind kind, uint64_t idle_usec, int fds[2], struct server *s) {
        if (make_pair(kind, fds) < 0 || server_start(fds, idle_usec, s) < 0) {
                tap(false, "%s: set up", pair_name(kind));
                return false;
        }
        return true;
}

/* Waits for the child's result; kills it after timeout_ms. Returns 0 or -ETIMEDOUT/-EIO. */
static int server_wait(struct server *s, int timeout_ms, struct echo_result *ret) {
        struct pollfd pfd = { .fd = s->result_fd, .events = POLLIN };
        int r = -ETIMEDOUT, status;

        if (poll(&pfd, 1, timeout_ms) == 1)
                r = read(s->result_fd, ret, sizeof(*ret)) == (ssize_t)sizeof(*ret) ? 0 : -EIO;
        if (r < 0)
                kill(s->pid, SIGKILL);
        while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
                ;
        close(s->result_fd);
        return r;
}

/* The client side of one exchange, non-blocking, bounded by a deadline. */
struct pump {
        uint64_t n_send;   /* bytes of the generated stream to send */
        bool shut;         /* shutdown(SHUT_WR) once all is sent */
        bool until_eof;    /* keep reading until the server closes */
        bool no_read;      /* never read (a client that does not read) */
        size_t read_chunk; /* bytes per read() (small: a slow reader) */
        uint64_t n_sent, n_recv;
        uint64_t h_sent, h_recv;
        bool eof, reset;
        int error;
};

static void pump_init(struct pump *p, uint64_t n_send, bool shut) {
        memset(p, 0, sizeof(*p));
        p->n_send = n_send;
        p->shut = shut;
        p->read_chunk = 65536;
        p->h_sent = p->h_recv = FNV_INIT;
}

/* Runs until: EOF from the server, or (!shut) everything sent came back, or (no_read) all
 * was sent, or the deadline. Returns 0, or -ETIMEDOUT. */
static int pump_run(int fd, struct pump *p, int timeout_ms) {
        static uint8_t out[65536], in[65536];
        int64_t deadline = now_ms() + timeout_ms;
        bool shut_done = false;

        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = 0 };
                int64_t left = deadline - now_ms();

                if (p->eof || p->reset || p->error)
                        return 0;
                if (!p->shut && !p->until_eof && !p->no_read && p->n_recv == p->n_send &&
                    p->n_sent == p->n_send)
                        return 0;
                if (p->no_read && p->n_sent == p->n_send && (!p->shut || shut_done))
                        return 0;
                if (left <= 0)
                        return -ETIMEDOUT;
                if (p->n_sent < p->n_send)
                        pfd.events |= POLLOUT;
                else if (p->shut && !shut_done) {
                        shutdown(fd, SHUT_WR);
                        shut_done = true;
                }
                if (!p->no_read)
                        pfd.events |= POLLIN;
                if (poll(&pfd, 1, (int)(left > 200 ? 200 : left)) <= 0)
                        continue;
                if (pfd.revents & POLLOUT) {
                        size_t n = p->n_send - p->n_sent > sizeof(out) ? sizeof(out)
                                                                       : (size_t)(p->n_send - p->n_sent);
                        ssize_t w;

                        gen_fill(out, p->n_sent, n);
                        w = send(fd, out, n, MSG_NOSIGNAL);
                        if (w > 0) {
                                p->h_sent = fnv(p->h_sent, out, (size_t)w);
                                p->n_sent += (uint64_t)w;
                        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                                p->error = -errno;
                        }
                }
                if (!p->no_read && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
                        size_t chunk = p->read_chunk < sizeof(in) ? p->read_chunk : sizeof(in);
                        ssize_t r = read(fd, in, chunk);

                        if (r > 0) {
                                p->h_recv = fnv(p->h_recv, in, (size_t)r);
                                p->n_recv += (uint64_t)r;
                        } else if (r == 0) {
                                p->eof = true;
                        } else if (errno == ECONNRESET) {
                                p->reset = true;
                        } else if (errno != EAGAIN && errno != EINTR) {
                                p->error = -errno;
                        }
                }
        }
}

static bool recv_exact(int fd, uint8_t *buf, size_t n, int timeout_ms) {
        int64_t deadline = now_ms() + timeout_ms;
        size_t got = 0;

        while (got < n) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int64_t left = deadline - now_ms();
                ssize_t r;

                if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
                        return false;
                r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
                if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
                        return false;
                if (r > 0)
                        got += (size_t)r;
        }
        return true;
}

/* Reads until EOF; returns bytes read or -1 on timeout/error. */
static ssize_t recv_to_eof(int fd, uint8_t *buf, size_t size, int timeout_ms) {
        int64_t deadline = now_ms() + timeout_ms;
        size_t got = 0;

        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int64_t left = deadline - now_ms();
                ssize_t r;

                if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
                        return -1;
                r = recv(fd, buf + got, size - got, MSG_DONTWAIT);
                if (r == 0)
                        return (ssize_t)got;
                if (r < 0 && errno != EAGAIN && errno != EINTR)
                        return -1;
                if (r > 0)
                        got += (size_t)r;
                if (got == size)
                        return (ssize_t)got; /* caller's buffer full: more than expected */
        }
}

#define TIMEOUT_MS (valgrind ? 120000 : 30000)

static void test_all_bytes(enum pair_kind kind) {
        uint8_t sent[256], got[512];
        struct echo_result res;
        struct server s;
        ssize_t n;
        int fds[2], r;

        for (int i = 0; i < 256; i++)
                sent[i] = (uint8_t)i;
        if (!setup(kind, 0, fds, &s))
                return;
        if (send(fds[1], sent, sizeof(sent), MSG_NOSIGNAL) != (ssize_t)sizeof(sent))
                diag("short send");
        shutdown(fds[1], SHUT_WR);
        n = recv_to_eof(fds[1], got, sizeof(got), TIMEOUT_MS);
        tap(n == 256 && memcmp(sent, got, 256) == 0,
            "%s: all 256 byte values (0x00..0xff, incl. \\0 \\r \\n) echoed exactly, then EOF (got %zd)",
            pair_name(kind), n);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_EOF && res.n_bytes == 256 && res.error == 0,
            "%s: result end=eof n_bytes=256 (r=%d end=%s n=%llu)", pair_name(kind), r,
            r == 0 ? echo_end_to_string(res.end) : "-", r == 0 ? (unsigned long long)res.n_bytes : 0);
        close(fds[1]);
}

static void test_no_newline(enum pair_kind kind) {
        uint8_t got[3];
        struct echo_result res;
        struct server s;
        int fds[2], r;
        bool ok;

        if (!setup(kind, 0, fds, &s))
                return;
        if (send(fds[1], "abc", 3, MSG_NOSIGNAL) != 3)
                diag("short send");
        /* the connection stays open: the echo must not wait for a newline or for EOF */
        ok = recv_exact(fds[1], got, 3, valgrind ? 20000 : 2000) && memcmp(got, "abc", 3) == 0;
        tap(ok, "%s: \"abc\" without a newline comes back while the connection stays open", pair_name(kind));
        close(fds[1]);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.n_bytes == 3 && (res.end == ECHO_END_EOF || res.end == ECHO_END_RESET),
            "%s: after close, result n_bytes=3, end eof or reset (r=%d)", pair_name(kind), r);
}

static void test_big(enum pair_kind kind, uint64_t size, bool tiny_buffers) {
        struct echo_result res;
        struct server s;
        struct pump p;
        int fds[2], r, pr;

        if (make_pair(kind, fds) < 0) {
                tap(false, "%s: set up", pair_name(kind));
                return;
        }
        if (tiny_buffers) {
                int tiny = 1024;
                /* the echo end can send only a little at a time: short writes and EAGAIN
                 * (a tiny TCP receive window would only make the test slow) */
                setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &tiny, sizeof(tiny));
                if (kind == PAIR_UNIX)
                        setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &tiny, sizeof(tiny));
        }
        if (server_start(fds, 0, &s) < 0) {
                tap(false, "%s: fork", pair_name(kind));
                return;
        }
        pump_init(&p, size, true);
        if (tiny_buffers)
                p.read_chunk = 333; /* a slow reader of odd-sized pieces */
        pr = pump_run(fds[1], &p, valgrind ? 600000 : 90000);
        tap(pr == 0 && p.eof && p.n_sent == size && p.n_recv == size && p.h_recv == p.h_sent,
            "%s%s: %llu bytes echoed, same FNV-1a hash, then EOF (sent %llu, got %llu, %s, hash %s)",
            pair_name(kind), tiny_buffers ? " with a tiny SO_SNDBUF" : "", (unsigned long long)size,
            (unsigned long long)p.n_sent, (unsigned long long)p.n_recv,
            pr < 0  ? "timed out"
            : p.eof ? "eof"
                    : "no eof",
            p.h_recv == p.h_sent ? "equal" : "differs");
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_EOF && res.n_bytes == size,
            "%s: result end=eof, n_bytes=%llu (r=%d end=%s n=%llu)", pair_name(kind),
            (unsigned long long)size, r, r == 0 ? echo_end_to_string(res.end) : "-",
            r == 0 ? (unsigned long long)res.n_bytes : 0);
        close(fds[1]);
}

/* The client sends a lot without reading (so the echo has data pending it cannot write),
 * then shuts down its write side, then reads: every byte must come back before EOF. */
static void test_half_close(enum pair_kind kind) {
        const uint64_t size = 4u << 20;
        struct echo_result res;
        struct server s;
        struct pump p;
        int fds[2], r;
        uint64_t h_sent;

        if (!setup(kind, 0, fds, &s))
                return;
        pump_init(&p, size, true);
        p.no_read = true;
        /* send until the pipes are full (the echo stops reading once it cannot write) */
        pump_run(fds[1], &p, 1000);
        diag("%s: %llu bytes sent before reading", pair_name(kind), (unsigned long long)p.n_sent);
        p.n_send = p.n_sent; /* shut down after what fit, then read all */
        p.no_read = false;
        h_sent = p.h_sent;
        r = pump_run(fds[1], &p, TIMEOUT_MS);
        tap(r == 0 && p.eof && p.n_recv == p.n_sent && p.h_recv == h_sent && p.n_sent > 0,
            "%s: half-close with %llu bytes unread: all sent back, then EOF (got %llu)", pair_name(kind),
            (unsigned long long)p.n_sent, (unsigned long long)p.n_recv);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_EOF && res.n_bytes == p.n_sent,
            "%s: half-close result end=eof n_bytes=%llu (r=%d end=%s n=%llu)", pair_name(kind),
            (unsigned long long)p.n_sent, r, r == 0 ? echo_end_to_string(res.end) : "-",
            r == 0 ? (unsigned long long)res.n_bytes : 0);
        close(fds[1]);
}

/* The client sends, reads nothing, and goes away abortively (RST for TCP; close with unread
 * data for AF_UNIX gives ECONNRESET/EPIPE). */
static void test_reset(enum pair_kind kind) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        struct echo_result res;
        struct server s;
        struct pump p;
        int fds[2], r;

        if (!setup(kind, 0, fds, &s))
                return;
        pump_init(&p, 1u << 20, false);
        p.no_read = true;
        pump_run(fds[1], &p, 1000);
        usleep(100000);
        if (kind == PAIR_TCP)
                setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fds[1]);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_RESET && res.error == 0,
            "%s: peer reset mid-stream -> end=reset, error 0 (r=%d end=%s error=%d)", pair_name(kind), r,
            r == 0 ? echo_end_to_string(res.end) : "-", r == 0 ? res.error : 0);
}

static void test_idle(enum pair_kind kind) {
        struct echo_result res;
        struct server s;
        uint8_t got[1];
        int64_t t0, elapsed;
        int fds[2], r;
        bool ok;

        if (!setup(kind, 300000, fds, &s))
                return;
        t0 = now_ms();
        /* progress every 100 ms for 1 s must keep a 300 ms idle timeout from firing */
        ok = true;
        for (int i = 0; i < 10 && ok; i++) {
                ok = send(fds[1], "x", 1, MSG_NOSIGNAL) == 1 && recv_exact(fds[1], got, 1, 2000);
                usleep(100000);
        }
        tap(ok, "%s: a client making progress every 100 ms outlives a 300 ms idle timeout", pair_name(kind));
        t0 = now_ms();
        r = server_wait(&s, valgrind ? 30000 : 5000, &res);
        elapsed = now_ms() - t0;
        tap(r == 0 && res.end == ECHO_END_IDLE && res.n_bytes == 10,
            "%s: then silent -> end=idle, n_bytes=10 (r=%d end=%s n=%llu)", pair_name(kind), r,
            r == 0 ? echo_end_to_string(res.end) : "-", r == 0 ? (unsigned long long)res.n_bytes : 0);
        tap(r == 0 && elapsed >= 150 && elapsed < (valgrind ? 20000 : 2000),
            "%s: idle end came about 300 ms after the last progress (%lld ms)", pair_name(kind),
            (long long)elapsed);
        close(fds[1]);
}

/* A client that never reads: once the buffers are full nothing moves, which is "no
 * progress" too. */
static void test_idle_no_reader(enum pair_kind kind) {
        struct echo_result res;
        struct server s;
        struct pump p;
        int fds[2], r;

        if (!setup(kind, 300000, fds, &s))
                return;
        pump_init(&p, 64u << 20, false);
        p.no_read = true;
        pump_run(fds[1], &p, 1500);
        r = server_wait(&s, valgrind ? 30000 : 5000, &res);
        tap(r == 0 && res.end == ECHO_END_IDLE,
            "%s: a client that sends and never reads -> end=idle (r=%d end=%s, %llu bytes sent)",
            pair_name(kind), r, r == 0 ? echo_end_to_string(res.end) : "-", (unsigned long long)p.n_sent);
        close(fds[1]);
}

static void test_idle_zero(enum pair_kind kind) {
        struct echo_result res;
        struct server s;
        int fds[2], r;

        if (!setup(kind, 0, fds, &s))
                return;
        r = server_wait(&s, 1500, &res);
        tap(r == -ETIMEDOUT, "%s: idle timeout 0 = never: still serving after 1.5 s silent (r=%d)",
            pair_name(kind), r);
        close(fds[1]);
}

static void test_stop(enum pair_kind kind) {
        uint8_t sent[1000], got[4096];
        struct echo_result res;
        struct server s;
        ssize_t n;
        int fds[2], r;

        gen_fill(sent, 0, sizeof(sent));
        if (!setup(kind, 0, fds, &s))
                return;
        if (send(fds[1], sent, 500, MSG_NOSIGNAL) != 500 || !recv_exact(fds[1], got, 500, 5000))
                diag("first half not echoed");
        if (send(fds[1], sent + 500, 500, MSG_NOSIGNAL) != 500)
                diag("short send");
        usleep(valgrind ? 1000000 : 200000);
        kill(s.pid, SIGUSR1);
        /* the client does not shut down: the stop alone must end it, after echoing */
        n = recv_to_eof(fds[1], got + 500, sizeof(got) - 500, TIMEOUT_MS);
        tap(n == 500 && memcmp(got, sent, 1000) == 0,
            "%s: stop flag: what had arrived is echoed, then the connection closes (got %zd more)",
            pair_name(kind), n);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_STOP && res.n_bytes == 1000,
            "%s: stop result end=stop n_bytes=1000 (r=%d end=%s n=%llu)", pair_name(kind), r,
            r == 0 ? echo_end_to_string(res.end) : "-", r == 0 ? (unsigned long long)res.n_bytes : 0);
        close(fds[1]);
}

/* Stop while data is pending (the client has not been reading): whatever comes back must be
 * an exact prefix, its length the n_bytes reported, and the child must end by itself. */
static void test_stop_pending(enum pair_kind kind) {
        struct echo_result res;
        struct server s;
        struct pump p;
        int fds[2], r;

        if (!setup(kind, 0, fds, &s))
                return;
        pump_init(&p, 4u << 20, false);
        p.no_read = true;
        pump_run(fds[1], &p, 1000);
        kill(s.pid, SIGUSR1);
        p.no_read = false;
        p.n_send = p.n_sent;
        p.until_eof = true; /* no shutdown: the stop alone must end it */
        pump_run(fds[1], &p, TIMEOUT_MS);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_STOP && (p.eof || p.reset) && p.n_recv == res.n_bytes &&
                    p.n_recv > 0,
            "%s: stop with %llu bytes unread by the client: ends with end=stop, the client gets "
            "n_bytes (%llu) then EOF or a reset (got %llu, r=%d end=%s)",
            pair_name(kind), (unsigned long long)p.n_sent, r == 0 ? (unsigned long long)res.n_bytes : 0,
            (unsigned long long)p.n_recv, r, r == 0 ? echo_end_to_string(res.end) : "-");
        close(fds[1]);
}

/* utime + stime of pid in clock ticks, or -1. */
static long cpu_ticks(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long utime, stime;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -1;
        buf[n] = '\0';
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
                return -1;
        return (long)(utime + stime);
}

/* TCP urgent data (MSG_OOB) is data: the byte comes back in line, in order, with all that
 * follows, in copy mode (before) and splice mode (after) the first 8 KiB; and the child
 * never spins on it. With shut, the client's FIN follows the urgent byte at once. With
 * no_read, the client sends 256 KiB without reading first, so the mark is reached while
 * the pipe is full. */
static void test_urgent(enum pair_kind kind, size_t before, bool shut, bool no_read) {
        static uint8_t sent[1 << 20], got[1 << 20];
        const size_t after = 1000, bulk = no_read ? 256u << 10 : 0;
        size_t n_sent = 0, n_got = 0;
        struct echo_result res;
        struct server s;
        long cpu0, cpu1;
        int fds[2], r;
        ssize_t w;
        bool ok;

        if (!setup(kind, 0, fds, &s))
                return;
        gen_fill(sent, 0, before + bulk + 1 + after);
        sent[before + bulk] = '!';
        ok = send(fds[1], sent, before, MSG_NOSIGNAL) == (ssize_t)before &&
             recv_exact(fds[1], got, before, TIMEOUT_MS);
        n_sent = n_got = ok ? before : 0;
        if (ok && bulk > 0) {
                struct pump p;
                pump_init(&p, bulk, false);
                p.no_read = true;
                pump_run(fds[1], &p, 2000);
                /* pump_run sends gen_byte(0..): the same bytes as sent[before..] needs */
                gen_fill(sent + before, 0, p.n_sent);
                n_sent += p.n_sent;
                sent[n_sent] = '!';
                gen_fill(sent + n_sent + 1, 7, after);
        }
        w = ok ? send(fds[1], sent + n_sent, 1, MSG_OOB | MSG_NOSIGNAL) : -1;
        if (w < 0 && errno == EOPNOTSUPP) {
                /* AF_UNIX has MSG_OOB only since Linux 5.15 (CONFIG_AF_UNIX_OOB) */
                tap(true, "%s: urgent data # SKIP MSG_OOB not supported here", pair_name(kind));
                close(fds[1]);
                (void)server_wait(&s, TIMEOUT_MS, &res);
                return;
        }
        ok = ok && w == 1;
        usleep(50000); /* the urgent byte's segment goes alone */
        ok = ok && send(fds[1], sent + n_sent + 1, after, MSG_NOSIGNAL) == (ssize_t)after;
        n_sent += 1 + after;
        if (shut)
                shutdown(fds[1], SHUT_WR);
        cpu0 = cpu_ticks(s.pid);
        usleep(no_read ? 1000000 : 300000);
        cpu1 = cpu_ticks(s.pid);
        if (shut) {
                ssize_t n = ok ? recv_to_eof(fds[1], got + n_got, sizeof(got) - n_got, TIMEOUT_MS) : -1;
                ok = n >= 0 && n_got + (size_t)n == n_sent;
        } else
                ok = ok && recv_exact(fds[1], got + n_got, n_sent - n_got, valgrind ? 20000 : 3000);
        tap(ok && memcmp(got, sent, n_sent) == 0,
            "%s: urgent byte after %zu%s bytes%s: it and the %zu after it come back in line, in order",
            pair_name(kind), before, no_read ? " + unread bulk" : "", shut ? ", then FIN" : "", after);
        tap(cpu0 >= 0 && cpu1 >= 0 && cpu1 - cpu0 <= (no_read ? 10 : 5),
            "%s: urgent byte after %zu bytes: the child does not spin (%ld ticks in %s)", pair_name(kind),
            before, cpu1 - cpu0, no_read ? "1 s" : "0.3 s");
        close(fds[1]);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.n_bytes == n_sent, "%s: urgent: n_bytes counts the urgent byte (%llu of %zu)",
            pair_name(kind), r == 0 ? (unsigned long long)res.n_bytes : 0, n_sent);
}

/* A client that sends in small paced pieces and reads nothing for a while (over AF_UNIX
 * into an echo end with a small send buffer), then reads slowly: the echo's writes are
 * short. In splice mode (streaming: 8 KiB first) each piece is a pipe buffer of its own,
 * so the pipe fills up (16 buffers) long before its 64 KiB. The child must not spin on a
 * connection that is readable while the pipe can take no more; every byte comes back. */
static void test_paced_no_reader(enum pair_kind kind, bool streaming) {
        static uint8_t piece[1000], big[8192], back[8192];
        const size_t n_pieces = 300;
        struct echo_result res;
        struct server s;
        struct pump p;
        int fds[2], r, small = 1024;
        long cpu0, cpu1;
        uint64_t n_sent = 0, h_sent = FNV_INIT;

        if (make_pair(kind, fds) < 0) {
                tap(false, "%s: set up", pair_name(kind));
                return;
        }
        /* Over TCP, small buffers make loopback crawl (delayed ACKs): tens of seconds */
        if (kind == PAIR_UNIX) {
                setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
                setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        }
        if (server_start(fds, 0, &s) < 0) {
                tap(false, "%s: fork", pair_name(kind));
                return;
        }
        /* 8 KiB first, read back: the child streams (splice) from then on */
        gen_fill(big, 0, sizeof(big));
        if (streaming && (send(fds[1], big, sizeof(big), MSG_NOSIGNAL) != (ssize_t)sizeof(big) ||
                          !recv_exact(fds[1], back, sizeof(back), TIMEOUT_MS)))
                diag("%s: paced: the first 8 KiB did not come back", pair_name(kind));
        fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
        for (size_t i = 0; i < n_pieces; i++) {
                ssize_t w;

                gen_fill(piece, n_sent, sizeof(piece));
                w = send(fds[1], piece, sizeof(piece), MSG_NOSIGNAL);
                if (w <= 0)
                        break;
                h_sent = fnv(h_sent, piece, (size_t)w);
                n_sent += (uint64_t)w;
                usleep(1000);
        }
        cpu0 = cpu_ticks(s.pid);
        usleep(1000000);
        cpu1 = cpu_ticks(s.pid);
        tap(cpu0 >= 0 && cpu1 >= 0 && cpu1 - cpu0 <= 10,
            "%s: %llu bytes in paced pieces%s, none read back: the child does not spin (%ld ticks in 1 s)",
            pair_name(kind), (unsigned long long)n_sent, streaming ? " after 8 KiB" : "", cpu1 - cpu0);
        pump_init(&p, n_sent, true);
        p.read_chunk = 333; /* a slow reader: the echo's writes stay short */
        p.n_sent = n_sent;
        p.h_sent = h_sent;
        r = pump_run(fds[1], &p, TIMEOUT_MS);
        tap(r == 0 && p.eof && p.n_recv == n_sent && p.h_recv == h_sent,
            "%s: then read slowly: all %llu bytes come back, then EOF (got %llu, %s)", pair_name(kind),
            (unsigned long long)n_sent, (unsigned long long)p.n_recv,
            p.eof ? "eof" : (p.reset ? "reset" : "no eof"));
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_EOF && res.n_bytes == (streaming ? sizeof(big) : 0) + n_sent,
            "%s: paced: result end=eof, n_bytes=%llu (r=%d end=%s n=%llu)", pair_name(kind),
            (unsigned long long)((streaming ? sizeof(big) : 0) + n_sent), r,
            r == 0 ? echo_end_to_string(res.end) : "-", r == 0 ? (unsigned long long)res.n_bytes : 0);
        close(fds[1]);
}

/* Copy mode with a short write: 1000 bytes echoed and not read by the client leave the
 * echo end's small send buffer room for only part of the next 4 KiB, so the rest waits at
 * the copy buffer's head while its tail is used up. That is not EOF: what the client sends
 * afterwards comes back too, on a connection still open. */
static void test_copy_short_write(void) {
        static uint8_t sent[1000 + 4096 + 1000], got[sizeof(sent)];
        struct echo_result res;
        struct server s;
        int fds[2], r, small = 2304;
        bool ok;

        if (make_pair(PAIR_UNIX, fds) < 0) {
                tap(false, "socketpair: set up");
                return;
        }
        setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        if (server_start(fds, 0, &s) < 0) {
                tap(false, "socketpair: fork");
                return;
        }
        gen_fill(sent, 0, sizeof(sent));
        ok = send(fds[1], sent, 1000, MSG_NOSIGNAL) == 1000;
        usleep(100000);
        ok = ok && send(fds[1], sent + 1000, 4096, MSG_NOSIGNAL) == 4096;
        usleep(100000);
        ok = ok && send(fds[1], sent + 1000 + 4096, 1000, MSG_NOSIGNAL) == 1000;
        ok = ok && recv_exact(fds[1], got, sizeof(got), valgrind ? 20000 : 3000) &&
             memcmp(got, sent, sizeof(sent)) == 0;
        tap(ok, "socketpair: a short write in copy mode is not EOF: all %zu bytes come back", sizeof(sent));
        shutdown(fds[1], SHUT_WR);
        r = server_wait(&s, TIMEOUT_MS, &res);
        tap(r == 0 && res.end == ECHO_END_EOF && res.n_bytes == sizeof(sent),
            "socketpair: short write: result end=eof, n_bytes=%zu (r=%d end=%s n=%llu)", sizeof(sent), r,
            r == 0 ? echo_end_to_string(res.end) : "-", r == 0 ? (unsigned long long)res.n_bytes : 0);
        close(fds[1]);
}

/* A stop while the peer advertises a zero window (it never reads, with a tiny receive
 * buffer): the echo cannot be delivered, so the child gives up at its drain timeout
 * instead of lingering forever (nobody else may be there to kill it: inetd mode, or a
 * child signalled directly). No idle timeout: the drain timeout alone must end it. */
static void test_stop_zero_window(void) {
        struct echo_result res;
        struct server s;
        struct pump p;
        int fds[2], r, tiny = 2048;
        int64_t t0, took;

        if (make_pair(PAIR_TCP, fds) < 0) {
                tap(false, "tcp: set up");
                return;
        }
        setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &tiny, sizeof(tiny));
        drain_usec = 500000;
        r = server_start(fds, 0, &s);
        drain_usec = 60000000;
        if (r < 0) {
                tap(false, "tcp: fork");
                return;
        }
        pump_init(&p, 64u << 10, false);
        p.no_read = true;
        pump_run(fds[1], &p, 1000);
        usleep(200000);
        t0 = now_ms();
        kill(s.pid, SIGUSR1);
        r = server_wait(&s, valgrind ? 30000 : 5000, &res);
        took = now_ms() - t0;
        tap(r == 0 && res.end == ECHO_END_STOP && took >= 400 && took < (valgrind ? 20000 : 2000),
            "tcp: stop with a zero-window peer: ends as stop at the 0.5 s drain timeout (%lld ms, r=%d)",
            (long long)took, r);
        close(fds[1]);
}

static void test_end_strings(void) {
        static const char *const want[] = { "eof", "idle", "reset", "stop", "error" };
        bool ok = true;

        for (int i = 0; i < _ECHO_END_MAX; i++)
                ok = ok && echo_end_to_string((enum echo_end)i) &&
                     strcmp(echo_end_to_string((enum echo_end)i), want[i]) == 0;
        tap(ok, "echo_end_to_string gives eof, idle, reset, stop, error (the log words)");
}

int main(void) {
        const char *v = getenv("ECHOD_TEST_VALGRIND");
        const uint64_t big = (v && strcmp(v, "1") == 0) ? 8u << 20 : 64u << 20;

        valgrind = v && strcmp(v, "1") == 0;
        signal(SIGPIPE, SIG_IGN);
        alarm(valgrind ? 1500 : 240); /* a hang is a failure, not a stuck CI */

        test_end_strings();
        for (enum pair_kind k = PAIR_UNIX; k <= PAIR_TCP; k++) {
                test_all_bytes(k);
                test_no_newline(k);
                test_big(k, big, false);
                test_big(k, k == PAIR_UNIX ? 4u << 20 : 1u << 20, true);
                test_half_close(k);
                test_reset(k);
                test_idle(k);
                test_idle_no_reader(k);
                test_idle_zero(k);
                test_stop(k);
                test_stop_pending(k);
        }
        for (enum pair_kind k = PAIR_UNIX; k <= PAIR_TCP; k++) {
                test_urgent(k, 5, false, false);
                test_urgent(k, 8192, false, false);
                test_urgent(k, 8192, true, false);
                test_urgent(k, 8192, false, true);
                test_paced_no_reader(k, false);
                test_paced_no_reader(k, true);
        }
        test_copy_short_write();
        test_stop_zero_window();
        return tap_done();
}
