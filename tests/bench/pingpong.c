/* pingpong: one connection, one message in flight (1 byte, or 2 bytes in 2 writes with -s);
 * reports the round-trip latency after a short warm-up. */
#include "loadgen.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void mode_pingpong(const struct opts *o) {
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
