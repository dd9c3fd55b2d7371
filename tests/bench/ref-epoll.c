/* Reference: a single-process epoll echo, the no-fork ceiling. Non-blocking sockets,
 * level-triggered; what a short write leaves over is kept per connection and the socket is
 * then polled for output only (back-pressure). TCP_NODELAY on every connection.
 * Usage: ref-epoll PORT [HOST] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
        char *pending; /* unsent bytes after a short write, or NULL */
        size_t len, off;
};

static char buf[65536];
static struct conn *conns; /* indexed by fd */
static int n_conns;

static void conn_close(int ep, int fd) {
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        free(conns[fd].pending);
        conns[fd].pending = NULL;
        close(fd);
}

/* Writes what is pending; returns 1 when all is out, 0 to wait, -1 on error. */
static int conn_flush(struct conn *c, int fd) {
        while (c->off < c->len) {
                ssize_t w = send(fd, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL);
                if (w < 0)
                        return errno == EAGAIN ? 0 : -1;
                c->off += (size_t)w;
        }
        free(c->pending);
        c->pending = NULL;
        return 1;
}

static void conn_event(int ep, int fd, unsigned events) {
        struct conn *c = &conns[fd];
        if (c->pending) {
                int r = conn_flush(c, fd);
                if (r < 0)
                        conn_close(ep, fd);
                if (r == 1) {
                        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
                        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                }
                return;
        }
        if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
                if (n == 0 || errno != EAGAIN)
                        conn_close(ep, fd);
                return;
        }
        ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) {
                conn_close(ep, fd);
                return;
        }
        if (w < 0)
                w = 0;
        if (w < n) {
                c->len = (size_t)(n - w);
                c->off = 0;
                c->pending = malloc(c->len);
                if (!c->pending) {
                        conn_close(ep, fd);
                        return;
                }
                memcpy(c->pending, buf + w, c->len);
                struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        }
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fputs("usage: ref-epoll PORT [HOST]\n", stderr);
                return 64;
        }
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
        if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &a.sin_addr) != 1)
                return 64;
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        n_conns = (int)rl.rlim_cur;
        conns = calloc((size_t)n_conns, sizeof *conns);
        signal(SIGPIPE, SIG_IGN);
        int one = 1;
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int ep = epoll_create1(0);
        if (!conns || lfd < 0 || ep < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
                perror("ref-epoll: listen");
                return 1;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
        epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
        struct epoll_event evs[256];
        for (;;) {
                int n = epoll_wait(ep, evs, 256, -1);
                for (int k = 0; k < n; k++) {
                        int fd = evs[k].data.fd;
                        if (fd != lfd) {
                                conn_event(ep, fd, evs[k].events);
                                continue;
                        }
                        int cfd;
                        while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                                if (cfd >= n_conns) {
                                        close(cfd);
                                        continue;
                                }
                                setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                                struct epoll_event cev = { .events = EPOLLIN, .data.fd = cfd };
                                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                        }
                }
        }
}
