/* Baseline: the textbook concurrent echo server (the CSAPP "echoserverp" design), written
 * from scratch: an open_listenfd helper over getaddrinfo, error wrappers that exit, a SIGCHLD
 * handler that reaps with a waitpid loop, a fork per client, and a buffered reader that
 * echoes line by line (so clients must end their messages with '\n'). The per-line
 * "server received N bytes" printf of the book is left out. Usage: textbook PORT [HOST] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXLINE     8192
#define RIO_BUFSIZE 8192
#define LISTENQ     1024

typedef struct {
        int rio_fd;
        ssize_t rio_cnt;
        char *rio_bufptr;
        char rio_buf[RIO_BUFSIZE];
} rio_t;

typedef void handler_t(int);

static void unix_error(const char *msg) {
        fprintf(stderr, "%s: %s\n", msg, strerror(errno));
        exit(1);
}

static handler_t *Signal(int signum, handler_t *handler) {
        struct sigaction action, old_action;
        action.sa_handler = handler;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        if (sigaction(signum, &action, &old_action) < 0)
                unix_error("Signal error");
        return old_action.sa_handler;
}

static pid_t Fork(void) {
        pid_t pid = fork();
        if (pid < 0)
                unix_error("Fork error");
        return pid;
}

static int Accept(int s, struct sockaddr *addr, socklen_t *addrlen) {
        int rc = accept(s, addr, addrlen);
        if (rc < 0)
                unix_error("Accept error");
        return rc;
}

static void Close(int fd) {
        if (close(fd) < 0)
                unix_error("Close error");
}

static ssize_t rio_writen(int fd, const void *usrbuf, size_t n) {
        size_t nleft = n;
        const char *bufp = usrbuf;
        while (nleft > 0) {
                ssize_t nwritten = write(fd, bufp, nleft);
                if (nwritten <= 0) {
                        if (errno == EINTR)
                                nwritten = 0;
                        else
                                return -1;
                }
                nleft -= (size_t)nwritten;
                bufp += nwritten;
        }
        return (ssize_t)n;
}

static void rio_readinitb(rio_t *rp, int fd) {
        rp->rio_fd = fd;
        rp->rio_cnt = 0;
        rp->rio_bufptr = rp->rio_buf;
}

static ssize_t rio_read(rio_t *rp, char *usrbuf, size_t n) {
        while (rp->rio_cnt <= 0) {
                rp->rio_cnt = read(rp->rio_fd, rp->rio_buf, sizeof rp->rio_buf);
                if (rp->rio_cnt < 0) {
                        if (errno != EINTR)
                                return -1;
                } else if (rp->rio_cnt == 0) {
                        return 0;
                } else {
                        rp->rio_bufptr = rp->rio_buf;
                }
        }
        size_t cnt = n;
        if ((size_t)rp->rio_cnt < n)
                cnt = (size_t)rp->rio_cnt;
        memcpy(usrbuf, rp->rio_bufptr, cnt);
        rp->rio_bufptr += cnt;
        rp->rio_cnt -= (ssize_t)cnt;
        return (ssize_t)cnt;
}

static ssize_t rio_readlineb(rio_t *rp, void *usrbuf, size_t maxlen) {
        size_t n;
        char c, *bufp = usrbuf;
        for (n = 1; n < maxlen; n++) {
                ssize_t rc = rio_read(rp, &c, 1);
                if (rc == 1) {
                        *bufp++ = c;
                        if (c == '\n') {
                                n++;
                                break;
                        }
                } else if (rc == 0) {
                        if (n == 1)
                                return 0;
                        break;
                } else {
                        return -1;
                }
        }
        *bufp = 0;
        return (ssize_t)(n - 1);
}

static ssize_t Rio_readlineb(rio_t *rp, void *usrbuf, size_t maxlen) {
        ssize_t rc = rio_readlineb(rp, usrbuf, maxlen);
        if (rc < 0)
                unix_error("Rio_readlineb error");
        return rc;
}

static void Rio_writen(int fd, const void *usrbuf, size_t n) {
        if (rio_writen(fd, usrbuf, n) != (ssize_t)n)
                unix_error("Rio_writen error");
}

static int open_listenfd(const char *host, const char *port) {
        struct addrinfo hints, *listp, *p;
        int listenfd = -1, optval = 1;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG | AI_NUMERICSERV;
        if (getaddrinfo(host, port, &hints, &listp) != 0)
                return -2;
        for (p = listp; p; p = p->ai_next) {
                if ((listenfd = socket(p->ai_family, p->ai_socktype, p->ai_protocol)) < 0)
                        continue;
                setsockopt(listenfd, SOL_SOCKET, SO_REUSEADDR, &optval, sizeof optval);
                if (bind(listenfd, p->ai_addr, p->ai_addrlen) == 0)
                        break;
                close(listenfd);
        }
        freeaddrinfo(listp);
        if (!p)
                return -1;
        if (listen(listenfd, LISTENQ) < 0) {
                close(listenfd);
                return -1;
        }
        return listenfd;
}

static int Open_listenfd(const char *host, const char *port) {
        int rc = open_listenfd(host, port);
        if (rc < 0)
                unix_error("Open_listenfd error");
        return rc;
}

static void echo(int connfd) {
        size_t n;
        char buf[MAXLINE];
        rio_t rio;
        rio_readinitb(&rio, connfd);
        while ((n = (size_t)Rio_readlineb(&rio, buf, MAXLINE)) != 0)
                Rio_writen(connfd, buf, n);
}

static void sigchld_handler(int sig) {
        (void)sig;
        while (waitpid(-1, 0, WNOHANG) > 0)
                ;
}

int main(int argc, char **argv) {
        int listenfd, connfd;
        socklen_t clientlen;
        struct sockaddr_storage clientaddr;
        if (argc < 2) {
                fprintf(stderr, "usage: %s PORT [HOST]\n", argv[0]);
                exit(64);
        }
        Signal(SIGCHLD, sigchld_handler);
        listenfd = Open_listenfd(argc > 2 ? argv[2] : NULL, argv[1]);
        for (;;) {
                clientlen = sizeof(struct sockaddr_storage);
                connfd = Accept(listenfd, (struct sockaddr *)&clientaddr, &clientlen);
                if (Fork() == 0) {
                        Close(listenfd);
                        echo(connfd);
                        Close(connfd);
                        exit(0);
                }
                Close(connfd);
        }
}
