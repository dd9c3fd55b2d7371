/* Reference: the minimal fork-per-client echo. accept, fork, the child echoes with a plain
 * read/write loop and _exit()s, the parent reaps on SIGCHLD. No options, no logging, no
 * limits: the floor of what a fork per connection costs. TCP_NODELAY is set, as any echo
 * server must (see the pingpong split test). Usage: ref-fork PORT [HOST] */
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char buf[65536];

static void on_sigchld(int sig) {
        int saved = errno;
        (void)sig;
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        errno = saved;
}

static void serve(int fd) {
        ssize_t n;
        while ((n = read(fd, buf, sizeof buf)) > 0)
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(fd, buf + off, (size_t)(n - off));
                        if (w < 0) {
                                if (errno == EINTR)
                                        continue;
                                _exit(0);
                        }
                        off += w;
                }
        _exit(0);
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fputs("usage: ref-fork PORT [HOST]\n", stderr);
                return 64;
        }
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
        if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &a.sin_addr) != 1)
                return 64;
        struct sigaction sa = { .sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP };
        sigaction(SIGCHLD, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        int one = 1;
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) {
                perror("ref-fork: listen");
                return 1;
        }
        for (;;) {
                int fd = accept(lfd, NULL, NULL);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
                                usleep(10000);
                        continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                pid_t pid = fork();
                if (pid == 0) {
                        close(lfd);
                        serve(fd);
                }
                close(fd);
        }
}
